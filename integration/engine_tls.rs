//! Property: the engine connection speaks mutual TLS to servers that require it (a real
//! three-server cluster). With the CA and a client certificate it connects and appends; without
//! a client certificate, or without the CA that signed the servers', it is refused, and the
//! error names the servers it tried.

use crate::harness;

use std::time::Duration;

use bsfg_engine::{
    jetstream::{ConnectConfig, Engine, LogSpec},
    log::ReplicatedLog,
};
use bytes::Bytes;
use harness::engine::{within, EngineFixture, TLS_CLIENT, ZONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_connection_uses_mutual_tls() {
    let engine = EngineFixture::start_tls().await;
    let pki = engine.pki.clone().expect("a TLS fixture has a PKI");
    let trusted = ConnectConfig {
        urls: engine.nats.urls(),
        ca: Some(pki.join("ca.pem")),
        client_cert: Some((
            pki.join(format!("{TLS_CLIENT}.pem")),
            pki.join(format!("{TLS_CLIENT}.key")),
        )),
        name: TLS_CLIENT.to_owned(),
        ..Default::default()
    };
    assert!(
        trusted.urls.iter().all(|url| url.starts_with("tls://")),
        "{:?}",
        trusted.urls
    );
    let log = Engine::connect(&trusted)
        .await
        .expect("connects with the CA and a client certificate")
        .open_log(&LogSpec::new(ZONE, 3))
        .await
        .expect("opens the log");
    let appended = log
        .append(
            0,
            "a.1.1",
            Bytes::from_static(b"over TLS"),
            within(Duration::from_secs(10)),
        )
        .await;
    assert_eq!(appended, Ok(1));

    let anonymous = ConnectConfig {
        client_cert: None,
        ..trusted.clone()
    };
    let refused = Engine::connect(&anonymous).await.expect_err("no client certificate");
    assert!(
        refused.to_string().contains(&trusted.urls[0]),
        "names the servers: {refused}"
    );

    let untrusting = ConnectConfig {
        ca: None,
        ..trusted.clone()
    };
    let refused = Engine::connect(&untrusting)
        .await
        .expect_err("the servers' CA is unknown");
    assert!(
        refused.to_string().contains(&trusted.urls[0]),
        "names the servers: {refused}"
    );
}
