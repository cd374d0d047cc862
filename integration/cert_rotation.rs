//! Certificate rotation without a restart (SPEC §6, §7 `CertWatcher`): while facts flow both ways,
//! a node's certificate and key are replaced on disk (same CN, new key, new expiry) and the node
//! takes them — by noticing the files, on SIGHUP, and on `POST /v1/admin/reload` — so that new
//! handshakes of clients and of its peer see the new certificate and `/v1/status`,
//! `bsfg_certificate_expiry_seconds` and the log follow. A replacement with the wrong CN or an
//! expired certificate is refused (422 with the reason) and the old certificate keeps serving.
//! Nothing acknowledged is lost and no producer sees an error.

use crate::harness;

use std::time::{Duration, SystemTime};

use bsfg::pki::{self, CertKind};
use bsfg_actors::transport::tls::{self, TlsMaterial, DEFAULT_IDLE_TIMEOUT};
use harness::{
    admin::{http, json, sample},
    observe::{events, scrape, wait_until},
    traffic::Traffic,
    Cluster, PAIR,
};

const PACE: Duration = Duration::from_millis(5);
const DAY: Duration = Duration::from_secs(86_400);

/// Replaces `file_stem`'s certificate and key with a new pair for `cn`, valid `from..until`.
fn install(cluster: &Cluster, cn: &str, from: SystemTime, until: SystemTime, file_stem: &str) {
    pki::issue_as(&cluster.net.pki, cn, CertKind::Node, from, until, file_stem).expect("issue");
}

/// A new certificate for `zone` in its own files, valid from now for `days`.
fn rotate(cluster: &Cluster, zone: &str, days: u32) -> String {
    let now = SystemTime::now();
    install(cluster, zone, now - Duration::from_secs(60), now + DAY * days, zone);
    let pki = &cluster.net.pki;
    let material = TlsMaterial::load(
        &pki.join("ca.pem"),
        &pki.join(format!("{zone}.pem")),
        &pki.join(format!("{zone}.key")),
    )
    .expect("the new pair loads");
    humantime::format_rfc3339_seconds(material.not_after()).to_string()
}

/// The `not_after` of the certificate `zone`'s node presents to a new connection right now.
async fn presented(cluster: &Cluster, zone: &str) -> String {
    let o = cluster.options(zone);
    let client = TlsMaterial::load(&o.ca, &o.cert, &o.key).expect("client material");
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).expect("client endpoint");
    endpoint.set_default_client_config(client.quic_client_config(DEFAULT_IDLE_TIMEOUT).expect("config"));
    let addr = o.node.parse().expect("node address");
    let conn = endpoint
        .connect(addr, zone)
        .expect("connect")
        .await
        .expect("the node completes the handshake");
    let not_after = tls::peer_not_after(&conn);
    conn.close(0u32.into(), b"done");
    not_after
}

fn logged(cluster: &Cluster, zone: &str, event: &str, field: &str, value: &str) -> bool {
    events(cluster, zone, event).iter().any(|v| v[field] == value)
}

/// Waits until each zone has delivered 50 more facts (`what` names the moment), 20 s at most.
async fn flows_on(traffic: &Traffic, what: &str) {
    let before = PAIR.map(|(zone, _)| traffic.history.delivered_count(zone));
    wait_until(Duration::from_secs(20), what, || {
        PAIR.iter()
            .zip(before)
            .all(|((zone, _), n)| traffic.history.delivered_count(zone) >= n + 50)
    })
    .await
}

fn reload(cluster: &Cluster, zone: &str) -> (u16, serde_json::Value) {
    let (code, body) = http(cluster.admin(zone), "POST", "/v1/admin/reload", None);
    (code, json(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart_and_bad_ones_are_refused() {
    let cluster = Cluster::linked_pair().await;
    let mut traffic = Traffic::both_ways(&cluster, PACE);
    flows_on(&traffic, "facts cross both ways before any rotation").await;

    // 1. enterprise's files change: the node notices by itself.
    let new = rotate(&cluster, "enterprise", 60);
    wait_until(Duration::from_secs(10), "enterprise notices its new files", || {
        cluster.status("enterprise")["certificate"]["not_after"] == new.as_str()
    })
    .await;
    assert_eq!(
        presented(&cluster, "enterprise").await,
        new,
        "new clients see the new certificate"
    );
    let left = cluster.status("enterprise")["certificate"]["seconds_left"].as_u64();
    assert!(left.is_some_and(|s| s > 59 * 86_400), "{left:?}");
    let metrics = scrape(&cluster, "enterprise");
    let expiry = sample(&metrics, "bsfg_certificate_expiry_seconds");
    assert!(expiry.is_some_and(|s| s > 59.0 * 86_400.0), "{expiry:?}");
    assert!(sample(&metrics, "bsfg_cert_reloads_total{result=\"success\"}").is_some_and(|n| n >= 1.0));
    let reloaded = || logged(&cluster, "enterprise", "cert_reloaded", "trigger", "file_change");
    wait_until(Duration::from_secs(10), "enterprise logs the reload", reloaded).await;

    // The peer sees it on the link's next connection: cycle the link from enterprise's side.
    // Wait for the close to take effect, or the open could race it and the link never cycle;
    // then wait for the event itself (logs are written asynchronously).
    let out = cluster.admin_cli("enterprise", &["admin", "gate-close", "plant-a"]);
    assert_eq!(out.status.code(), Some(0), "{}", harness::stderr(&out));
    let down = cluster
        .wait_gate("plant-a", "enterprise", "autonomous", Duration::from_secs(10))
        .await;
    assert!(down.is_some(), "plant-a loses the link when enterprise closes the gate");
    let out = cluster.admin_cli("enterprise", &["admin", "gate-open", "plant-a"]);
    assert_eq!(out.status.code(), Some(0), "{}", harness::stderr(&out));
    let peer_saw = |v: &serde_json::Value| v["peer"] == "enterprise" && v["not_after"] == new.as_str();
    wait_until(
        Duration::from_secs(30),
        "plant-a connects to enterprise's new certificate",
        || events(&cluster, "plant-a", "peer_connected").iter().any(peer_saw),
    )
    .await;
    cluster.wait_linked(Duration::from_secs(30)).await;

    // 2. plant-a's files change and SIGHUP asks for a reload.
    let new = rotate(&cluster, "plant-a", 90);
    cluster.signal("plant-a", "HUP");
    wait_until(Duration::from_secs(10), "SIGHUP reloads", || {
        logged(&cluster, "plant-a", "cert_reloaded", "trigger", "sighup")
    })
    .await;
    assert_eq!(presented(&cluster, "plant-a").await, new);

    // 3. ... and the admin endpoint.
    let new = rotate(&cluster, "plant-a", 120);
    let (code, body) = reload(&cluster, "plant-a");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["subject"], "CN=plant-a", "{body}");
    assert_eq!(body["not_after"], new.as_str(), "{body}");
    assert_eq!(presented(&cluster, "plant-a").await, new);

    // 4. Bad replacements are refused; the 120-day certificate keeps serving.
    let serving = new;
    let now = SystemTime::now();
    install(&cluster, "intruder", now - DAY, now + DAY * 30, "plant-a");
    let (code, body) = reload(&cluster, "plant-a");
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"], "INVALID_ARGUMENT", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("\"intruder\"") && reason.contains("node.zone"),
        "{body}"
    );
    assert_eq!(presented(&cluster, "plant-a").await, serving);

    install(&cluster, "plant-a", now - DAY * 10, now - DAY, "plant-a");
    let refused = cluster.admin_cli("plant-a", &["admin", "reload"]);
    assert_eq!(refused.status.code(), Some(1), "{}", harness::stderr(&refused));
    let stderr = harness::stderr(&refused);
    assert!(
        stderr.starts_with("error: INVALID_ARGUMENT: ") && stderr.contains("expired"),
        "{stderr}"
    );
    assert_eq!(presented(&cluster, "plant-a").await, serving);
    assert_eq!(cluster.status("plant-a")["certificate"]["not_after"], serving.as_str());
    let failures = sample(
        &scrape(&cluster, "plant-a"),
        "bsfg_cert_reloads_total{result=\"failure\"}",
    );
    assert!(failures.is_some_and(|n| n >= 2.0), "{failures:?}");
    let failing = |c: &Cluster| sample(&scrape(c, "plant-a"), "bsfg_cert_reload_failing");
    assert_eq!(failing(&cluster), Some(1.0), "the last reload was refused");
    let refusals = events(&cluster, "plant-a", "cert_reload_failed");
    let expired = |v: &serde_json::Value| v["reason"].as_str().is_some_and(|r| r.contains("expired"));
    assert!(refusals.iter().any(expired), "{refusals:?}");

    let new = rotate(&cluster, "plant-a", 150);
    let (code, body) = reload(&cluster, "plant-a");
    assert_eq!((code, body["not_after"].as_str()), (200, Some(new.as_str())), "{body}");
    assert_eq!(failing(&cluster), Some(0.0), "the last reload succeeded");
    flows_on(&traffic, "facts still cross both ways after the rotations").await;

    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
    assert_eq!(traffic.errors(), Vec::<String>::new(), "producers never saw an error");
}

/// A rotation that replaces the whole directory (`mv pki.new pki`; Kubernetes points a `..data`
/// link elsewhere the same way) is taken too: the watch of the old directory hears nothing of
/// it, and the node also compares its files with what it last read every few seconds. Before,
/// the new certificate was never used, and the old one expired in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_replaces_the_whole_directory_is_taken() {
    let mut cluster = Cluster::pair();
    cluster.start("plant-a");
    let before = presented(&cluster, "plant-a").await;
    let pki = cluster.net.pki.clone();
    let staged = pki.with_file_name("pki.new");
    std::fs::create_dir(&staged).expect("staging directory");
    for entry in std::fs::read_dir(&pki).expect("pki").flatten() {
        std::fs::copy(entry.path(), staged.join(entry.file_name())).expect("copy");
    }
    let now = SystemTime::now();
    pki::issue_as(
        &staged,
        "plant-a",
        CertKind::Node,
        now - Duration::from_secs(60),
        now + DAY * 20,
        "plant-a",
    )
    .expect("issue");
    std::fs::rename(&pki, pki.with_file_name("pki.old")).expect("set the old directory aside");
    std::fs::rename(&staged, &pki).expect("the new directory in its place");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut now_presented = before.clone();
    while now_presented == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        now_presented = presented(&cluster, "plant-a").await;
    }
    assert_ne!(
        now_presented, before,
        "the node still presents the certificate of the old directory"
    );
    let reloaded = || logged(&cluster, "plant-a", "cert_reloaded", "trigger", "file_change");
    wait_until(Duration::from_secs(10), "plant-a logs the reload", reloaded).await;
    assert!(events(&cluster, "plant-a", "cert_reload_failed").is_empty());
}
