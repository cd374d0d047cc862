//! What a stored page is reported as: the facts refused (not for us, not relayable), and what
//! the page's one commit did (duplicates and conflicts, the end-to-end latency of each fact
//! delivered now, the facts relayed now by destination).

use std::collections::BTreeMap;

use super::session::Session;
use crate::{
    events::{FactConflict, FactRejected, FactsDelivered, FactsDuplicated, FactsRelayed, RelayRefused},
    journal::{InsertOutcome, Put},
    relay,
    storage::Log,
};

impl Session {
    /// Facts of a page that are neither delivered nor relayed.
    pub(super) fn report_refused(&self, sorted: &relay::Sorted) {
        let peer = &self.config.peer;
        for (message, rejection) in &sorted.rejected {
            let e = &message.envelope;
            self.deps.telemetry.emit(FactRejected {
                peer,
                message_id: &e.message_id,
                from_zone: &e.from_zone,
                to_zone: &e.to_zone,
                hops: &e.hops,
                rejection: *rejection,
            });
        }
        for (message, refusal) in &sorted.refused {
            let e = &message.envelope;
            self.deps.telemetry.emit(RelayRefused {
                peer,
                message_id: &e.message_id,
                from_zone: &e.from_zone,
                to_zone: &e.to_zone,
                hops: &e.hops,
                refusal: *refusal,
            });
        }
    }

    /// What the commit of a page did: duplicates and conflicts, the end-to-end latency of each
    /// fact delivered now, and the facts relayed now by destination.
    pub(super) fn report_stored(&self, outcome: &InsertOutcome, origins: &Origins) {
        let telemetry = &self.deps.telemetry;
        telemetry.emit(FactsDuplicated {
            log: Log::Forward,
            count: outcome.duplicates(),
        });
        if outcome.conflicts() > 0 {
            telemetry.emit(FactConflict {
                peer: &self.config.peer,
                count: outcome.conflicts(),
            });
        }
        let fresh = |puts: &[Put]| puts.iter().map(|put| *put == Put::New).collect::<Vec<_>>();
        let delivered: Vec<(&str, u64)> = origins
            .delivered
            .iter()
            .zip(fresh(&outcome.delivered))
            .filter(|(_, new)| *new)
            .map(|((zone, produced_at), _)| (origins.zones[*zone].as_str(), *produced_at))
            .collect();
        telemetry.emit(FactsDelivered { facts: &delivered });
        let Some((first, last)) = &origins.relayed_ids else {
            return;
        };
        let mut relayed = BTreeMap::new();
        for (zone, _) in origins
            .relayed
            .iter()
            .zip(fresh(&outcome.relayed))
            .filter(|(_, new)| *new)
        {
            *relayed.entry(origins.zones[*zone].as_str()).or_insert(0) += 1;
        }
        let duplicates = outcome.relayed.iter().filter(|p| **p == Put::Duplicate).count();
        telemetry.emit(FactsDuplicated {
            log: Log::Store,
            count: duplicates,
        });
        telemetry.emit(FactsRelayed {
            peer: &self.config.peer,
            relayed,
            duplicates,
            ids: Some((first, last)),
            audit: self.config.audit,
        });
    }
}

/// What the reports on a stored page need of its facts once they are handed to the journal: the
/// origin and send time of each delivered fact, the destination of each relayed one, as indexes
/// into the page's few distinct zones, so a page costs no allocation per fact.
pub(super) struct Origins {
    zones: Vec<String>,
    delivered: Vec<(usize, u64)>,
    relayed: Vec<usize>,
    /// First and last message id of the relayed facts.
    relayed_ids: Option<(String, String)>,
}

impl Origins {
    pub(super) fn of(sorted: &relay::Sorted) -> Self {
        let mut zones: Vec<String> = Vec::new();
        let mut index = |zone: &str| match zones.iter().position(|z| z == zone) {
            Some(i) => i,
            None => {
                zones.push(zone.to_owned());
                zones.len() - 1
            }
        };
        let delivered = sorted
            .deliver
            .iter()
            .map(|f| {
                (
                    index(&f.message.envelope.from_zone),
                    f.message.envelope.produced_at_unix_ms,
                )
            })
            .collect();
        let relayed = sorted
            .relay
            .iter()
            .map(|r| index(&r.message.envelope.to_zone))
            .collect();
        let id = |r: &relay::Relayed| r.message.envelope.message_id.clone();
        let relayed_ids = sorted.relay.first().map(id).zip(sorted.relay.last().map(id));
        Self {
            zones,
            delivered,
            relayed,
            relayed_ids,
        }
    }
}
