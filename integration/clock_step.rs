//! Property: a wall clock stepped forward under a running node expires no fact early. A gateway
//! that booted without a real-time clock and is then set by NTP, or a clock set wrong by hand,
//! jumps forward. The sender runs under libfaketime with its wall clock read from a file (the
//! monotonic clock left alone); its store and artifact retention is 60 s and its peer is down,
//! so its facts wait unconfirmed, and an artifact waits for the fact a producer will append. The
//! clock jumps two hours ahead: the node logs `clock_stepped`, its store and artifact sweeps
//! keep running and expire nothing, and once the peer starts every fact arrives once, in order.
//! A retention after the step the wall clock counts again: an artifact uploaded after the step
//! expires a retention after its upload. The same jump made while the sender is stopped expires
//! nothing either.

use crate::harness;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use bsfg::client::Client;
use bsfg_proto::PutObjectRequest;

use harness::{
    append_many,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

/// libfaketime for multi-threaded programs (Debian's `libfaketime`, installed by scripts/test.sh).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const FACTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepped_forward_expires_no_fact_early() {
    let mut cluster = Cluster::pair();
    let clock = faked_sender(&mut cluster);
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let acked = append_many(&producer, "enterprise", "plant-a", "fact", FACTS, 50).await;
    // Uploaded first, its fact to follow: no fact references it yet.
    let pdf = b"%PDF-1.7 batch 42";
    producer
        .put_object(request_for("42.pdf", pdf), &mut std::io::Cursor::new(&pdf[..]), |_| {})
        .await
        .expect("put the artifact");

    std::fs::write(&clock, "+2h\n").expect("step the clock");
    wait_until(Duration::from_secs(20), "enterprise logs the step", || {
        events(&cluster, "enterprise", "clock_stepped")
            .iter()
            .any(|line| line["ahead_seconds"].as_u64().is_some_and(|s| s > 7000))
    })
    .await;
    nothing_expires_and_every_fact_arrives(&mut cluster, &producer, pdf, &acked).await;

    // Retention is not held back for ever: once a retention has passed since the step, the wall
    // clock counts again, and an artifact uploaded after the step (never referenced) expires a
    // retention after its upload, not at the next start.
    producer
        .put_object(request_for("43.pdf", pdf), &mut std::io::Cursor::new(&pdf[..]), |_| {})
        .await
        .expect("put a second artifact");
    wait_until(Duration::from_secs(120), "the later artifact expires", || {
        events(&cluster, "enterprise", "artifact_expired")
            .iter()
            .any(|line| line["key"] == "43.pdf")
    })
    .await;
}

/// The same jump made while the sender is stopped, as for a gateway that boots with its clock
/// set ahead: the node cannot count the stop, so its start counts retention from the newest fact
/// it stored and logs `retention_resumed`. Nothing expires, the artifact waits for its fact, and
/// every fact arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_ahead_while_the_node_is_stopped_expires_no_fact_early() {
    let mut cluster = Cluster::pair();
    let clock = faked_sender(&mut cluster);
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let pdf = b"%PDF-1.7 batch 42";
    producer
        .put_object(request_for("42.pdf", pdf), &mut std::io::Cursor::new(&pdf[..]), |_| {})
        .await
        .expect("put the artifact");
    let acked = append_many(&producer, "enterprise", "plant-a", "fact", FACTS, 50).await;
    producer.close().await;
    assert!(cluster.terminate("enterprise").success());

    std::fs::write(&clock, "+2h\n").expect("set the clock ahead");
    cluster.start("enterprise");
    let resumed = events(&cluster, "enterprise", "retention_resumed");
    assert!(
        resumed
            .iter()
            .any(|line| line["ahead_seconds"].as_u64().is_some_and(|s| s > 7000)),
        "the start says retention counts from the last fact: {resumed:?}"
    );
    assert!(
        events(&cluster, "enterprise", "clock_stepped").is_empty(),
        "the start's own step is not reported again as a step while running"
    );
    let producer = cluster.client("enterprise").await;
    nothing_expires_and_every_fact_arrives(&mut cluster, &producer, pdf, &acked).await;
}

/// Two store and artifact sweeps at least (every 6 s at these retentions) after the jump expire
/// nothing: every fact waits and the artifact `42.pdf` (`pdf`) waits for its fact; then the
/// receiver starts and gets the facts `acked`, once, in order.
async fn nothing_expires_and_every_fact_arrives(
    cluster: &mut Cluster,
    producer: &Client,
    pdf: &[u8],
    acked: &[String],
) {
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(metric(cluster, "enterprise", "bsfg_expired_facts_total"), 0.0);
    assert!(events(cluster, "enterprise", "fact_expired").is_empty());
    assert!(events(cluster, "enterprise", "artifact_expired").is_empty());
    let mut kept = Vec::new();
    producer
        .get_object("batch-records", "42.pdf", &mut kept, |_| {})
        .await
        .expect("the artifact waits for its fact");
    assert_eq!(kept, pdf);
    assert_eq!(
        cluster.status("enterprise")["store"]["facts"],
        FACTS,
        "every fact waits"
    );

    cluster.start("plant-a");
    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", FACTS, Duration::from_secs(30)).await;
    assert_eq!(harness::ids(&delivered), acked, "every fact, once, in order");
}

/// Store and artifact retention of 60 s on both nodes, and the sender under libfaketime with its
/// wall clock read from the file returned (`+0` for now; the monotonic clock left alone).
fn faked_sender(cluster: &mut Cluster) -> PathBuf {
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: scripts/test.sh installs libfaketime"
    );
    cluster.configure_all("\n[store]\nretention = \"60s\"\n[objects]\nretention = \"60s\"\n");
    let clock = cluster.dir().join("enterprise.clock");
    std::fs::write(&clock, "+0\n").expect("clock file");
    let sender = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
    sender.env = [
        ("LD_PRELOAD", FAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", &clock.to_string_lossy()),
        ("FAKETIME_CACHE_DURATION", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .to_vec();
    clock
}

fn request_for(key: &str, content: &[u8]) -> PutObjectRequest {
    PutObjectRequest {
        bucket: "batch-records".into(),
        key: key.into(),
        size: content.len() as u64,
        media_type: Some("application/pdf".into()),
    }
}
