//! Routes and relay flows in `/v1/status` (SPEC §4a): for each peer that carries routes, the zones
//! reached through it and what waits for it; for each `[[relay]]` flow, each destination with its
//! next hop, the facts waiting for that hop and how many were relayed toward it. A hop's backlog
//! and lag are its peer's (every fact that waits for that peer), which is what holds a flow up.

use std::{collections::BTreeMap, fmt::Write as _};

use bsfg_actors::node::Handles;
use serde::{Deserialize, Serialize};

use super::status::{seconds, PeerStatus, Status};

/// Zones reached through one peer (`[[routes]]` entries grouped by `via`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub via: String,
    pub zones: Vec<String>,
    /// The peer's backlog: facts waiting here for it, routed ones included.
    pub backlog: u64,
    pub lag_seconds: f64,
}

/// One `[[relay]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayStatus {
    pub from: Vec<String>,
    pub to: Vec<HopStatus>,
}

/// A destination of a relay flow and its next hop from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HopStatus {
    pub zone: String,
    pub next_hop: String,
    /// The next hop's backlog: facts waiting here for it.
    pub backlog: u64,
    pub lag_seconds: f64,
    /// Facts relayed toward `zone` since the node started (`bsfg_relayed_facts_total`).
    pub relayed: u64,
}

impl RouteStatus {
    pub fn of(node: &Handles, peers: &BTreeMap<String, PeerStatus>) -> Vec<Self> {
        let mut by_via: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (zone, via) in &node.routing.routes {
            by_via.entry(via).or_default().push(zone.clone());
        }
        by_via
            .into_iter()
            .map(|(via, zones)| {
                let peer = peers.get(via);
                Self {
                    via: via.to_owned(),
                    zones,
                    backlog: peer.map_or(0, |p| p.backlog),
                    lag_seconds: peer.map_or(0.0, |p| p.lag_seconds),
                }
            })
            .collect()
    }
}

impl RelayStatus {
    pub fn of(node: &Handles, peers: &BTreeMap<String, PeerStatus>) -> Vec<Self> {
        let routing = &node.routing;
        let hop = |zone: &String| {
            let next_hop = routing.next_hop(zone).unwrap_or(zone).to_owned();
            let peer = peers.get(&next_hop);
            HopStatus {
                zone: zone.clone(),
                backlog: peer.map_or(0, |p| p.backlog),
                lag_seconds: peer.map_or(0.0, |p| p.lag_seconds),
                relayed: node.metrics.relayed_facts.with_label_values(&[zone]).get(),
                next_hop,
            }
        };
        let flow = |rule: &bsfg_actors::relay::RelayRule| Self {
            from: rule.from.iter().cloned().collect(),
            to: rule.to.iter().map(hop).collect(),
        };
        routing.relay.iter().map(flow).collect()
    }
}

/// The rows of `bsfg status` for routes and relay flows, when the node has any.
pub(super) fn table(status: &Status, out: &mut String) {
    if !status.routes.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{:<20} {:<28} {:>10} {:>8}",
            "ROUTE VIA", "ZONES", "BACKLOG", "LAG"
        );
        for r in &status.routes {
            let lag = seconds(r.lag_seconds);
            let zones = r.zones.join(",");
            let _ = writeln!(out, "{:<20} {zones:<28} {:>10} {lag:>8}", r.via, r.backlog);
        }
    }
    if !status.relay.is_empty() {
        out.push('\n');
        let header = ("RELAY FROM", "TO", "NEXT HOP", "RELAYED", "BACKLOG", "LAG");
        let (a, b, c, d, e, f) = header;
        let _ = writeln!(out, "{a:<24} {b:<16} {c:<16} {d:>10} {e:>10} {f:>8}");
        for flow in &status.relay {
            let from = flow.from.join(",");
            for hop in &flow.to {
                let lag = seconds(hop.lag_seconds);
                let _ = writeln!(
                    out,
                    "{from:<24} {:<16} {:<16} {:>10} {:>10} {lag:>8}",
                    hop.zone, hop.next_hop, hop.relayed, hop.backlog
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_relay_flows_have_their_rows() {
        let mut status: Status = serde_json::from_value(serde_json::json!({
            "zone": "idmz", "version": "0.1.0", "draining": false, "in_flight": 0, "peers": {},
            "store": {"facts": 0, "bytes": 0, "capacity_bytes": 1, "fill_percent": 0.0},
            "forward": {"facts": 0, "bytes": 0, "capacity_bytes": 1, "fill_percent": 0.0, "consumers": []},
            "certificate": {"subject": "CN=idmz", "not_after": "2030-01-01T00:00:00Z", "seconds_left": 1},
        }))
        .expect("a status without routes");
        assert!(!status.table().contains("RELAY"), "no rows without relay flows");
        status.relay = vec![RelayStatus {
            from: vec!["enterprise".into()],
            to: vec![HopStatus {
                zone: "plant-a".into(),
                next_hop: "plant-a".into(),
                backlog: 34,
                lag_seconds: 2.0,
                relayed: 1200,
            }],
        }];
        status.routes = vec![RouteStatus {
            via: "dmz-2".into(),
            zones: vec!["plant-c".into(), "plant-d".into()],
            backlog: 5,
            lag_seconds: 0.5,
        }];
        let table = status.table();
        let row = |first: &str| {
            let line = table
                .lines()
                .find(|l| l.starts_with(first))
                .unwrap_or_else(|| panic!("{table}"));
            line.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
        };
        assert_eq!(
            row("enterprise"),
            ["enterprise", "plant-a", "plant-a", "1200", "34", "2.0s"]
        );
        assert_eq!(row("dmz-2"), ["dmz-2", "plant-c,plant-d", "5", "0.5s"]);
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["relay"][0]["to"][0]["backlog"], 34);
        assert_eq!(json["routes"][0]["zones"][1], "plant-d");
    }
}
