//! An HA zone's instance (SPEC §15): promotions and demotions (`ha_promoted`, `ha_demoted`, with
//! the one-hot `bsfg_ha_role`), the lease's renewals, records refused for divergence
//! (`wal_divergence`), and an engine whose durability was assumed rather than seen; a promotion's
//! start and its catch-up's progress (`promotion_started`, `promotion_catching_up`), and the
//! engine connection dropped and taken up again (`engine_connection`).

use slog::{error, info, warn};

use super::{Event, Telemetry};
use crate::metrics::Metrics;

pub const HA_PROMOTED: &str = "ha_promoted";
pub const HA_DEMOTED: &str = "ha_demoted";
pub const WAL_DIVERGENCE: &str = "wal_divergence";
pub const LEASE_RENEW_FAILED: &str = "lease_renew_failed";
pub const ENGINE_DURABILITY_UNVERIFIED: &str = "engine_durability_unverified";
pub const ENGINE_WARNING: &str = "engine_warning";
pub const PROMOTION_STARTED: &str = "promotion_started";
pub const PROMOTION_CATCHING_UP: &str = "promotion_catching_up";
pub const ENGINE_CONNECTION: &str = "engine_connection";

pub const ROLE_ACTIVE: &str = "active";
pub const ROLE_STANDBY: &str = "standby";

/// Every reason of `bsfg_ha_demotions_total`.
pub const DEMOTION_REASONS: [&str; 5] = ["fenced", "outcome_unknown", "lease_lost", "step_down", "diverged"];

pub(super) fn init_series(m: &Metrics) {
    for reason in DEMOTION_REASONS {
        m.ha_demotions.with_label_values(&[reason]);
    }
    for result in ["success", "failure"] {
        m.ha_lease_renewals.with_label_values(&[result]);
    }
}

/// Sets the one-hot `bsfg_ha_role`.
pub fn set_role(metrics: &Metrics, active: bool) {
    metrics.ha_role.with_label_values(&[ROLE_ACTIVE]).set(i64::from(active));
    metrics
        .ha_role
        .with_label_values(&[ROLE_STANDBY])
        .set(i64::from(!active));
}

/// This instance became the zone's writer.
pub struct HaPromoted<'a> {
    pub instance: &'a str,
    pub epoch: u64,
    pub wal_seq: u64,
    /// Records applied while catching up after the lease was taken.
    pub caught_up: u64,
    pub took_ms: u64,
}

impl Event for HaPromoted<'_> {
    fn emit(self, t: &Telemetry) {
        set_role(&t.metrics, true);
        t.metrics.ha_promotions.inc();
        info!(t.log, "{}", HA_PROMOTED; "instance" => self.instance, "epoch" => self.epoch,
            "wal_seq" => self.wal_seq, "caught_up" => self.caught_up, "took_ms" => self.took_ms);
    }
}

/// This instance took the lease and starts its promotion: it catches up from `wal_applied` to
/// the log's end (`wal_last`, as last asked) before it serves.
pub struct PromotionStarted<'a> {
    pub instance: &'a str,
    pub epoch: u64,
    pub wal_applied: u64,
    pub wal_last: u64,
}

impl Event for PromotionStarted<'_> {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", PROMOTION_STARTED; "instance" => self.instance, "epoch" => self.epoch,
            "wal_applied" => self.wal_applied, "wal_last" => self.wal_last);
    }
}

/// A promotion's catch-up is still going: where it is, and how fast it moved since it was last
/// said (a standby far behind holds the zone unready meanwhile).
pub struct PromotionCatchingUp {
    pub wal_applied: u64,
    pub wal_last: u64,
    pub records_per_second: u64,
    pub elapsed_ms: u64,
}

impl Event for PromotionCatchingUp {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", PROMOTION_CATCHING_UP; "wal_applied" => self.wal_applied,
            "wal_last" => self.wal_last, "records_per_second" => self.records_per_second,
            "elapsed_ms" => self.elapsed_ms);
    }
}

/// The engine connection was lost, taken up again, or reported an error.
pub struct EngineConnection<'a>(pub &'a bsfg_engine::jetstream::ConnectionEvent);

impl Event for EngineConnection<'_> {
    fn emit(self, t: &Telemetry) {
        let (event, detail) = (self.0.kind, self.0.detail.as_str());
        match self.0.is_trouble() {
            true => warn!(t.log, "{}", ENGINE_CONNECTION; "event" => event, "detail" => detail),
            false => info!(t.log, "{}", ENGINE_CONNECTION; "event" => event, "detail" => detail),
        }
    }
}

/// This instance stopped writing.
pub struct HaDemoted<'a> {
    pub instance: &'a str,
    /// `fenced`, `outcome_unknown`, `lease_lost`, `step_down`, `diverged`.
    pub reason: &'a str,
    pub detail: &'a str,
}

impl Event for HaDemoted<'_> {
    fn emit(self, t: &Telemetry) {
        set_role(&t.metrics, false);
        t.metrics.ha_demotions.with_label_values(&[self.reason]).inc();
        warn!(t.log, "{}", HA_DEMOTED; "instance" => self.instance, "reason" => self.reason,
            "detail" => self.detail);
    }
}

/// A record of the log does not continue this replica's history: the replica stops applying,
/// stays unready, and never serves it.
pub struct WalDivergence<'a> {
    pub seq: u64,
    pub detail: &'a str,
}

impl Event for WalDivergence<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics.engine_divergence.inc();
        error!(t.log, "{}", WAL_DIVERGENCE; "seq" => self.seq, "detail" => self.detail);
    }
}

/// A renewal of the lease, and whether it went through.
pub struct LeaseRenewed<'a> {
    /// `None` when renewed; the error otherwise.
    pub failure: Option<&'a str>,
}

impl Event for LeaseRenewed<'_> {
    fn emit(self, t: &Telemetry) {
        let result = if self.failure.is_some() { "failure" } else { "success" };
        t.metrics.ha_lease_renewals.with_label_values(&[result]).inc();
        if let Some(reason) = self.failure {
            warn!(t.log, "{}", LEASE_RENEW_FAILED; "reason" => reason);
        }
    }
}

/// What the start-up checks found about the engine's durability (and any warnings).
pub struct EngineChecked<'a> {
    pub durability_verified: bool,
    pub warnings: &'a [String],
}

impl Event for EngineChecked<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics
            .engine_durability_verified
            .set(i64::from(self.durability_verified));
        for warning in self.warnings {
            warn!(t.log, "{}", ENGINE_WARNING; "reason" => warning.as_str());
        }
        if !self.durability_verified {
            warn!(t.log, "{}", ENGINE_DURABILITY_UNVERIFIED;
                "reason" => "not every engine server was seen to fsync before acknowledging (storage.jetstream.assume_durable, or a server could not be asked)");
        }
    }
}

pub const SNAPSHOT_WRITTEN: &str = "snapshot_written";
pub const SNAPSHOT_RESTORED: &str = "snapshot_restored";
pub const WAL_PURGED: &str = "wal_purged";

/// A standby stored a snapshot of its replica at `seq` in the engine's object store.
pub struct SnapshotWritten {
    pub seq: u64,
    pub files: usize,
    pub bytes: u64,
    pub took_ms: u64,
}

impl Event for SnapshotWritten {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", SNAPSHOT_WRITTEN; "seq" => self.seq, "files" => self.files, "bytes" => self.bytes,
            "took_ms" => self.took_ms);
    }
}

/// An empty replica was restored from the snapshot at `seq` before it started following.
pub struct SnapshotRestored {
    pub seq: u64,
    pub files: usize,
    pub bytes: u64,
}

impl Event for SnapshotRestored {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", SNAPSHOT_RESTORED; "seq" => self.seq, "files" => self.files, "bytes" => self.bytes);
    }
}

/// The log's records before `before` were removed (a snapshot covers them).
pub struct WalPurged {
    pub before: u64,
    pub removed: u64,
}

impl Event for WalPurged {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", WAL_PURGED; "before" => self.before, "removed" => self.removed);
    }
}
