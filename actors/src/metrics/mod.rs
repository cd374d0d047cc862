//! The node's Prometheus metrics (SPEC §11): every metric with its fixed name, type and labels,
//! registered once in one registry. Components record into the shared [`Metrics`]; the admin
//! API renders [`Metrics::render`]. Label values come from configuration or from a fixed set
//! (peers, consumer names, roles, operations, reasons), never from message content.

use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::GateState;

/// The `reason` label values of `bsfg_tls_handshake_errors_total`.
pub const HANDSHAKE_FAILURES: [&str; 5] = ["unknown_ca", "expired", "bad_certificate", "timeout", "other"];

/// Every metric of SPEC §11.
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
    pub object_store_usage_bytes: IntGaugeVec,
    pub node_up: IntGauge,
    pub certificate_expiry_seconds: Gauge,
    pub tls_handshake_errors: IntCounterVec,
    pub rpc_latency: HistogramVec,
    pub gate_state: IntGaugeVec,
    pub gate_transitions: IntCounterVec,
    pub forward_buffer_fill_percent: Gauge,
    pub dropped_facts: IntCounter,
    pub expired_facts: IntCounter,
    pub duplicate_facts: IntCounterVec,
    pub cert_reloads: IntCounterVec,
    pub draining: IntGauge,
    pub info: IntGaugeVec,
    pub process_start_time_seconds: Gauge,
}

/// Builds and registers metrics, remembering the first registration error.
struct Builder {
    registry: Registry,
}

impl Builder {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> Result<M, prometheus::Error> {
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add(IntCounter::new(name, help)?)
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
        self.add(Gauge::new(name, help)?)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, prometheus::Error> {
        self.add(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.add(IntGauge::new(name, help)?)
    }

    fn int_gauges(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }
}

impl Metrics {
    /// Registers every metric; `peers` get their per-peer series at once (gates `autonomous`).
    pub fn new(zone: &str, version: &str, peers: &[String]) -> Result<Self, prometheus::Error> {
        let b = Builder {
            registry: Registry::new(),
        };
        // Appends are fsync-bound: 100 µs to ~3 s. RPCs include long-polls: 100 µs to ~52 s.
        let append_buckets = exponential_buckets(0.0001, 2.0, 16)?;
        let rpc_buckets = exponential_buckets(0.0001, 2.0, 20)?;
        let metrics = Self {
            replication_lag_seconds: b.gauges(
                "bsfg_replication_lag_seconds",
                "Age of the oldest fact addressed to the peer not yet confirmed by it; 0 when none.",
                &["peer"],
            )?,
            replication_lag_high_watermark: b.gauges(
                "bsfg_replication_lag_high_watermark",
                "Highest replication lag seen since the node started, in seconds.",
                &["peer"],
            )?,
            frontier_offset: b.int_gauges(
                "bsfg_frontier_offset",
                "Highest store offset up to which the peer confirmed every fact addressed to it.",
                &["peer"],
            )?,
            fetch_requests: b.counters("bsfg_fetch_requests_total", "FetchFacts calls served.", &["role"])?,
            confirm_requests: b.counters("bsfg_confirm_requests_total", "ConfirmReceipt calls served.", &["role"])?,
            append_requests: b.counter(
                "bsfg_append_requests_total",
                "Facts received in AppendFact and AppendFacts calls.",
            )?,
            append_failures: b.counters(
                "bsfg_append_failures_total",
                "Facts whose append failed, by error code (a call refused whole counts its facts).",
                &["reason"],
            )?,
            store_buffer_fill_percent: b.gauge(
                "bsfg_store_buffer_fill_percent",
                "Retained store buffer bytes as a percentage of its capacity.",
            )?,
            append_latency: b.add(Histogram::with_opts(
                HistogramOpts::new(
                    "bsfg_append_latency_seconds",
                    "Time from receiving an AppendFact or AppendFacts call to its durable acknowledgement.",
                )
                .buckets(append_buckets),
            )?)?,
            consumer_backlog_size: b.int_gauges(
                "bsfg_consumer_backlog_size",
                "Facts in the forward buffer after the consumer's cursor.",
                &["consumer"],
            )?,
            consumer_lag_seconds: b.gauges(
                "bsfg_consumer_lag_seconds",
                "Age of the oldest forward-buffer fact the consumer has not confirmed; 0 when none.",
                &["consumer"],
            )?,
            confirm_rate_per_second: b.gauges(
                "bsfg_confirm_rate_per_second",
                "Facts the consumer confirmed per second, over the last refresh interval.",
                &["consumer"],
            )?,
            artifact_upload_total: b
                .counter("bsfg_artifact_upload_total", "PutObject calls that stored an artifact.")?,
            artifact_upload_failures: b.counter("bsfg_artifact_upload_failures", "PutObject calls that failed.")?,
            artifact_retrieval_total: b.counter("bsfg_artifact_retrieval_total", "Artifacts retrieved from peers.")?,
            artifact_retrieval_failures: b.counter(
                "bsfg_artifact_retrieval_failures",
                "Artifact retrievals from peers that failed.",
            )?,
            object_store_usage_bytes: b.int_gauges(
                "bsfg_object_store_usage_bytes",
                "Bytes held by the local artifact store.",
                &["bucket"],
            )?,
            node_up: b.int_gauge("bsfg_node_up", "1 while the node serves.")?,
            certificate_expiry_seconds: b.gauge(
                "bsfg_certificate_expiry_seconds",
                "Seconds until the node's certificate expires.",
            )?,
            tls_handshake_errors: b.counters(
                "bsfg_tls_handshake_errors_total",
                "Refused or failed TLS handshakes, by reason.",
                &["reason"],
            )?,
            rpc_latency: b.add(HistogramVec::new(
                HistogramOpts::new("bsfg_rpc_latency_seconds", "Time to serve one RPC call, by operation.")
                    .buckets(rpc_buckets),
                &["operation"],
            )?)?,
            gate_state: b.int_gauges(
                "bsfg_gate_state",
                "1 for the peer's current gate state, 0 for the others.",
                &["peer", "state"],
            )?,
            gate_transitions: b.counters(
                "bsfg_gate_transitions_total",
                "Gate state changes, by peer and new state.",
                &["peer", "to"],
            )?,
            forward_buffer_fill_percent: b.gauge(
                "bsfg_forward_buffer_fill_percent",
                "Retained forward buffer bytes as a percentage of its capacity.",
            )?,
            dropped_facts: b.counter(
                "bsfg_dropped_facts_total",
                "Unconfirmed facts deleted by the drop_oldest policy.",
            )?,
            expired_facts: b.counter(
                "bsfg_expired_facts_total",
                "Unconfirmed facts deleted because they outlived the retention.",
            )?,
            duplicate_facts: b.counters(
                "bsfg_duplicate_facts_total",
                "Facts recognised as duplicates, by buffer (store or forward).",
                &["buffer"],
            )?,
            cert_reloads: b.counters(
                "bsfg_cert_reloads_total",
                "TLS material reloads, by result.",
                &["result"],
            )?,
            draining: b.int_gauge("bsfg_draining", "1 while the node is draining.")?,
            info: b.int_gauges(
                "bsfg_info",
                "Always 1; the node's version and zone.",
                &["version", "zone"],
            )?,
            process_start_time_seconds: b.gauge(
                "bsfg_process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
            )?,
            registry: b.registry,
        };
        metrics.info.with_label_values(&[version, zone]).set(1);
        metrics
            .process_start_time_seconds
            .set(bsfg_proto::model::now_unix_ms() as f64 / 1000.0);
        for result in ["success", "failure"] {
            metrics.cert_reloads.with_label_values(&[result]);
        }
        for peer in peers {
            metrics.set_gate(peer, GateState::Autonomous);
            for state in GateState::ALL {
                metrics.gate_transitions.with_label_values(&[peer, state.as_str()]);
            }
            metrics.replication_lag_seconds.with_label_values(&[peer]).set(0.0);
            metrics
                .replication_lag_high_watermark
                .with_label_values(&[peer])
                .set(0.0);
            metrics.frontier_offset.with_label_values(&[peer]).set(0);
        }
        for role in ["peer", "consumer"] {
            metrics.fetch_requests.with_label_values(&[role]);
            metrics.confirm_requests.with_label_values(&[role]);
        }
        // Every known reason exists at 0, so an alert on `increase()` sees the first failure.
        for code in bsfg_proto::ErrorCode::ALL {
            metrics.append_failures.with_label_values(&[code.as_str()]);
        }
        for reason in HANDSHAKE_FAILURES {
            metrics.tls_handshake_errors.with_label_values(&[reason]);
        }
        for buffer in ["store", "forward"] {
            metrics.duplicate_facts.with_label_values(&[buffer]);
        }
        Ok(metrics)
    }

    /// One-hot gate state of `peer`.
    pub fn set_gate(&self, peer: &str, state: GateState) {
        for s in GateState::ALL {
            self.gate_state
                .with_label_values(&[peer, s.as_str()])
                .set(i64::from(s == state));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format with well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_the_spec_is_exposed_with_its_type() {
        let metrics = Metrics::new("plant-a", "0.1.0", &["enterprise".to_owned()]).expect("metrics");
        metrics.append_latency.observe(0.001);
        metrics.rpc_latency.with_label_values(&["append_fact"]).observe(0.001);
        metrics.consumer_backlog_size.with_label_values(&["mes"]).set(3);
        metrics.consumer_lag_seconds.with_label_values(&["mes"]).set(1.0);
        metrics.confirm_rate_per_second.with_label_values(&["mes"]).set(1.0);
        metrics.append_failures.with_label_values(&["INVALID_ARGUMENT"]).inc();
        metrics.object_store_usage_bytes.with_label_values(&["default"]).set(0);
        metrics.tls_handshake_errors.with_label_values(&["unknown_ca"]).inc();
        metrics
            .gate_transitions
            .with_label_values(&["enterprise", "normal"])
            .inc();
        metrics.cert_reloads.with_label_values(&["success"]).inc();
        let text = metrics.render();
        let expected = [
            ("bsfg_replication_lag_seconds", "gauge"),
            ("bsfg_replication_lag_high_watermark", "gauge"),
            ("bsfg_frontier_offset", "gauge"),
            ("bsfg_fetch_requests_total", "counter"),
            ("bsfg_confirm_requests_total", "counter"),
            ("bsfg_append_requests_total", "counter"),
            ("bsfg_append_failures_total", "counter"),
            ("bsfg_store_buffer_fill_percent", "gauge"),
            ("bsfg_append_latency_seconds", "histogram"),
            ("bsfg_consumer_backlog_size", "gauge"),
            ("bsfg_consumer_lag_seconds", "gauge"),
            ("bsfg_confirm_rate_per_second", "gauge"),
            ("bsfg_artifact_upload_total", "counter"),
            ("bsfg_artifact_upload_failures", "counter"),
            ("bsfg_artifact_retrieval_total", "counter"),
            ("bsfg_artifact_retrieval_failures", "counter"),
            ("bsfg_object_store_usage_bytes", "gauge"),
            ("bsfg_node_up", "gauge"),
            ("bsfg_certificate_expiry_seconds", "gauge"),
            ("bsfg_tls_handshake_errors_total", "counter"),
            ("bsfg_rpc_latency_seconds", "histogram"),
            ("bsfg_gate_state", "gauge"),
            ("bsfg_gate_transitions_total", "counter"),
            ("bsfg_forward_buffer_fill_percent", "gauge"),
            ("bsfg_dropped_facts_total", "counter"),
            ("bsfg_expired_facts_total", "counter"),
            ("bsfg_duplicate_facts_total", "counter"),
            ("bsfg_cert_reloads_total", "counter"),
            ("bsfg_draining", "gauge"),
            ("bsfg_info", "gauge"),
            ("bsfg_process_start_time_seconds", "gauge"),
        ];
        for (name, kind) in expected {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} missing:\n{text}"
            );
        }
        assert!(
            text.contains("bsfg_gate_state{peer=\"enterprise\",state=\"autonomous\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bsfg_gate_state{peer=\"enterprise\",state=\"normal\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("bsfg_append_latency_seconds_bucket{le=\"0.0001\"}"),
            "{text}"
        );
    }
}
