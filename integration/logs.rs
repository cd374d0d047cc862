//! The node's log (SPEC §12): every line is a JSON object with `timestamp` (RFC 3339, ms),
//! `level`, `zone` and a stable `msg`. A gate transition and a rejected client say why
//! (`reason`). With `log.audit = true` every RPC call is one line naming the caller, the
//! operation, the outcome and the duration (and for appends the message): `fact_appended` for an
//! append that succeeded, `rpc_call` for any other call; with `log.audit = false` only failed
//! calls are logged, as `rpc_rejected`. A node that stops writes its last line (`exited`) whole.

use crate::harness;

use std::time::{Duration, SystemTime};

use bsfg::pki::{self, CertKind};
use bsfg_proto::ErrorCode;
use harness::{message, observe::wait_until, Cluster, CLIENT};

/// A certificate from the cluster's CA whose CN no node knows.
const STRANGER: &str = "stranger";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_json_with_stable_events_and_calls_are_audited_as_configured() {
    let mut cluster = Cluster::pair();
    let node = cluster.net.nodes.get_mut("plant-a").expect("plant-a");
    node.extra.push_str("\n[log]\naudit = false\n");
    let now = SystemTime::now();
    let week = Duration::from_secs(7 * 86_400);
    pki::issue(&cluster.net.pki, STRANGER, CertKind::Client, now - week, now + week).expect("issue");
    cluster.start_all();
    let up = cluster
        .wait_gate("enterprise", "plant-a", "normal", Duration::from_secs(20))
        .await;
    assert!(up.is_some(), "the pair links");

    for zone in ["enterprise", "plant-a"] {
        let client = cluster.client(zone).await;
        let to = if zone == "enterprise" { "plant-a" } else { "enterprise" };
        for i in 0..3 {
            let id = format!("{zone}-{i}");
            client.append(message(zone, to, &id)).await.expect("append");
        }
        let refused = client.append(message(zone, "nowhere", "bad")).await;
        assert!(refused.is_err(), "unknown to_zone");
        client.close().await;
        let stranger = cluster.cli_as(zone, STRANGER, &["fetch", "--consumer", "mes"]);
        assert_eq!(stranger.status.code(), Some(1), "{}", harness::stderr(&stranger));
        assert!(harness::stderr(&stranger).contains(ErrorCode::PermissionDenied.as_str()));
    }
    // Logs are written asynchronously: wait until both nodes logged the last call made, the
    // stranger's (audited on enterprise, a refusal on plant-a).
    let logged_stranger = |zone: &str, msg: &str| {
        cluster
            .log_lines(zone)
            .iter()
            .any(|l| l["msg"] == msg && l["caller"] == STRANGER)
    };
    wait_until(Duration::from_secs(10), "the stranger's calls are logged", || {
        logged_stranger("enterprise", "rpc_call") && logged_stranger("plant-a", "rpc_rejected")
    })
    .await;

    let enterprise = cluster.log_lines("enterprise");
    let transition = enterprise
        .iter()
        .find(|l| l["msg"] == "gate_transition" && l["new"] == "normal")
        .unwrap_or_else(|| panic!("no gate_transition to normal"));
    assert_eq!(transition["peer"], "plant-a", "{transition}");
    assert_eq!(transition["previous"], "autonomous", "{transition}");
    assert!(
        transition["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{transition}"
    );
    let rejected = enterprise
        .iter()
        .find(|l| l["msg"] == "client_rejected")
        .unwrap_or_else(|| panic!("no client_rejected"));
    assert_eq!(rejected["caller"], STRANGER, "{rejected}");
    assert!(rejected["reason"].as_str().is_some_and(|r| !r.is_empty()), "{rejected}");

    // Audited: each call once, successes and failures alike; an append that succeeded is a
    // `fact_appended` line (SPEC §12), every other call an `rpc_call` line.
    let calls: Vec<_> = enterprise
        .iter()
        .filter(|l| l["msg"] == "rpc_call" || l["msg"] == "fact_appended")
        .collect();
    let appends: Vec<_> = calls
        .iter()
        .filter(|l| l["caller"] == CLIENT && l["operation"] == "append_fact")
        .collect();
    assert_eq!(appends.len(), 4, "one line per append: {appends:?}");
    let first = appends[0];
    for (key, value) in [
        ("msg", "fact_appended"),
        ("result", "success"),
        ("message_id", "enterprise-0"),
        ("from_zone", "enterprise"),
        ("to_zone", "plant-a"),
        ("predicate", "recorded"),
        ("level", "info"),
    ] {
        assert_eq!(first[key], value, "{key}: {first}");
    }
    assert!(first["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{first}");
    let failed = appends[3];
    assert_eq!(failed["msg"], "rpc_call", "{failed}");
    assert_eq!(failed["result"], "permanent_error", "{failed}");
    assert_eq!(failed["code"], "INVALID_ARGUMENT", "{failed}");
    assert!(
        failed["error_message"].as_str().is_some_and(|m| m.contains("nowhere")),
        "{failed}"
    );
    let denied = calls
        .iter()
        .find(|l| l["caller"] == STRANGER)
        .unwrap_or_else(|| panic!("the stranger's call is audited"));
    assert_eq!(denied["result"], "permanent_error", "{denied}");
    assert_eq!(denied["code"], "PERMISSION_DENIED", "{denied}");
    let pulls = calls
        .iter()
        .filter(|l| l["peer"] == "plant-a" && l["operation"] == "fetch_facts");
    assert!(pulls.count() > 0, "the peer's pulls are audited too");

    // Not audited: failures only.
    let plant = cluster.log_lines("plant-a");
    assert!(
        plant
            .iter()
            .all(|l| l["msg"] != "rpc_call" && l["msg"] != "fact_appended"),
        "audit = false logs no successful call"
    );
    let refusals: Vec<_> = plant
        .iter()
        .filter(|l| l["msg"] == "rpc_rejected" && (l["caller"] == CLIENT || l["caller"] == STRANGER))
        .collect();
    assert_eq!(
        refusals.len(),
        2,
        "the bad append and the stranger's fetch: {refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .all(|l| l["result"] == "permanent_error" && l["code"].is_string()),
        "{refusals:?}"
    );

    // Stopped: the last line is written whole, not cut off by the exit (the next start would
    // append to the half line, and neither would parse).
    for zone in ["enterprise", "plant-a"] {
        assert!(cluster.terminate(zone).success());
        let lines = cluster.log_lines(zone);
        let last = lines.last().expect("a log");
        assert_eq!(last["msg"], "exited", "{zone}: {last}");
    }
}
