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
    // Active now, it takes no snapshot, and does not try to once a second either.
    let refused = events(&ha.cluster, standby, "snapshot_failed");
    assert!(refused.is_empty(), "{refused:?}");
    drop(ha);
    drop(disk);
}

/// An instance that becomes active takes no snapshot: one handed the zone (a step-down) right
/// after it followed more of the log than `snapshot_every`, without the time to take one, asked
/// for it every second once active, was refused as the active instance, and logged
/// `snapshot_failed` each time for as long as it led.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_handed_the_zone_mid_way_to_a_snapshot_tries_none_while_active() {
    let ha = HaZone::started("lease_ttl = \"2s\"\nsnapshot_every = \"256KiB\"").await;
    let active = ha.wait_active(None, Duration::from_secs(5)).await;
    let standby = HaZone::other(&active);
    let producer = bsfg::client::Client::connect(&ha.zone_client()).await.expect("client");
    // One call of 500 KB: the standby follows past `snapshot_every` at once, just before the
    // step-down (its look for a due snapshot comes once a second).
    let messages = (0..500)
        .map(|i| harness::padded_message(ZONE, PLANT, &format!("before-{i}"), 1_000))
        .collect();
    let outcomes = producer.append_batch(messages).await.expect("append");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let stepped = ha.cluster.admin_cli(&active, &["admin", "step-down"]);
    assert!(stepped.status.success(), "{}", harness::stderr(&stepped));
    producer.close().await;
    let new = ha.wait_active(Some(&active), Duration::from_secs(10)).await;
    assert_eq!(new, standby);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = events(&ha.cluster, standby, "snapshot_failed");
    assert!(refused.is_empty(), "{refused:?}");
}

/// The artifact sweep runs on the active instance only: a standby changes its artifact index
/// only as the zone's log says. Before, every standby tried to delete expired artifacts through
/// the log, was refused as a standby, and logged `artifact_sweep_failed` at ERROR every sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_active_instance_sweeps_artifacts() {
    let mut ha = HaZone::new(bsfg::devnet::nats::NatsOptions::default(), "lease_ttl = \"10s\"").await;
    ha.cluster.configure_all("\n[objects]\nretention = \"1s\"\n");
    ha.cluster.start(PLANT);
    for instance in harness::ha::INSTANCES {
        ha.cluster.start(instance);
    }
    let active = ha.wait_active(None, Duration::from_secs(30)).await;
    let standby = HaZone::other(&active);
    let producer = bsfg::client::Client::connect(&ha.zone_client()).await.expect("client");
    let request = bsfg_proto::PutObjectRequest {
        bucket: "qa".into(),
        key: "unreferenced.bin".into(),
        size: 4,
        media_type: None,
    };
    let mut body = std::io::Cursor::new(b"data".to_vec());
    producer.put_object(request, &mut body, |_| {}).await.expect("put");
    producer.close().await;
    // The active instance paused (well within its lease): the artifact is past its retention
    // on the standby's replica, and nothing sweeps it from the log meanwhile.
    ha.cluster.signal(&active, "STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    ha.cluster.signal(&active, "CONT");
    wait_until(
        Duration::from_secs(20),
        "the active instance swept the artifact",
        || !events(&ha.cluster, &active, "artifact_expired").is_empty(),
    )
    .await;
    let failed = events(&ha.cluster, standby, "artifact_sweep_failed");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(events(&ha.cluster, standby, "artifact_expired").is_empty());
}
