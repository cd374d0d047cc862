//! Property: a full disk on the receiving node stops its pulls instead of losing facts (issue 16,
//! test 2). The receiver's data directory is a small tmpfs that another file fills: its forward
//! buffer stops pulling (pressure travels back), the sender keeps the backlog in its store buffer,
//! and once the space is given back delivery resumes with every acknowledged fact exactly once.

mod harness;

use std::time::Duration;

use harness::{
    append_many,
    disk::{Filler, Mount},
    observe::{events, metric, wait_until},
    receive, Cluster,
};

const MIB: u64 = 1 << 20;
const DISK: u64 = 192 * MIB;
const RESERVE: &str = "disk_reserve_bytes = \"32MiB\"\n";
const FACTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_receiver_stops_pulling_and_the_sender_keeps_its_backlog() {
    let mut cluster = Cluster::pair();
    let receiver = cluster.net.nodes.get_mut("plant-a").expect("plant-a");
    receiver.node_extra = RESERVE.to_owned();
    let disk = Mount::tmpfs(&receiver.data_dir.clone(), DISK);
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;

    // Below the reserve plus RocksDB's own needs: a disk that is full for the node.
    let filler = Filler::leaving(disk.path(), 16 * MIB);
    wait_until(Duration::from_secs(10), "the receiver notices its disk is low", || {
        !events(&cluster, "plant-a", "disk_space_low").is_empty()
    })
    .await;
    let producer = cluster.client("enterprise").await;
    let acked = append_many(&producer, "enterprise", "plant-a", "fact", FACTS, 200).await;
    let frontier = "bsfg_frontier_offset{peer=\"plant-a\"}";
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        metric(&cluster, "enterprise", frontier),
        0.0,
        "nothing was taken from the sender"
    );
    let status = cluster.status("enterprise");
    assert_eq!(
        status["peers"]["plant-a"]["backlog"], FACTS,
        "the sender keeps every fact: {status}"
    );
    assert_eq!(
        cluster.status("plant-a")["forward"]["facts"],
        0,
        "the receiver took nothing in"
    );
    assert_eq!(
        metric(&cluster, "plant-a", "bsfg_storage_errors_total{operation=\"commit\"}"),
        0.0
    );
    let failures = events(&cluster, "plant-a", "peer_disconnected");
    assert!(failures.is_empty(), "the link waits, it does not fail: {failures:?}");

    filler.remove();
    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", FACTS, Duration::from_secs(60)).await;
    assert_eq!(harness::ids(&delivered), acked, "every fact, once, in order");
    assert!(!events(&cluster, "plant-a", "disk_space_recovered").is_empty());
    drop(cluster);
    drop(disk);
}
