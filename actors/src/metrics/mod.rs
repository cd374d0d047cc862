//! The node's Prometheus metrics (SPEC §11): one table ([`ALL`]) of every metric's fixed name,
//! type, labels and help, and one registry built from it. Components record into the shared
//! [`Metrics`] (most through the typed events of `crate::events`); the admin API renders
//! [`Metrics::render`]. Label values come from configuration or from a fixed set (peers,
//! consumer names, roles, operations, reasons), never from message content.
//!
//! This module imports nothing from the rest of the crate: it knows names, not what they count.

mod process;
mod table;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

use std::fmt::Write as _;

use table::add;
pub use table::*;

/// One of what a gauge counts while it lasts (a connection served, a pull waiting): the gauge
/// goes up when it is made and down when it is dropped.
pub struct Counted(IntGauge);

impl Counted {
    pub fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric of [`ALL`], registered.
pub struct Metrics {
    registry: Registry,
    pub replication_lag_seconds: GaugeVec,
    pub replication_lag_high_watermark: GaugeVec,
    pub frontier_offset: IntGaugeVec,
    pub fetch_requests: IntCounterVec,
    pub confirm_requests: IntCounterVec,
    pub append_requests: IntCounter,
    pub append_failures: IntCounterVec,
    pub store_buffer_fill_percent: Gauge,
    pub append_latency: Histogram,
    pub consumer_backlog_size: IntGaugeVec,
    pub consumer_lag_seconds: GaugeVec,
    pub confirm_rate_per_second: GaugeVec,
    pub artifact_upload_total: IntCounter,
    pub artifact_upload_failures: IntCounter,
    pub artifact_retrieval_total: IntCounter,
    pub artifact_retrieval_failures: IntCounter,
    pub artifact_pulls_waiting: IntGauge,
    pub object_store_usage_bytes: IntGaugeVec,
    pub node_up: IntGauge,
    pub certificate_expiry_seconds: Gauge,
    pub crl_expiry_seconds: Gauge,
    pub tls_handshake_errors: IntCounterVec,
    pub tls_connections_closed: IntCounterVec,
    pub rpc_latency: HistogramVec,
    pub gate_state: IntGaugeVec,
    pub gate_transitions: IntCounterVec,
    pub forward_buffer_fill_percent: Gauge,
    pub dropped_facts: IntCounter,
    pub expired_facts: IntCounter,
    pub duplicate_facts: IntCounterVec,
    pub cert_reloads: IntCounterVec,
    pub cert_reload_failing: IntGauge,
    pub config_reload_failing: IntGauge,
    pub draining: IntGauge,
    pub info: IntGaugeVec,
    pub process_start_time_seconds: Gauge,
    pub confirmed_facts: IntCounterVec,
    pub peer_backlog_facts: IntGaugeVec,
    pub peer_connections: IntGaugeVec,
    pub link_failures: IntCounterVec,
    pub rejected_facts: IntCounterVec,
    pub relay_refused: IntCounterVec,
    pub relayed_facts: IntCounterVec,
    pub relay_held: IntGaugeVec,
    pub delivery_latency: HistogramVec,
    pub rpc_requests: IntCounterVec,
    pub retention_seconds: GaugeVec,
    pub storage_errors: IntCounterVec,
    pub object_store_blob_bytes: IntGauge,
    pub object_store_capacity_bytes: IntGauge,
    pub artifacts_expired: IntCounter,
    pub ha_role: IntGaugeVec,
    pub ha_promotions: IntCounter,
    pub ha_demotions: IntCounterVec,
    pub ha_lease_renewals: IntCounterVec,
    pub engine_wal_applied: IntGauge,
    pub engine_wal_lag: IntGauge,
    pub engine_divergence: IntCounter,
    pub engine_durability_verified: IntGauge,
    pub engine_commit_latency: Histogram,
}

impl Metrics {
    /// Registers every metric of [`ALL`] and the process metrics (`process_resident_memory_bytes`,
    /// `process_cpu_seconds_total`, `process_open_fds`, ... read from `/proc` at each scrape), and
    /// sets `bsfg_info` and the start time. Series whose labels are known at start are created by
    /// `events::Telemetry::new`.
    pub fn new(zone: &str, version: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        registry.register(Box::new(process::ProcessMetrics::new()?))?;
        let r = &registry;
        let metrics = Self {
            replication_lag_seconds: add(r, &REPLICATION_LAG_SECONDS)?,
            replication_lag_high_watermark: add(r, &REPLICATION_LAG_HIGH_WATERMARK)?,
            frontier_offset: add(r, &FRONTIER_OFFSET)?,
            fetch_requests: add(r, &FETCH_REQUESTS)?,
            confirm_requests: add(r, &CONFIRM_REQUESTS)?,
            append_requests: add(r, &APPEND_REQUESTS)?,
            append_failures: add(r, &APPEND_FAILURES)?,
            store_buffer_fill_percent: add(r, &STORE_BUFFER_FILL_PERCENT)?,
            append_latency: add(r, &APPEND_LATENCY)?,
            consumer_backlog_size: add(r, &CONSUMER_BACKLOG_SIZE)?,
            consumer_lag_seconds: add(r, &CONSUMER_LAG_SECONDS)?,
            confirm_rate_per_second: add(r, &CONFIRM_RATE_PER_SECOND)?,
            artifact_upload_total: add(r, &ARTIFACT_UPLOAD_TOTAL)?,
            artifact_upload_failures: add(r, &ARTIFACT_UPLOAD_FAILURES)?,
            artifact_retrieval_total: add(r, &ARTIFACT_RETRIEVAL_TOTAL)?,
            artifact_retrieval_failures: add(r, &ARTIFACT_RETRIEVAL_FAILURES)?,
            artifact_pulls_waiting: add(r, &ARTIFACT_PULLS_WAITING)?,
            object_store_usage_bytes: add(r, &OBJECT_STORE_USAGE_BYTES)?,
            node_up: add(r, &NODE_UP)?,
            certificate_expiry_seconds: add(r, &CERTIFICATE_EXPIRY_SECONDS)?,
            crl_expiry_seconds: add(r, &CRL_EXPIRY_SECONDS)?,
            tls_handshake_errors: add(r, &TLS_HANDSHAKE_ERRORS)?,
            tls_connections_closed: add(r, &TLS_CONNECTIONS_CLOSED)?,
            rpc_latency: add(r, &RPC_LATENCY)?,
            gate_state: add(r, &GATE_STATE)?,
            gate_transitions: add(r, &GATE_TRANSITIONS)?,
            forward_buffer_fill_percent: add(r, &FORWARD_BUFFER_FILL_PERCENT)?,
            dropped_facts: add(r, &DROPPED_FACTS)?,
            expired_facts: add(r, &EXPIRED_FACTS)?,
            duplicate_facts: add(r, &DUPLICATE_FACTS)?,
            cert_reloads: add(r, &CERT_RELOADS)?,
            cert_reload_failing: add(r, &CERT_RELOAD_FAILING)?,
            config_reload_failing: add(r, &CONFIG_RELOAD_FAILING)?,
            draining: add(r, &DRAINING)?,
            info: add(r, &INFO)?,
            process_start_time_seconds: add(r, &PROCESS_START_TIME_SECONDS)?,
            confirmed_facts: add(r, &CONFIRMED_FACTS)?,
            peer_backlog_facts: add(r, &PEER_BACKLOG_FACTS)?,
            peer_connections: add(r, &PEER_CONNECTIONS)?,
            link_failures: add(r, &LINK_FAILURES)?,
            rejected_facts: add(r, &REJECTED_FACTS)?,
            relay_refused: add(r, &RELAY_REFUSED)?,
            relayed_facts: add(r, &RELAYED_FACTS)?,
            relay_held: add(r, &RELAY_HELD)?,
            delivery_latency: add(r, &DELIVERY_LATENCY)?,
            rpc_requests: add(r, &RPC_REQUESTS)?,
            retention_seconds: add(r, &RETENTION_SECONDS)?,
            storage_errors: add(r, &STORAGE_ERRORS)?,
            object_store_blob_bytes: add(r, &OBJECT_STORE_BLOB_BYTES)?,
            object_store_capacity_bytes: add(r, &OBJECT_STORE_CAPACITY_BYTES)?,
            artifacts_expired: add(r, &ARTIFACTS_EXPIRED)?,
            ha_role: add(r, &HA_ROLE)?,
            ha_promotions: add(r, &HA_PROMOTIONS)?,
            ha_demotions: add(r, &HA_DEMOTIONS)?,
            ha_lease_renewals: add(r, &HA_LEASE_RENEWALS)?,
            engine_wal_applied: add(r, &ENGINE_WAL_APPLIED)?,
            engine_wal_lag: add(r, &ENGINE_WAL_LAG)?,
            engine_divergence: add(r, &ENGINE_DIVERGENCE)?,
            engine_durability_verified: add(r, &ENGINE_DURABILITY_VERIFIED)?,
            engine_commit_latency: add(r, &ENGINE_COMMIT_LATENCY)?,
            registry,
        };
        metrics.info.with_label_values(&[version, zone]).set(1);
        metrics
            .process_start_time_seconds
            .set(bsfg_proto::model::now_unix_ms() as f64 / 1000.0);
        Ok(metrics)
    }

    /// The Prometheus text exposition of every metric. A labelled metric none of whose series
    /// exists yet (no relay destination on this node, no call timed, no bucket) is still listed
    /// with its `# HELP` and `# TYPE` lines, so every name of [`ALL`] can be found on every node
    /// from its start (SPEC §11: every metric exists).
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format with well-formed metrics.
        let _ = TextEncoder::new().encode(&families, &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        for spec in ALL
            .iter()
            .filter(|spec| !families.iter().any(|f| f.name() == spec.name))
        {
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n",
                name = spec.name,
                help = spec.help,
                kind = spec.kind.exposition()
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_metric_of_the_table_is_registered_under_its_own_name() {
        let metrics = Metrics::new("plant-a", "0.1.0").expect("metrics");
        let names: HashSet<&str> = ALL.iter().map(|spec| spec.name).collect();
        assert_eq!(names.len(), ALL.len(), "a name is listed twice");
        for spec in ALL {
            // A second metric of the same name is refused only if the first one is registered.
            let probe = IntGauge::new(spec.name, "probe").expect("a valid name");
            let again = metrics.registry.register(Box::new(probe));
            assert!(
                matches!(again, Err(prometheus::Error::AlreadyReg)),
                "{} is in the table but not registered: {again:?}",
                spec.name
            );
        }
        // Every metric renders at once with the type of the table, labelled ones before their
        // first series too, and each name once.
        let text = metrics.render();
        for spec in ALL {
            let header = format!("# TYPE {} {}\n", spec.name, spec.kind.exposition());
            assert_eq!(text.matches(&header).count(), 1, "{header:?} once in:\n{text}");
            let help = format!("# HELP {} ", spec.name);
            assert_eq!(text.matches(&help).count(), 1, "{help:?} once in:\n{text}");
        }
        assert!(
            !text.contains("bsfg_relayed_facts_total{"),
            "no series of a labelled metric before its first label values:\n{text}"
        );
        assert!(
            text.contains("bsfg_info{version=\"0.1.0\",zone=\"plant-a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bsfg_append_latency_seconds_bucket{le=\"0.0001\"}"),
            "{text}"
        );
        for (name, kind) in [
            ("process_resident_memory_bytes", "gauge"),
            ("process_cpu_seconds_total", "counter"),
            ("process_open_fds", "gauge"),
        ] {
            let header = format!("# TYPE {name} {kind}\n");
            assert!(text.contains(&header), "{header:?} missing:\n{text}");
        }
    }

    #[test]
    fn a_field_of_another_type_than_the_table_says_is_refused() {
        let registry = Registry::new();
        let wrong: Result<IntCounter, _> = add(&registry, &NODE_UP);
        assert!(wrong.is_err(), "a gauge registered as a counter");
        let unlabelled: Result<IntCounter, _> = add(&registry, &FETCH_REQUESTS);
        assert!(unlabelled.is_err(), "a labelled counter registered without labels");
        let right: Result<IntGauge, _> = add(&registry, &NODE_UP);
        assert!(right.is_ok());
    }
}
