//! Property: SIGKILL of the engine server that leads the zone's write-ahead log, under traffic
//! both ways, and its restart, lose nothing: appends stall through the engine's election (the
//! commit retries the same record within `commit_timeout`, or an instance steps down and one
//! takes over) and resume; every fact acknowledged in either direction is delivered exactly once,
//! in order, and no replica sees a divergence.

use crate::harness;

use std::time::Duration;

use harness::{
    ha::{flowing, HaZone, INSTANCES, ZONE},
    observe::{events, wait_until},
};

const WAL: &str = "bsfg-wal-enterprise";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_logs_leading_server_loses_nothing() {
    let mut ha = HaZone::started("").await;
    let mut traffic = ha.traffic(Duration::from_millis(20));
    let history = traffic.history.clone();
    flowing(&history).await;

    let leader = ha
        .engine
        .nats
        .wait_stream_leader(WAL, Duration::from_secs(10))
        .await
        .expect("the log has a leader");
    ha.engine.nats.kill(leader).expect("kill the log's leader");
    let acked = history.acked_count(ZONE);
    wait_until(
        Duration::from_secs(40),
        "appends resume without the killed server",
        || history.acked_count(ZONE) > acked + 50,
    )
    .await;

    ha.engine.nats.restart(leader).await.expect("restart it");
    let acked = history.acked_count(ZONE);
    wait_until(Duration::from_secs(40), "appends go on after it rejoined", || {
        history.acked_count(ZONE) > acked + 50
    })
    .await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    for instance in INSTANCES {
        assert!(events(&ha.cluster, instance, "wal_divergence").is_empty(), "{instance}");
    }
}
