//! The status refresher: once a second, from the journal's cursors and a few index reads (on the
//! blocking pool), it sets the progress gauges of SPEC §11 — per peer the frontier, the backlog,
//! the replication lag and its peak over the last ten minutes; per consumer the backlog, the lag,
//! the facts confirmed (a counter) and the confirm rate over the last minute — and the
//! certificate's expiry countdown, and publishes the same numbers as a [`Progress`] for
//! `/v1/status`. While the journal's commits fail it also probes storage once a second (a commit
//! that changes nothing), so a node whose storage recovers becomes ready without any traffic.
//!
//! A consumer shows from its first fetch (the forward buffer's [`Seen`], at cursor 0 until it
//! confirms), so one that fetches but never confirms has its backlog and lag. A consumer that is
//! gone (deleted by an operator) loses its series at the next refresh.
//!
//! - `backlog`: a peer's backlog, counted incrementally from the per-peer index.
//! - `window`: the rate and the peak over sliding windows of real time.

mod backlog;
mod window;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bsfg_proto::model::now_unix_ms;
use tokio::sync::watch;

use backlog::Backlog;
use window::{PeakWindow, RateWindow, PEAK_WINDOW, RATE_WINDOW};

use crate::{
    cert_watcher::Certificate,
    events::StorageOp,
    forward_buffer::{consumer_cursors, Seen},
    journal::Journal,
    metrics::Metrics,
    storage::{CursorKey, LogRecord, StorageError},
};

const INTERVAL: Duration = Duration::from_secs(1);

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
    /// Consumers seen fetching, with or without a cursor.
    pub seen: Seen,
}

/// What one refresh carries over to the next.
#[derive(Default)]
struct Memory {
    consumers: HashMap<String, ConsumerMemory>,
    backlogs: HashMap<String, Backlog>,
    lag_peaks: HashMap<String, PeakWindow>,
    /// Whether a refresh ran before: consumers seen at the first one existed before this
    /// process (their confirmations were counted by an earlier one); later ones start at 0.
    refreshed: bool,
    /// The forward offsets no longer retained at the last refresh (see [`Span`]).
    gone: u64,
}

/// A consumer's cursor at the last refresh and its confirm rate window.
struct ConsumerMemory {
    cursor: u64,
    rate: RateWindow,
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
            shared.certificate.borrow().publish(&shared.metrics, SystemTime::now());
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
        let now = Instant::now();
        let mut progress = Progress::default();
        for peer in &self.peers {
            let frontier = cursors.get(&CursorKey::Peer(peer.clone())).copied().unwrap_or(0);
            let seen = self.peer(peer, frontier, store_high, memory);
            let peak = memory
                .lag_peaks
                .entry(peer.clone())
                .or_insert_with(|| PeakWindow::new(PEAK_WINDOW))
                .observe(now, seen.lag_seconds);
            let high = self.metrics.replication_lag_high_watermark.with_label_values(&[peer]);
            high.set(peak);
            progress.peers.insert(peer.clone(), seen);
        }
        // Offsets at or below `gone` are no longer retained (retention deletes the oldest first):
        // a consumer's backlog counts facts after its cursor, not offsets. Offsets are never
        // reused, so the search starts past what was gone at the last refresh (RocksDB need not
        // step over the deletions of the whole retention again).
        let gone = match self.journal.storage().read_forward(memory.gone, forward_high, 1) {
            Ok(first) => first.first().map_or(forward_high, |r| r.offset - 1),
            Err(_) => memory.gone,
        };
        for (name, cursor) in consumer_cursors(&self.journal, &self.seen) {
            let span = Span {
                cursor,
                gone,
                gone_before: memory.gone,
                high: forward_high,
            };
            let consumer = self.consumer(&name, span, now, memory);
            progress.consumers.insert(name, consumer);
        }
        memory.gone = gone;
        self.forget_gone(&progress, memory);
        memory.refreshed = true;
        progress
    }

    /// Drops the series and memory of consumers that no longer exist (deleted by an operator).
    fn forget_gone(&self, progress: &Progress, memory: &mut Memory) {
        let m = &self.metrics;
        memory.consumers.retain(|name, _| {
            let keep = progress.consumers.contains_key(name);
            if !keep {
                let _ = m.consumer_backlog_size.remove_label_values(&[name]);
                let _ = m.consumer_lag_seconds.remove_label_values(&[name]);
                let _ = m.confirm_rate_per_second.remove_label_values(&[name]);
                let _ = m.confirmed_facts.remove_label_values(&[name]);
            }
            keep
        });
    }

    fn peer(&self, peer: &str, frontier: u64, store_high: u64, memory: &mut Memory) -> PeerProgress {
        let storage = self.journal.storage();
        self.metrics
            .frontier_offset
            .with_label_values(&[peer])
            .set(frontier as i64);
        let lag = lag(
            &self.metrics.replication_lag_seconds.with_label_values(&[peer]),
            storage.read_store(peer, frontier, store_high, 1),
        );
        let backlog = memory.backlogs.entry(peer.to_owned()).or_default();
        let counted = backlog.update(frontier, store_high, |after, upto| {
            storage.count_store(peer, after, upto)
        });
        match &counted {
            Ok(_) => self.journal.health().succeeded(StorageOp::Read),
            Err(error) => self.journal.health().failed(StorageOp::Read, error),
        }
        // A storage fault leaves the last count standing; the next refresh tries again.
        let backlog = counted.unwrap_or(backlog.count);
        let gauge = self.metrics.peer_backlog_facts.with_label_values(&[peer]);
        gauge.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        PeerProgress {
            frontier,
            backlog,
            lag_seconds: lag,
        }
    }

    fn consumer(&self, name: &str, span: Span, now: Instant, memory: &mut Memory) -> ConsumerProgress {
        let Span {
            cursor,
            gone,
            gone_before,
            high,
        } = span;
        let backlog = high.saturating_sub(cursor.max(gone));
        self.metrics
            .consumer_backlog_size
            .with_label_values(&[name])
            .set(backlog as i64);
        let lag = lag(
            &self.metrics.consumer_lag_seconds.with_label_values(&[name]),
            self.journal.storage().read_forward(cursor, high, 1),
        );
        let baseline = if memory.refreshed { 0 } else { cursor };
        let seen = memory
            .consumers
            .entry(name.to_owned())
            .or_insert_with(|| ConsumerMemory {
                cursor: baseline,
                rate: RateWindow::new(RATE_WINDOW),
            });
        // Counted from the cursor's advance over the facts retained at the last refresh (a rewind
        // counts the facts again once re-confirmed; a new consumer's first confirm does not count
        // what retention took before it came; what was confirmed and then reclaimed since the
        // last refresh still counts).
        let confirmed = self.metrics.confirmed_facts.with_label_values(&[name]);
        confirmed.inc_by(cursor.saturating_sub(seen.cursor.max(gone_before)));
        seen.cursor = cursor;
        // The rate of what was counted, not of the cursor's jumps over what retention took.
        let rate = seen.rate.observe(now, confirmed.get());
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

/// A consumer's cursor in the forward log: offsets up to `gone` are no longer retained (up to
/// `gone_before` at the last refresh), `high` is the highest written.
#[derive(Debug, Clone, Copy)]
struct Span {
    cursor: u64,
    gone: u64,
    gone_before: u64,
    high: u64,
}

/// Sets `gauge` to the age of the oldest of `read` (0 when there is none) and returns it; a read
/// that failed leaves the last value standing (a lag of 0 would resolve lag alerts while storage
/// fails), and the next refresh tries again.
fn lag(gauge: &prometheus::Gauge, read: Result<Vec<LogRecord>, StorageError>) -> f64 {
    if let Ok(oldest) = read {
        gauge.set(oldest.first().map_or(0.0, |r| age(r.stored_at_unix_ms)));
    }
    gauge.get()
}

/// Age in seconds of something stored at `stored_at_unix_ms`.
fn age(stored_at_unix_ms: u64) -> f64 {
    now_unix_ms().saturating_sub(stored_at_unix_ms) as f64 / 1000.0
}
