//! The table of every metric (SPEC §11): name, type, labels and help, listed once, and how a
//! field of [`Metrics`](super::Metrics) is built and registered from its entry.

use prometheus::{
    core::Collector, exponential_buckets, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The type of a metric; a histogram has `count` exponential buckets from `start`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram { start: f64, factor: f64, count: usize },
}

impl Kind {
    /// The type as the text exposition's `# TYPE` line spells it.
    pub fn exposition(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram { .. } => "histogram",
        }
    }
}

/// One metric of SPEC §11.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn spec(name: &'static str, kind: Kind, labels: &'static [&'static str], help: &'static str) -> Spec {
    Spec {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge as G};

// Appends are fsync-bound: 100 µs to ~3 s. RPCs (their work, not a long-poll's wait): 100 µs to ~52 s.
const APPEND_BUCKETS: Kind = Kind::Histogram {
    start: 0.0001,
    factor: 2.0,
    count: 16,
};
const RPC_BUCKETS: Kind = Kind::Histogram {
    start: 0.0001,
    factor: 2.0,
    count: 20,
};

pub const REPLICATION_LAG_SECONDS: Spec = spec(
    "bsfg_replication_lag_seconds",
    G,
    &["peer"],
    "Age of the oldest fact addressed to the peer not yet confirmed by it; 0 when none.",
);
pub const REPLICATION_LAG_HIGH_WATERMARK: Spec = spec(
    "bsfg_replication_lag_high_watermark",
    G,
    &["peer"],
    "Highest replication lag toward the peer in the last 10 minutes, in seconds.",
);
pub const FRONTIER_OFFSET: Spec = spec(
    "bsfg_frontier_offset",
    G,
    &["peer"],
    "Highest store offset up to which the peer confirmed every fact addressed to it.",
);
pub const FETCH_REQUESTS: Spec = spec(
    "bsfg_fetch_requests_total",
    Counter,
    &["role"],
    "FetchFacts calls served.",
);
pub const CONFIRM_REQUESTS: Spec = spec(
    "bsfg_confirm_requests_total",
    Counter,
    &["role"],
    "ConfirmReceipt calls served.",
);
pub const APPEND_REQUESTS: Spec = spec(
    "bsfg_append_requests_total",
    Counter,
    &[],
    "Facts received in AppendFact and AppendFacts calls.",
);
pub const APPEND_FAILURES: Spec = spec(
    "bsfg_append_failures_total",
    Counter,
    &["reason"],
    "Facts whose append failed, by error code (a call refused whole counts its facts).",
);
pub const STORE_BUFFER_FILL_PERCENT: Spec = spec(
    "bsfg_store_buffer_fill_percent",
    G,
    &[],
    "Retained store buffer bytes as a percentage of its capacity.",
);
pub const APPEND_LATENCY: Spec = spec(
    "bsfg_append_latency_seconds",
    APPEND_BUCKETS,
    &[],
    "Time from receiving an AppendFact or AppendFacts call to its durable acknowledgement.",
);
pub const CONSUMER_BACKLOG_SIZE: Spec = spec(
    "bsfg_consumer_backlog_size",
    G,
    &["consumer"],
    "Facts in the forward buffer after the consumer's cursor.",
);
pub const CONSUMER_LAG_SECONDS: Spec = spec(
    "bsfg_consumer_lag_seconds",
    G,
    &["consumer"],
    "Age of the oldest forward-buffer fact the consumer has not confirmed; 0 when none.",
);
pub const CONFIRM_RATE_PER_SECOND: Spec = spec(
    "bsfg_confirm_rate_per_second",
    G,
    &["consumer"],
    "Facts the consumer confirmed per second over the last minute (prefer rate(bsfg_confirmed_facts_total)).",
);
pub const ARTIFACT_UPLOAD_TOTAL: Spec = spec(
    "bsfg_artifact_upload_total",
    Counter,
    &[],
    "PutObject calls that stored an artifact.",
);
pub const ARTIFACT_UPLOAD_FAILURES: Spec = spec(
    "bsfg_artifact_upload_failures",
    Counter,
    &[],
    "PutObject calls that failed.",
);
pub const ARTIFACT_RETRIEVAL_TOTAL: Spec = spec(
    "bsfg_artifact_retrieval_total",
    Counter,
    &[],
    "Artifacts retrieved: pulled from peers, or served to local consumers by GetObject.",
);
pub const ARTIFACT_RETRIEVAL_FAILURES: Spec = spec(
    "bsfg_artifact_retrieval_failures",
    Counter,
    &[],
    "Artifact retrievals that failed: pulls from peers, and GetObject calls of local consumers the node could not serve.",
);
pub const ARTIFACT_PULLS_WAITING: Spec = spec(
    "bsfg_artifact_pulls_waiting",
    G,
    &[],
    "Artifact pulls from peers waiting for room on the data directory's disk (their pages and links wait).",
);
pub const OBJECT_STORE_USAGE_BYTES: Spec = spec(
    "bsfg_object_store_usage_bytes",
    G,
    &["bucket"],
    "Bytes held by the local artifact store.",
);
pub const NODE_UP: Spec = spec(
    "bsfg_node_up",
    G,
    &[],
    "1 while the node serves with working storage; 0 while storage fails or holds damage not yet accepted.",
);
pub const STORAGE_ERRORS: Spec = spec(
    "bsfg_storage_errors_total",
    Counter,
    &["operation"],
    "Storage commits (operation=\"commit\") and reads (\"read\") that failed, and damaged data met (\"corruption\").",
);
pub const CERTIFICATE_EXPIRY_SECONDS: Spec = spec(
    "bsfg_certificate_expiry_seconds",
    G,
    &[],
    "Seconds until the node's certificate expires.",
);
pub const CRL_EXPIRY_SECONDS: Spec = spec(
    "bsfg_crl_expiry_seconds",
    G,
    &[],
    "Seconds until the earliest nextUpdate of the revocation lists in tls.crl (+Inf without one); \
     a lapsed list keeps revoking, but the node refuses it at its next start or reload.",
);
pub const TLS_HANDSHAKE_ERRORS: Spec = spec(
    "bsfg_tls_handshake_errors_total",
    Counter,
    &["reason"],
    "TLS handshakes refused or failed, by reason, on accepted and dialled connections.",
);
pub const TLS_CONNECTIONS_CLOSED: Spec = spec(
    "bsfg_tls_connections_closed_total",
    Counter,
    &["reason"],
    "Live connections closed because the certificate their other side presented no longer \
     passes the checks of a handshake (revoked or CA removed by a reload, or expired), by reason.",
);
pub const RPC_LATENCY: Spec = spec(
    "bsfg_rpc_latency_seconds",
    RPC_BUCKETS,
    &["operation"],
    "Time to serve one RPC call, by operation; a fetch's long-poll wait for new facts is not counted.",
);
pub const GATE_STATE: Spec = spec(
    "bsfg_gate_state",
    G,
    &["peer", "state"],
    "1 for the peer's current gate state, 0 for the others.",
);
pub const GATE_TRANSITIONS: Spec = spec(
    "bsfg_gate_transitions_total",
    Counter,
    &["peer", "to"],
    "Gate state changes, by peer and new state.",
);
pub const FORWARD_BUFFER_FILL_PERCENT: Spec = spec(
    "bsfg_forward_buffer_fill_percent",
    G,
    &[],
    "Retained forward buffer bytes as a percentage of its capacity.",
);
pub const DROPPED_FACTS: Spec = spec(
    "bsfg_dropped_facts_total",
    Counter,
    &[],
    "Unconfirmed facts deleted by the drop_oldest policy.",
);
pub const EXPIRED_FACTS: Spec = spec(
    "bsfg_expired_facts_total",
    Counter,
    &[],
    "Unconfirmed facts deleted because they outlived the retention.",
);
pub const DUPLICATE_FACTS: Spec = spec(
    "bsfg_duplicate_facts_total",
    Counter,
    &["buffer"],
    "Facts recognised as duplicates, by buffer (store or forward).",
);
pub const CERT_RELOADS: Spec = spec(
    "bsfg_cert_reloads_total",
    Counter,
    &["result"],
    "TLS material reloads, by result.",
);
pub const CERT_RELOAD_FAILING: Spec = spec(
    "bsfg_cert_reload_failing",
    G,
    &[],
    "1 while the last TLS material reload was refused (the old material serves); 0 once one succeeds.",
);
pub const CONFIG_RELOAD_FAILING: Spec = spec(
    "bsfg_config_reload_failing",
    G,
    &[],
    "1 while the last reload of the configuration file (SIGHUP, POST /v1/admin/reload) was refused: the node runs as before and the file would not start it; 0 once one succeeds.",
);
pub const DRAINING: Spec = spec("bsfg_draining", G, &[], "1 while the node is draining.");
pub const INFO: Spec = spec(
    "bsfg_info",
    G,
    &["version", "zone"],
    "Always 1; the node's version and zone.",
);
pub const PROCESS_START_TIME_SECONDS: Spec = spec(
    "bsfg_process_start_time_seconds",
    G,
    &[],
    "Start time of the process since the Unix epoch, in seconds.",
);

pub const CONFIRMED_FACTS: Spec = spec(
    "bsfg_confirmed_facts_total",
    Counter,
    &["consumer"],
    "Forward-buffer facts confirmed by each local consumer (its cursor's advance).",
);
pub const PEER_BACKLOG_FACTS: Spec = spec(
    "bsfg_peer_backlog_facts",
    G,
    &["peer"],
    "Facts addressed to the peer that it has not confirmed.",
);
pub const PEER_CONNECTIONS: Spec = spec(
    "bsfg_peer_connections",
    G,
    &["peer"],
    "QUIC connections with each peer, dialled or accepted: 1 while linked (one carries both directions; 2 for a moment while a pair that both dialled keeps one).",
);
pub const LINK_FAILURES: Spec = spec(
    "bsfg_link_failures_total",
    Counter,
    &["peer", "reason"],
    "Failed dials and lost links to each peer, by reason.",
);
pub const REJECTED_FACTS: Spec = spec(
    "bsfg_rejected_facts_total",
    Counter,
    &["reason"],
    "Facts pulled from peers and refused (skipped and confirmed), by reason.",
);
pub const RPC_REQUESTS: Spec = spec(
    "bsfg_rpc_requests_total",
    Counter,
    &["operation", "code"],
    "RPC calls served, by operation and outcome (OK or the error code).",
);
pub const RETENTION_SECONDS: Spec = spec(
    "bsfg_retention_seconds",
    G,
    &["buffer"],
    "Configured retention of each buffer (store, forward), for alerts on facts about to expire.",
);
pub const OBJECT_STORE_BLOB_BYTES: Spec = spec(
    "bsfg_object_store_blob_bytes",
    G,
    &[],
    "Bytes of distinct artifact content stored (content shared by keys counts once): what counts against [objects] capacity_bytes.",
);
pub const OBJECT_STORE_CAPACITY_BYTES: Spec = spec(
    "bsfg_object_store_capacity_bytes",
    G,
    &[],
    "Configured [objects] capacity_bytes.",
);
pub const ARTIFACTS_EXPIRED: Spec = spec(
    "bsfg_artifacts_expired_total",
    Counter,
    &[],
    "Artifacts deleted because no retained fact references them and [objects] retention had passed.",
);

pub const RELAY_REFUSED: Spec = spec(
    "bsfg_relay_refused_total",
    Counter,
    &["reason"],
    "Pulled facts addressed beyond this zone and not relayed (skipped and confirmed), by reason.",
);
pub const RELAYED_FACTS: Spec = spec(
    "bsfg_relayed_facts_total",
    Counter,
    &["to_zone"],
    "Facts pulled from a peer and stored here for their next hop, by final destination.",
);
pub const RELAY_HELD: Spec = spec(
    "bsfg_relay_held",
    G,
    &["peer"],
    "Next hops whose facts this relay leaves at the peer while its store is full and their link is \
     down (or, the store exhausted, the holds of every relayed fact); 0 when it takes all it pulls.",
);
// End to end across hops, partitions included: 1 ms to ~2.3 h.
pub const DELIVERY_LATENCY: Spec = spec(
    "bsfg_delivery_latency_seconds",
    Kind::Histogram {
        start: 0.001,
        factor: 2.0,
        count: 24,
    },
    &["from_zone"],
    "Time from the origin's produced_at_unix_ms to the fact being stored in this forward buffer, by origin zone.",
);

// An HA zone's instance (SPEC §15; names of design/ha-jetstream.md §6 where the SPEC is silent).
pub const HA_ROLE: Spec = spec(
    "bsfg_ha_role",
    G,
    &["role"],
    "1 for this instance's role (active or standby), 0 for the other; a single node is active.",
);
pub const HA_PROMOTIONS: Spec = spec(
    "bsfg_ha_promotions_total",
    Counter,
    &[],
    "Times this instance became the zone's active instance.",
);
pub const HA_DEMOTIONS: Spec = spec(
    "bsfg_ha_demotions_total",
    Counter,
    &["reason"],
    "Times this instance stopped being active, by reason (fenced, outcome_unknown, lease_lost, step_down, diverged).",
);
pub const HA_LEASE_RENEWALS: Spec = spec(
    "bsfg_ha_lease_renewals_total",
    Counter,
    &["result"],
    "Renewals of the zone's lease by this instance, by result (success, failure).",
);
pub const ENGINE_WAL_APPLIED: Spec = spec(
    "bsfg_engine_wal_applied_sequence",
    G,
    &[],
    "Sequence of the last record of the zone's write-ahead log applied to this instance's replica.",
);
pub const ENGINE_WAL_LAG: Spec = spec(
    "bsfg_engine_wal_lag_records",
    G,
    &[],
    "Records of the zone's write-ahead log not yet applied to this instance's replica.",
);
pub const ENGINE_DIVERGENCE: Spec = spec(
    "bsfg_engine_divergence_total",
    Counter,
    &[],
    "Records refused because they do not continue this replica's history (the replica stops).",
);
pub const ENGINE_DURABILITY_VERIFIED: Spec = spec(
    "bsfg_engine_durability_verified",
    G,
    &[],
    "1 when every engine server was seen to fsync before acknowledging, 0 when assumed.",
);
pub const ENGINE_COMMIT_LATENCY: Spec = spec(
    "bsfg_engine_commit_latency_seconds",
    APPEND_BUCKETS,
    &[],
    "Time to append one record (a group commit, an artifact index write, an epoch) to the zone's write-ahead log (quorum fsync'd).",
);

/// Every metric the node registers: SPEC §11's order, then the retention it is configured with,
/// then the artifact store's bounds, then an HA instance's. (The process metrics come from the
/// prometheus crate's process collector.)
pub const ALL: [&Spec; 60] = [
    &REPLICATION_LAG_SECONDS,
    &REPLICATION_LAG_HIGH_WATERMARK,
    &FRONTIER_OFFSET,
    &FETCH_REQUESTS,
    &CONFIRM_REQUESTS,
    &APPEND_REQUESTS,
    &APPEND_FAILURES,
    &STORE_BUFFER_FILL_PERCENT,
    &APPEND_LATENCY,
    &CONSUMER_BACKLOG_SIZE,
    &CONSUMER_LAG_SECONDS,
    &CONFIRM_RATE_PER_SECOND,
    &ARTIFACT_UPLOAD_TOTAL,
    &ARTIFACT_UPLOAD_FAILURES,
    &ARTIFACT_RETRIEVAL_TOTAL,
    &ARTIFACT_RETRIEVAL_FAILURES,
    &ARTIFACT_PULLS_WAITING,
    &OBJECT_STORE_USAGE_BYTES,
    &NODE_UP,
    &CERTIFICATE_EXPIRY_SECONDS,
    &CRL_EXPIRY_SECONDS,
    &TLS_HANDSHAKE_ERRORS,
    &TLS_CONNECTIONS_CLOSED,
    &RPC_LATENCY,
    &GATE_STATE,
    &GATE_TRANSITIONS,
    &FORWARD_BUFFER_FILL_PERCENT,
    &DROPPED_FACTS,
    &EXPIRED_FACTS,
    &DUPLICATE_FACTS,
    &CERT_RELOADS,
    &CERT_RELOAD_FAILING,
    &CONFIG_RELOAD_FAILING,
    &DRAINING,
    &INFO,
    &PROCESS_START_TIME_SECONDS,
    &CONFIRMED_FACTS,
    &PEER_BACKLOG_FACTS,
    &PEER_CONNECTIONS,
    &LINK_FAILURES,
    &REJECTED_FACTS,
    &RELAY_REFUSED,
    &RELAYED_FACTS,
    &RELAY_HELD,
    &DELIVERY_LATENCY,
    &RPC_REQUESTS,
    &STORAGE_ERRORS,
    &RETENTION_SECONDS,
    &OBJECT_STORE_BLOB_BYTES,
    &OBJECT_STORE_CAPACITY_BYTES,
    &ARTIFACTS_EXPIRED,
    &HA_ROLE,
    &HA_PROMOTIONS,
    &HA_DEMOTIONS,
    &HA_LEASE_RENEWALS,
    &ENGINE_WAL_APPLIED,
    &ENGINE_WAL_LAG,
    &ENGINE_DIVERGENCE,
    &ENGINE_DURABILITY_VERIFIED,
    &ENGINE_COMMIT_LATENCY,
];

/// Builds the metric `spec` describes as `M` and registers it; refuses a type that does not
/// match the table (a counter field for a gauge, labels for a plain metric).
pub(super) fn add<M: FromSpec>(registry: &Registry, spec: &Spec) -> Result<M, prometheus::Error> {
    let metric = M::from_spec(spec)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A Prometheus metric type that a [`Spec`] can describe.
pub(super) trait FromSpec: Collector + Clone + Sized + 'static {
    /// The kind and whether it has labels.
    const SHAPE: (Shape, bool);
    fn build(spec: &Spec) -> Result<Self, prometheus::Error>;

    fn from_spec(spec: &Spec) -> Result<Self, prometheus::Error> {
        let shape = match spec.kind {
            Kind::Counter => Shape::Counter,
            Kind::Gauge => Shape::Gauge,
            Kind::Histogram { .. } => Shape::Histogram,
        };
        if (shape, !spec.labels.is_empty()) != Self::SHAPE {
            return Err(prometheus::Error::Msg(format!(
                "{}: the table says {:?} with labels {:?}, the field is a {}",
                spec.name,
                spec.kind,
                spec.labels,
                std::any::type_name::<Self>()
            )));
        }
        Self::build(spec)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Counter,
    Gauge,
    Histogram,
}

fn opts(spec: &Spec) -> Opts {
    Opts::new(spec.name, spec.help)
}

fn histogram_opts(spec: &Spec) -> Result<HistogramOpts, prometheus::Error> {
    let Kind::Histogram { start, factor, count } = spec.kind else {
        return Err(prometheus::Error::Msg(format!("{} is not a histogram", spec.name)));
    };
    Ok(HistogramOpts::new(spec.name, spec.help).buckets(exponential_buckets(start, factor, count)?))
}

macro_rules! from_spec {
    ($metric:ty, $shape:expr, labelled: $labelled:expr, $build:expr) => {
        impl FromSpec for $metric {
            const SHAPE: (Shape, bool) = ($shape, $labelled);
            fn build(spec: &Spec) -> Result<Self, prometheus::Error> {
                ($build)(spec)
            }
        }
    };
}

from_spec!(IntCounter, Shape::Counter, labelled: false, |s| IntCounter::with_opts(opts(s)));
from_spec!(IntCounterVec, Shape::Counter, labelled: true, |s: &Spec| IntCounterVec::new(opts(s), s.labels));
from_spec!(Gauge, Shape::Gauge, labelled: false, |s| Gauge::with_opts(opts(s)));
from_spec!(GaugeVec, Shape::Gauge, labelled: true, |s: &Spec| GaugeVec::new(opts(s), s.labels));
from_spec!(IntGauge, Shape::Gauge, labelled: false, |s| IntGauge::with_opts(opts(s)));
from_spec!(IntGaugeVec, Shape::Gauge, labelled: true, |s: &Spec| IntGaugeVec::new(opts(s), s.labels));
from_spec!(Histogram, Shape::Histogram, labelled: false, |s| Histogram::with_opts(histogram_opts(s)?));
from_spec!(HistogramVec, Shape::Histogram, labelled: true, |s: &Spec| {
    HistogramVec::new(histogram_opts(s)?, s.labels)
});
