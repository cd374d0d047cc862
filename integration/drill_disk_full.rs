//! Drill: disk full (docs/operations.md, "Disk full"), run as written on plant-a, whose data
//! directory is a small tmpfs that something else fills (a file beside the node's data, as a
//! runaway log would) while traffic flows both ways with idmz. The look step shows what the
//! runbook promises — the storage line with "appends refused", `disk_space_low` in the log, the
//! peers' backlog — and, once the other tenant's file is gone, `disk_space_recovered`. The node
//! stays ready throughout, and nothing acknowledged is lost or duplicated.

use crate::harness;

use std::time::Duration;

use harness::{
    disk::{Filler, Mount},
    drill::{Drill, Estate},
    observe::{events, wait_until},
    Cluster,
};

const MIB: u64 = 1 << 20;
/// plant-a's disk, and the free space it keeps on top of what RocksDB writes by itself.
const DISK: u64 = 192 * MIB;
const RESERVE: &str = "disk_reserve_bytes = \"32MiB\"\n";
/// What the other tenant leaves free: below the reserve, above what RocksDB needs to go on.
const LEFT_FREE: u64 = 16 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_as_the_runbook_shows_it() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    cluster.net.nodes.get_mut("plant-a").expect("plant-a").node_extra = RESERVE.to_owned();
    let estate = Estate::new(cluster);
    let data = estate.host("plant-a").join("var/lib/bsfg");
    let disk = Mount::tmpfs(&data, DISK);
    estate.start_linked().await;
    let mut traffic = estate.traffic_both_ways();
    let drill = Drill::load("disk-full");

    let filler = Filler::leaving(disk.path(), LEFT_FREE);
    wait_until(
        Duration::from_secs(30),
        "plant-a refuses appends for lack of disk",
        || estate.cluster.status("plant-a")["storage"]["disk"]["low"] == true,
    )
    .await;
    // The log is written asynchronously: its line can trail the status it follows.
    wait_until(Duration::from_secs(10), "plant-a logs disk_space_low", || {
        !events(&estate.cluster, "plant-a", "disk_space_low").is_empty()
    })
    .await;
    let look = estate.run(&drill, "look");
    assert!(
        look.contains("storage      ok; disk") && look.contains("appends refused"),
        "the storage line says the disk is low and appends are refused: {look}"
    );
    assert!(
        look.contains("\"msg\":\"disk_space_low\""),
        "the log filter finds it: {look}"
    );
    assert!(look.contains("\"idmz\""), "the peers' backlog is shown: {look}");
    let (code, _) = harness::admin::http(estate.cluster.admin("plant-a"), "GET", "/readyz", None);
    assert_eq!(code, 200, "a full disk is no storage fault: the node stays ready");

    // Step 2 of the runbook: whatever filled the file system is freed there.
    filler.remove();
    wait_until(Duration::from_secs(30), "plant-a takes appends again", || {
        estate.cluster.status("plant-a")["storage"]["disk"]["low"] == false
    })
    .await;
    wait_until(Duration::from_secs(10), "plant-a logs disk_space_recovered", || {
        !events(&estate.cluster, "plant-a", "disk_space_recovered").is_empty()
    })
    .await;
    let look = estate.run(&drill, "look");
    assert!(!look.contains("appends refused"), "{look}");
    assert!(
        look.contains("\"msg\":\"disk_space_recovered\""),
        "the log filter shows the recovery: {look}"
    );
    estate.assert_ran_every_step(&drill);

    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    drop(estate);
    drop(disk);
}
