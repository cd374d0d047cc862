//! Planning a page of facts pulled from a peer: `putIfAbsent` by `(from_zone, message_id)`
//! against the forward index and what the same group planned before, then new forward offsets.
//! A page whose new facts do not fit the disk budget is taken back whole and refused alone.

use std::collections::HashMap;

use super::{
    group::{Plan, Writer},
    InsertOutcome, JournalError, Prepared,
};
use crate::storage::{ForwardInsert, IdemRecord, Index, Log};

impl Writer {
    pub(super) fn plan_insert(
        &mut self,
        from_zone: &str,
        facts: Vec<(u64, Prepared)>,
        plan: &mut Plan,
    ) -> Result<InsertOutcome, JournalError> {
        let keys: Vec<(&str, &str)> = facts
            .iter()
            .map(|(_, p)| (from_zone, p.message.envelope.message_id.as_str()))
            .collect();
        let stored = self.shared.storage.lookup(Index::Forward, &keys)?;
        drop(keys);
        let before = (plan.batch.forward.len(), self.forward_high, self.usage.forward);
        let mut seen: HashMap<String, IdemRecord> = planned_ids(plan, from_zone);
        let mut outcome = InsertOutcome::default();
        let now = bsfg_proto::model::now_unix_ms();
        for ((source_offset, prepared), stored) in facts.into_iter().zip(stored) {
            let id = prepared.message.envelope.message_id.clone();
            match seen.get(&id).copied().or(stored) {
                Some(found) if found.holds(&prepared.digest) => outcome.duplicates += 1,
                Some(_) => outcome.conflicts += 1,
                None => {
                    self.usage.forward.add(Log::Forward.entry_bytes(prepared.encoded.len()));
                    self.forward_high += 1;
                    let offset = self.forward_high;
                    seen.insert(
                        id.clone(),
                        IdemRecord {
                            offset,
                            digest: Some(prepared.digest),
                        },
                    );
                    plan.batch.forward.push(ForwardInsert {
                        offset,
                        received_at_unix_ms: now,
                        source_offset,
                        from_zone: from_zone.to_owned(),
                        message_id: id,
                        digest: prepared.digest,
                        encoded: prepared.encoded,
                    });
                    outcome.inserted += 1;
                }
            }
        }
        let cost = self.usage.forward.bytes - before.2.bytes;
        if !self.shared.disk.spend(cost) {
            plan.batch.forward.truncate(before.0);
            (self.forward_high, self.usage.forward) = (before.1, before.2);
            return Err(JournalError::DiskFull);
        }
        Ok(outcome)
    }
}

/// Ids from `from_zone` already planned earlier in this group (two pages of one peer in one group).
fn planned_ids(plan: &Plan, from_zone: &str) -> HashMap<String, IdemRecord> {
    plan.batch
        .forward
        .iter()
        .filter(|f| f.from_zone == from_zone)
        .map(|f| {
            (
                f.message_id.clone(),
                IdemRecord {
                    offset: f.offset,
                    digest: Some(f.digest),
                },
            )
        })
        .collect()
}
