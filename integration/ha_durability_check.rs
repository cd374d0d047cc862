//! Property: an HA instance refuses to start against engine servers that do not fsync before
//! acknowledging, with exit code 1 and a message naming the server and the setting
//! (`sync_interval: always`); with `assume_durable = true` it starts, logs a warning, and exports
//! `bsfg_engine_durability_verified 0`. Against durable servers it exports 1.

use crate::harness;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bsfg::devnet::nats::NatsOptions;
use harness::{
    bin,
    ha::{storage_toml, HaZone, INSTANCES},
    observe::{events, metric},
};

const DURABILITY: &str = "bsfg_engine_durability_verified";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_ack_before_fsync_are_refused_unless_durability_is_assumed() {
    let lazy = NatsOptions {
        sync_always: false,
        ..NatsOptions::default()
    };
    let mut ha = HaZone::new(lazy, "").await;
    let instance = INSTANCES[0];
    let config = ha.cluster.net.node(instance).expect("instance").config.clone();
    let mut serve = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bsfg serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "bsfg serve did not refuse to start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = serve.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("refused: {stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sync_interval: always"), "names the setting: {stderr}");
    let first_monitor = &ha.engine.nats.monitor_urls()[0];
    let named = ha
        .engine
        .nats
        .monitor_urls()
        .iter()
        .any(|url| stderr.contains(url.as_str()));
    assert!(named, "names a server ({first_monitor}…): {stderr}");

    let assumed = storage_toml(&ha.engine, instance, "assume_durable = true");
    ha.cluster.net.nodes.get_mut(instance).expect("instance").extra = assumed;
    ha.cluster.start(instance);
    ha.wait_active(None, Duration::from_secs(20)).await;
    assert_eq!(metric(&ha.cluster, instance, DURABILITY), 0.0);
    assert_eq!(
        events(&ha.cluster, instance, "engine_durability_unverified").len(),
        1,
        "warned once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_servers_are_verified() {
    let mut ha = HaZone::new(NatsOptions::default(), "").await;
    ha.cluster.start(INSTANCES[0]);
    ha.wait_active(None, Duration::from_secs(20)).await;
    assert_eq!(metric(&ha.cluster, INSTANCES[0], DURABILITY), 1.0);
    assert!(events(&ha.cluster, INSTANCES[0], "engine_durability_unverified").is_empty());
}
