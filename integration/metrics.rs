//! Metrics (SPEC §11) scraped from a running pair over the admin HTTP API: every metric exists
//! with its type, and the values move with what the nodes do. Every line the nodes log meanwhile
//! is JSON with `timestamp`, `level`, `zone` and `msg` (SPEC §12).

use crate::harness;

use std::time::Duration;

use harness::{
    admin::{http, sample},
    message,
    observe::scrape,
    Cluster,
};

/// Every metric of SPEC §11 with its type.
const SPEC_METRICS: [(&str, &str); 43] = [
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
    ("bsfg_confirmed_facts_total", "counter"),
    ("bsfg_peer_backlog_facts", "gauge"),
    ("bsfg_link_failures_total", "counter"),
    ("bsfg_storage_errors_total", "counter"),
    ("bsfg_rejected_facts_total", "counter"),
    ("bsfg_relay_refused_total", "counter"),
    ("bsfg_relayed_facts_total", "counter"),
    ("bsfg_delivery_latency_seconds", "histogram"),
    ("bsfg_rpc_requests_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
];

/// Every metric of SPEC §11 is listed with its type, whether or not a series of it exists yet.
fn assert_every_metric_listed(text: &str) {
    for (name, kind) in SPEC_METRICS {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} ({kind}) missing:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exist_with_their_types_and_follow_the_node() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let proxies = cluster.proxy_all();
    cluster.start_all();
    let admin = cluster.admin("enterprise");
    assert_eq!(http(admin, "GET", "/healthz", None).0, 200);
    assert_eq!(http(admin, "GET", "/readyz", None).0, 200);

    let text = scrape(&cluster, "enterprise");
    // From the start, before any call, relay or artifact has made a series of them.
    assert_every_metric_listed(&text);
    assert_eq!(sample(&text, "bsfg_node_up"), Some(1.0));
    assert_eq!(
        sample(&text, "bsfg_info{version=\"0.1.0\",zone=\"enterprise\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "bsfg_append_requests_total"), Some(0.0));
    let expiry = sample(&text, "bsfg_certificate_expiry_seconds").expect("expiry");
    assert!(
        expiry > 29.0 * 86_400.0 && expiry <= 30.0 * 86_400.0,
        "dev certificates last 30 days: {expiry}"
    );

    let client = cluster.client("enterprise").await;
    for i in 0..10 {
        client
            .append(message("enterprise", "plant-a", &format!("m-{i}")))
            .await
            .expect("append");
    }
    client
        .append(message("enterprise", "plant-a", "m-0"))
        .await
        .expect("duplicate");
    let bad = client.append(message("enterprise", "nowhere", "bad")).await;
    let refused = bad.expect_err("unknown to_zone is refused").to_string();
    assert!(refused.starts_with("no route to zone nowhere:"), "{refused}");
    client.close().await;
    // An append's answer goes out before its call is counted; the failure is counted last.
    let failures = "bsfg_append_failures_total{reason=\"INVALID_ARGUMENT\"}";
    wait_for(&cluster, "enterprise", failures, |v| v == 1.0).await;
    let text = scrape(&cluster, "enterprise");
    assert_eq!(sample(&text, "bsfg_append_requests_total"), Some(12.0), "{text}");
    assert_eq!(sample(&text, "bsfg_append_latency_seconds_count"), Some(11.0), "{text}");
    assert_eq!(
        sample(&text, "bsfg_append_failures_total{reason=\"INVALID_ARGUMENT\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "bsfg_duplicate_facts_total{buffer=\"store\"}"), Some(1.0));

    let gate = |state: &str| format!("bsfg_gate_state{{peer=\"plant-a\",state=\"{state}\"}}");
    assert!(cluster
        .wait_gate("enterprise", "plant-a", "normal", Duration::from_secs(20))
        .await
        .is_some());
    let text = scrape(&cluster, "enterprise");
    assert_eq!(sample(&text, &gate("normal")), Some(1.0), "{text}");
    assert_eq!(sample(&text, &gate("autonomous")), Some(0.0), "{text}");
    assert!(sample(&text, "bsfg_fetch_requests_total{role=\"peer\"}").is_some_and(|v| v > 0.0));

    // Delivered facts wait for plant-a's consumer; confirming them lowers its backlog.
    let consumer = cluster.client("plant-a").await;
    let received = harness::receive(&consumer, "peek", 10, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 10, "the facts reached plant-a");
    let backlog = "bsfg_consumer_backlog_size{consumer=\"mes\"}";
    consumer.confirm("mes", received[4].offset).await.expect("confirm");
    assert_eq!(wait_for(&cluster, "plant-a", backlog, |v| v == 5.0).await, Some(5.0));
    consumer.confirm("mes", received[9].offset).await.expect("confirm");
    assert_eq!(wait_for(&cluster, "plant-a", backlog, |v| v == 0.0).await, Some(0.0));
    consumer.close().await;
    let text = scrape(&cluster, "plant-a");
    assert_every_metric_listed(&text);

    for proxy in proxies.values() {
        proxy.blackhole();
    }
    let down = cluster
        .wait_gate("enterprise", "plant-a", "autonomous", Duration::from_secs(10))
        .await;
    assert!(down.is_some(), "the partition is detected");
    let text = scrape(&cluster, "enterprise");
    assert_eq!(sample(&text, &gate("autonomous")), Some(1.0), "{text}");
    assert_eq!(sample(&text, &gate("normal")), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "bsfg_gate_transitions_total{peer=\"plant-a\",to=\"autonomous\"}"),
        Some(1.0),
        "{text}"
    );
    // A fact appended during the partition ages: the replication lag rises.
    let client = cluster.client("enterprise").await;
    client
        .append(message("enterprise", "plant-a", "during"))
        .await
        .expect("append");
    client.close().await;
    let lag = "bsfg_replication_lag_seconds{peer=\"plant-a\"}";
    let risen = wait_for(&cluster, "enterprise", lag, |v| v >= 2.0).await;
    assert!(
        risen.is_some_and(|v| v >= 2.0),
        "replication lag rises during the partition: {risen:?}"
    );
    // Everything the nodes logged meanwhile is JSON with the common fields (SPEC §12).
    for zone in ["enterprise", "plant-a"] {
        assert!(cluster.log_lines(zone).len() > 10, "{zone} logged");
    }
}

/// Scrapes `zone` until `series` satisfies `ok` (20 s at most); the last value seen.
async fn wait_for(cluster: &Cluster, zone: &str, series: &str, ok: impl Fn(f64) -> bool) -> Option<f64> {
    let mut last = None;
    for _ in 0..100 {
        last = sample(&scrape(cluster, zone), series);
        if last.is_some_and(&ok) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}
