//! Property: a full disk on the receiving node stops its pulls instead of losing facts (issue 16,
//! test 2). The receiver's data directory is a small tmpfs that another file fills: its forward
//! buffer stops pulling (pressure travels back), the sender keeps the backlog in its store buffer,
//! and once the space is given back delivery resumes with every acknowledged fact exactly once.
//! The pull that was already waiting at the sender when the disk filled is answered with facts
//! the receiver has no room for: they are refused, and the link waits for room instead of
//! failing (no `peer_disconnected`, the gate stays `normal`).
//! An artifact larger than what the receiver's disk can spare is not pulled either: the pull waits
//! before a byte of it is written, with the link up, and its fact waits at the sender until there
//! is room.

use crate::harness;

use std::time::Duration;

use bsfg_proto::ObjectDigest;
use harness::{
    append_many,
    disk::{free_bytes, Filler, Mount},
    message,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

const MIB: u64 = 1 << 20;
const DISK: u64 = 192 * MIB;
const RESERVE: &str = "disk_reserve_bytes = \"32MiB\"\n";
const FACTS: usize = 300;

/// The pair with `extra` in both configs, plant-a's data directory on a [`DISK`] tmpfs with
/// [`RESERVE`], started and linked; the mount outlives the cluster when dropped after it.
async fn receiver_on_tmpfs(extra: &str) -> (Cluster, Mount) {
    let mut cluster = Cluster::pair();
    cluster.configure_all(extra);
    let receiver = cluster.net.nodes.get_mut("plant-a").expect("plant-a");
    receiver.node_extra = RESERVE.to_owned();
    let disk = Mount::tmpfs(&receiver.data_dir.clone(), DISK);
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    (cluster, disk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_receiver_stops_pulling_and_the_sender_keeps_its_backlog() {
    // Long polls: the receiver's pull is waiting at the sender when its disk fills, and the
    // sender answers it with the facts appended then.
    let (cluster, disk) = receiver_on_tmpfs("\n[replication]\nmax_wait_ms = 5000\n").await;

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
    let gate = &cluster.status("plant-a")["peers"]["enterprise"]["state"];
    assert_eq!(gate, "normal", "the gate stays normal");

    filler.remove();
    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", FACTS, Duration::from_secs(60)).await;
    assert_eq!(harness::ids(&delivered), acked, "every fact, once, in order");
    wait_until(
        Duration::from_secs(10),
        "the receiver logs that its disk recovered",
        || !events(&cluster, "plant-a", "disk_space_recovered").is_empty(),
    )
    .await;
    drop(cluster);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_the_receivers_disk_cannot_spare_waits_at_the_sender() {
    let (cluster, disk) = receiver_on_tmpfs("\n[log]\naudit = false\n").await;
    wait_until(Duration::from_secs(20), "the receiver has measured its disk", || {
        cluster.status("plant-a")["storage"]["disk"]["total_bytes"].as_u64() > Some(0)
    })
    .await;

    // It would fit on the receiver's file system, but only by taking the room kept for RocksDB's
    // own writes.
    let free = free_bytes(disk.path());
    let size = free - 16 * MIB;
    let content = vec![7u8; usize::try_from(size).expect("size")];
    let producer = cluster.client("enterprise").await;
    let fact = message("enterprise", "plant-a", "recording");
    let artifact = ("qa", "recording.bin", "application/octet-stream");
    harness::append_with_artifact(&producer, fact, artifact, &content).await;

    wait_until(
        Duration::from_secs(30),
        "the receiver defers the artifact's pull",
        || {
            events(&cluster, "plant-a", "artifact_pull_deferred")
                .iter()
                .any(|l| l["reason"].as_str().is_some_and(|r| r.contains("file system")))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        free_bytes(disk.path()) + 4 * MIB > free,
        "nothing of it was written: {} of {free} bytes free",
        free_bytes(disk.path())
    );
    assert_eq!(cluster.status("plant-a")["forward"]["facts"], 0, "the fact waits");
    assert_eq!(cluster.status("enterprise")["peers"]["plant-a"]["backlog"], 1);
    let failures = events(&cluster, "plant-a", "peer_disconnected");
    assert!(failures.is_empty(), "the link waits, it does not fail: {failures:?}");
    assert_eq!(metric(&cluster, "plant-a", "bsfg_artifact_retrieval_failures"), 0.0);
    assert_eq!(metric(&cluster, "plant-a", "bsfg_artifact_pulls_waiting"), 1.0);

    disk.resize(DISK + size + 64 * MIB);
    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", 1, Duration::from_secs(60)).await;
    assert_eq!(harness::ids(&delivered), ["recording"]);
    assert_eq!(metric(&cluster, "plant-a", "bsfg_artifact_pulls_waiting"), 0.0);
    let mut read = Vec::new();
    let got = consumer
        .get_object("qa", "recording.bin", &mut read, |_| {})
        .await
        .expect("the artifact is local");
    assert_eq!(got.digest, ObjectDigest::of(&content));
    assert_eq!(read.len(), content.len());
    drop(cluster);
    drop(disk);
}

/// A receiver whose free space is above its need, but by less than a page costs, had each page
/// refused for the disk budget, pulled again and refused for ever: the disk never counted as
/// low, so nothing was reclaimed, and nothing was logged. The refused page now counts in the
/// need: the disk is low (`disk_space_low`), the facts its consumer confirmed are reclaimed, and
/// delivery goes on with no operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_does_not_fit_above_the_need_makes_room_by_itself() {
    const PAD: usize = 4_000;
    let (cluster, disk) = receiver_on_tmpfs("\n[log]\naudit = false\n").await;

    // Facts the consumer has confirmed: what a reclaim can give back.
    let producer = cluster.client("enterprise").await;
    append_many(&producer, "enterprise", "plant-a", "early", 6_000, PAD).await;
    let consumer = cluster.client("plant-a").await;
    let early = receive(&consumer, "mes", 6_000, Duration::from_secs(120)).await;
    assert_eq!(early.len(), 6_000);
    let needed = || cluster.status("plant-a")["storage"]["disk"]["needed_bytes"].as_u64();
    wait_until(Duration::from_secs(10), "the receiver has measured its disk", || {
        needed().is_some_and(|n| n > 0)
    })
    .await;

    // Room above the need for less than one page of 1000 facts (4 MB, twice that on disk).
    let filler = Filler::leaving(disk.path(), needed().unwrap_or(0) + 5 * MIB);
    let acked = append_many(&producer, "enterprise", "plant-a", "late", 3_000, PAD).await;
    let late = receive(&consumer, "mes", 3_000, Duration::from_secs(90)).await;
    assert_eq!(
        harness::ids(&late),
        acked,
        "every fact, once, in order, with the filler there"
    );
    let low = events(&cluster, "plant-a", "disk_space_low");
    assert!(!low.is_empty(), "the refused page made the disk low, and said so");
    drop(filler);
    drop(cluster);
    drop(disk);
}
