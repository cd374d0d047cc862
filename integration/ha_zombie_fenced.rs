//! Property: an active instance paused (SIGSTOP) past its lease while appends are in flight can
//! never write again. The standby promotes and commits; once resumed (SIGCONT) the old instance
//! is fenced or finds its lease lost, demotes (`ha_demoted`), answers `UNAVAILABLE` naming the
//! active instance, is not ready, and converges to the same place in the zone's log. Nothing
//! acknowledged is lost or duplicated.

use crate::harness;

use std::time::Duration;

use bsfg::client::Client;
use bsfg_proto::ErrorCode;
use harness::{
    ha::{flowing, HaZone, PLANT, ZONE},
    message,
    observe::{event_fields, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_active_instance_is_fenced_and_converges() {
    let ha = HaZone::started("lease_ttl = \"2s\"").await;
    let old = ha.wait_active(None, Duration::from_secs(5)).await;
    let mut traffic = ha.traffic(Duration::from_millis(10));
    let history = traffic.history.clone();
    flowing(&history).await;

    ha.cluster.signal(&old, "STOP");
    let new = ha.wait_active(Some(&old), Duration::from_secs(12)).await;
    let acked = history.acked_count(ZONE);
    wait_until(Duration::from_secs(20), "the new active instance commits", || {
        history.acked_count(ZONE) > acked + 20
    })
    .await;
    ha.cluster.signal(&old, "CONT");

    wait_until(Duration::from_secs(20), "the old instance demotes", || {
        !event_fields(&ha.cluster, &old, "ha_demoted", "reason").is_empty()
    })
    .await;
    let reasons = event_fields(&ha.cluster, &old, "ha_demoted", "reason");
    assert!(
        reasons.iter().all(|r| r == "fenced" || r == "lease_lost"),
        "{reasons:?}"
    );
    assert!(!ha.is_ready(&old), "the old instance is not ready");
    let mut direct = ha.zone_client();
    direct.node = ha.cluster.net.node(&old).expect("old").rpc.to_string();
    let client = Client::connect(&direct).await.expect("connect to the old instance");
    let refused = client
        .append(message(ZONE, PLANT, "to-the-zombie"))
        .await
        .expect_err("a standby refuses");
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    assert!(
        refused.to_string().contains(&new),
        "names the active instance: {refused}"
    );

    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(20), "the old instance's replica converges", || {
        let (a, b) = (ha.ha_status(&old), ha.ha_status(&new));
        a["wal_applied"] == b["wal_applied"] && a["role"] == "standby" && b["role"] == "active"
    })
    .await;
}
