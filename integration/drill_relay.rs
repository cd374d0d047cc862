//! Drill: facts relayed through the DMZ (docs/operations.md), run as written on the reference
//! estate: the relay flows and routes in `bsfg status`, a fact traced on the origin, the DMZ and
//! its destination, the end-to-end latency it was delivered with, a flow the DMZ does not allow
//! found in its log and metrics, and a stalled flow located on its leg (the plant-a leg cut:
//! the DMZ's relay row shows what waits for plant-a, the origin's route is clear).

use crate::harness;

use std::time::Duration;

use bsfg::devnet::estate::{routes, Legs, ENTERPRISE, IDMZ, PLANT_A, PLANT_B};
use harness::{
    drill::{Drill, Estate},
    estate::wait_linked,
    message,
    observe::{events, wait_until},
    receive, Cluster,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_flow_is_followed_and_its_refusals_and_stalls_found_as_the_runbook_says() {
    let mut cluster = Cluster::estate();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    cluster
        .net
        .add_toml(PLANT_A, &routes(&[PLANT_B]))
        .expect("plant-a routes plant-b");
    let legs = Legs::start(&mut cluster.net).expect("a proxy per leg");
    let estate = Estate::new(cluster);
    estate.start_all().await;
    wait_linked(&estate.cluster, WAIT).await;
    let enterprise = estate.cluster.client(ENTERPRISE).await;
    enterprise
        .append(message(ENTERPRISE, PLANT_A, "wo-4711"))
        .await
        .expect("append");
    let plant_a = estate.cluster.client(PLANT_A).await;
    assert_eq!(harness::ids(&receive(&plant_a, "mes", 1, WAIT).await), ["wo-4711"]);
    plant_a
        .append(message(PLANT_A, PLANT_B, "sideways"))
        .await
        .expect("append");
    wait_until(WAIT, "the DMZ refuses plant-a → plant-b", || {
        !events(&estate.cluster, IDMZ, "relay_refused").is_empty()
    })
    .await;
    let drill = Drill::load("relay");

    let flows = estate.run(&drill, "flows");
    for shown in [
        "RELAY FROM",
        "\"zone\":\"plant-a\",\"next_hop\":\"plant-a\",\"relayed\":1",
    ] {
        assert!(flows.contains(shown), "{shown} in:\n{flows}");
    }
    let routes = estate.run(&drill, "routes");
    assert!(
        routes.contains("\"via\":\"idmz\",\"zones\":[\"plant-a\",\"plant-b\"]"),
        "{routes}"
    );
    let origin = estate.run(&drill, "trace-origin");
    assert!(
        origin.contains("\"found\":\"stored\"") && origin.contains("\"next_hop\":\"idmz\""),
        "{origin}"
    );
    let dmz = estate.run(&drill, "trace-dmz");
    assert!(
        dmz.contains("\"next_hop\":\"plant-a\"") && dmz.contains("\"hops\""),
        "{dmz}"
    );
    let destination = estate.run(&drill, "trace-destination");
    assert!(destination.contains("\"found\":\"received\""), "{destination}");
    assert!(
        destination.contains("bsfg_delivery_latency_seconds_count{from_zone=\"enterprise\"} 1"),
        "{destination}"
    );
    let refusals = estate.run(&drill, "refusals");
    for shown in [
        "\"message_id\":\"sideways\"",
        "not_allowed",
        "bsfg_relay_refused_total{reason=\"not_allowed\"} 1",
    ] {
        assert!(refusals.contains(shown), "{shown} in:\n{refusals}");
    }

    legs.leg(PLANT_A).blackhole();
    let cut = estate.cluster.wait_gate(IDMZ, PLANT_A, "autonomous", WAIT).await;
    assert!(cut.is_some(), "the DMZ notices the cut plant-a leg");
    let mut last = 0;
    for i in 0..5 {
        let id = format!("wo-48{i}");
        let appended = enterprise
            .append(message(ENTERPRISE, PLANT_A, &id))
            .await
            .expect("append");
        last = appended.offset;
    }
    // The DMZ confirms to the origin after it stores, and the origin's status is a snapshot
    // refreshed each second: wait for both ends of the first leg, the last fact confirmed.
    wait_until(WAIT, "the facts wait at the DMZ, taken from the origin", || {
        let origin = estate.cluster.status(ENTERPRISE);
        estate.cluster.status(IDMZ)["peers"][PLANT_A]["backlog"] == 5
            && origin["peers"][IDMZ]["frontier"].as_u64() >= Some(last)
            && origin["routes"][0]["backlog"] == 0
    })
    .await;
    let origin = estate.run(&drill, "stalled-origin");
    assert!(
        origin.contains("\"via\":\"idmz\",\"backlog\":0"),
        "the first leg is clear:\n{origin}"
    );
    let dmz = estate.run(&drill, "stalled-dmz");
    assert!(
        dmz.contains("\"zone\":\"plant-a\",\"next_hop\":\"plant-a\",\"backlog\":5"),
        "{dmz}"
    );
    legs.leg(PLANT_A).heal();
    let arrived = receive(&plant_a, "mes", 5, Duration::from_secs(60)).await;
    assert_eq!(arrived.len(), 5, "the stalled flow resumes after the heal");
    estate.assert_ran_every_step(&drill);
}
