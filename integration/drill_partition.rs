//! Drill: network partition (docs/operations.md), run as written while traffic flows both ways:
//! the link between plant-a and idmz goes silent (fault proxies drop everything); the runbook's
//! symptoms show the autonomous gate, the failed dials and the growing backlog; the zone is
//! isolated on purpose and reopened on both nodes; after the heal the link replays and returns to
//! `normal` with no backlog, and every acknowledged fact arrives exactly once.

use crate::harness;

use std::time::Duration;

use harness::{
    drill::{Drill, Estate},
    traffic::Traffic,
    Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_handled_as_the_runbook_says_loses_nothing() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let proxies = cluster.proxy_all();
    let estate = Estate::new(cluster);
    estate.start_all().await;
    let gate = |zone, peer, state| estate.cluster.wait_gate(zone, peer, state, Duration::from_secs(20));
    assert!(gate("plant-a", "idmz", "normal").await.is_some(), "the pair links");
    let mut traffic = Traffic::default();
    for (zone, peer) in [("plant-a", "idmz"), ("idmz", "plant-a")] {
        traffic.produce(estate.cluster.options(zone), zone, peer, Duration::from_millis(20));
        traffic.consume(estate.cluster.options(zone), zone, "mes");
    }
    for proxy in proxies.values() {
        proxy.blackhole();
    }
    assert!(
        gate("plant-a", "idmz", "autonomous").await.is_some(),
        "the partition is seen"
    );
    harness::observe::wait_until(Duration::from_secs(20), "a dial fails", || {
        !harness::observe::events(&estate.cluster, "plant-a", "peer_dial_failed").is_empty()
    })
    .await;
    let drill = Drill::load("partition");

    let symptoms = estate.run(&drill, "symptoms");
    for shown in ["link down", "unreachable", "bsfg_peer_backlog_facts{peer=\"idmz\"}"] {
        assert!(symptoms.contains(shown), "{shown} in:\n{symptoms}");
    }
    for step in ["isolate", "isolate-peer", "reopen", "reopen-peer"] {
        estate.run(&drill, step);
    }
    for proxy in proxies.values() {
        proxy.heal();
    }
    let healed = estate.run(&drill, "healed");
    assert!(healed.contains("normal"), "{healed}");
    estate.assert_ran_every_step(&drill);
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}
