//! Metrics mean what they say (SPEC §11), scraped from a running pair:
//! - a consumer has backlog and lag series from its first fetch, before it ever confirms;
//! - `bsfg_confirmed_facts_total` counts what it confirmed, and `bsfg_confirm_rate_per_second`
//!   still shows a burst seconds later (a one-second sample read 0 by then);
//! - `bsfg_rpc_latency_seconds` of fetches is their work, not the long-poll wait;
//! - `bsfg_rpc_requests_total` counts calls by outcome; a local `GetObject` is an artifact
//!   retrieval; the process metrics are there;
//! - `bsfg_peer_backlog_facts` counts what waits for a peer; a lost peer counts in
//!   `bsfg_link_failures_total`;
//! - a pulled fact conflicting with what is stored counts in `bsfg_rejected_facts_total`;
//! - a dialling node refused for a certificate counts a TLS handshake error itself.

use crate::harness;

use std::time::Duration;

use harness::{
    admin::{http, sample},
    append_many, message,
    observe::{scrape, wait_until},
    Cluster,
};

fn value(cluster: &Cluster, zone: &str, series: &str) -> f64 {
    sample(&scrape(cluster, zone), series).unwrap_or(f64::NAN)
}

async fn wait_value(cluster: &Cluster, zone: &str, series: &str, ok: impl Fn(f64) -> bool) {
    wait_until(Duration::from_secs(20), series, || ok(value(cluster, zone, series))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_and_call_metrics_follow_what_happens() {
    let cluster = Cluster::linked_pair().await;
    let producer = cluster.client("enterprise").await;
    append_many(&producer, "enterprise", "plant-a", "m", 10, 0).await;
    let consumer = cluster.client("plant-a").await;
    // A first fetch that confirms nothing: the consumer's series exist at once.
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let page = consumer.fetch(
            "mes",
            100,
            1000,
            seen.last().map(|f: &bsfg_proto::FetchedFact| f.offset),
        );
        seen.extend(page.await.expect("fetch").facts);
    }
    let backlog = "bsfg_consumer_backlog_size{consumer=\"mes\"}";
    wait_value(&cluster, "plant-a", backlog, |v| v == 10.0).await;
    assert_eq!(
        value(&cluster, "plant-a", "bsfg_confirmed_facts_total{consumer=\"mes\"}"),
        0.0
    );

    consumer.confirm("mes", seen[9].offset).await.expect("confirm");
    let confirmed = "bsfg_confirmed_facts_total{consumer=\"mes\"}";
    wait_value(&cluster, "plant-a", confirmed, |v| v == 10.0).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rate = value(&cluster, "plant-a", "bsfg_confirm_rate_per_second{consumer=\"mes\"}");
    assert!(
        rate > 0.0,
        "a burst confirmed 2.5 s ago still shows in the rate: {rate}"
    );

    // Fetches that wait: an idle consumer long-poll, and the peer's pulls all along.
    let idle = consumer.fetch("mes", 100, 1500, None).await.expect("fetch");
    assert!(idle.facts.is_empty());
    let text = scrape(&cluster, "plant-a");
    let consumer_sum = sample(&text, "bsfg_rpc_latency_seconds_sum{operation=\"fetch_facts\"}");
    let count = sample(&text, "bsfg_rpc_latency_seconds_count{operation=\"fetch_facts\"}");
    let (sum, count) = (consumer_sum.unwrap_or(f64::NAN), count.unwrap_or(0.0));
    assert!(
        count >= 3.0 && sum / count < 0.05,
        "fetch work, not waits: {sum} s over {count} fetches"
    );

    // Calls by outcome; a refused append has its code.
    let refused = producer.append(message("enterprise", "nowhere", "bad")).await;
    assert!(refused.is_err());
    // An append's answer goes out before its call is counted.
    let refusals = "bsfg_rpc_requests_total{code=\"INVALID_ARGUMENT\",operation=\"append_fact\"}";
    wait_value(&cluster, "enterprise", refusals, |v| v == 1.0).await;
    let text = scrape(&cluster, "enterprise");
    let calls = |code: &str| {
        sample(
            &text,
            &format!("bsfg_rpc_requests_total{{code=\"{code}\",operation=\"append_fact\"}}"),
        )
    };
    assert_eq!(
        (calls("OK"), calls("INVALID_ARGUMENT")),
        (Some(10.0), Some(1.0)),
        "{text}"
    );
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(sample(&text, process).is_some_and(|v| v >= 0.0), "{process}:\n{text}");
    }
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 1e6));

    // A local consumer's GetObject counts as a retrieval.
    let file = cluster.dir().join("report.pdf");
    std::fs::write(&file, b"%PDF-1.7 batch 42").expect("write");
    let path = file.to_string_lossy();
    let put = cluster.cli(
        "plant-a",
        &["put-object", "--bucket", "batch", "--key", "42.pdf", &path],
    );
    assert!(put.status.success(), "{}", harness::stderr(&put));
    let out = cluster.dir().join("copy.pdf").to_string_lossy().into_owned();
    let get = cluster.cli(
        "plant-a",
        &["get-object", "--bucket", "batch", "--key", "42.pdf", "-o", &out],
    );
    assert!(get.status.success(), "{}", harness::stderr(&get));
    assert_eq!(value(&cluster, "plant-a", "bsfg_artifact_retrieval_total"), 1.0);

    // What waits for a peer whose gate is closed, and a lost peer.
    let (code, body) = http(
        cluster.admin("enterprise"),
        "POST",
        "/v1/admin/gates/plant-a/close",
        None,
    );
    assert_eq!(code, 200, "{body}");
    append_many(&producer, "enterprise", "plant-a", "held", 5, 0).await;
    wait_value(
        &cluster,
        "enterprise",
        "bsfg_peer_backlog_facts{peer=\"plant-a\"}",
        |v| v == 5.0,
    )
    .await;
    producer.close().await;
    consumer.close().await;
    let mut cluster = cluster;
    cluster.kill("plant-a");
    let (code, _) = http(
        cluster.admin("enterprise"),
        "POST",
        "/v1/admin/gates/plant-a/open",
        None,
    );
    assert_eq!(code, 200);
    let failures = "bsfg_link_failures_total{peer=\"plant-a\",reason=\"unreachable\"}";
    wait_value(&cluster, "enterprise", failures, |v| v >= 1.0).await;
}

/// A peer that closes the link on purpose (it stops; its operator closes its gate toward us)
/// counts as `stopped`, not as `closed`, which `BsfgLinkFlapping` counts: before, two restarts
/// of a peer in 15 minutes, or the runbook's gate cycle, fired it. Dials to a node that is
/// stopping count as `unreachable`, not `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_the_link_on_purpose_is_not_a_flapping_link() {
    let mut cluster = Cluster::linked_pair().await;
    let series = |reason: &str| format!("bsfg_link_failures_total{{peer=\"plant-a\",reason=\"{reason}\"}}");
    assert_eq!(cluster.terminate("plant-a").code(), Some(0));
    wait_value(&cluster, "enterprise", &series("stopped"), |v| v == 1.0).await;
    cluster.start("plant-a");
    cluster.wait_linked(Duration::from_secs(30)).await;
    let (code, body) = http(
        cluster.admin("plant-a"),
        "POST",
        "/v1/admin/gates/enterprise/close",
        None,
    );
    assert_eq!(code, 200, "{body}");
    wait_value(&cluster, "enterprise", &series("stopped"), |v| v >= 2.0).await;
    for fault in ["closed", "other", "timeout"] {
        assert_eq!(value(&cluster, "enterprise", &series(fault)), 0.0, "{fault}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_fact_pulled_from_a_peer_is_counted() {
    let mut cluster = Cluster::linked_pair().await;
    let producer = cluster.client("enterprise").await;
    producer
        .append(message("enterprise", "plant-a", "batch-42"))
        .await
        .expect("append");
    producer.close().await;
    let consumer = cluster.client("plant-a").await;
    let got = harness::receive(&consumer, "mes", 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "delivered");
    // The sender loses its store and reuses the id for other content.
    cluster.kill("enterprise");
    let data = cluster.net.node("enterprise").expect("zone").data_dir.clone();
    std::fs::remove_dir_all(&data).expect("wipe enterprise's data");
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let mut other = message("enterprise", "plant-a", "batch-42");
    other.fact.object_json = "{\"other\":true}".into();
    producer.append(other).await.expect("append");
    producer.close().await;
    let conflicts = "bsfg_rejected_facts_total{reason=\"conflict\"}";
    wait_value(&cluster, "plant-a", conflicts, |v| v == 1.0).await;
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dialling_side_counts_a_refused_certificate() {
    // enterprise dials "plant-a", but what answers there is a node of another estate (another
    // CA): enterprise refuses its certificate. Before, only the accepting side counted refusals,
    // so a dialling zone never saw a wrong or expired certificate at the DMZ.
    let mut impostor = Cluster::pair();
    impostor.start("plant-a");
    let mut cluster = Cluster::pair();
    let address = impostor.net.node("plant-a").expect("plant-a").rpc;
    cluster
        .net
        .set_peer_address("enterprise", "plant-a", address)
        .expect("route");
    cluster.start("enterprise");
    let series = "bsfg_tls_handshake_errors_total{reason=\"unknown_ca\"}";
    wait_value(&cluster, "enterprise", series, |v| v >= 1.0).await;
    let tls = "bsfg_link_failures_total{peer=\"plant-a\",reason=\"tls\"}";
    assert!(value(&cluster, "enterprise", tls) >= 1.0);
    // The log is written asynchronously: its line can come after the counter moved.
    wait_until(
        Duration::from_secs(10),
        "an outbound tls_handshake_failed toward plant-a",
        || {
            harness::observe::events(&cluster, "enterprise", "tls_handshake_failed")
                .iter()
                .any(|l| l["direction"] == "outbound" && l["peer"] == "plant-a")
        },
    )
    .await;
}

/// A consumer that first fetches after retention took the oldest facts: its backlog counts the
/// facts still retained after its cursor, not offsets, and its first confirm counts what it
/// confirmed. (Counted from offset 0, a new application on a node that has run for months showed
/// millions of facts waiting and confirmed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_starts_after_retention_counts_facts_not_offsets() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let plant = cluster.net.nodes.get_mut("plant-a").expect("plant-a");
    plant.extra.push_str("\n[forward]\nretention = \"20s\"\n");
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    let producer = cluster.client("enterprise").await;
    append_many(&producer, "enterprise", "plant-a", "old", 20, 0).await;
    let frontier = "bsfg_frontier_offset{peer=\"plant-a\"}";
    wait_value(&cluster, "enterprise", frontier, |v| v == 20.0).await;
    let retained = || cluster.status("plant-a")["forward"]["facts"].as_u64();
    wait_until(Duration::from_secs(40), "the old facts expire", || {
        retained() == Some(0)
    })
    .await;

    append_many(&producer, "enterprise", "plant-a", "new", 5, 0).await;
    wait_value(&cluster, "enterprise", frontier, |v| v == 25.0).await;
    let consumer = cluster.client("plant-a").await;
    let page = consumer.fetch("late", 100, 1000, None).await.expect("fetch");
    assert_eq!(page.facts.len(), 5, "{page:?}");
    let backlog = "bsfg_consumer_backlog_size{consumer=\"late\"}";
    wait_value(&cluster, "plant-a", backlog, |v| v == 5.0).await;
    let last = page.facts.last().expect("a fact").offset;
    consumer.confirm("late", last).await.expect("confirm");
    wait_value(&cluster, "plant-a", backlog, |v| v == 0.0).await;
    let confirmed = value(&cluster, "plant-a", "bsfg_confirmed_facts_total{consumer=\"late\"}");
    assert_eq!(confirmed, 5.0, "confirmed {last}, of which 5 facts were retained");
    consumer.close().await;
}
