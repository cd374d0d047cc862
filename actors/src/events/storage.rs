//! Storage health, and the node's readiness that follows it. Every failed commit or read is
//! counted in `bsfg_storage_errors_total{operation}`; the first failure of a run is logged as
//! `storage_failed` (ERROR, with the error) and the first success after it as
//! `storage_recovered`. Damaged data met at run time is counted once per place under
//! `operation="corruption"` and logged as `storage_damaged` (ERROR) with the offsets it holds.
//!
//! While commits or reads fail, or damage waits for an operator to accept the loss, the node is
//! not ready: `/readyz` answers 503 and `bsfg_node_up` is 0. A node whose storage recovers by
//! itself (space returned to a full disk) becomes ready again with the first success.
//!
//! A disk running low is not a fault but backpressure ([`DiskSpaceLow`]): the node stays ready,
//! refuses appends and pauses pulls until there is room again.

use std::{
    fmt::Display,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::SystemTime,
};

use slog::{error, info};

use super::Telemetry;
use crate::storage::{ranges, Log, LossRecord};

pub const STORAGE_FAILED: &str = "storage_failed";
pub const STORAGE_RECOVERED: &str = "storage_recovered";
pub const STORAGE_DAMAGED: &str = "storage_damaged";
/// What an operator should know about a write that hangs.
const STALL_HINT: &str = "the node is not ready and answers calls that need a write UNAVAILABLE while the \
     write hangs; it becomes ready again by itself once the write completes: check the disk, its controller, \
     or the network file system under node.data_dir (nothing acknowledged is lost)";
/// What an operator should know about a storage failure.
pub const RESTART_HINT: &str = "the node is not ready until storage works again; RocksDB recovers by itself \
     once a full disk has room again, but after other errors it stops writing until it is reopened: once the \
     cause is fixed, restart the node (nothing acknowledged is lost)";
pub const STORAGE_LOSS_RECORDED: &str = "storage_loss_recorded";
pub const DISK_SPACE_LOW: &str = "disk_space_low";

/// At start, each loss an operator accepted in this data directory (`bsfg storage
/// accept-loss`), so the node's own log says what it runs without.
pub struct LossRecorded<'a>(pub &'a LossRecord);

impl super::Event for LossRecorded<'_> {
    fn emit(self, t: &Telemetry) {
        let record = self.0;
        slog::warn!(t.log, "{}", STORAGE_LOSS_RECORDED; "accepted_by" => &record.accepted_by,
            "accepted_at_unix_ms" => record.accepted_at_unix_ms, "lost_facts" => record.lost.len(),
            "store_offsets" => ranges(&record.lost.store), "forward_offsets" => ranges(&record.lost.forward),
            "reason" => &record.cause);
    }
}
pub const DISK_SPACE_RECOVERED: &str = "disk_space_recovered";

/// The data directory's file system went below (`low`) or back above what the node needs free.
pub struct DiskSpaceLow {
    pub low: bool,
    pub free_bytes: u64,
    pub needed_bytes: u64,
    pub total_bytes: u64,
}

impl super::Event for DiskSpaceLow {
    fn emit(self, t: &Telemetry) {
        let (free, needed, total) = (self.free_bytes, self.needed_bytes, self.total_bytes);
        match self.low {
            true => slog::warn!(t.log, "{}", DISK_SPACE_LOW; "free_bytes" => free, "needed_bytes" => needed,
                "total_bytes" => total,
                "reason" => "appends are refused and pulls pause until confirmed facts are reclaimed or space is freed"),
            false => info!(t.log, "{}", DISK_SPACE_RECOVERED; "free_bytes" => free, "needed_bytes" => needed,
                "total_bytes" => total),
        }
    }
}

/// What failed: the `operation` label of `bsfg_storage_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOp {
    /// A group commit of the journal (its planning reads included).
    Commit,
    /// A read of a log or index outside the journal (fetches, status counts).
    Read,
}

/// The label of damaged data in `bsfg_storage_errors_total`.
pub const CORRUPTION: &str = "corruption";

impl StorageOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Read => "read",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Damaged data met at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub log: Log,
    /// Who was reading: `peer:<zone>` or a consumer's name.
    pub reader: String,
    /// The offsets read when the damage was met (`first..=last`).
    pub first: u64,
    pub last: u64,
    /// The entries among them that cannot be read; empty when the damage could not be narrowed
    /// down (the index itself is damaged): then the whole range is in doubt.
    pub offsets: Vec<u64>,
    pub error: String,
}

impl Damage {
    /// The damaged offsets as ranges (`10001..=10013, 10020`), or the range in doubt.
    pub fn ranges(&self) -> String {
        match self.offsets.is_empty() {
            true => format!("{}..={} (not narrowed down)", self.first, self.last),
            false => ranges(&self.offsets),
        }
    }
}

/// A run of failures of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub operation: StorageOp,
    pub since: SystemTime,
    /// The newest failure's error.
    pub error: String,
    pub errors: u64,
}

/// What `/v1/status` shows of storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    pub failing: Vec<Failing>,
    pub damage: Vec<Damage>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.failing.is_empty() && self.damage.is_empty()
    }
}

/// The node's storage health; cheap to clone, shared by everything that touches storage.
#[derive(Clone)]
pub struct StorageHealth(Arc<Inner>);

struct Inner {
    telemetry: Telemetry,
    /// Set while anything is wrong, so that a success costs one load when all is well.
    unhealthy: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failing: [Option<Failing>; 2],
    damage: Vec<Damage>,
    started: bool,
    stopped: bool,
}

impl StorageHealth {
    pub fn new(telemetry: Telemetry) -> Self {
        for label in [StorageOp::Commit.as_str(), StorageOp::Read.as_str(), CORRUPTION] {
            telemetry.metrics.storage_errors.with_label_values(&[label]);
        }
        Self(Arc::new(Inner {
            telemetry,
            unhealthy: AtomicBool::new(false),
            state: Mutex::default(),
        }))
    }

    /// The node serves from now on: `bsfg_node_up` follows health.
    pub fn started(&self) {
        self.update(|state| state.started = true);
    }

    /// The node is shutting down: `bsfg_node_up` is 0 for good.
    pub fn stopped(&self) {
        self.update(|state| state.stopped = true);
    }

    /// `op` succeeded: ends a run of its failures.
    pub fn succeeded(&self, op: StorageOp) {
        if !self.0.unhealthy.load(Ordering::Acquire) {
            return;
        }
        let t = &self.0.telemetry;
        self.update(|state| {
            if let Some(run) = state.failing[op.index()].take() {
                info!(t.log, "{}", STORAGE_RECOVERED; "operation" => op.as_str(), "errors" => run.errors,
                    "failing_for_ms" => run.since.elapsed().map_or(0, |d| d.as_millis() as u64));
            }
        });
    }

    /// `op` failed with `error`.
    pub fn failed(&self, op: StorageOp, error: &dyn Display) {
        self.fail(op, error, RESTART_HINT);
    }

    /// `op` has been hanging for `waited` (see `journal::stall`): a failure until it returns.
    pub fn stalled(&self, op: StorageOp, waited: std::time::Duration) {
        let error = format!(
            "no write has completed for {} s: the disk or file system under the data directory does not \
             complete writes",
            waited.as_secs()
        );
        self.fail(op, &error, STALL_HINT);
    }

    fn fail(&self, op: StorageOp, error: &dyn Display, reason: &'static str) {
        let t = &self.0.telemetry;
        t.metrics.storage_errors.with_label_values(&[op.as_str()]).inc();
        self.update(|state| match &mut state.failing[op.index()] {
            Some(run) => {
                run.errors += 1;
                run.error = error.to_string();
            }
            slot @ None => {
                error!(t.log, "{}", STORAGE_FAILED; "operation" => op.as_str(), "error_message" => %error,
                    "reason" => reason);
                *slot = Some(Failing {
                    operation: op,
                    since: SystemTime::now(),
                    error: error.to_string(),
                    errors: 1,
                });
            }
        });
    }

    /// Damaged data was met; counted and logged the first time it is met.
    pub fn damaged(&self, damage: Damage) {
        let t = &self.0.telemetry;
        self.update(|state| {
            let known = state
                .damage
                .iter()
                .any(|d| d.log == damage.log && d.first == damage.first && d.offsets == damage.offsets);
            if known {
                return;
            }
            t.metrics.storage_errors.with_label_values(&[CORRUPTION]).inc();
            error!(t.log, "{}", STORAGE_DAMAGED; "buffer" => damage.log.as_str(), "reader" => &damage.reader,
                "offsets" => damage.ranges(), "error_message" => &damage.error,
                "reason" => "these facts cannot be read; stop the node and run `bsfg storage accept-loss` to go on without them");
            state.damage.push(damage);
        });
    }

    /// Whether storage works and holds no damage nobody accepted.
    pub fn healthy(&self) -> bool {
        !self.0.unhealthy.load(Ordering::Acquire)
    }

    /// Whether a run of `op` failures is going on.
    pub fn failing(&self, op: StorageOp) -> bool {
        !self.healthy() && self.lock().failing[op.index()].is_some()
    }

    pub fn report(&self) -> HealthReport {
        let state = self.lock();
        HealthReport {
            failing: state.failing.iter().flatten().cloned().collect(),
            damage: state.damage.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state, then sets the readiness flag and `bsfg_node_up` from it.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        change(&mut state);
        let healthy = state.failing.iter().all(Option::is_none) && state.damage.is_empty();
        self.0.unhealthy.store(!healthy, Ordering::Release);
        let up = healthy && state.started && !state.stopped;
        self.0.telemetry.metrics.node_up.set(i64::from(up));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        metrics::Metrics,
        testkit::logs::{field, Capture},
    };

    fn health() -> (StorageHealth, Arc<Metrics>, Capture) {
        let capture = Capture::default();
        let metrics = Arc::new(Metrics::new("plant-a", "test").expect("metrics"));
        let telemetry = Telemetry::new(capture.logger(), metrics.clone(), &[]);
        (StorageHealth::new(telemetry), metrics, capture)
    }

    fn errors(metrics: &Metrics, label: &str) -> u64 {
        metrics.storage_errors.with_label_values(&[label]).get()
    }

    fn events(capture: &Capture) -> Vec<String> {
        capture
            .lines()
            .iter()
            .filter_map(|line| field(line, "msg").map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_run_of_failures_is_counted_each_time_logged_once_and_unready_until_a_success() {
        let (health, metrics, capture) = health();
        health.started();
        assert_eq!((health.healthy(), metrics.node_up.get()), (true, 1));
        health.succeeded(StorageOp::Commit);
        for _ in 0..3 {
            health.failed(StorageOp::Commit, &"IO error: No space left on device");
        }
        assert_eq!(errors(&metrics, "commit"), 3);
        assert_eq!((health.healthy(), metrics.node_up.get()), (false, 0));
        assert!(health.failing(StorageOp::Commit) && !health.failing(StorageOp::Read));
        let report = health.report();
        assert_eq!((report.failing.len(), report.failing[0].errors), (1, 3));
        health.succeeded(StorageOp::Read);
        assert!(
            !health.healthy(),
            "a read succeeding does not end a run of commit failures"
        );
        health.succeeded(StorageOp::Commit);
        assert_eq!((health.healthy(), metrics.node_up.get()), (true, 1));
        assert_eq!(events(&capture), [STORAGE_FAILED, STORAGE_RECOVERED]);
        let failed = &capture.lines()[0];
        assert_eq!(
            field(failed, "error_message"),
            Some("IO error: No space left on device")
        );
        assert_eq!(field(failed, "operation"), Some("commit"));
    }

    #[test]
    fn damage_is_counted_once_per_place_and_keeps_the_node_unready() {
        let (health, metrics, capture) = health();
        health.started();
        let damage = Damage {
            log: Log::Store,
            reader: "peer:enterprise".into(),
            first: 101,
            last: 200,
            offsets: vec![120, 121, 122, 150],
            error: "Corruption: block checksum mismatch".into(),
        };
        assert_eq!(damage.ranges(), "120..=122, 150");
        health.damaged(damage.clone());
        health.damaged(damage);
        assert_eq!(errors(&metrics, CORRUPTION), 1);
        health.succeeded(StorageOp::Commit);
        health.succeeded(StorageOp::Read);
        assert_eq!((health.healthy(), metrics.node_up.get()), (false, 0));
        assert_eq!(events(&capture), [STORAGE_DAMAGED]);
        assert_eq!(field(&capture.lines()[0], "offsets"), Some("120..=122, 150"));
    }

    #[test]
    fn node_up_waits_for_the_start_and_ends_with_the_stop() {
        let (health, metrics, _) = health();
        assert_eq!(metrics.node_up.get(), 0);
        health.started();
        assert_eq!(metrics.node_up.get(), 1);
        health.stopped();
        health.failed(StorageOp::Read, &"gone");
        health.succeeded(StorageOp::Read);
        assert_eq!(metrics.node_up.get(), 0);
    }
}
