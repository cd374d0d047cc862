//! The node's status as `GET /v1/status` answers it (SPEC §10) and `bsfg status` prints it: one
//! serde type, written by the node and read back by the CLI (which ignores fields it does not
//! know, so a newer node can add some). Routes and relay flows (SPEC §4a, in `routes`) show
//! what waits for each next hop.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use bsfg_actors::{
    backpressure::{DiskState, Fill},
    cert_watcher::Certificate,
    node::Handles,
    storage::LossRecord,
    zone_gate::GateState,
    HealthReport, RESTART_HINT,
};
use serde::{Deserialize, Serialize};

pub use super::routes::{HopStatus, RelayStatus, RouteStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub zone: String,
    pub version: String,
    pub draining: bool,
    /// Client calls being served right now.
    pub in_flight: usize,
    pub peers: BTreeMap<String, PeerStatus>,
    /// `[[routes]]`, by peer: the zones reached through it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
    /// `[[relay]]` flows, with what waits for each destination's next hop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relay: Vec<RelayStatus>,
    pub store: BufferStatus,
    pub forward: ForwardStatus,
    pub certificate: CertificateStatus,
    /// Absent in answers of nodes older than the storage health report.
    #[serde(default)]
    pub storage: StorageStatus,
    /// An HA zone's instance (SPEC §15); absent on a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
}

/// Whether storage works (`/readyz` follows it), what is wrong when it does not, and the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// `ok`; `failing` (commits or reads fail); `damaged` (damaged data waits for an operator).
    pub state: String,
    /// One sentence per run of failures or damaged place.
    pub problems: Vec<String>,
    #[serde(default)]
    pub disk: DiskStatus,
    /// Losses operators accepted in this data directory (`bsfg storage accept-loss`), oldest first.
    #[serde(default)]
    pub losses: Vec<String>,
}

/// The data directory's file system as the node last measured it (every 250 ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatus {
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// `node.disk_reserve_bytes` plus what storage still writes by itself.
    pub needed_bytes: u64,
    /// Appends refused (and pulls paused) for lack of space.
    pub low: bool,
}

impl Default for StorageStatus {
    fn default() -> Self {
        Self {
            state: "ok".into(),
            problems: Vec::new(),
            disk: DiskStatus::default(),
            losses: Vec::new(),
        }
    }
}

impl StorageStatus {
    fn of(report: &HealthReport, disk: &DiskState, losses: &[LossRecord]) -> Self {
        let state = match (report.damage.is_empty(), report.failing.is_empty()) {
            (false, _) => "damaged",
            (true, false) => "failing",
            (true, true) => "ok",
        };
        let failing = report.failing.iter().map(|f| {
            let since = humantime::format_rfc3339_seconds(f.since);
            let (operation, errors, error) = (f.operation.as_str(), f.errors, &f.error);
            format!("{operation} failing since {since} ({errors} errors): {error}; {RESTART_HINT}")
        });
        let damage = report.damage.iter().map(|d| {
            format!(
                "{} buffer offsets {} damaged (met reading for {}): {}",
                d.log.as_str(),
                d.ranges(),
                d.reader,
                d.error
            )
        });
        Self {
            state: state.into(),
            problems: failing.chain(damage).collect(),
            disk: DiskStatus {
                free_bytes: disk.space.free_bytes,
                total_bytes: disk.space.total_bytes,
                needed_bytes: disk.needed,
                low: disk.low,
            },
            losses: losses.iter().map(|loss| loss.to_string()).collect(),
        }
    }
}

/// This instance of an HA zone: its role, the active instance, and how far its replica applied
/// the zone's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaStatus {
    pub instance: String,
    /// `active` or `standby` (SPEC §15).
    pub role: String,
    /// This replica does not continue the zone's log (`wal_divergence`): a standby that refuses
    /// everything until it is rebuilt.
    #[serde(default)]
    pub diverged: bool,
    pub active_instance: Option<String>,
    pub epoch: u64,
    /// Last record of the zone's log applied here.
    pub wal_applied: u64,
    /// Last record of the zone's log, as last asked.
    pub wal_last: u64,
    /// Records not yet applied here.
    pub wal_lag: u64,
    /// Every instance of the zone as last heard from through the engine (this one included),
    /// by name; empty from a node that does not report them.
    #[serde(default)]
    pub instances: Vec<bsfg_actors::InstanceSeen>,
}

impl HaStatus {
    /// The controller's view of this instance, with the zone's instances as heard from now.
    fn of(ha: &bsfg_actors::HaHandle) -> Self {
        let s = ha.status();
        Self {
            instance: s.instance,
            role: s.role.to_owned(),
            diverged: s.diverged,
            active_instance: s.active_instance,
            epoch: s.epoch,
            wal_applied: s.wal_applied,
            wal_last: s.wal_last,
            wal_lag: s.wal_last.saturating_sub(s.wal_applied),
            instances: ha.instances(),
        }
    }
}

/// What a buffer retains, against its `capacity_bytes` (SPEC §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BufferStatus {
    pub facts: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub fill_percent: f64,
}

impl From<Fill> for BufferStatus {
    fn from(fill: Fill) -> Self {
        Self {
            facts: fill.facts,
            bytes: fill.bytes,
            capacity_bytes: fill.capacity_bytes,
            fill_percent: fill.fill_percent,
        }
    }
}

/// The link toward one peer and what waits for it in the store buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// `normal`, `autonomous` or `reconciliation`.
    pub state: String,
    /// Closed by an operator (`bsfg admin gate-close`); the state is then `autonomous`.
    pub closed: bool,
    pub frontier: u64,
    /// Facts addressed to the peer that it has not confirmed.
    pub backlog: u64,
    pub lag_seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForwardStatus {
    #[serde(flatten)]
    pub retained: BufferStatus,
    pub consumers: Vec<ConsumerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerStatus {
    pub name: String,
    pub cursor: u64,
    pub backlog: u64,
    pub lag_seconds: f64,
}

/// The certificate the node presents; also the answer of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    pub subject: String,
    /// RFC 3339, seconds.
    pub not_after: String,
    pub seconds_left: u64,
    /// The earliest `nextUpdate` of the revocation lists in `tls.crl` (RFC 3339, seconds), when
    /// there is one: past it the node keeps revoking with the lists it has, but refuses them at
    /// its next start or reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_next_update: Option<String>,
}

impl CertificateStatus {
    pub fn of(certificate: &Certificate, now: SystemTime) -> Self {
        Self {
            subject: certificate.subject.clone(),
            not_after: humantime::format_rfc3339_seconds(certificate.not_after).to_string(),
            seconds_left: certificate.time_left(now).as_secs(),
            crl_next_update: certificate
                .crl_next_update
                .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
        }
    }
}

impl Status {
    /// Assembles the status from the node's handles and its gates' states.
    pub fn collect(zone: &str, gates: BTreeMap<String, GateState>, node: &Handles, now: SystemTime) -> Self {
        let progress = node.progress.borrow().clone();
        let peers = gates
            .into_iter()
            .map(|(peer, state)| {
                let seen = progress.peers.get(&peer).cloned().unwrap_or_default();
                let status = PeerStatus {
                    state: state.as_str().to_owned(),
                    closed: node.switches.is_closed(&peer),
                    frontier: seen.frontier,
                    backlog: seen.backlog,
                    lag_seconds: seen.lag_seconds,
                };
                (peer, status)
            })
            .collect();
        let consumers = progress
            .consumers
            .into_iter()
            .map(|(name, seen)| ConsumerStatus {
                name,
                cursor: seen.cursor,
                backlog: seen.backlog,
                lag_seconds: seen.lag_seconds,
            })
            .collect();
        let usage = node.usage();
        let (routes, relay) = (RouteStatus::of(node, &peers), RelayStatus::of(node, &peers));
        Self {
            zone: zone.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            draining: node.drain.is_draining(),
            in_flight: node.drain.in_flight(),
            peers,
            routes,
            relay,
            store: usage.store.into(),
            forward: ForwardStatus {
                retained: usage.forward.into(),
                consumers,
            },
            certificate: CertificateStatus::of(&node.certificate.borrow(), now),
            storage: StorageStatus::of(&node.health.report(), &node.disk.borrow(), &node.losses),
            ha: node.ha.as_ref().map(HaStatus::of),
        }
    }

    /// The readable form of `bsfg status`: the node, then one row per peer and per consumer.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let draining = if self.draining {
            format!("yes ({} client calls in flight)", self.in_flight)
        } else {
            "no".to_owned()
        };
        let days = self.certificate.seconds_left / 86_400;
        let _ = writeln!(out, "zone         {} (bsfg {})", self.zone, self.version);
        let _ = writeln!(out, "draining     {draining}");
        if let Some(ha) = &self.ha {
            let active = ha.active_instance.as_deref().unwrap_or("not known");
            let role = if ha.diverged {
                "standby, DIVERGED (rebuild it)"
            } else {
                ha.role.as_str()
            };
            let _ = writeln!(
                out,
                "ha           instance {} is {role} (active: {active}, epoch {}), log applied {} of {}",
                ha.instance, ha.epoch, ha.wal_applied, ha.wal_last
            );
            for seen in &ha.instances {
                let heard = match seen.last_seen_ms {
                    Some(ms) => format!("heard {:.1} s ago", ms as f64 / 1000.0),
                    None => "not heard from since this instance started".to_owned(),
                };
                let silent = if seen.live { "" } else { ", NOT LIVE" };
                let _ = writeln!(
                    out,
                    "             {:<20} {:<9} epoch {}, log applied {}, {heard}{silent}",
                    seen.instance, seen.role, seen.epoch, seen.wal_applied
                );
            }
        }
        let _ = writeln!(
            out,
            "certificate  {}, expires {} ({days} days left)",
            self.certificate.subject, self.certificate.not_after
        );
        let disk = &self.storage.disk;
        let refused = if disk.low { ", appends refused" } else { "" };
        let _ = writeln!(
            out,
            "storage      {}; disk {} of {} bytes free, {} needed{refused}",
            self.storage.state, disk.free_bytes, disk.total_bytes, disk.needed_bytes
        );
        for problem in self.storage.problems.iter().chain(&self.storage.losses) {
            let _ = writeln!(out, "             {problem}");
        }
        for (name, buffer) in [("store", &self.store), ("forward", &self.forward.retained)] {
            let _ = writeln!(
                out,
                "{name:<12} {} facts, {} of {} bytes ({:.1}% full)",
                buffer.facts, buffer.bytes, buffer.capacity_bytes, buffer.fill_percent
            );
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "{:<20} {:<22} {:>12} {:>10} {:>8}",
            "PEER", "STATE", "FRONTIER", "BACKLOG", "LAG"
        );
        for (peer, p) in &self.peers {
            let state = if p.closed {
                format!("{} (closed)", p.state)
            } else {
                p.state.clone()
            };
            let lag = seconds(p.lag_seconds);
            let _ = writeln!(
                out,
                "{peer:<20} {state:<22} {:>12} {:>10} {lag:>8}",
                p.frontier, p.backlog
            );
        }
        super::routes::table(self, &mut out);
        out.push('\n');
        let _ = writeln!(
            out,
            "{:<20} {:>12} {:>10} {:>8}",
            "CONSUMER", "CURSOR", "BACKLOG", "LAG"
        );
        for c in &self.forward.consumers {
            let lag = seconds(c.lag_seconds);
            let _ = writeln!(out, "{:<20} {:>12} {:>10} {lag:>8}", c.name, c.cursor, c.backlog);
        }
        if self.forward.consumers.is_empty() {
            out.push_str("(no consumer has fetched yet)\n");
        }
        out
    }
}

/// A lag for people: tenths of a second below a minute, else humantime (`3m 20s`).
pub(super) fn seconds(lag: f64) -> String {
    if lag < 60.0 {
        format!("{lag:.1}s")
    } else {
        humantime::format_duration(Duration::from_secs(lag as u64)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        let peer = PeerStatus {
            state: "autonomous".into(),
            closed: true,
            frontier: 1200,
            backlog: 34,
            lag_seconds: 200.0,
        };
        Status {
            zone: "enterprise".into(),
            version: "0.1.0".into(),
            draining: false,
            in_flight: 0,
            peers: [("plant-a".to_owned(), peer)].into(),
            routes: Vec::new(),
            relay: Vec::new(),
            store: BufferStatus {
                facts: 34,
                bytes: 8704,
                capacity_bytes: 1 << 20,
                fill_percent: 0.8,
            },
            forward: ForwardStatus {
                retained: BufferStatus::default(),
                consumers: vec![ConsumerStatus {
                    name: "mes".into(),
                    cursor: 7,
                    backlog: 3,
                    lag_seconds: 0.3,
                }],
            },
            certificate: CertificateStatus {
                subject: "CN=enterprise".into(),
                not_after: "2030-01-01T00:00:00Z".into(),
                seconds_left: 30 * 86_400 + 5,
                crl_next_update: None,
            },
            storage: StorageStatus {
                state: "failing".into(),
                problems: vec!["commit failing since 2030-01-01T00:00:00Z (3 errors): no space".into()],
                disk: DiskStatus {
                    free_bytes: 10,
                    total_bytes: 100,
                    needed_bytes: 20,
                    low: true,
                },
                losses: Vec::new(),
            },
            ha: None,
        }
    }

    #[test]
    fn the_table_shows_node_peers_and_consumers() {
        let table = status().table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "zone         enterprise (bsfg 0.1.0)");
        assert_eq!(lines[1], "draining     no");
        assert_eq!(
            lines[2],
            "certificate  CN=enterprise, expires 2030-01-01T00:00:00Z (30 days left)"
        );
        assert_eq!(
            lines[3],
            "storage      failing; disk 10 of 100 bytes free, 20 needed, appends refused"
        );
        assert_eq!(
            lines[4],
            "             commit failing since 2030-01-01T00:00:00Z (3 errors): no space"
        );
        assert_eq!(lines[5], "store        34 facts, 8704 of 1048576 bytes (0.8% full)");
        let row = lines.iter().find(|l| l.starts_with("plant-a")).expect("peer row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["plant-a", "autonomous", "(closed)", "1200", "34", "3m", "20s"]);
        let row = lines.iter().find(|l| l.starts_with("mes")).expect("consumer row");
        assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["mes", "7", "3", "0.3s"]);
    }

    #[test]
    fn the_json_form_round_trips_and_tolerates_new_fields() {
        let text = serde_json::to_string(&status()).expect("serialize");
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["peers"]["plant-a"]["backlog"], 34);
        assert_eq!(value["forward"]["consumers"][0]["name"], "mes");
        assert_eq!(value["store"]["facts"], 34);
        assert_eq!(value["forward"]["facts"], 0);
        value["objects"] = serde_json::json!({"count": 1});
        let back: Status = serde_json::from_value(value).expect("deserialize");
        assert_eq!(back, status());
    }
}
