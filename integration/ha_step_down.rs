//! Property: `bsfg admin step-down` on the active instance hands the zone over to the standby
//! under paced load without a single failed producer call: clients that list both instances
//! move on after the old one's refusals and lost connections, and the facts whose answers were
//! lost are recognised as duplicates. Nothing is lost or duplicated; a standby refuses to step
//! down.

mod harness;

use std::time::Duration;

use harness::{
    ha::{HaZone, PLANT, ZONE},
    observe::{event_fields, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepping_down_under_load_fails_no_producer_call() {
    let ha = HaZone::started("lease_ttl = \"2s\"").await;
    let old = ha.wait_active(None, Duration::from_secs(5)).await;
    let standby = HaZone::other(&old);
    let mut traffic = ha.traffic(Duration::from_millis(10));
    let history = traffic.history.clone();
    wait_until(Duration::from_secs(30), "facts flow both ways", || {
        history.delivered_count(ZONE) > 50 && history.delivered_count(PLANT) > 50
    })
    .await;

    let refused = ha.cluster.admin_cli(standby, &["admin", "step-down"]);
    assert_eq!(refused.status.code(), Some(1), "a standby cannot step down");
    let stepped = ha.cluster.admin_cli(&old, &["admin", "step-down"]);
    assert_eq!(stepped.status.code(), Some(0), "{}", harness::stderr(&stepped));
    let new = ha.wait_active(Some(&old), Duration::from_secs(10)).await;
    assert_eq!(new, standby);
    assert_eq!(event_fields(&ha.cluster, &old, "ha_demoted", "reason"), ["step_down"]);

    let acked = history.acked_count(ZONE);
    wait_until(
        Duration::from_secs(20),
        "appends go on through the new active instance",
        || history.acked_count(ZONE) > acked + 100,
    )
    .await;
    traffic.stop_producing().await;
    assert_eq!(traffic.errors(), Vec::<String>::new(), "no producer call failed");
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}
