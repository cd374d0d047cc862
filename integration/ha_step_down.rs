//! Property: `bsfg admin step-down` on the active instance hands the zone over to the standby
//! under paced load without a single failed producer call: clients that list both instances
//! move on after the old one's refusals and lost connections, and the facts whose answers were
//! lost are recognised as duplicates. Nothing is lost or duplicated; a standby refuses to step
//! down.
//!
//! Drill: the HA runbooks of docs/operations.md ("Commissioning an HA zone", "Failover drills",
//! "Replacing an HA host") run as written on the hosts of an HA zone under traffic both ways:
//! the commissioning checks, a kill of the active instance and its return as a standby, a
//! step-down, and the rebuild of a wiped standby from a snapshot.

use crate::harness;

use std::time::{Duration, Instant};

use harness::{
    drill::Drill,
    ha::{flowing, HaEstate, HaZone, INSTANCES, PLANT, ZONE},
    observe::{event_fields, events, metric, scrape, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepping_down_under_load_fails_no_producer_call() {
    let ha = HaZone::started("lease_ttl = \"2s\"").await;
    let old = ha.wait_active(None, Duration::from_secs(5)).await;
    let standby = HaZone::other(&old);
    let mut traffic = ha.traffic(Duration::from_millis(10));
    let history = traffic.history.clone();
    flowing(&history).await;
    // Every record appended to the zone's log is timed by the instance that wrote it: its epoch
    // record at promotion, then each group commit while appends go on.
    let commits = |instance: &str| metric(&ha.cluster, instance, "bsfg_engine_commit_latency_seconds_count");
    let timed = commits(&old);
    let acked = history.acked_count(ZONE);
    wait_until(Duration::from_secs(10), "more appends acknowledged", || {
        history.acked_count(ZONE) > acked + 20
    })
    .await;
    assert!(commits(&old) > timed, "the active instance times its group commits");
    let standby_metrics = scrape(&ha.cluster, standby);
    assert!(
        standby_metrics
            .lines()
            .any(|l| l == "bsfg_engine_commit_latency_seconds_count 0"),
        "the standby exports the histogram and wrote nothing"
    );

    let refused = ha.cluster.admin_cli(standby, &["admin", "step-down"]);
    assert_eq!(refused.status.code(), Some(1), "a standby cannot step down");
    let stepped = ha.cluster.admin_cli(&old, &["admin", "step-down"]);
    assert_eq!(stepped.status.code(), Some(0), "{}", harness::stderr(&stepped));
    let new = ha.wait_active(Some(&old), Duration::from_secs(10)).await;
    assert_eq!(new, standby);
    // Its log line comes from its logger thread, maybe after the new instance is ready.
    wait_until(
        Duration::from_secs(10),
        "the old instance logs why it stepped down",
        || event_fields(&ha.cluster, &old, "ha_demoted", "reason") == ["step_down"],
    )
    .await;
    // Its link went with its standing, and its gate says so (SPEC §4: no live link, autonomous).
    let autonomous = format!("bsfg_gate_state{{peer=\"{PLANT}\",state=\"autonomous\"}}");
    wait_until(
        Duration::from_secs(10),
        "the demoted instance's gate is autonomous",
        || metric(&ha.cluster, &old, &autonomous) == 1.0,
    )
    .await;
    // The log is written asynchronously: its line can come after the gauge moved.
    wait_until(
        Duration::from_secs(10),
        "the gate's last transition is to autonomous",
        || {
            events(&ha.cluster, &old, "gate_transition")
                .last()
                .is_some_and(|l| l["peer"] == PLANT && l["new"] == "autonomous")
        },
    )
    .await;

    let acked = history.acked_count(ZONE);
    wait_until(
        Duration::from_secs(20),
        "appends go on through the new active instance",
        || history.acked_count(ZONE) > acked + 100,
    )
    .await;
    assert!(
        commits(&new) > 1.0,
        "the new active instance times its commits, not only its epoch record"
    );
    traffic.stop_producing().await;
    assert_eq!(traffic.errors(), Vec::<String>::new(), "no producer call failed");
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}

/// An HA zone that dials nothing, as a DMZ does: its peer finds the active instance through its
/// address list, and after a step-down leaves the demoted instance, which refuses its calls and
/// closes its connection, for the new active one; replication goes on both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_a_zone_that_only_accepts_follows_the_active_instance() {
    let mut ha = HaZone::new(Default::default(), "lease_ttl = \"2s\"").await;
    for instance in INSTANCES {
        ha.cluster.net.set_dial(instance, PLANT, false).expect("peer");
    }
    ha.cluster.start(PLANT);
    for instance in INSTANCES {
        ha.cluster.start(instance);
    }
    let old = ha.wait_active(None, Duration::from_secs(30)).await;
    let mut traffic = ha.traffic(Duration::from_millis(10));
    let history = traffic.history.clone();
    flowing(&history).await;

    let stepped = ha.cluster.admin_cli(&old, &["admin", "step-down"]);
    assert_eq!(stepped.status.code(), Some(0), "{}", harness::stderr(&stepped));
    let new = ha.wait_active(Some(&old), Duration::from_secs(10)).await;
    let delivered = (history.delivered_count(ZONE), history.delivered_count(PLANT));
    wait_until(
        Duration::from_secs(30),
        &format!("facts flow both ways through {new}"),
        || history.delivered_count(ZONE) > delivered.0 + 50 && history.delivered_count(PLANT) > delivered.1 + 50,
    )
    .await;
    traffic.stop_producing().await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}

const DRILL_LEASE_TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commissioning_failover_and_replacement_runbooks_run_as_written() {
    let ha = HaEstate::new("lease_ttl = \"2s\"\nsnapshot_every = \"16KiB\"").await;
    let (a, b) = (INSTANCES[0], INSTANCES[1]);
    ha.start(a).await;
    let mut traffic = ha.traffic(Duration::from_millis(20));
    let history = traffic.history.clone();
    flowing(&history).await;
    let estate = &ha.estate;

    let commission = Drill::load("ha-commission");
    let engine = estate.run(&commission, "engine");
    assert_eq!(engine.matches("\"sync_always\":true").count(), 3, "{engine}");
    let active = estate.run(&commission, "active");
    for expected in [
        "\"role\":\"active\"",
        "bsfg_ha_role{role=\"active\"} 1",
        "bsfg_engine_durability_verified 1",
        "\"msg\":\"ha_promoted\"",
    ] {
        assert!(active.contains(expected), "{expected} in {active}");
    }
    assert!(!active.contains("engine_warning"), "{active}");
    let standby = estate.run(&commission, "standby");
    for expected in [
        "\"role\":\"standby\"",
        "\"active_instance\":\"enterprise-a\"",
        "503",
        "error: UNAVAILABLE: instance enterprise-b of zone enterprise is a standby; the active instance is enterprise-a",
        "exit 75",
    ] {
        assert!(standby.contains(expected), "{expected} in {standby}");
    }
    estate.assert_ran_every_step(&commission);

    // Kill of the active instance, then a step-down back.
    let failover = Drill::load("ha-failover");
    assert_eq!(estate.run(&failover, "who").trim(), a);
    estate.run(&failover, "kill");
    let killed = Instant::now();
    let promoted = estate.run(&failover, "promoted");
    let took = killed.elapsed();
    println!("{b} ready {took:?} after {a} was killed");
    assert!(took < DRILL_LEASE_TTL + Duration::from_secs(5), "{took:?}");
    assert!(
        promoted.contains("\"role\":\"active\"") && promoted.contains("\"instance\":\"enterprise-b\""),
        "{promoted}"
    );
    let rejoined = estate.run(&failover, "rejoin");
    assert!(
        rejoined.contains("\"role\":\"standby\"") && rejoined.contains("\"active_instance\":\"enterprise-b\""),
        "{rejoined}"
    );
    let acked = history.acked_count(ZONE);
    wait_until(Duration::from_secs(30), "producers go on through enterprise-b", || {
        history.acked_count(ZONE) > acked + 50
    })
    .await;
    let stepped = estate.run(&failover, "step-down");
    assert!(
        stepped.contains("\"stepped_down\":true") && stepped.contains("\"role\":\"standby\""),
        "{stepped}"
    );
    let handed = estate.run(&failover, "handed-over");
    assert!(
        handed.contains("\"role\":\"active\"") && handed.contains("\"instance\":\"enterprise-a\""),
        "{handed}"
    );
    wait_until(Duration::from_secs(10), "the stepped-down instance logged why", || {
        event_fields(&estate.cluster, b, "ha_demoted", "reason") == ["step_down"]
    })
    .await;
    estate.assert_ran_every_step(&failover);

    // The standby's replica wiped and rebuilt from a snapshot and the log's tail.
    let replace = Drill::load("ha-replace");
    wait_until(
        Duration::from_secs(60),
        "a snapshot was taken and the log purged",
        || {
            INSTANCES.iter().any(|i| {
                events(&estate.cluster, i, "wal_purged")
                    .iter()
                    .any(|e| e["before"].as_u64().is_some_and(|before| before > 1))
            })
        },
    )
    .await;
    let wipe = estate.run(&replace, "wipe");
    assert!(wipe.contains("\"role\":\"standby\""), "{wipe}");
    let rebuilt = estate.run(&replace, "rebuilt");
    assert!(
        rebuilt.contains("\"msg\":\"snapshot_restored\"") && rebuilt.contains("\"role\":\"standby\""),
        "{rebuilt}"
    );
    estate.assert_ran_every_step(&replace);
    let acked = history.acked_count(ZONE);
    wait_until(Duration::from_secs(30), "producers go on", || {
        history.acked_count(ZONE) > acked + 50
    })
    .await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}

/// Artifacts follow the active instance too: a client that lists the standby first is refused
/// `UNAVAILABLE` there, and its upload and download move on to the active instance (the upload
/// sent again from the start of its file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_move_on_from_a_standby_listed_first() {
    let ha = HaZone::started("lease_ttl = \"2s\"").await;
    let active = ha.wait_active(None, Duration::from_secs(5)).await;
    let standby = HaZone::other(&active);
    let mut options = ha.zone_client();
    let rpc = |instance: &str| ha.cluster.net.node(instance).expect("instance").rpc.to_string();
    options.node = format!("{},{}", rpc(standby), rpc(&active));
    let content = vec![b'a'; 300_000];
    let request = bsfg_proto::PutObjectRequest {
        bucket: "coa".into(),
        key: "batch-7.pdf".into(),
        size: content.len() as u64,
        media_type: None,
    };
    let producer = bsfg::client::Client::connect(&options)
        .await
        .expect("connect to the standby");
    let stored = producer
        .put_object(request, &mut std::io::Cursor::new(&content), |_| {})
        .await
        .expect("the upload moves on to the active instance");
    assert_eq!(stored.size, content.len() as u64);

    let consumer = bsfg::client::Client::connect(&options)
        .await
        .expect("connect to the standby");
    let mut got = Vec::new();
    consumer
        .get_object("coa", "batch-7.pdf", &mut got, |_| {})
        .await
        .expect("the download moves on to the active instance");
    assert!(got == content, "the content, whole ({} bytes)", got.len());
}
