//! Property (SPEC §4a): in the reference estate, producers in enterprise, plant-a and plant-b
//! appending to each other through idmz, continuously, get every acknowledged fact delivered
//! exactly once at its final zone, in origin order per `from_zone`, and nowhere else (a consumer
//! reads the DMZ's own forward buffer too). The DMZ counts each relayed fact once, by
//! destination, and audits each relayed page; the destinations observe the end-to-end latency.

mod harness;

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
}
