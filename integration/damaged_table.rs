//! Property: a damaged table block is never served and never wedges the link for good (issue 16,
//! test 3). With 16 bytes changed in the middle of the sender's store-log table file, the node
//! starts, serves the facts before the damage, and when its peer's pull meets the damage it
//! counts it (`bsfg_storage_errors_total{operation="corruption"}`), logs `storage_damaged` with
//! the offsets, turns unready, and answers the peer `UNAVAILABLE` naming the damage (retried on
//! the live link). The operator stops it and runs `bsfg storage accept-loss`, which records
//! exactly those offsets; after the restart every other fact arrives exactly once, unaltered.

use crate::harness;

use std::time::Duration;

use harness::{
    admin::http,
    damage::{damage_largest, fill, offsets},
    observe::{events, events_after_restart, metric, wait_until},
    padded_message, receive, Cluster,
};

const FACTS: usize = 3000;
const BATCH: usize = 50;
/// 3 000 facts of 8 KB: more than a write buffer, so the store log reaches table files.
const PAD: usize = 8000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_table_is_reported_never_served_and_the_accepted_loss_is_exactly_it() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[log]\naudit = false\n");
    cluster.start("enterprise");
    let acked = fill(&cluster, FACTS, BATCH, PAD).await;
    let stopped = cluster
        .nodes
        .get_mut("enterprise")
        .expect("running")
        .terminate(Duration::from_secs(30));
    assert!(stopped.expect("stops").success());
    cluster.nodes.remove("enterprise");
    let data = cluster.net.node("enterprise").expect("enterprise").data_dir.clone();
    damage_largest(&data, "sst");

    cluster.start("enterprise");
    cluster.start("plant-a");
    wait_until(Duration::from_secs(60), "the sender meets the damage", || {
        !events(&cluster, "enterprise", "storage_damaged").is_empty()
    })
    .await;
    let damaged = events(&cluster, "enterprise", "storage_damaged");
    let found = offsets(damaged[0]["offsets"].as_str().unwrap_or_default());
    assert!(
        !found.is_empty() && found.len() < 10,
        "narrowed to the damaged block: {damaged:?}"
    );
    let corruption = "bsfg_storage_errors_total{operation=\"corruption\"}";
    assert_eq!(metric(&cluster, "enterprise", corruption), 1.0);
    assert_eq!(http(cluster.admin("enterprise"), "GET", "/readyz", None).0, 503);
    wait_until(Duration::from_secs(20), "the peer is told and keeps its link", || {
        events(&cluster, "plant-a", "peer_call_retried")
            .iter()
            .any(|e| e["error_message"].as_str().is_some_and(|m| m.contains("damaged")))
    })
    .await;
    let status = cluster.status("enterprise");
    assert_eq!(status["storage"]["state"], "damaged", "{status}");

    let stopped = cluster
        .nodes
        .get_mut("enterprise")
        .expect("running")
        .terminate(Duration::from_secs(30));
    assert!(stopped.expect("stops").success());
    cluster.nodes.remove("enterprise");
    let audit = cluster.accept_loss("enterprise");
    let lost = offsets(audit["store_offsets"].as_str().unwrap_or_default());
    assert_eq!(lost, found, "what was reported is what was accepted: {audit}");

    cluster.start("enterprise");
    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", FACTS - lost.len(), Duration::from_secs(120)).await;
    let kept: Vec<&String> = acked
        .iter()
        .filter(|(o, _)| !lost.contains(o))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(harness::ids(&delivered), kept, "every fact not lost, once, in order");
    for fact in &delivered {
        let id = &fact.message.envelope.message_id;
        assert_eq!(
            fact.message,
            padded_message("enterprise", "plant-a", id, PAD),
            "unaltered"
        );
    }
    assert_eq!(http(cluster.admin("enterprise"), "GET", "/readyz", None).0, 200);
    assert_eq!(
        events_after_restart(&cluster, "enterprise", "storage_loss_recorded").len(),
        1
    );
    let failures = events(&cluster, "plant-a", "peer_disconnected").len();
    assert!(failures <= 2, "only the sender's two stops end the link: {failures}");
}
