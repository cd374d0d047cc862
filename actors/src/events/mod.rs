//! Typed internal events (vector's `internal_events`): one small type per notable thing a node
//! sees, whose [`Event::emit`] writes its log line and updates its metrics together, so a line and
//! its counter cannot drift apart and each event has one writer. The `msg` of every line (SPEC
//! §12) is a constant beside its event; metric names live in the table of [`crate::metrics`].
//!
//! | module | events |
//! |---|---|
//! | `peer` | [`LinkFailure`] (reasons), [`PeerConnected`], [`PeerDisconnected`], [`PeerDialFailed`], [`PeerRefused`], [`PeerConnectionReplaced`], [`PeerCallRetried`], [`ClientRejected`] |
//! | `tls` | [`TlsHandshakeFailed`], [`ConnectionUntrusted`], [`CertReloaded`], [`CertReloadFailed`], [`CertWatchFailed`] |
//! | `gate` | [`GateTransition`], [`GateSwitched`] |
//! | `facts` | [`Rejection`] (reasons), [`FactRejected`], [`FactConflict`], [`FactsDuplicated`], [`FactLost`], [`FactsKeptPastRetention`], [`BufferBlocked`], [`DeletionFailed`] |
//! | `artifacts` | [`ArtifactRetrieved`], [`ArtifactRetrievalFailed`], [`ArtifactSkipped`], [`ArtifactExpired`], [`ArtifactSweepDone`], [`ArtifactSweepFailed`] |
//! | `storage` | [`StorageHealth`]: failed commits and reads, damaged data, and the readiness they decide |
//! | `relay` | [`RelayRefusal`] (reasons), [`RelayRefused`], [`FactsRelayed`], [`FactsDelivered`], [`FactsStranded`] |
//! | `ha` | [`HaPromoted`], [`HaDemoted`], [`WalDivergence`], [`LeaseRenewed`], [`EngineChecked`], [`SnapshotWritten`], [`SnapshotRestored`], [`WalPurged`] |
//!
//! One RPC call (`rpc_call`, `fact_appended` or `rpc_rejected`, and its counters) is written by
//! `rpc::call`, which knows the request and answer types; the node's lifecycle lines stay with `node`.
//!
//! Events import only what lies below them (metrics, storage's vocabulary, transport); the
//! gate's states are defined here, with the event and the metric that report them, so that
//! `zone_gate` can import its event without an import circle.

mod artifacts;
mod facts;
mod gate;
mod ha;
mod peer;
mod relay;
mod storage;
mod tls;

pub use artifacts::{
    ArtifactDamaged, ArtifactExpired, ArtifactPullDeferred, ArtifactPullResumed, ArtifactRetrievalFailed,
    ArtifactRetrieved, ArtifactSkipped, ArtifactSweepDone, ArtifactSweepFailed, Skip,
};
pub use facts::{
    BufferBlocked, ClockStepped, DeletionFailed, FactConflict, FactLost, FactRejected, FactsDuplicated,
    FactsKeptPastRetention, Loss, Rejection, RetentionResumed, StoreExhausted,
};
pub use gate::{GateState, GateSwitched, GateTransition, CLOSED_BY_OPERATOR};
pub use ha::{
    set_role, EngineChecked, EngineConnection, HaDemoted, HaPromoted, LeaseRenewed, PromotionCatchingUp,
    PromotionStarted, SnapshotRestored, SnapshotWritten, WalDivergence, WalPurged, ROLE_ACTIVE, ROLE_STANDBY,
};
pub use peer::{
    ClientRejected, Direction, LinkFailure, PeerCallRetried, PeerConnected, PeerConnectionOpen, PeerConnectionReplaced,
    PeerDialFailed, PeerDisconnected, PeerRefused,
};
pub use relay::{FactsDelivered, FactsRelayed, FactsStranded, Hold, RelayHeld, RelayRefusal, RelayRefused};
pub use storage::{Damage, DiskSpaceLow, Failing, HealthReport, LossRecorded, StorageHealth, StorageOp, RESTART_HINT};
pub use tls::{
    set_expiry, CertReloadFailed, CertReloaded, CertWatchFailed, CheckAnswered, ConnectionUntrusted, TlsHandshakeFailed,
};

use std::sync::Arc;

use slog::Logger;

use crate::metrics::Metrics;

/// Where events go: the node's logger and its metrics. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    pub log: Logger,
    pub metrics: Arc<Metrics>,
}

/// A notable event: its log line and its metrics, written together.
pub trait Event {
    fn emit(self, telemetry: &Telemetry);
}

/// The tag of audit lines (`rpc_call`, `fact_appended` under `log.audit`; `admin_action`): the
/// log's level filter lets them through whatever `log.level` says (SPEC §12: an audit trail
/// loses no line).
pub const AUDIT: &str = "audit";

/// The `code` label of `bsfg_rpc_requests_total` for a call that succeeded.
pub const CODE_OK: &str = "OK";
/// The `role` label of fetch and confirm counters for a peer node.
pub const ROLE_PEER: &str = "peer";
/// The `role` label of fetch and confirm counters for a local client.
pub const ROLE_CONSUMER: &str = "consumer";

impl Telemetry {
    /// Creates every series whose labels are known at start at 0 (so an alert on `increase()`
    /// sees the first event, and every configured peer shows from the first scrape): per peer
    /// its gate and progress, and every known reason, role, buffer and result.
    pub fn new(log: Logger, metrics: Arc<Metrics>, peers: &[String]) -> Self {
        let m = &metrics;
        for peer in peers {
            gate::start_autonomous(m, peer);
            m.replication_lag_seconds.with_label_values(&[peer]).set(0.0);
            m.replication_lag_high_watermark.with_label_values(&[peer]).set(0.0);
            m.frontier_offset.with_label_values(&[peer]).set(0);
            peer::init_series(m, peer);
        }
        for role in [ROLE_PEER, ROLE_CONSUMER] {
            m.fetch_requests.with_label_values(&[role]);
            m.confirm_requests.with_label_values(&[role]);
        }
        for code in bsfg_proto::ErrorCode::ALL {
            m.append_failures.with_label_values(&[code.as_str()]);
        }
        for operation in bsfg_proto::Request::OPERATIONS {
            m.rpc_requests.with_label_values(&[operation, CODE_OK]);
            for code in bsfg_proto::ErrorCode::ALL {
                m.rpc_requests.with_label_values(&[operation, code.as_str()]);
            }
        }
        tls::init_series(m);
        facts::init_series(m);
        relay::init_series(m);
        ha::init_series(m);
        Self { log, metrics }
    }

    /// Creates the relayed-facts series toward each zone this node relays to, at 0.
    /// A relaying node's series from start-up: what it relayed toward each final destination,
    /// and whether it holds each peer's pages (`0`).
    pub fn init_relay_series<'a>(&self, to_zones: impl IntoIterator<Item = &'a str>, peers: &[String]) {
        for to_zone in to_zones {
            self.metrics.relayed_facts.with_label_values(&[to_zone]);
        }
        for peer in peers {
            self.metrics.relay_held.with_label_values(&[peer]).set(0);
        }
    }

    pub fn emit(&self, event: impl Event) {
        event.emit(self);
    }
}
