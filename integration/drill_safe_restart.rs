//! Drill: safe restart (docs/operations.md, "Safe restart"), run as written on plant-a while
//! traffic flows both ways with idmz: look, keep the configuration, restart, check; then a bad
//! edit whose refusal the runbook's log filter shows (key path and reason, from the plain-text
//! line on stderr), restored from the kept copy; the peer's gate comes back. Nothing
//! acknowledged is lost or duplicated.

use crate::harness;

use std::time::Duration;

use harness::{
    drill::{Drill, Estate},
    Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_as_the_runbook_says_loses_nothing() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let estate = Estate::new(cluster);
    estate.start_linked().await;
    let mut traffic = estate.traffic_both_ways();
    let drill = Drill::load("safe-restart");

    let look = estate.run(&drill, "look");
    assert!(look.contains("idmz") && look.contains("normal"), "{look}");
    estate.run(&drill, "keep");
    estate.run(&drill, "restart");
    let check = estate.run(&drill, "check");
    assert!(check.contains("node_started") && check.contains("active"), "{check}");

    // An edit the node refuses.
    let config = estate.host("plant-a").join("etc/bsfg/bsfg.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[store]\nlow_watermark_percent = 85\n");
    std::fs::write(&config, text).expect("edit");
    estate.run(&drill, "restart");
    harness::observe::wait_until(Duration::from_secs(20), "the refused start ended", || {
        estate.shell("plant-a", "systemctl is-active bsfg || true").trim() == "failed"
    })
    .await;
    let refused = estate.run(&drill, "refused");
    assert!(
        refused.contains("store.low_watermark_percent: 85 must be below store.high_watermark_percent (80)"),
        "the log filter shows the refusal: {refused}"
    );
    estate.run(&drill, "restore");
    estate.run(&drill, "peers");
    estate.assert_ran_every_step(&drill);

    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}
