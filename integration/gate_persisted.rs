//! Property: an operator's closed gate survives the node: after SIGTERM and start, and after
//! SIGKILL and start, enterprise's gate toward plant-a is still closed (`/v1/status`
//! `closed: true`, `autonomous` for "closed by operator") and nothing crosses it, while producers
//! keep getting acknowledgements; once opened, every acknowledged fact arrives exactly once, in
//! order. The switch is written by the journal in a group commit, like a cursor.

use crate::harness;

use std::time::Duration;

use harness::{observe::wait_until, traffic::Traffic, Cluster, PAIR};

const PACE: Duration = Duration::from_millis(10);

fn assert_closed(cluster: &Cluster) {
    let status = cluster.status("enterprise");
    assert_eq!(status["peers"]["plant-a"]["closed"], true, "{status}");
    assert_eq!(status["peers"]["plant-a"]["state"], "autonomous", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_stays_closed_across_a_clean_stop_and_a_crash() {
    let mut cluster = Cluster::linked_pair().await;
    let closed = cluster.admin_cli("enterprise", &["admin", "gate-close", "plant-a"]);
    assert_eq!(closed.status.code(), Some(0), "{}", harness::stderr(&closed));
    assert_closed(&cluster);

    let mut traffic = Traffic::both_ways(&cluster, PACE);
    for restart in ["SIGTERM", "SIGKILL"] {
        match restart {
            "SIGTERM" => assert!(cluster.terminate("enterprise").success()),
            _ => cluster.kill("enterprise"),
        }
        cluster.start("enterprise");
        let admin = bsfg::admin::client::AdminClient::at(cluster.admin("enterprise"), None);
        wait_until(Duration::from_secs(10), "the admin API listens", || {
            admin.get("/readyz").is_ok_and(|a| a.status == 200)
        })
        .await;
        assert_closed(&cluster);
        let reason = cluster
            .gate_transitions("enterprise", "plant-a")
            .pop()
            .map(|(_, _, r)| r);
        assert!(
            reason.as_deref().is_some_and(|r| r.contains("closed by operator")),
            "after {restart}: {reason:?}"
        );
    }
    let acked = PAIR.map(|(zone, _)| traffic.history.acked_count(zone));
    wait_until(
        Duration::from_secs(20),
        "producers go on behind the closed gate",
        || {
            PAIR.iter()
                .enumerate()
                .all(|(i, (zone, _))| traffic.history.acked_count(zone) > acked[i] + 50)
        },
    )
    .await;
    assert_eq!(
        PAIR.map(|(zone, _)| traffic.history.delivered_count(zone)),
        [0, 0],
        "nothing crossed the closed gate"
    );

    let opened = cluster.admin_cli("enterprise", &["admin", "gate-open", "plant-a"]);
    assert_eq!(opened.status.code(), Some(0), "{}", harness::stderr(&opened));
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    assert_eq!(cluster.status("enterprise")["peers"]["plant-a"]["closed"], false);
}
