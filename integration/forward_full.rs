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

/// The pair, plant-a's forward buffer small, [`FACTS`] appended for it: returned once plant-a
/// has paused its pulls, with the producer and the ids acknowledged.
async fn paused_pair() -> (Cluster, bsfg::client::Client, Vec<String>) {
    let mut cluster = Cluster::pair();
    cluster.net.nodes.get_mut("plant-a").expect("plant-a").extra = PLANT.to_owned();
    cluster.start_all();
    let producer = cluster.client("enterprise").await;
    let acked = append_many(&producer, "enterprise", "plant-a", "fact", FACTS, PAD).await;
    wait_until(Duration::from_secs(30), "plant-a pauses its pulls", || {
        !events(&cluster, "plant-a", "pulls_paused").is_empty()
    })
    .await;
    (cluster, producer, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_forward_buffer_pauses_pulls_until_its_consumer_confirms() {
    let (cluster, _producer, acked) = paused_pair().await;
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

/// A peer that stops fetching (its forward buffer full, here) tells its sender nothing by pages:
/// the sender's gate toward it follows the facts waiting for it, counted, and goes to
/// `reconciliation` once they pass `batch_limit`, back to `normal` once the peer has them. Before,
/// it stayed `normal` over any backlog, since the last page the peer took had left nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_gate_shows_a_backlog_that_a_paused_peer_does_not_fetch() {
    let mut cluster = Cluster::pair();
    let plant = "\n[forward]\ncapacity_bytes = \"64KiB\"\n\n[replication]\nbatch_limit = 100\n";
    cluster.net.nodes.get_mut("plant-a").expect("plant-a").extra = plant.to_owned();
    let enterprise = "\n[replication]\nbatch_limit = 10\n";
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").extra = enterprise.to_owned();
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    let producer = cluster.client("enterprise").await;
    // One call, one page: plant-a takes all of it, and its buffer is past the high watermark.
    let first: Vec<_> = (0..60)
        .map(|i| harness::padded_message("enterprise", "plant-a", &format!("first-{i}"), PAD))
        .collect();
    let outcomes = producer.append_batch(first).await.expect("append");
    assert!(outcomes.iter().all(Result::is_ok));
    wait_until(Duration::from_secs(30), "plant-a pauses its pulls", || {
        !events(&cluster, "plant-a", "pulls_paused").is_empty()
    })
    .await;
    let backlog = |c: &Cluster| c.status("enterprise")["peers"]["plant-a"]["backlog"].as_u64();
    wait_until(Duration::from_secs(10), "plant-a took every fact sent so far", || {
        backlog(&cluster) == Some(0)
    })
    .await;
    assert_eq!(cluster.gate_state("enterprise", "plant-a"), "normal");

    append_many(&producer, "enterprise", "plant-a", "waiting", 50, PAD).await;
    let shown = cluster
        .wait_gate("enterprise", "plant-a", "reconciliation", Duration::from_secs(10))
        .await;
    assert!(
        shown.is_some(),
        "50 facts wait past batch_limit 10; backlog {:?}",
        backlog(&cluster)
    );

    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", 110, Duration::from_secs(60)).await;
    assert_eq!(delivered.len(), 110, "every fact, once");
    let caught_up = cluster
        .wait_gate("enterprise", "plant-a", "normal", Duration::from_secs(20))
        .await;
    assert!(caught_up.is_some(), "the gate follows the backlog back down");
}

/// A node whose pulls wait for room gets no page, so no page tells its gate the link is up: after
/// the sender restarted, the receiver showed its gate `autonomous` ("link is down", alert
/// `BsfgGateAutonomous`) over a live link until its consumer made room. An open link with pulls
/// held back is up (the sender's gate shows the backlog, which only it can count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_holding_its_pulls_back_shows_its_link_up() {
    let (mut cluster, producer, acked) = paused_pair().await;
    drop(producer);
    assert_eq!(cluster.terminate("enterprise").code(), Some(0));
    let down = cluster
        .wait_gate("plant-a", "enterprise", "autonomous", Duration::from_secs(20))
        .await;
    assert!(down.is_some(), "the sender's stop takes the link down");
    cluster.start("enterprise");
    let up = cluster
        .wait_gate("plant-a", "enterprise", "normal", Duration::from_secs(20))
        .await;
    assert!(
        up.is_some(),
        "the link is back, pulls still held: {:?}",
        cluster.gate_transitions("plant-a", "enterprise")
    );
    let last = cluster
        .gate_transitions("plant-a", "enterprise")
        .pop()
        .expect("a transition");
    assert!(last.2.contains("pulls paused"), "{last:?}");

    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", FACTS, Duration::from_secs(60)).await;
    assert_eq!(harness::ids(&delivered), acked, "every fact, once, in order");
    let caught_up = cluster
        .wait_gate("plant-a", "enterprise", "normal", Duration::from_secs(20))
        .await;
    assert!(caught_up.is_some(), "normal once the backlog is through");
}
