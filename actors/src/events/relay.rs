//! Facts on their way through intermediary zones (SPEC §4a, §11): a pulled page whose facts this
//! node relayed (`bsfg_relayed_facts_total{to_zone}`, and an audit line with `log.audit`), a fact
//! it refused to relay (ERROR, `bsfg_relay_refused_total{reason}`), and facts delivered to this
//! zone, whose end-to-end latency from the origin's `produced_at_unix_ms` is observed in
//! `bsfg_delivery_latency_seconds{from_zone}`. A relay whose full store holds a link's pages
//! before a fact for a next hop that is down says so (`relay_held`, `relay_resumed`).

use std::collections::BTreeMap;

use bsfg_proto::model::now_unix_ms;
use slog::{error, info, warn};

use super::{Event, Telemetry};
use crate::metrics::Metrics;

pub const RELAY_REFUSED: &str = "relay_refused";
pub const FACTS_RELAYED: &str = "facts_relayed";
pub const FACTS_STRANDED: &str = "facts_stranded";
pub const RELAY_HELD: &str = "relay_held";
pub const RELAY_RESUMED: &str = "relay_resumed";

/// Why a relay holds a next hop's facts at the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The store is full and the hop's link is down: its facts wait at the peer, whose pages
    /// leave them out (`FetchHeld`); the facts for live next hops go on.
    Destination,
    /// The same, but the peer's pages are cut before the first such fact, and the facts after it
    /// wait too: the peer cannot leave them out (a node of an older version, or a fact whose
    /// destination it cannot read).
    Link,
    /// The store is exhausted: no relayed fact is taken.
    Exhausted,
}

/// A next hop's facts held at a peer while this relay's store is full (`Hold`): logged when the
/// hold begins (WARN) and when it ends (INFO, with how long it lasted); `bsfg_relay_held{peer}`
/// counts the holds of the peer's facts that are on.
pub struct RelayHeld {
    telemetry: Telemetry,
    peer: String,
    next_hop: String,
    since: std::time::Instant,
}

impl RelayHeld {
    pub fn begin(telemetry: &Telemetry, peer: &str, next_hop: &str, hold: Hold) -> Self {
        let reason = match hold {
            Hold::Destination => {
                "the store buffer is full and the next hop's link is down: its facts wait at the peer; \
                 facts for live next hops go on"
            }
            Hold::Link => {
                "the store buffer is full and the next hop's link is down: its facts, and the ones after \
                 them from this peer, wait at the peer (it cannot leave them out)"
            }
            Hold::Exhausted => {
                "the store buffer is exhausted: relayed facts wait at the peer until its next hops \
                 take what it holds"
            }
        };
        warn!(telemetry.log, "{}", RELAY_HELD; "peer" => peer, "next_hop" => next_hop, "reason" => reason);
        telemetry.metrics.relay_held.with_label_values(&[peer]).inc();
        Self {
            telemetry: telemetry.clone(),
            peer: peer.to_owned(),
            next_hop: next_hop.to_owned(),
            since: std::time::Instant::now(),
        }
    }

    /// The hold ended: logged, and no longer counted.
    pub fn end(self) {
        info!(self.telemetry.log, "{}", RELAY_RESUMED; "peer" => &self.peer, "next_hop" => &self.next_hop,
            "held_ms" => self.since.elapsed().as_millis() as u64);
    }
}

impl Drop for RelayHeld {
    /// No longer counted, however it ends (a session dropped while it waits too).
    fn drop(&mut self) {
        self.telemetry.metrics.relay_held.with_label_values(&[&self.peer]).dec();
    }
}

/// Why a fact was not relayed: the bounded `reason` of `bsfg_relay_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRefusal {
    /// No `[[relay]]` entry allows its flow (from its `from_zone` to its `to_zone`).
    NotAllowed,
    /// It would pass through a zone twice (this zone, or its next hop, is already on its path).
    Loop,
    /// It has passed through `MAX_HOPS` zones already.
    HopLimit,
}

impl RelayRefusal {
    pub const ALL: [Self; 3] = [Self::NotAllowed, Self::Loop, Self::HopLimit];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAllowed => "not_allowed",
            Self::Loop => "loop",
            Self::HopLimit => "hop_limit",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Self::NotAllowed => "no [[relay]] entry allows this flow",
            Self::Loop => "the fact would pass through a zone twice",
            Self::HopLimit => "the fact has passed through the most zones allowed",
        }
    }
}

/// A pulled fact addressed beyond this zone that is not relayed: skipped, confirmed with its
/// page, never delivered.
pub struct RelayRefused<'a> {
    pub peer: &'a str,
    pub message_id: &'a str,
    pub from_zone: &'a str,
    pub to_zone: &'a str,
    pub hops: &'a [String],
    pub refusal: RelayRefusal,
}

impl Event for RelayRefused<'_> {
    fn emit(self, t: &Telemetry) {
        let reason = self.refusal.as_str();
        t.metrics.relay_refused.with_label_values(&[reason]).inc();
        error!(t.log, "{}", RELAY_REFUSED; "peer" => self.peer, "message_id" => self.message_id,
            "from_zone" => self.from_zone, "to_zone" => self.to_zone, "hops" => self.hops.join(","),
            "reason" => self.refusal.explain(), "kind" => reason);
    }
}

/// The facts of one pulled page stored for their next hop. `relayed` counts the new ones by
/// `to_zone`; `duplicates` were stored here already (a page pulled again).
pub struct FactsRelayed<'a> {
    pub peer: &'a str,
    pub relayed: BTreeMap<&'a str, u64>,
    pub duplicates: usize,
    /// First and last message id of the page's relayed facts (for the audit line).
    pub ids: Option<(&'a str, &'a str)>,
    pub audit: bool,
}

impl Event for FactsRelayed<'_> {
    fn emit(self, t: &Telemetry) {
        for (to_zone, count) in &self.relayed {
            t.metrics.relayed_facts.with_label_values(&[to_zone]).inc_by(*count);
        }
        let (Some((first, last)), true) = (self.ids, self.audit) else {
            return;
        };
        let to_zones: Vec<&str> = self.relayed.keys().copied().collect();
        info!(t.log, "{}", FACTS_RELAYED; "peer" => self.peer, "facts" => self.relayed.values().sum::<u64>(),
            "duplicates" => self.duplicates, "to_zones" => to_zones.join(","),
            "first_message_id" => first, "last_message_id" => last);
    }
}

/// Facts the store buffer holds, unconfirmed, for a peer no `[[peers]]` entry names any more (a
/// peer removed, a route moved off a relay): nothing pulls them. Said at every start.
pub struct FactsStranded<'a> {
    pub peer: &'a str,
    pub facts: u64,
}

impl Event for FactsStranded<'_> {
    fn emit(self, t: &Telemetry) {
        error!(t.log, "{}", FACTS_STRANDED; "peer" => self.peer, "facts" => self.facts,
        "reason" => format!(
            "{} facts wait for peer {:?}, which no [[peers]] entry names any more, and nothing will pull them; \
             configure the peer again until they are delivered (bsfg status shows its backlog), or they go \
             with store.retention",
            self.facts, self.peer
        ));
    }
}

/// Facts newly stored in this zone's forward buffer, as `(from_zone, produced_at_unix_ms)`:
/// their end-to-end latency, across every hop, is observed per origin.
pub struct FactsDelivered<'a> {
    pub facts: &'a [(&'a str, u64)],
}

impl Event for FactsDelivered<'_> {
    fn emit(self, t: &Telemetry) {
        let now = now_unix_ms();
        // Facts of one origin come in runs: look the series up once per run.
        let mut series: Option<(&str, prometheus::Histogram)> = None;
        for (from_zone, produced_at) in self.facts {
            let histogram = match &series {
                Some((zone, histogram)) if zone == from_zone => histogram,
                _ => {
                    let histogram = t.metrics.delivery_latency.with_label_values(&[from_zone]);
                    &series.insert((from_zone, histogram)).1
                }
            };
            histogram.observe(now.saturating_sub(*produced_at) as f64 / 1000.0);
        }
    }
}

/// Every refusal reason's series, created at start.
pub(super) fn init_series(metrics: &Metrics) {
    for refusal in RelayRefusal::ALL {
        metrics.relay_refused.with_label_values(&[refusal.as_str()]);
    }
}
