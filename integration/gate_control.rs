//! Operator isolation of one peer (SPEC §4, §10 `POST /v1/admin/gates/{peer}/close|open`): while
//! enterprise's gate toward plant-a is closed, no fact crosses in either direction and both sides
//! are `autonomous` (enterprise "closed by operator", plant-a told why), yet producers on both
//! sides keep getting acknowledgements and enterprise's backlog toward plant-a grows; once the
//! gate is opened, every acknowledged fact arrives exactly once, in order. An unknown peer is
//! NOT_FOUND.

use crate::harness;

use std::time::Duration;

use harness::{admin::json, observe::wait_until, traffic::Traffic, Cluster, PAIR};

const PACE: Duration = Duration::from_millis(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_isolates_the_peer_and_opening_it_delivers_everything_once() {
    let cluster = Cluster::linked_pair().await;
    let mut traffic = Traffic::both_ways(&cluster, PACE);
    wait_until(
        Duration::from_secs(20),
        "facts cross both ways before the close",
        || PAIR.iter().all(|(zone, _)| traffic.history.delivered_count(zone) > 50),
    )
    .await;

    let closed = cluster.admin_cli("enterprise", &["admin", "gate-close", "plant-a"]);
    assert_eq!(closed.status.code(), Some(0), "{}", harness::stderr(&closed));
    assert_eq!(
        harness::json_lines(&closed),
        [serde_json::json!({"peer": "plant-a", "closed": true})]
    );
    for (zone, peer) in PAIR {
        let down = cluster
            .wait_gate(zone, peer, "autonomous", Duration::from_secs(10))
            .await;
        assert!(down.is_some(), "{zone} goes autonomous toward {peer}");
        let reason = cluster.gate_transitions(zone, peer).pop().map(|(_, _, r)| r);
        assert!(
            reason.as_deref().is_some_and(|r| r.contains("closed by operator")),
            "{zone} says why: {reason:?}"
        );
    }
    let status = cluster.status("enterprise");
    assert_eq!(status["peers"]["plant-a"]["closed"], true, "{status}");
    assert_eq!(status["peers"]["plant-a"]["state"], "autonomous", "{status}");

    // What was in flight at the close has been read by now; from here on nothing crosses.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = PAIR.map(|(zone, _)| traffic.history.delivered_count(zone));
    let acked = PAIR.map(|(zone, _)| traffic.history.acked_count(zone));
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_until(
        Duration::from_secs(20),
        "the producers keep getting acknowledgements",
        || {
            PAIR.iter()
                .enumerate()
                .all(|(i, (zone, _))| traffic.history.acked_count(zone) > acked[i] + 100)
        },
    )
    .await;
    assert_eq!(
        PAIR.map(|(zone, _)| traffic.history.delivered_count(zone)),
        delivered,
        "no fact crosses a closed gate"
    );
    assert_eq!(
        cluster.gate_state("plant-a", "enterprise"),
        "autonomous",
        "plant-a cannot get back in"
    );
    let backlog = cluster.status("enterprise")["peers"]["plant-a"]["backlog"].as_u64();
    assert!(
        backlog.is_some_and(|b| b > 100),
        "the backlog toward plant-a grows: {backlog:?}"
    );

    let opened = cluster.admin_cli("enterprise", &["admin", "gate-open", "plant-a"]);
    assert_eq!(opened.status.code(), Some(0), "{}", harness::stderr(&opened));
    assert_eq!(
        json(String::from_utf8_lossy(&opened.stdout).trim()),
        serde_json::json!({"peer": "plant-a", "closed": false})
    );
    cluster.wait_linked(Duration::from_secs(40)).await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    assert_eq!(traffic.errors(), Vec::<String>::new(), "producers never saw an error");

    let unknown = cluster.admin_cli("enterprise", &["admin", "gate-close", "plant-z"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", harness::stderr(&unknown));
    assert!(
        harness::stderr(&unknown).starts_with("error: NOT_FOUND: "),
        "{}",
        harness::stderr(&unknown)
    );
}
