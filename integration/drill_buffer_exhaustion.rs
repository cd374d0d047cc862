//! Drill: store buffer exhaustion (docs/operations.md, "Store buffer exhaustion"), run as written
//! on plant-a, whose store buffer (`backpressure = "reject"`, 64 KiB) fills while its peer idmz
//! is down and confirms nothing. The look step shows what the runbook promises — the fill on the
//! status and in the metrics, the refused appends counted, `appends_rejected` in the log — and,
//! once the peer is back and has confirmed, `appends_accepted`. Producers retry the refusals with
//! the same ids: every acknowledged fact arrives exactly once.

use crate::harness;

use std::time::Duration;

use harness::{
    drill::{Drill, Estate},
    observe::{events, metric, wait_until},
    traffic::Traffic,
    Cluster,
};

const STORE: &str = "\n[store]\ncapacity_bytes = \"64KiB\"\nbackpressure = \"reject\"\n";
const FILL: &str = "bsfg_store_buffer_fill_percent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_buffer_as_the_runbook_shows_it() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    cluster
        .net
        .nodes
        .get_mut("plant-a")
        .expect("plant-a")
        .extra
        .push_str(STORE);
    let estate = Estate::new(cluster);
    estate.start_linked().await;
    estate.shell("idmz", "systemctl stop bsfg");
    let mut traffic = Traffic::default();
    traffic.produce(
        estate.cluster.options("plant-a"),
        "plant-a",
        "idmz",
        Duration::from_millis(5),
    );
    let drill = Drill::load("buffer-exhaustion");

    // A refusal is answered before it is counted, and logged by the logger thread after the
    // switch: the step reads all three.
    wait_until(
        Duration::from_secs(60),
        "plant-a refuses appends, counts and logs it",
        || {
            let failures = "bsfg_append_failures_total{reason=\"RESOURCE_EXHAUSTED\"}";
            traffic.errors().iter().any(|e| e.contains("appends are refused"))
                && metric(&estate.cluster, "plant-a", failures) >= 1.0
                && !events(&estate.cluster, "plant-a", "appends_rejected").is_empty()
        },
    )
    .await;
    let look = estate.run(&drill, "look");
    assert!(
        look.contains("idmz"),
        "the status names the peer with the backlog: {look}"
    );
    assert!(look.contains(FILL), "the fill is exported: {look}");
    assert!(
        look.contains("bsfg_append_failures_total{reason=\"RESOURCE_EXHAUSTED\"}"),
        "the refusals are counted: {look}"
    );
    assert!(
        look.contains("\"msg\":\"appends_rejected\"") && look.contains("\"capacity_bytes\":65536"),
        "the log filter shows the refusal and the capacity: {look}"
    );

    // Step 1 of the runbook: the peer's replication is fixed (here: it was down).
    estate.shell("idmz", "systemctl start bsfg");
    estate.wait_ready("idmz").await;
    traffic.consume(estate.cluster.options("idmz"), "idmz", "mes");
    wait_until(
        Duration::from_secs(60),
        "the peer confirms, the fill falls and it is logged",
        || {
            metric(&estate.cluster, "plant-a", FILL) < 70.0
                && !events(&estate.cluster, "plant-a", "appends_accepted").is_empty()
        },
    )
    .await;
    let look = estate.run(&drill, "look");
    assert!(
        look.contains("\"msg\":\"appends_accepted\""),
        "the log filter shows appends accepted again: {look}"
    );
    estate.assert_ran_every_step(&drill);
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    drop(estate);
}
