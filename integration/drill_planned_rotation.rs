//! Drill: planned certificate rotation (docs/operations.md), run as written on plant-a while
//! traffic flows: inspect, request, sign with the CA, check, install and reload, verify (the
//! expiry jumps), cycle the link and see idmz's `peer_connected` carry the new `not_after` with
//! no handshake failure, then roll back. No restart; nothing acknowledged is lost or duplicated.

use crate::harness;

use std::time::Duration;

use harness::{
    admin::sample,
    drill::{Drill, Estate},
    observe::scrape,
    traffic::Traffic,
    Cluster,
};

const DAY: f64 = 86_400.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_as_the_runbook_says_is_used_at_once() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let estate = Estate::new(cluster);
    estate.start_linked().await;
    let mut traffic = Traffic::default();
    traffic.produce(
        estate.cluster.options("plant-a"),
        "plant-a",
        "idmz",
        Duration::from_millis(20),
    );
    traffic.consume(estate.cluster.options("idmz"), "idmz", "mes");
    let drill = Drill::load("planned-rotation");

    let inspect = estate.run(&drill, "inspect");
    assert!(
        inspect.contains("CN=plant-a") && inspect.contains("expires within 30 days"),
        "{inspect}"
    );
    estate.run(&drill, "request");
    estate.run(&drill, "sign");
    let check = estate.run(&drill, "check");
    assert!(
        check.contains("plant-a.pem.new: OK") && check.contains("key matches"),
        "{check}"
    );
    let install = estate.run(&drill, "install");
    let reloaded: serde_json::Value = serde_json::from_str(install.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the reload answers the new certificate: {install}: {e}"));
    let not_after = reloaded["not_after"].as_str().expect("not_after").to_owned();
    assert!(
        reloaded["seconds_left"].as_f64().is_some_and(|s| s > 390.0 * DAY),
        "{reloaded}"
    );

    let verify = estate.run(&drill, "verify");
    assert!(
        verify.contains("cert_reloaded") && verify.contains(&not_after),
        "{verify}"
    );
    let expiry = sample(&scrape(&estate.cluster, "plant-a"), "bsfg_certificate_expiry_seconds");
    assert!(expiry.is_some_and(|s| s > 390.0 * DAY), "the expiry jumped: {expiry:?}");
    estate.run(&drill, "cycle");
    let peer = estate.run(&drill, "peer");
    let mut lines = peer.lines().filter(|l| !l.trim().is_empty());
    assert_eq!(
        lines.next(),
        Some(not_after.as_str()),
        "idmz saw the new certificate: {peer}"
    );
    assert_eq!(lines.next(), None, "no tls_handshake_failed: {peer}");

    let rollback = estate.run(&drill, "rollback");
    assert!(rollback.contains("\"seconds_left\":"), "{rollback}");
    let expiry = sample(&scrape(&estate.cluster, "plant-a"), "bsfg_certificate_expiry_seconds");
    assert!(
        expiry.is_some_and(|s| s < 31.0 * DAY),
        "rolled back to the old certificate: {expiry:?}"
    );
    estate.assert_ran_every_step(&drill);
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}
