//! Property: with two of the three engine servers down, an HA zone acknowledges nothing (the
//! active instance cannot append, cannot renew its lease, and steps down; calls end in
//! `UNAVAILABLE`); once one server is back, an instance takes the lease again and appends
//! resume. Nothing acknowledged is lost or duplicated.
//!
//! Drill: the runbook "Engine quorum loss" of docs/operations.md, run as written on an instance's
//! host while two engine servers are down (what shows it, which servers answer) and after one is
//! back (the zone serves again, and the former active instance, now a standby that still reports
//! failing storage, is restarted).

use crate::harness;

use std::time::{Duration, Instant};

use bsfg::client::Client;
use bsfg_proto::ErrorCode;
use harness::{
    drill::Drill,
    ha::{flowing, HaEstate, HaZone, INSTANCES, PLANT, ZONE},
    message,
    observe::{scrape, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acknowledged_without_a_quorum_and_appends_resume_with_one() {
    let mut ha = HaZone::started("lease_ttl = \"2s\"\ncommit_timeout = \"4s\"").await;
    let mut traffic = ha.traffic(Duration::from_millis(20));
    let history = traffic.history.clone();
    flowing(&history).await;

    ha.engine.nats.kill(1).expect("kill n1");
    ha.engine.nats.kill(2).expect("kill n2");
    // Appends already acknowledged by a quorum before the kill may still be answered; after
    // the commit timeout nothing is in flight any more.
    wait_until(Duration::from_secs(10), "no instance is ready", || {
        ha.ready().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let acked = history.acked_count(ZONE);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        history.acked_count(ZONE),
        acked,
        "nothing is acknowledged without a quorum"
    );
    assert!(ha.ready().is_empty(), "no instance serves without a quorum");
    for instance in INSTANCES {
        let mut direct = ha.zone_client();
        direct.node = ha.cluster.net.node(instance).expect("instance").rpc.to_string();
        let client = Client::connect(&direct).await.expect("connect");
        let started = Instant::now();
        let refused = client
            .append(message(ZONE, PLANT, "no-quorum"))
            .await
            .expect_err("no quorum");
        assert_eq!(refused.code(), ErrorCode::Unavailable, "{instance}: {refused}");
        assert!(started.elapsed() < Duration::from_secs(5), "within commit_timeout");
    }

    ha.engine.nats.restart(1).await.expect("restart n1");
    ha.wait_active(None, Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(30), "appends resume", || {
        history.acked_count(ZONE) > acked + 20
    })
    .await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quorum_loss_runbook_runs_as_written() {
    let mut ha = HaEstate::new("lease_ttl = \"2s\"\ncommit_timeout = \"4s\"").await;
    let a = INSTANCES[0];
    ha.start(a).await;
    let mut traffic = ha.traffic(Duration::from_millis(20));
    let history = traffic.history.clone();
    flowing(&history).await;

    ha.engine.nats.kill(1).expect("kill n1");
    ha.engine.nats.kill(2).expect("kill n2");
    wait_until(Duration::from_secs(15), "no instance is ready", || {
        INSTANCES.iter().all(|i| !ha.is_ready(i))
    })
    .await;
    // Past the lease's TTL as every instance measures it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drill = Drill::load("ha-quorum");
    let look = ha.estate.run(&drill, "look");
    for expected in [
        "503",
        "\"role\":\"standby\"",
        "\"active_instance\":null",
        "bsfg_ha_role{role=\"active\"} 0",
        "\"msg\":\"ha_demoted\"",
    ] {
        assert!(look.contains(expected), "{expected} in {look}");
    }
    let engine = ha.estate.run(&drill, "engine");
    assert_eq!(engine.matches("unreachable").count(), 2, "{engine}");

    // The former active instance is paused while the quorum comes back, so that the other one
    // takes the lease: its commits failed while it was active, and as a standby its storage must
    // not go on counting as failing (it did until restarted: `bsfg_node_up 0`, BsfgNodeDown).
    let b = INSTANCES[1];
    let signal_a = |signal: &str| ha.estate.shell(a, &format!("kill -{signal} \"$(cat run/bsfg.pid)\""));
    signal_a("STOP");
    ha.engine.nats.restart(1).await.expect("restart n1");
    ha.wait_ready(b, Duration::from_secs(30)).await;
    signal_a("CONT");
    let recovered = ha.estate.run(&drill, "recovered");
    assert!(
        recovered.contains("\"active_instance\":\"enterprise-b\""),
        "{recovered}"
    );
    wait_until(
        Duration::from_secs(10),
        "the former active instance follows as a standby with healthy storage, no restart",
        || ha.ha_status(a)["role"] == "standby" && scrape(&ha.estate.cluster, a).lines().any(|l| l == "bsfg_node_up 1"),
    )
    .await;
    let checked = ha.estate.run(&drill, "restart-standby");
    assert!(checked.contains("\"storage\":\"ok\""), "{checked}");
    let acked = history.acked_count(ZONE);
    wait_until(Duration::from_secs(30), "appends resume", || {
        history.acked_count(ZONE) > acked + 20
    })
    .await;
    ha.estate.assert_ran_every_step(&drill);
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}

/// An instance stops within seconds of SIGTERM whatever its engine does: with every engine
/// server paused (answering nothing), the active instance's hand-over cannot reach the lease,
/// and the standby's controller waits on a log that does not answer; neither holds the stop
/// until systemd's SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stops_promptly_while_its_engine_answers_nothing() {
    let mut ha = HaZone::started("lease_ttl = \"2s\"").await;
    let active = ha.wait_active(None, Duration::from_secs(5)).await;
    let standby = HaZone::other(&active);
    for i in 0..3 {
        ha.engine.nats.stop(i).expect("pause an engine server");
    }
    for instance in [active.as_str(), standby] {
        let asked = Instant::now();
        let stopped = ha.cluster.terminate(instance);
        let took = asked.elapsed();
        eprintln!("{instance} stopped in {took:?}: {stopped}");
        assert!(took < Duration::from_secs(20), "{instance} took {took:?} to stop");
    }
    for i in 0..3 {
        ha.engine.nats.cont(i).expect("resume an engine server");
    }
}
