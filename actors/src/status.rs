//! The status refresher: once a second, from the journal's cursors and a few index reads (on the
//! blocking pool), it sets the progress gauges of SPEC §11 — per peer the frontier and the
//! replication lag, per consumer the backlog, lag and confirm rate — and the certificate's expiry
//! countdown, and publishes the same numbers plus each peer's backlog as a [`Progress`] for
//! `/v1/status`. While the journal's commits fail it also probes storage once a second (a commit
//! that changes nothing), so a node whose storage recovers becomes ready without any traffic.
//!
//! A peer's backlog (facts addressed to it and not confirmed) is counted from the per-peer index
//! incrementally: each refresh adds the entries appended since the last one and subtracts those
//! the peer confirmed since, so its cost follows the traffic, not the size of the backlog. A full
//! recount now and then, and whenever the backlog is small, corrects what the increments cannot
//! see (facts deleted by retention before they were confirmed).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, SystemTime},
};

use bsfg_proto::model::now_unix_ms;
use tokio::sync::watch;

use crate::{
    cert_watcher::Certificate,
    events::StorageOp,
    journal::Journal,
    metrics::Metrics,
    storage::{CursorKey, StorageError},
};

const INTERVAL: Duration = Duration::from_secs(1);
/// Refreshes between two full recounts of a large backlog.
const RECOUNT_EVERY: u32 = 60;
/// Below this many facts a backlog is recounted at every refresh (a few milliseconds at most).
const SMALL_BACKLOG: u64 = 10_000;

/// Replication toward one peer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerProgress {
    pub frontier: u64,
    /// Facts addressed to the peer that it has not confirmed.
    pub backlog: u64,
    pub lag_seconds: f64,
}

/// Consumption by one local consumer of the forward buffer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerProgress {
    pub cursor: u64,
    pub backlog: u64,
    pub lag_seconds: f64,
}

/// What the last refresh saw, for `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub peers: BTreeMap<String, PeerProgress>,
    pub consumers: BTreeMap<String, ConsumerProgress>,
}

/// What the refresher reads and where it publishes.
pub struct Refresher {
    pub journal: Journal,
    pub metrics: Arc<Metrics>,
    pub peers: Vec<String>,
    pub certificate: watch::Receiver<Certificate>,
    pub progress: watch::Sender<Progress>,
}

/// What one refresh carries over to the next.
#[derive(Default)]
struct Memory {
    confirmed: HashMap<String, u64>,
    backlogs: HashMap<String, Backlog>,
}

impl Refresher {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let shared = Arc::new(self);
        let mut memory = Memory::default();
        let mut ticker = tokio::time::interval(INTERVAL);
        loop {
            ticker.tick().await;
            if shared.journal.health().failing(StorageOp::Commit) {
                // Its outcome is reported by the journal itself.
                let _ = shared.journal.probe().await;
            }
            let left = shared.certificate.borrow().time_left(SystemTime::now());
            shared.metrics.certificate_expiry_seconds.set(left.as_secs_f64());
            let refresher = shared.clone();
            let done = tokio::task::spawn_blocking(move || {
                let progress = refresher.refresh_once(&mut memory);
                refresher.progress.send_replace(progress);
                memory
            })
            .await;
            memory = done.unwrap_or_default();
        }
    }

    fn refresh_once(&self, memory: &mut Memory) -> Progress {
        let cursors = self.journal.cursors();
        // Read after the cursors: every confirmed offset is then at or below these.
        let (store_high, forward_high) = (
            *self.journal.store_high().borrow(),
            *self.journal.forward_high().borrow(),
        );
        let mut progress = Progress::default();
        for peer in &self.peers {
            let frontier = cursors.get(&CursorKey::Peer(peer.clone())).copied().unwrap_or(0);
            let backlog = memory.backlogs.entry(peer.clone()).or_default();
            progress
                .peers
                .insert(peer.clone(), self.peer(peer, frontier, store_high, backlog));
        }
        for (key, cursor) in &cursors {
            let CursorKey::Consumer(name) = key else { continue };
            let consumer = self.consumer(name, *cursor, forward_high, &mut memory.confirmed);
            progress.consumers.insert(name.clone(), consumer);
        }
        progress
    }

    fn peer(&self, peer: &str, frontier: u64, store_high: u64, backlog: &mut Backlog) -> PeerProgress {
        let storage = self.journal.storage();
        self.metrics
            .frontier_offset
            .with_label_values(&[peer])
            .set(frontier as i64);
        let oldest = storage
            .read_store(peer, frontier, store_high, 1)
            .ok()
            .and_then(|r| r.first().cloned());
        let lag = oldest.map_or(0.0, |r| age(r.stored_at_unix_ms));
        self.metrics.replication_lag_seconds.with_label_values(&[peer]).set(lag);
        let high = self.metrics.replication_lag_high_watermark.with_label_values(&[peer]);
        if lag > high.get() {
            high.set(lag);
        }
        let counted = backlog.update(frontier, store_high, |after, upto| {
            storage.count_store(peer, after, upto)
        });
        match &counted {
            Ok(_) => self.journal.health().succeeded(StorageOp::Read),
            Err(error) => self.journal.health().failed(StorageOp::Read, error),
        }
        PeerProgress {
            frontier,
            // A storage fault leaves the last count standing; the next refresh tries again.
            backlog: counted.unwrap_or(backlog.count),
            lag_seconds: lag,
        }
    }

    fn consumer(
        &self,
        name: &str,
        cursor: u64,
        forward_high: u64,
        confirmed: &mut HashMap<String, u64>,
    ) -> ConsumerProgress {
        let backlog = forward_high.saturating_sub(cursor);
        self.metrics
            .consumer_backlog_size
            .with_label_values(&[name])
            .set(backlog as i64);
        let oldest = self
            .journal
            .storage()
            .read_forward(cursor, forward_high, 1)
            .ok()
            .and_then(|r| r.first().cloned());
        let lag = oldest.map_or(0.0, |r| age(r.stored_at_unix_ms));
        self.metrics.consumer_lag_seconds.with_label_values(&[name]).set(lag);
        let before = confirmed.insert(name.to_owned(), cursor).unwrap_or(cursor);
        let rate = cursor.saturating_sub(before) as f64 / INTERVAL.as_secs_f64();
        self.metrics
            .confirm_rate_per_second
            .with_label_values(&[name])
            .set(rate);
        ConsumerProgress {
            cursor,
            backlog,
            lag_seconds: lag,
        }
    }
}

/// Age in seconds of something stored at `stored_at_unix_ms`.
fn age(stored_at_unix_ms: u64) -> f64 {
    now_unix_ms().saturating_sub(stored_at_unix_ms) as f64 / 1000.0
}

/// The count of one peer's unconfirmed facts, `(frontier, high]`, as of the last update.
#[derive(Debug)]
struct Backlog {
    frontier: u64,
    high: u64,
    count: u64,
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
    fn update(
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
            to_zone: to_zone.to_owned(),
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
