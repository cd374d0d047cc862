//! A rolling restart of one node, as docs/operations.md "Rolling upgrade with drain" runs it
//! (SPEC §10): `bsfg admin drain` answers once the client calls in flight have finished; from
//! then on client calls get UNAVAILABLE (the CLI exits 75) and `/readyz` is 503, while
//! replication goes on until the drained node holds no backlog; SIGTERM then exits 0 and the
//! node starts again, serving. Its peer produces throughout, and the history checker finds every
//! acknowledged fact of both zones delivered exactly once, in order.

use crate::harness;

use std::time::Duration;

use harness::{
    admin::{http, json},
    observe::wait_until,
    traffic::Traffic,
    Cluster,
};

const PACE: Duration = Duration::from_millis(5);

fn backlog_toward(cluster: &Cluster, zone: &str, peer: &str) -> Option<u64> {
    cluster.status(zone)["peers"][peer]["backlog"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_and_restarted_node_loses_nothing_while_its_peer_keeps_producing() {
    let mut cluster = Cluster::linked_pair().await;
    let mut traffic = Traffic::both_ways(&cluster, PACE);
    wait_until(Duration::from_secs(20), "traffic flows before the restart", || {
        traffic.history.delivered_count("enterprise") > 100
    })
    .await;

    let admin = cluster.admin("enterprise");
    let drain = cluster.admin_cli("enterprise", &["admin", "drain"]);
    assert_eq!(drain.status.code(), Some(0), "{}", harness::stderr(&drain));
    assert_eq!(
        harness::json_lines(&drain),
        [serde_json::json!({"drained": true, "in_flight": 0})]
    );
    assert_eq!(http(admin, "GET", "/readyz", None).0, 503);
    let refused = cluster.cli_append("enterprise", "plant-a");
    assert_eq!(refused.status.code(), Some(75), "{}", harness::stderr(&refused));
    assert!(harness::stderr(&refused).starts_with("error: UNAVAILABLE: "));

    // Replication goes on: plant-a drains enterprise's store buffer of what it acknowledged.
    wait_until(Duration::from_secs(30), "plant-a pulled enterprise's backlog", || {
        backlog_toward(&cluster, "enterprise", "plant-a") == Some(0)
    })
    .await;
    let node = cluster.nodes.get_mut("enterprise").expect("enterprise runs");
    let exit = node.terminate(Duration::from_secs(40)).expect("stops on SIGTERM");
    assert_eq!(exit.code(), Some(0), "SIGTERM after a drain exits 0");

    let acked = traffic.history.acked_count("plant-a");
    wait_until(
        Duration::from_secs(20),
        "the peer keeps producing while enterprise is down",
        || traffic.history.acked_count("plant-a") > acked + 100,
    )
    .await;
    cluster.start("enterprise");
    assert_eq!(http(admin, "GET", "/readyz", None).0, 200, "a restarted node serves");
    assert_eq!(json(&http(admin, "GET", "/v1/status", None).1)["draining"], false);

    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    let errors = traffic.errors();
    assert!(
        errors.iter().all(|e| e.starts_with("enterprise: ")),
        "only the restarted zone's producer was refused: {errors:?}"
    );
}
