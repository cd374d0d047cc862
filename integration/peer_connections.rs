//! One QUIC connection per peer pair carries both directions (SPEC §4), whatever ends the
//! sessions on it: `bsfg_peer_connections{peer}` shows 1 on both nodes of a link that is up, and
//! never more while the pulls of both sides fail again and again (each holds a fact larger than
//! the other now reads: both lowered `limits.max_frame_bytes` after the facts were stored). A
//! session that fails while its connection stays up leaves the connection to the next session.
//! Dialling a new one instead left the old one open (both nodes' RPC servers serve it, its
//! keep-alives keep it alive) when the other side's link, failing too, did not move over and
//! close it: one more connection per retry. Closing it instead would end the other side's
//! session on it as a lost link.

use crate::harness;

use std::time::Duration;

use harness::{
    admin::http,
    message,
    observe::{events, metric, wait_until},
    Cluster,
};

/// Failed pulls to sit through: without the reuse, as many connections pile up.
const FAILURES: usize = 5;
/// Limits both nodes restart with: the facts stored before are larger than a frame now.
const LOWERED: &str = "\n[limits]\nmax_fact_bytes = \"32KiB\"\nmax_frame_bytes = \"64KiB\"\n";

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

    // Each zone stores a fact for the other that the other will not read once both lowered
    // their frame limit, so the sessions of both links fail on every connection: no link moves
    // over to the newer one (closing the older) while the other dials.
    let gate = |cluster: &Cluster, action: &str| {
        http(
            cluster.admin("enterprise"),
            "POST",
            &format!("/v1/admin/gates/plant-a/{action}"),
            None,
        )
    };
    assert_eq!(gate(&cluster, "close").0, 200, "neither side pulls yet");
    for (zone, peer) in [("plant-a", "enterprise"), ("enterprise", "plant-a")] {
        let producer = cluster.client(zone).await;
        let mut fact = message(zone, peer, "batch-42");
        fact.fact.object_json = serde_json::json!({"trace": "x".repeat(200 * 1024)}).to_string();
        producer
            .append(fact)
            .await
            .expect("a 200 KiB fact fits the limits of the moment");
        producer.close().await;
    }
    for zone in ["enterprise", "plant-a"] {
        assert!(cluster.terminate(zone).success(), "{zone} stops cleanly");
        cluster.net.nodes.get_mut(zone).expect("zone").extra.push_str(LOWERED);
    }
    cluster.net.write_configs().expect("configs");
    cluster.start_all();
    // What the restart logged is not the test's.
    let restarted = ["enterprise", "plant-a"].map(|zone| events(&cluster, zone, "peer_disconnected").len());
    assert_eq!(gate(&cluster, "open").0, 200);
    let connections =
        |zone: &str, peer: &str| metric(&cluster, zone, &format!("bsfg_peer_connections{{peer=\"{peer}\"}}"));

    // Every session runs on the one connection; every connection left open beside it would
    // count on both nodes until the end.
    let mut most = (0.0_f64, 0.0_f64);
    let mut sample = || {
        most.0 = most.0.max(connections("enterprise", "plant-a"));
        most.1 = most.1.max(connections("plant-a", "enterprise"));
    };
    let since_restart = |zone: &str| {
        let skip = if zone == "enterprise" {
            restarted[0]
        } else {
            restarted[1]
        };
        events(&cluster, zone, "peer_disconnected").split_off(skip)
    };
    let failed = |zone: &str| {
        since_restart(zone)
            .iter()
            .filter(|e| e["reason"].as_str().unwrap_or_default().contains("frame"))
            .count()
    };
    wait_until(
        Duration::from_secs(90),
        "both sides' pulls fail again and again",
        || {
            sample();
            failed("enterprise") >= FAILURES && failed("plant-a") >= 2
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
        let lost: Vec<_> = since_restart(zone)
            .into_iter()
            .filter(|e| e["kind"] == "closed" && !e["reason"].as_str().unwrap_or_default().contains("by operator"))
            .collect();
        assert!(lost.is_empty(), "{zone} lost its connection: {lost:?}");
    }
}
