//! Property: a full forward buffer stops pulling from its peer instead of losing data: while no
//! consumer has confirmed, the receiving node pauses its pulls at the high watermark
//! (`pulls_paused`), the sender's backlog waits in its store buffer and ages, and once a consumer
//! reads and confirms, pulls resume and every fact arrives exactly once, in order (SPEC §5;
//! issue 5, test 5).

use crate::harness;

use std::time::Duration;

use harness::{
    append_many,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

/// Small pages keep what is in flight when pulls pause small next to 64 KiB.
const PLANT: &str = "\n[forward]\ncapacity_bytes = \"64KiB\"\n\n[replication]\nbatch_limit = 10\n";
const PAD: usize = 1000;
/// More than three times what the forward buffer holds.
const FACTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_forward_buffer_pauses_pulls_until_its_consumer_confirms() {
    let mut cluster = Cluster::pair();
    cluster.net.nodes.get_mut("plant-a").expect("plant-a").extra = PLANT.to_owned();
    cluster.start_all();
    let producer = cluster.client("enterprise").await;
    let acked = append_many(&producer, "enterprise", "plant-a", "fact", FACTS, PAD).await;
    wait_until(Duration::from_secs(30), "plant-a pauses its pulls", || {
        !events(&cluster, "plant-a", "pulls_paused").is_empty()
    })
    .await;
    let fill = metric(&cluster, "plant-a", "bsfg_forward_buffer_fill_percent");
    assert!(fill >= 80.0, "paused at the high watermark: {fill}");
    let lag = "bsfg_replication_lag_seconds{peer=\"plant-a\"}";
    wait_until(
        Duration::from_secs(20),
        "the sender's backlog ages while pulls are paused",
        || metric(&cluster, "enterprise", lag) >= 2.0,
    )
    .await;
    let frontier = metric(&cluster, "enterprise", "bsfg_frontier_offset{peer=\"plant-a\"}");
    assert!(
        frontier < FACTS as f64,
        "the backlog stays with the sender: frontier {frontier}"
    );
    let fill = metric(&cluster, "plant-a", "bsfg_forward_buffer_fill_percent");
    assert!(fill < 150.0, "the overshoot is bounded by the pages in flight: {fill}");

    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", FACTS, Duration::from_secs(60)).await;
    let ids = harness::ids(&delivered);
    assert_eq!(ids, acked, "every fact, once, in order");
    assert!(!events(&cluster, "plant-a", "pulls_resumed").is_empty());
}
