//! Property (SPEC §4a): in the reference estate, producers in enterprise, plant-a and plant-b
//! appending to each other through idmz, continuously, get every acknowledged fact delivered
//! exactly once at its final zone, in origin order per `from_zone`, and nowhere else (a consumer
//! reads the DMZ's own forward buffer too). The DMZ counts each relayed fact once, by
//! destination, and audits each relayed page; the destinations observe the end-to-end latency.

use crate::harness;

use std::time::Duration;

use bsfg::devnet::estate::{ENTERPRISE, IDMZ, PLANTS, PLANT_A};
use harness::{
    admin,
    estate::{self, FLOWS},
    observe::{events, metric},
    Cluster,
};

const PACE: Duration = Duration::from_millis(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fact_crosses_the_dmz_exactly_once_to_its_final_zone() {
    let mut cluster = Cluster::estate();
    cluster.start_all();
    estate::wait_linked(&cluster, Duration::from_secs(30)).await;
    let mut traffic = estate::traffic(&cluster, PACE);
    tokio::time::sleep(Duration::from_secs(8)).await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;

    let history = &traffic.history;
    for (from, _) in FLOWS {
        assert!(
            history.acked_count(from) > 100,
            "{from} produced: {}",
            history.acked_count(from)
        );
    }
    let relayed = |to: &str| metric(&cluster, IDMZ, &format!("bsfg_relayed_facts_total{{to_zone=\"{to}\"}}"));
    let toward_plants: f64 = PLANTS.iter().map(|plant| relayed(plant)).sum();
    assert_eq!(
        toward_plants as usize,
        history.acked_count(ENTERPRISE),
        "each fact relayed once"
    );
    let from_plants: usize = PLANTS.iter().map(|plant| history.acked_count(plant)).sum();
    assert_eq!(relayed(ENTERPRISE) as usize, from_plants);
    for reason in ["not_allowed", "loop", "hop_limit"] {
        let refused = metric(
            &cluster,
            IDMZ,
            &format!("bsfg_relay_refused_total{{reason=\"{reason}\"}}"),
        );
        assert_eq!(refused, 0.0, "{reason}");
    }
    let audited = events(&cluster, IDMZ, "facts_relayed");
    assert!(!audited.is_empty(), "relayed pages are audited");
    assert!(audited
        .iter()
        .all(|line| line["first_message_id"].is_string() && line["peer"].is_string()));

    let latency = metric(
        &cluster,
        PLANT_A,
        "bsfg_delivery_latency_seconds_count{from_zone=\"enterprise\"}",
    );
    assert!(
        latency > 100.0,
        "plant-a observed the end-to-end latency of each fact: {latency}"
    );
    let status = cluster.status(IDMZ);
    assert_eq!(
        status["forward"]["facts"], 0,
        "nothing was delivered to the DMZ itself: {status}"
    );

    // `/v1/status` shows the routes of an end zone and the relay flows of the DMZ.
    let routes = &cluster.status(ENTERPRISE)["routes"];
    assert_eq!(routes[0]["via"], IDMZ, "{routes}");
    assert_eq!(routes[0]["zones"], serde_json::json!(PLANTS), "{routes}");
    let flows = &status["relay"];
    assert_eq!(flows[0]["from"], serde_json::json!([ENTERPRISE]), "{flows}");
    let hops = flows[0]["to"].as_array().expect("destinations");
    let relayed_down: u64 = hops.iter().map(|hop| hop["relayed"].as_u64().unwrap_or(0)).sum();
    assert_eq!(relayed_down as usize, history.acked_count(ENTERPRISE), "{flows}");
    assert!(hops.iter().all(|hop| hop["next_hop"] == hop["zone"]), "{flows}");

    // A relayed fact traced on its way: stored at the DMZ for its next hop, received at its zone.
    let path = "/v1/trace/enterprise/enterprise-to-plant-a-0";
    let at_dmz = admin::json(&admin::http(cluster.admin(IDMZ), "GET", path, None).1);
    assert_eq!(at_dmz["found"], "stored", "{at_dmz}");
    assert_eq!(at_dmz["stored"]["next_hop"], PLANT_A, "{at_dmz}");
    assert_eq!(at_dmz["stored"]["hops"], serde_json::json!([IDMZ]), "{at_dmz}");
    assert_eq!(at_dmz["stored"]["confirmed_by_peer"], true, "{at_dmz}");
    let at_plant = admin::json(&admin::http(cluster.admin(PLANT_A), "GET", path, None).1);
    assert_eq!(at_plant["found"], "received", "{at_plant}");
}
