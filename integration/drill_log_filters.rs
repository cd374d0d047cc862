//! Drill: the runbook's diagnostic filters (docs/operations.md: the useful log filters, admin
//! actions, replication, gate, TLS, lost facts, append failures, node down), run as written
//! against a node that refused an append, had its gate closed by an operator, and whose journal
//! holds a plain-text start-up refusal among its JSON lines: every pipeline runs to its end and
//! shows what it promises.

use crate::harness;

use std::{io::Write, time::Duration};

use harness::{
    admin::http,
    drill::{Drill, Estate, TOKEN},
    message, Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbooks_filters_run_against_real_logs() {
    let cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    let estate = Estate::new(cluster);
    // A refused start left its plain-text line in the journal, as systemd keeps stderr.
    let journal = estate.cluster.dir().join("plant-a.log");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .expect("journal");
    writeln!(
        file,
        "error: INVALID_ARGUMENT: store.retention: \"7x\" is not a duration"
    )
    .expect("write");
    estate.start_all().await;
    let linked = estate
        .cluster
        .wait_gate("plant-a", "idmz", "normal", Duration::from_secs(20))
        .await;
    assert!(linked.is_some());
    let client = estate.cluster.client("plant-a").await;
    client.append(message("plant-a", "idmz", "ok-1")).await.expect("append");
    assert!(client.append(message("plant-a", "nowhere", "bad-1")).await.is_err());
    client.close().await;
    let admin = estate.cluster.admin("plant-a");
    for action in ["close", "open"] {
        assert_eq!(
            http(admin, "POST", &format!("/v1/admin/gates/idmz/{action}"), Some(TOKEN)).0,
            200
        );
    }
    let relinked = estate
        .cluster
        .wait_gate("plant-a", "idmz", "normal", Duration::from_secs(20))
        .await;
    assert!(relinked.is_some());
    let drill = Drill::load("log-filters");

    let useful = estate.run(&drill, "useful");
    assert!(
        useful.contains("\"new\":\"normal\"") && useful.contains("tester INVALID_ARGUMENT"),
        "{useful}"
    );
    let admin = estate.run(&drill, "admin");
    assert!(
        admin.contains("\"operation\":\"gate_close\"") && admin.contains("\"caller\":\"admin-token\""),
        "{admin}"
    );
    let replication = estate.run(&drill, "replication");
    assert!(
        replication.contains("\"state\": \"normal\"") && replication.contains("peer_connected"),
        "{replication}"
    );
    let autonomous = estate.run(&drill, "autonomous");
    assert!(autonomous.contains("closed by operator"), "{autonomous}");
    estate.run(&drill, "tls");
    let check = estate.run(&drill, "tls-check");
    assert!(
        check.contains("plant-a.pem: OK") && check.contains("key matches"),
        "{check}"
    );
    estate.run(&drill, "lost");
    let appends = estate.run(&drill, "appends");
    assert!(
        appends.contains("tester INVALID_ARGUMENT") && appends.contains("nowhere"),
        "{appends}"
    );
    let down = estate.run(&drill, "node-down");
    assert!(
        down.contains("active (running)") && down.contains("ok") && down.contains("200"),
        "{down}"
    );
    assert!(
        down.contains("store.retention"),
        "the start-up refusal is shown, not a jq error: {down}"
    );
    estate.assert_ran_every_step(&drill);
}
