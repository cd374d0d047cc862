//! Property: the zone's log stays bounded and a lost replica can be rebuilt. A standby takes
//! snapshots of its replica into the engine's object store and the log is purged below the
//! older one kept; a standby whose `data_dir` is wiped restores the newest snapshot, follows the
//! log's tail, and can take over when the active instance is killed, losing and duplicating
//! nothing. A restore cut short (here by a disk too small for the snapshot) leaves nothing that
//! looks like a database, and the next start, with room, restores again.

use crate::harness;

use std::time::Duration;

use harness::{
    disk::Mount,
    ha::{HaZone, PLANT, ZONE},
    notify::{has, Notifications},
    observe::{events, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_standby_rebuilds_from_snapshot_and_tail_and_takes_over() {
    let mut ha = HaZone::started("lease_ttl = \"2s\"\nsnapshot_every = \"16KiB\"").await;
    let active = ha.wait_active(None, Duration::from_secs(5)).await;
    let standby = HaZone::other(&active);
    let mut traffic = ha.traffic(Duration::from_millis(10));
    let history = traffic.history.clone();
    wait_until(
        Duration::from_secs(60),
        "the standby took snapshots and the log was purged",
        || {
            let purged = events(&ha.cluster, standby, "wal_purged");
            purged.iter().any(|e| e["before"].as_u64().is_some_and(|b| b > 1))
        },
    )
    .await;

    assert!(ha.cluster.terminate(standby).success());
    let data_dir = ha.cluster.net.node(standby).expect("standby").data_dir.clone();
    std::fs::remove_dir_all(&data_dir).expect("wipe the standby's replica");

    let written = events(&ha.cluster, standby, "snapshot_written");
    let snapshot = written
        .last()
        .and_then(|e| e["bytes"].as_u64())
        .expect("a snapshot's size");
    let disk = Mount::tmpfs(&data_dir, snapshot / 2);
    let cut_short = ha.cluster.net.spawn(&harness::bin(), standby);
    assert!(
        cut_short.is_err(),
        "a snapshot of {snapshot} bytes cannot be restored into half of it"
    );
    let left: Vec<String> = std::fs::read_dir(&data_dir)
        .expect("data dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "nothing of the cut-short restore is left in the data directory: {left:?}"
    );
    disk.resize(1 << 30);
    // Started as systemd would: the restore says what it does and asks for more time.
    let notify = Notifications::bind(&ha.cluster.dir());
    let spec = ha.cluster.net.nodes.get_mut(standby).expect("standby");
    spec.env = vec![("NOTIFY_SOCKET".to_owned(), notify.path.to_string_lossy().into_owned())];
    ha.cluster.start(standby);
    wait_until(Duration::from_secs(30), "the wiped standby restored a snapshot", || {
        events(&ha.cluster, standby, "snapshot_restored").len() == 1
    })
    .await;
    let told = notify.until("READY=1", Duration::from_secs(10));
    let restored = events(&ha.cluster, standby, "snapshot_restored");
    let restoring = format!("STATUS=restoring the replica from snapshot {}", restored[0]["seq"]);
    assert!(
        told.iter()
            .any(|m| has(m, "EXTEND_TIMEOUT_USEC=120000000") && m.contains(&restoring)),
        "the restore extends the start timeout and says so ({restoring}): {told:?}"
    );
    wait_until(Duration::from_secs(30), "it follows the log's tail", || {
        let status = ha.ha_status(standby);
        status["wal_lag"].as_u64().is_some_and(|lag| lag < 20) && status["wal_applied"].as_u64() > Some(0)
    })
    .await;

    ha.cluster.kill(&active);
    let new = ha.wait_active(Some(&active), Duration::from_secs(10)).await;
    assert_eq!(new, standby);
    let acked = history.acked_count(ZONE);
    wait_until(
        Duration::from_secs(30),
        "traffic goes on through the rebuilt replica",
        || history.acked_count(ZONE) > acked + 50 && history.delivered_count(PLANT) > 0,
    )
    .await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    drop(ha);
    drop(disk);
}
