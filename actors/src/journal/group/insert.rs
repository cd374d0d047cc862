//! One pulled page in a group: `putIfAbsent` of its delivered facts into the forward log (key
//! `(from_zone, message_id)`) and of its relayed facts into the store log (key `(from_zone,
//! message_id)` too, beside the producers' keys), in the group's one batch.
//!
//! Relayed facts count in the store's usage like appends, but the byte limit that refuses
//! appends under `reject` does not refuse them: a page is taken whole or not at all, and its peer
//! has already handed it over. Their backpressure is the pull pause instead (`backpressure`): a
//! relay whose store is full stops pulling, so it may overshoot by the pages already in flight,
//! as a forward buffer does. The disk guard does: a page whose new facts do not fit the disk
//! budget is taken back whole and refused alone (`DiskFull`), and its peer offers it again.
//!
//! In an HA zone a page past 1 MiB comes here as several commands, its parts
//! (`Journal::insert_page`): "whole" is then each part, and the parts before a refused one stay
//! stored (the page pulled again finds them as duplicates).

use std::collections::HashMap;

use super::{store_append, Plan, Writer};
use crate::{
    journal::{InsertOutcome, JournalError, Prepared, Put},
    storage::{ForwardInsert, IdemRecord, Index, Log, Usage},
};

impl Writer {
    pub(super) fn plan_insert(
        &mut self,
        facts: Vec<(u64, Prepared)>,
        relayed: Vec<Prepared>,
        plan: &mut Plan,
    ) -> Result<InsertOutcome, JournalError> {
        let puts = self.judge_relayed(&relayed, plan)?;
        let before = Taken::before(self, plan);
        let now = bsfg_proto::model::now_unix_ms();
        for (prepared, put) in relayed.into_iter().zip(&puts) {
            if *put == Put::New {
                self.plan_relayed(prepared, now, plan);
            }
        }
        let delivered = self.plan_delivered(facts, now, plan)?;
        let cost = (self.usage.store.bytes - before.usage.store.bytes)
            + (self.usage.forward.bytes - before.usage.forward.bytes);
        if !self.shared.disk.spend(cost) {
            before.restore(self, plan);
            return Err(JournalError::DiskFull);
        }
        Ok(InsertOutcome {
            delivered,
            relayed: puts,
        })
    }

    /// What each relayed fact is: new, or a duplicate of (or conflict with) what is stored or
    /// planned earlier in this group or page.
    fn judge_relayed(&self, relayed: &[Prepared], plan: &Plan) -> Result<Vec<Put>, JournalError> {
        let keys: Vec<(&str, &str)> = relayed.iter().map(key).collect();
        let stored = self.shared.storage.lookup(Index::Store, &keys)?;
        let mut seen: HashMap<(&str, &str), IdemRecord> = planned_relays(plan);
        let mut puts = Vec::with_capacity(relayed.len());
        for (prepared, stored) in relayed.iter().zip(stored) {
            let put = match seen.get(&key(prepared)).copied().or(stored) {
                Some(found) if found.holds(&prepared.digest) => Put::Duplicate,
                Some(_) => Put::Conflict,
                None => Put::New,
            };
            if put == Put::New {
                // Offset 0 is never stored: this record only marks the key as taken.
                let record = IdemRecord {
                    offset: 0,
                    digest: Some(prepared.digest),
                };
                seen.insert(key(prepared), record);
            }
            puts.push(put);
        }
        Ok(puts)
    }

    fn plan_relayed(&mut self, prepared: Prepared, now: u64, plan: &mut Plan) {
        self.usage.store.add(Log::Store.entry_bytes(prepared.encoded.len()));
        self.store_high += 1;
        let envelope = &prepared.envelope;
        let (id, origin) = (envelope.message_id.clone(), Some(envelope.from_zone.clone()));
        plan.batch
            .store
            .push(store_append(self.store_high, now, id, origin, prepared));
    }

    fn plan_delivered(
        &mut self,
        facts: Vec<(u64, Prepared)>,
        now: u64,
        plan: &mut Plan,
    ) -> Result<Vec<Put>, JournalError> {
        let keys: Vec<(&str, &str)> = facts
            .iter()
            .map(|(_, p)| (p.envelope.from_zone.as_str(), p.envelope.message_id.as_str()))
            .collect();
        let stored = self.shared.storage.lookup(Index::Forward, &keys)?;
        drop(keys);
        let mut seen = planned_deliveries(plan);
        let mut puts = Vec::with_capacity(facts.len());
        for ((source_offset, prepared), stored) in facts.into_iter().zip(stored) {
            let envelope = &prepared.envelope;
            let planned = seen
                .get(envelope.from_zone.as_str())
                .and_then(|ids| ids.get(&envelope.message_id));
            let put = match planned.copied().or(stored) {
                Some(found) if found.holds(&prepared.digest) => Put::Duplicate,
                Some(_) => Put::Conflict,
                None => {
                    let insert = self.forward_insert(source_offset, now, prepared);
                    let record = IdemRecord {
                        offset: insert.offset,
                        digest: Some(insert.digest),
                    };
                    let ids = seen.entry(insert.from_zone.clone()).or_default();
                    ids.insert(insert.message_id.clone(), record);
                    plan.batch.forward.push(insert);
                    Put::New
                }
            };
            puts.push(put);
        }
        Ok(puts)
    }

    fn forward_insert(&mut self, source_offset: u64, now: u64, prepared: Prepared) -> ForwardInsert {
        self.usage.forward.add(Log::Forward.entry_bytes(prepared.encoded.len()));
        self.forward_high += 1;
        let envelope = prepared.envelope;
        ForwardInsert {
            offset: self.forward_high,
            received_at_unix_ms: now,
            source_offset,
            from_zone: envelope.from_zone,
            message_id: envelope.message_id,
            digest: prepared.digest,
            encoded: prepared.encoded,
        }
    }
}

/// Where a page's planning started, to take the page back whole.
struct Taken {
    lengths: (usize, usize),
    highs: (u64, u64),
    usage: Usage,
}

impl Taken {
    fn before(writer: &Writer, plan: &Plan) -> Self {
        Self {
            lengths: (plan.batch.store.len(), plan.batch.forward.len()),
            highs: (writer.store_high, writer.forward_high),
            usage: writer.usage,
        }
    }

    fn restore(self, writer: &mut Writer, plan: &mut Plan) {
        plan.batch.store.truncate(self.lengths.0);
        plan.batch.forward.truncate(self.lengths.1);
        (writer.store_high, writer.forward_high) = self.highs;
        writer.usage = self.usage;
    }
}

/// A relayed fact's idempotency key.
fn key(prepared: &Prepared) -> (&str, &str) {
    let envelope = &prepared.envelope;
    (envelope.from_zone.as_str(), envelope.message_id.as_str())
}

/// Relayed facts already planned in this group (the same page pulled twice in one group).
fn planned_relays(plan: &Plan) -> HashMap<(&str, &str), IdemRecord> {
    plan.batch
        .store
        .iter()
        .filter_map(|s| {
            let origin = s.origin.as_deref()?;
            let record = IdemRecord {
                offset: s.offset,
                digest: Some(s.digest),
            };
            Some(((origin, s.message_id.as_str()), record))
        })
        .collect()
}

/// Facts already planned for the forward log in this group (two pages of one peer in one
/// group), by `from_zone`, then `message_id`.
fn planned_deliveries(plan: &Plan) -> HashMap<String, HashMap<String, IdemRecord>> {
    let mut planned: HashMap<String, HashMap<String, IdemRecord>> = HashMap::new();
    for insert in &plan.batch.forward {
        let record = IdemRecord {
            offset: insert.offset,
            digest: Some(insert.digest),
        };
        let ids = planned.entry(insert.from_zone.clone()).or_default();
        ids.insert(insert.message_id.clone(), record);
    }
    planned
}
