//! Property: with two of the three engine servers down, an HA zone acknowledges nothing (the
//! active instance cannot append, cannot renew its lease, and steps down; calls end in
//! `UNAVAILABLE`); once one server is back, an instance takes the lease again and appends
//! resume. Nothing acknowledged is lost or duplicated.

mod harness;

use std::time::{Duration, Instant};

use bsfg::client::Client;
use bsfg_proto::ErrorCode;
use harness::{
    ha::{HaZone, INSTANCES, PLANT, ZONE},
    message,
    observe::wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acknowledged_without_a_quorum_and_appends_resume_with_one() {
    let mut ha = HaZone::started("lease_ttl = \"2s\"\ncommit_timeout = \"4s\"").await;
    let mut traffic = ha.traffic(Duration::from_millis(20));
    let history = traffic.history.clone();
    wait_until(Duration::from_secs(30), "facts flow both ways", || {
        history.delivered_count(ZONE) > 50 && history.delivered_count(PLANT) > 50
    })
    .await;

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
