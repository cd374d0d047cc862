//! Drill: storage failing (docs/operations.md, "Storage failing"), run as written on plant-a
//! while traffic flows both ways with idmz. plant-a's data directory turns read-only under the
//! running node (a bind mount remounted read-only, as an I/O error remounts a file system): the
//! look step shows what the runbook promises — `storage failing` with the engine's error on the
//! status, `storage_failed` in the log, the read-only mount, the commit errors counted. The cause
//! fixed (writable again), the runbook's last resort, a restart, brings the node back ready, and
//! nothing acknowledged is lost or duplicated.

use crate::harness;

use std::time::Duration;

use harness::{
    disk::Mount,
    drill::{Drill, Estate},
    observe::{events, wait_until},
    padded_message, Cluster,
};

/// A write buffer is 16 MiB: more than that in new facts makes RocksDB open a new log, which the
/// read-only directory refuses.
const BIG: usize = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_storage_as_the_runbook_shows_it() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n\n[log]\naudit = false\n");
    let estate = Estate::new(cluster);
    estate.start_linked().await;
    let mut traffic = estate.traffic_both_ways();
    let drill = Drill::load("storage-failing");

    let mount = Mount::bind(&estate.host("plant-a").join("var/lib/bsfg"));
    mount.read_only(true);
    let producer = estate.cluster.client("plant-a").await;
    let mut failed = false;
    for i in 0..400 {
        let message = padded_message("plant-a", "idmz", &format!("big-{i}"), BIG);
        match producer.append(message).await {
            Ok(ack) => traffic
                .history
                .acked_to("plant-a", "idmz", &format!("big-{i}"), ack.offset),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "appends fail once RocksDB cannot open its next log");
    // The log line is written by the logger thread, possibly after the node turned unready.
    wait_until(Duration::from_secs(10), "plant-a turns unready and logs why", || {
        estate.cluster.readyz("plant-a") != 200 && !events(&estate.cluster, "plant-a", "storage_failed").is_empty()
    })
    .await;

    let look = estate.run(&drill, "look");
    assert!(look.contains("storage      failing"), "the status says so: {look}");
    assert!(
        look.contains("\"msg\":\"storage_failed\"") && look.contains("Read-only file system"),
        "the log filter shows the failure and the engine's error: {look}"
    );
    assert!(
        look.contains(" ro,") || look.contains(" ro "),
        "findmnt shows the read-only mount: {look}"
    );
    assert!(
        look.contains("bsfg_storage_errors_total{operation=\"commit\"}"),
        "the commit errors are counted: {look}"
    );
    estate.assert_ran_every_step(&drill);

    // Fixed: writable again. RocksDB stays stopped after such an error until it is reopened:
    // the runbook's restart.
    mount.read_only(false);
    estate.shell("plant-a", "systemctl restart bsfg");
    estate.wait_ready("plant-a").await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(120)).await;
    drop(estate);
    drop(mount);
}
