//! One peer's backlog (facts addressed to it and not confirmed), counted from the per-peer index
//! incrementally: each refresh adds the entries appended since the last one and subtracts those
//! the peer confirmed since, so its cost follows the traffic, not the size of the backlog. A full
//! recount now and then, and whenever the backlog is small, corrects what the increments cannot
//! see (facts deleted by retention before they were confirmed).

use crate::storage::StorageError;

/// Refreshes between two full recounts of a large backlog.
const RECOUNT_EVERY: u32 = 60;
/// Below this many facts a backlog is recounted at every refresh (a few milliseconds at most).
const SMALL_BACKLOG: u64 = 10_000;

/// The count of one peer's unconfirmed facts, `(frontier, high]`, as of the last update.
#[derive(Debug)]
pub(super) struct Backlog {
    frontier: u64,
    high: u64,
    pub(super) count: u64,
    updates_since_recount: u32,
}

impl Default for Backlog {
    /// Never counted: the first update recounts.
    fn default() -> Self {
        Self {
            frontier: 0,
            high: 0,
            count: 0,
            updates_since_recount: RECOUNT_EVERY,
        }
    }
}

impl Backlog {
    /// Brings the count to `(frontier, high]`, where `count(after, upto)` counts the peer's
    /// entries in `(after, upto]`. Incrementally only when the ranges move forward and overlap;
    /// otherwise (and when due or small) by a full recount.
    pub(super) fn update(
        &mut self,
        frontier: u64,
        high: u64,
        mut count: impl FnMut(u64, u64) -> Result<u64, StorageError>,
    ) -> Result<u64, StorageError> {
        let frontier = frontier.min(high);
        let overlapping = frontier >= self.frontier && high >= self.high && frontier < self.high;
        let due = self.updates_since_recount >= RECOUNT_EVERY || self.count < SMALL_BACKLOG;
        self.count = if overlapping && !due {
            self.updates_since_recount += 1;
            let confirmed = count(self.frontier, frontier)?;
            let appended = count(self.high, high)?;
            self.count.saturating_sub(confirmed) + appended
        } else {
            self.updates_since_recount = 0;
            count(frontier, high)?
        };
        (self.frontier, self.high) = (frontier, high);
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bsfg_proto::{Envelope, Fact, Message};

    use super::*;
    use crate::storage::{Batch, RocksStorage, Storage, StoreAppend};

    /// How many of the peer's `offsets` lie in `(after, upto]`: what the index counts.
    fn count_in(offsets: &BTreeSet<u64>, after: u64, upto: u64) -> u64 {
        match upto > after {
            true => offsets.range(after + 1..=upto).count() as u64,
            false => 0,
        }
    }

    fn counter(offsets: &BTreeSet<u64>) -> impl FnMut(u64, u64) -> Result<u64, StorageError> + '_ {
        |after, upto| Ok(count_in(offsets, after, upto))
    }

    #[test]
    fn a_large_backlog_is_counted_from_what_changed_and_recounted_when_due() {
        // Every third offset is for this peer.
        let mut offsets: BTreeSet<u64> = (1..=60_000).filter(|o| o % 3 == 0).collect();
        let mut backlog = Backlog::default();
        let mut calls = Vec::new();
        let mut recording = |after, upto| {
            calls.push((after, upto));
            Ok(count_in(&offsets, after, upto))
        };
        assert_eq!(backlog.update(0, 60_000, &mut recording).ok(), Some(20_000));
        assert_eq!(calls, vec![(0, 60_000)], "the first update counts everything");

        offsets.extend((60_001..=63_000).filter(|o| o % 3 == 0));
        calls.clear();
        let mut recording = |after, upto| {
            calls.push((after, upto));
            Ok(count_in(&offsets, after, upto))
        };
        assert_eq!(backlog.update(30_000, 63_000, &mut recording).ok(), Some(11_000));
        assert_eq!(
            calls,
            vec![(0, 30_000), (60_000, 63_000)],
            "confirmed and appended ranges only"
        );

        for _ in 1..RECOUNT_EVERY {
            assert_eq!(backlog.update(30_000, 63_000, counter(&offsets)).ok(), Some(11_000));
        }
        // Retention deleted unconfirmed facts: increments cannot see it, the due recount does.
        offsets.retain(|o| *o > 33_000);
        assert_eq!(backlog.update(30_000, 63_000, counter(&offsets)).ok(), Some(10_000));
    }

    #[test]
    fn a_small_backlog_or_a_frontier_past_the_last_count_is_recounted() {
        let offsets: BTreeSet<u64> = (1..=100).collect();
        let mut backlog = Backlog::default();
        assert_eq!(backlog.update(0, 50, counter(&offsets)).ok(), Some(50));
        assert_eq!(backlog.update(70, 100, counter(&offsets)).ok(), Some(30));
        assert_eq!(backlog.update(100, 100, counter(&offsets)).ok(), Some(0));
        assert_eq!(
            backlog.update(120, 100, counter(&offsets)).ok(),
            Some(0),
            "a frontier read ahead of the high offset counts as the high offset"
        );
    }

    fn append(offset: u64, to_zone: &str) -> StoreAppend {
        let message = Message {
            envelope: Envelope {
                message_id: format!("m-{offset}"),
                to_zone: to_zone.to_owned(),
                ..Envelope::default()
            },
            fact: Fact::default(),
        };
        StoreAppend {
            offset,
            appended_at_unix_ms: 1,
            message_id: message.envelope.message_id.clone(),
            peer: to_zone.to_owned(),
            origin: None,
            digest: [0; 32],
            encoded: bsfg_proto::codec::encode_value(&message).expect("encode"),
        }
    }

    #[test]
    fn the_index_count_sees_only_the_peers_own_entries_in_the_range() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let storage = RocksStorage::open(dir.path(), "enterprise")?;
        // "plant-a" and "plant-a-2" share a prefix; their index entries must not mix.
        let zones = ["plant-a", "plant-a-2", "plant-b"];
        let batch = Batch {
            store: (1..=30).map(|o| append(o, zones[(o % 3) as usize])).collect(),
            store_high: Some(30),
            ..Batch::default()
        };
        storage.commit(&batch)?;
        assert_eq!(storage.count_store("plant-a-2", 0, 30)?, 10);
        assert_eq!(storage.count_store("plant-a", 0, 30)?, 10);
        assert_eq!(storage.count_store("plant-a", 3, 12)?, 3, "offsets 6, 9, 12");
        assert_eq!(storage.count_store("plant-a", 12, 12)?, 0);
        assert_eq!(storage.count_store("plant-a", 27, u64::MAX)?, 1);
        assert_eq!(storage.count_store("nobody", 0, 30)?, 0);
        Ok(())
    }
}
