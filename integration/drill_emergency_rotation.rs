//! Drill: emergency certificate rotation (docs/operations.md), a node's certificate expired.
//! plant-a runs with a certificate that expires during the test; idmz closes the live link when it
//! expires (`tls_connection_closed`, `expired`), refuses it at the next handshake
//! (`tls_handshake_failed`, `expired`), and the gates go `autonomous` while
//! producers keep appending. The runbook's diagnosis shows the expiry; its steps 1–4 of the
//! planned rotation install a new certificate without a restart; the link comes back and every
//! acknowledged fact arrives exactly once.
//!
//! Compromised keys, with the revocation list every node applies (`[tls] crl`): a stolen node
//! key is isolated, revoked, refused at every handshake, and the node gets a new key while its
//! backlog waits; a stolen client key is revoked and the client taken out of `[[clients]]` with
//! a reload, which closes the connection it held.
//!
//! The admin token is rotated as the guide says, without a restart: the reload goes with the old
//! token, and from then on only the new one is accepted.

use crate::harness;

use std::time::{Duration, SystemTime};

use bsfg::{
    client::{Client, ClientOptions},
    pki::{self, CertKind},
};
use bsfg_proto::ErrorCode;
use harness::{
    admin::http,
    drill::{Drill, Estate, TOKEN},
    message,
    observe::{events, metric, wait_until},
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

    // The certificate expires: idmz closes the live connection at once (certificates are valid
    // through the last second of their `not_after`), and refuses the next handshake.
    wait_until(Duration::from_secs(30), "idmz closes the expired link", || {
        events(&estate.cluster, "idmz", "tls_connection_closed")
            .iter()
            .any(|l| l["kind"] == "expired" && l["peer"] == "plant-a")
    })
    .await;
    assert!(SystemTime::now() > expires, "closed only once expired");
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

/// idmz and plant-a (2 s link timeout), each applying the CA's revocation list, not started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_is_rotated_as_the_runbook_says() {
    let estate = Estate::new(Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]));
    estate.start_all().await;
    let drill = Drill::load("admin-token");
    let rotated = estate.run(&drill, "rotate");
    assert_eq!(rotated.trim(), "true", "the reload says the token changed: {rotated}");
    let etc = estate.host("plant-a").join("etc/bsfg");
    let token = std::fs::read_to_string(etc.join("admin.token")).expect("the new token");
    assert_ne!(token.trim(), TOKEN);
    assert!(!etc.join("admin.token.old").exists(), "the old token's copy is gone");
    let admin = estate.cluster.admin("plant-a");
    let resume = |token: &str| http(admin, "POST", "/v1/admin/resume", Some(token)).0;
    assert_eq!(resume(TOKEN), 401, "the old token is refused");
    assert_eq!(resume(token.trim()), 200, "the new one is accepted");
    estate.assert_ran_every_step(&drill);
}

fn estate_with_crl(clients: &[&str]) -> Estate {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let owned: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
    pki::init(&cluster.net.pki, &[], &owned, 30).expect("client certificates");
    let crl = pki::revoke(&cluster.net.pki, &[], 30)
        .expect("the CA's list, empty")
        .crl;
    for node in cluster.net.nodes.values_mut() {
        node.crl = Some(crl.clone());
        for client in clients {
            node.clients
                .push((client.to_string(), vec!["produce".into(), "consume".into()]));
        }
    }
    Estate::new(cluster)
}

/// Options to reach `zone`'s node with a copy of the certificate and key of `name`, kept as
/// `stolen-<name>` (what a thief holds, whatever happens to the files later).
fn stolen(estate: &Estate, zone: &str, name: &str) -> ClientOptions {
    let pki = &estate.cluster.net.pki;
    let copy = |ext: &str| {
        let to = pki.join(format!("stolen-{name}.{ext}"));
        std::fs::copy(pki.join(format!("{name}.{ext}")), &to).expect("copy");
        to
    };
    ClientOptions {
        cert: copy("pem"),
        key: copy("key"),
        ..estate.cluster.options(zone)
    }
}

async fn refused_at_handshake(options: &ClientOptions) {
    let refused = async {
        let client = Client::connect(options).await?;
        client.append(message("plant-a", "idmz", "stolen")).await.map(drop)
    };
    let error = refused.await.expect_err("the stolen certificate got in");
    assert_eq!(error.code(), ErrorCode::Unauthenticated, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_node_key_is_revoked_as_the_runbook_says() {
    let estate = estate_with_crl(&[]);
    estate.start_linked().await;
    let mut traffic = estate.traffic_both_ways();
    // The thief's copy, presented to idmz as a client would be.
    let thief = stolen(&estate, "idmz", "plant-a");

    let drill = Drill::load("compromised-key");
    estate.run(&drill, "isolate");
    let revoked = estate.run(&drill, "revoke");
    assert!(revoked.contains("\"revoked\":1"), "{revoked}");
    let reloaded = estate.run(&drill, "distribute");
    assert!(reloaded.contains("CN=idmz"), "{reloaded}");
    refused_at_handshake(&thief).await;
    // Counted first, then logged by the logger thread: the step reads both.
    wait_until(
        Duration::from_secs(10),
        "idmz counts and logs the revoked handshake",
        || {
            let inbound = |e: &serde_json::Value| e["kind"] == "revoked" && e["direction"] == "inbound";
            metric(
                &estate.cluster,
                "idmz",
                "bsfg_tls_handshake_errors_total{reason=\"revoked\"}",
            ) >= 1.0
                && events(&estate.cluster, "idmz", "tls_handshake_failed")
                    .iter()
                    .any(inbound)
        },
    )
    .await;
    let refused = estate.run(&drill, "refused");
    assert!(refused.contains("inbound"), "{refused}");

    // plant-a refuses the list that revokes its own certificate until it has a new one.
    for step in ["request", "sign", "check", "install"] {
        estate.run(&drill, step);
    }
    estate.run(&drill, "reopen");
    let recovered = estate.run(&drill, "recovered");
    assert!(recovered.contains("plant-a"), "{recovered}");
    refused_at_handshake(&thief).await;
    estate.assert_ran_every_step(&drill);
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_client_key_is_revoked_and_the_client_removed_without_a_restart() {
    const CLIENT: &str = "mes-line-1";
    let mut estate = estate_with_crl(&[CLIENT]);
    estate.start_linked().await;
    let thief = stolen(&estate, "plant-a", CLIENT);
    let connected = Client::connect(&thief).await.expect("not revoked yet");
    connected
        .append(message("plant-a", "idmz", "before"))
        .await
        .expect("a listed client appends");

    let drill = Drill::load("compromised-client");
    let revoked = estate.run(&drill, "revoke");
    assert!(revoked.contains("\"revoked\":1"), "{revoked}");
    // The operator's edit: the client leaves [[clients]].
    let plant = estate.cluster.net.nodes.get_mut("plant-a").expect("plant-a");
    plant.clients.retain(|(name, _)| name != CLIENT);
    estate.cluster.net.write_configs().expect("configs");
    let reloaded = estate.run(&drill, "reload");
    assert!(reloaded.contains(&format!("\"removed\":[\"{CLIENT}\"]")), "{reloaded}");
    assert!(reloaded.contains("config_reloaded"), "{reloaded}");

    // The reload closed the connection the stolen certificate held.
    wait_until(
        Duration::from_secs(10),
        "plant-a closes the revoked client's connection",
        || {
            events(&estate.cluster, "plant-a", "tls_connection_closed")
                .iter()
                .any(|l| l["kind"] == "revoked" && l["caller"] == CLIENT)
        },
    )
    .await;
    let denied = connected
        .append(message("plant-a", "idmz", "after"))
        .await
        .expect_err("the revoked client's connection is closed");
    assert_eq!(denied.code(), ErrorCode::Unauthenticated, "{denied}");
    refused_at_handshake(&thief).await;
    let tester = estate.cluster.client("plant-a").await;
    tester
        .append(message("plant-a", "idmz", "tester"))
        .await
        .expect("the other clients carry on");
    estate.assert_ran_every_step(&drill);
}
