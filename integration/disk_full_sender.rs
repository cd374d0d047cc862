//! Property: a full disk on the sending node drains instead of wedging (issue 16, test 1). The
//! sender's data directory is a small tmpfs; it fills with facts while its peer cannot pull.
//! Appends are then refused with a clear, retryable `RESOURCE_EXHAUSTED` naming the disk, the
//! node stays ready, and once the link is back the peer keeps pulling and confirming on one
//! connection, the sender reclaims the confirmed facts and their disk space, appends resume by
//! themselves, and every acknowledged fact arrives exactly once. An artifact the disk cannot
//! spare is refused the same way before a byte of it is written.

use crate::harness;

use std::time::Duration;

use harness::{
    disk::{free_bytes, Mount},
    observe::{events, wait_until},
    stderr,
    traffic::Traffic,
    Cluster,
};

const MIB: u64 = 1 << 20;
/// The sender's disk: room for some 80 MiB of facts once RocksDB's own needs (memtables, the
/// log's next chunk) and the reserve are kept free.
const DISK: u64 = 192 * MIB;
const RESERVE: &str = "disk_reserve_bytes = \"32MiB\"\n";
/// Facts of about 4 KiB, 64 per call: the disk fills in seconds.
const PAD: usize = 4000;
const BATCH: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sender_refuses_appends_until_its_peer_has_drained_it() {
    let mut cluster = Cluster::pair();
    let proxies = cluster.proxy_all();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n\n[log]\naudit = false\n");
    let sender = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
    sender.node_extra = RESERVE.to_owned();
    let disk = Mount::tmpfs(&sender.data_dir.clone(), DISK);
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    for proxy in proxies.values() {
        proxy.blackhole();
    }

    let mut traffic = Traffic::default();
    traffic.flood(cluster.options("enterprise"), "enterprise", "plant-a", BATCH, PAD);
    traffic.consume(cluster.options("plant-a"), "plant-a", "mes");
    wait_until(
        Duration::from_secs(120),
        "the sender refuses appends for lack of disk",
        || !traffic.errors().is_empty(),
    )
    .await;
    let refused = traffic.errors()[0].clone();
    assert!(
        refused.starts_with("enterprise: RESOURCE_EXHAUSTED") && refused.contains("file system"),
        "a clear, retryable refusal naming the disk: {refused}"
    );
    let filled = traffic.history.acked_count("enterprise");
    assert!(filled > 5_000, "the disk held {filled} facts before it was full");
    let free = free_bytes(disk.path());
    assert!(free > 0, "refused before the disk is truly full: {free} bytes free");
    wait_until(Duration::from_secs(5), "the sender logs that its disk is low", || {
        !events(&cluster, "enterprise", "disk_space_low").is_empty()
    })
    .await;
    let status = cluster.status("enterprise");
    assert_eq!(
        status["storage"]["state"], "ok",
        "a full disk is no storage fault: {status}"
    );
    assert_eq!(status["storage"]["disk"]["low"], true, "{status}");
    let (code, _) = harness::admin::http(cluster.admin("enterprise"), "GET", "/readyz", None);
    assert_eq!(code, 200, "the node stays ready: it serves its peer");

    for proxy in proxies.values() {
        proxy.heal();
    }
    let history = traffic.history.clone();
    let resumed = async move {
        wait_until(Duration::from_secs(120), "appends resume by themselves", || {
            history.acked_count("enterprise") > filled + 2 * BATCH
        })
        .await
    };
    if tokio::spawn(resumed).await.is_err() {
        panic!("appends did not resume; the sender: {}", cluster.status("enterprise"));
    }
    wait_until(Duration::from_secs(5), "the sender logs that it has room again", || {
        !events(&cluster, "enterprise", "disk_space_recovered").is_empty()
    })
    .await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(120)).await;

    let reconnects: usize = ["enterprise", "plant-a"]
        .iter()
        .map(|zone| events(&cluster, zone, "peer_connected").len())
        .sum();
    assert!(
        reconnects < 10,
        "the link was kept, not torn down: {reconnects} connections"
    );
    let failed = events(&cluster, "enterprise", "storage_failed");
    assert!(
        failed.is_empty(),
        "storage never ran out of room for its own writes: {failed:?}"
    );
    drop(cluster);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_the_disk_cannot_spare_is_refused_before_it_is_written() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[log]\naudit = false\n");
    let sender = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
    sender.node_extra = RESERVE.to_owned();
    let data_dir = sender.data_dir.clone();
    let disk = Mount::tmpfs(&data_dir, DISK);
    cluster.start("enterprise");
    wait_until(Duration::from_secs(20), "the node has measured its disk", || {
        cluster.status("enterprise")["storage"]["disk"]["total_bytes"].as_u64() > Some(0)
    })
    .await;

    // It would fit on the file system, but only by taking the room kept for RocksDB's own
    // writes (the reserve, its memtables, its log's next chunk).
    let free = free_bytes(disk.path());
    let size = free - 16 * MIB;
    let artifact = cluster.dir().join("recording.bin");
    std::fs::write(&artifact, vec![7u8; size as usize]).expect("artifact");
    let path = artifact.to_str().expect("utf-8 path");
    let put = |key: &str, file: &str| cluster.cli("enterprise", &["put-object", "--bucket", "qa", "--key", key, file]);
    let refused = put("recording.bin", path);
    assert_eq!(refused.status.code(), Some(75), "retryable: {}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("RESOURCE_EXHAUSTED") && said.contains("file system") && said.contains(&format!("{size} bytes")),
        "a clear refusal naming the disk and the artifact: {said}"
    );
    assert!(
        free_bytes(disk.path()) + 4 * MIB > free,
        "nothing of it was written: {} of {free} bytes free",
        free_bytes(disk.path())
    );

    let small = cluster.dir().join("coa.pdf");
    std::fs::write(&small, vec![1u8; MIB as usize]).expect("small artifact");
    let stored = put("coa.pdf", small.to_str().expect("utf-8 path"));
    assert!(stored.status.success(), "one that fits is stored: {}", stderr(&stored));
    drop(cluster);
    drop(disk);
}
