//! One QUIC connection per peer pair carries both directions (SPEC §4), whatever ends the
//! sessions on it: `bsfg_peer_connections{peer}` shows 1 on both nodes of a link that is up, and
//! never more while the pulls of both sides fail again and again (artifacts neither sender can
//! serve). A session that fails while its connection stays up leaves the connection to the next
//! session. Dialling a new one instead left the old one open (both nodes' RPC servers serve it,
//! its keep-alives keep it alive) when the other side's link, failing too, did not move over and
//! close it: one more connection per retry. Closing it instead would end the other side's
//! session on it as a lost link.

use crate::harness;

use std::time::Duration;

use harness::{
    admin::http,
    append_with_artifact, message,
    observe::{events, metric, wait_until},
    Cluster,
};

/// Failed pulls to sit through: without the reuse, as many connections pile up.
const FAILURES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_keeps_failing_holds_one_connection() {
    let mut cluster = Cluster::pair();
    // Only enterprise dials: every connection of the pair is one that enterprise's link made.
    cluster.net.set_dial("plant-a", "enterprise", false).expect("plant-a");
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    let connections =
        |zone: &str, peer: &str| metric(&cluster, zone, &format!("bsfg_peer_connections{{peer=\"{peer}\"}}"));
    wait_until(Duration::from_secs(10), "one connection, counted on both nodes", || {
        connections("enterprise", "plant-a") == 1.0 && connections("plant-a", "enterprise") == 1.0
    })
    .await;

    // Each zone holds a fact for the other whose artifact it loses before the other pulls it, so
    // the sessions of both links fail on every connection: no link moves over to the newer one
    // (closing the older) while the other dials.
    let gate = |action: &str| {
        http(
            cluster.admin("enterprise"),
            "POST",
            &format!("/v1/admin/gates/plant-a/{action}"),
            None,
        )
    };
    assert_eq!(gate("close").0, 200, "neither side pulls yet");
    let mut producers = Vec::new();
    for (zone, peer) in [("plant-a", "enterprise"), ("enterprise", "plant-a")] {
        let producer = cluster.client(zone).await;
        let fact = message(zone, peer, "batch-42");
        let (key, content) = (format!("{zone}.pdf"), format!("%PDF-1.7 batch 42 at {zone}"));
        let artifact = ("batch-records", key.as_str(), "application/pdf");
        append_with_artifact(&producer, fact, artifact, content.as_bytes()).await;
        let blobs = cluster.net.node(zone).expect("zone").data_dir.join("objects/sha256");
        std::fs::remove_dir_all(&blobs).expect("lose the artifact's blob");
        producers.push(producer);
    }
    assert_eq!(gate("open").0, 200);

    // Every session runs on the one connection; every connection left open beside it would
    // count on both nodes until the end.
    let mut most = (0.0_f64, 0.0_f64);
    let mut sample = || {
        most.0 = most.0.max(connections("enterprise", "plant-a"));
        most.1 = most.1.max(connections("plant-a", "enterprise"));
    };
    wait_until(
        Duration::from_secs(60),
        "enterprise's pulls fail again and again",
        || {
            sample();
            events(&cluster, "enterprise", "artifact_retrieval_failed").len() >= FAILURES
        },
    )
    .await;
    sample();
    assert!(
        most.0 <= 1.0 && most.1 <= 1.0,
        "connections at most, on enterprise and on plant-a: {most:?}"
    );
    // Only the operator's gate switch above closed a connection.
    for zone in ["enterprise", "plant-a"] {
        let lost: Vec<_> = events(&cluster, zone, "peer_disconnected")
            .into_iter()
            .filter(|e| e["kind"] == "closed" && !e["reason"].as_str().unwrap_or_default().contains("by operator"))
            .collect();
        assert!(lost.is_empty(), "{zone} lost its connection: {lost:?}");
    }
    for producer in producers {
        producer.close().await;
    }
}
