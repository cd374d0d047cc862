//! Property: an HA zone checks its engine before trusting it, against real nats-server
//! processes. Servers that do not fsync before acknowledging are refused with an error naming
//! the server and the setting `sync_interval: always`, unless the override is given (then the
//! start goes on, unverified, with warnings); servers that do are verified, and their version
//! passes the floor. A WAL stream that exists with another replica count is refused.

use crate::harness;

use bsfg::devnet::nats::NatsOptions;
use bsfg_engine::{
    checks::{self, CheckError, VersionVerdict},
    jetstream::{EngineError, LogSpec},
};
use harness::engine::{EngineFixture, ZONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_sync_always_are_refused_naming_server_and_setting() {
    let lazy = NatsOptions {
        sync_always: false,
        ..Default::default()
    };
    let engine = EngineFixture::start_with(lazy).await;
    let monitors = engine.nats.monitor_urls();

    let refusal = checks::verify(&monitors, false).await.expect_err("refused");
    assert!(matches!(refusal, CheckError::NotDurable { .. }), "{refusal:?}");
    let message = refusal.to_string();
    assert!(
        monitors.iter().any(|url| message.contains(url.as_str())),
        "names the server: {message}"
    );
    assert!(
        message.contains("sync_interval: always"),
        "names the setting: {message}"
    );

    let overridden = checks::verify(&monitors, true).await.expect("the override starts");
    assert!(!overridden.durability_verified);
    assert!(
        overridden.warnings.iter().any(|w| w.contains("NOT verified")),
        "{:?}",
        overridden.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_sync_always_are_verified_and_recent_enough() {
    let engine = EngineFixture::start().await;
    let verdict = checks::verify(&engine.nats.monitor_urls(), false)
        .await
        .expect("accepted");
    assert!(verdict.durability_verified, "{verdict:?}");
    assert!(verdict.warnings.is_empty(), "{:?}", verdict.warnings);
    let version = engine.connect("probe").await.server_version();
    assert_eq!(
        checks::check_version("nats", "connected", &version),
        Ok(VersionVerdict::Current),
        "{version}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_stream_with_another_replica_count_is_refused() {
    let engine = EngineFixture::start().await;
    engine.log("first").await;
    let connection = engine.connect("second").await;
    let refusal = connection
        .open_log(&LogSpec::new(ZONE, 1))
        .await
        .expect_err("replicas differ");
    assert!(
        matches!(&refusal, EngineError::Mismatch { setting: "replicas", found, expected, .. } if found == "3" && expected == "1"),
        "{refusal}"
    );
    connection
        .open_log(&LogSpec::new(ZONE, 3))
        .await
        .expect("the same spec opens it again");
}
