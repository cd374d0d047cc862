//! Drill: emergency certificate rotation (docs/operations.md), a node's certificate expired.
//! plant-a runs with a certificate that expires during the test; once the link must handshake
//! again, idmz refuses it (`tls_handshake_failed`, `expired`) and the gates go `autonomous` while
//! producers keep appending. The runbook's diagnosis shows the expiry; its steps 1–4 of the
//! planned rotation install a new certificate without a restart; the link comes back and every
//! acknowledged fact arrives exactly once. (Revocation comes with the CRL of the host issue.)

mod harness;

use std::time::{Duration, SystemTime};

use bsfg::pki::{self, CertKind};
use harness::{
    admin::http,
    drill::{Drill, Estate, TOKEN},
    observe::{events, wait_until},
    Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_certificate_is_replaced_as_the_runbook_says() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let now = SystemTime::now();
    let expires = now + Duration::from_secs(12);
    let hour = Duration::from_secs(3600);
    pki::issue(&cluster.net.pki, "plant-a", CertKind::Node, now - hour, expires).expect("short certificate");
    let estate = Estate::new(cluster);
    estate.start_all().await;
    let linked = estate
        .cluster
        .wait_gate("idmz", "plant-a", "normal", Duration::from_secs(10))
        .await;
    assert!(linked.is_some(), "the pair links before the certificate expires");
    let mut traffic = estate.traffic_both_ways();

    // The certificate expires; live connections keep going until the link handshakes again.
    // Certificates are valid through the last second of their `not_after`.
    let expired = expires + Duration::from_secs(2);
    wait_until(Duration::from_secs(20), "the certificate expired", || {
        SystemTime::now() > expired
    })
    .await;
    let admin = estate.cluster.admin("idmz");
    for action in ["close", "open"] {
        let (code, body) = http(admin, "POST", &format!("/v1/admin/gates/plant-a/{action}"), Some(TOKEN));
        assert_eq!(code, 200, "{body}");
    }
    wait_until(Duration::from_secs(20), "idmz refuses the expired certificate", || {
        events(&estate.cluster, "idmz", "tls_handshake_failed")
            .iter()
            .any(|l| l["kind"] == "expired")
    })
    .await;

    let drill = Drill::load("emergency-rotation");
    let diagnose = estate.run(&drill, "diagnose");
    assert!(diagnose.contains("expired"), "{diagnose}");
    assert!(
        diagnose.contains("bsfg_tls_handshake_errors_total{reason=\"expired\"}"),
        "{diagnose}"
    );
    let confirm = estate.run(&drill, "confirm");
    assert!(confirm.contains("\"seconds_left\": 0"), "plant-a's own view: {confirm}");
    for step in ["request", "sign", "check", "install"] {
        estate.run(&drill, step);
    }
    let recovered = estate.run(&drill, "recovered");
    assert!(recovered.contains("plant-a"), "{recovered}");
    estate.assert_ran_every_step(&drill);
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}
