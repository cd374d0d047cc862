//! Property: a peer link's `max_bytes_per_second` holds while a backlog drains (issue 16, test
//! 5), so replication cannot starve a plant's other traffic. A cap of 100 KiB/s on the sender's
//! entry for its peer paces what it sends; over 30 s of draining a backlog of several megabytes,
//! the bytes the link carries from the sender (counted by the fault proxy on the path: QUIC
//! packets with headers and acknowledgements) stay within 10 % of the cap. The same cap on the
//! receiver's entry paces its pulls instead, artifacts too.

use crate::harness;

use std::time::{Duration, Instant};

use bsfg::devnet::proxy::Direction;
use harness::{padded_message, Cluster};

const CAP: u64 = 100 * 1024;
const WINDOW: Duration = Duration::from_secs(30);
/// About 5 MB: some 50 s at the cap.
const FACTS: usize = 16_000;
const PAD: usize = 200;

/// The rate of what the sender sends while its backlog drains through a capped link, over
/// `window`; the cap is configured on `capped` for its peer.
async fn drain_rate(capped: (&str, &str), window: Duration) -> f64 {
    let mut cluster = Cluster::pair();
    let proxies = cluster.proxy_all();
    // One connection, dialled by the sender through the receiver's proxy: what the sender sends
    // goes to the proxy's target.
    cluster.net.set_dial("plant-a", "enterprise", false).expect("plant-a");
    cluster.net.set_peer_cap(capped.0, capped.1, Some(CAP)).expect("capped");
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;

    let producer = cluster.client("enterprise").await;
    for call in 0..FACTS / 500 {
        let messages = (0..500)
            .map(|i| padded_message("enterprise", "plant-a", &format!("fact-{}", call * 500 + i), PAD))
            .collect();
        let results = producer.append_batch(messages).await.expect("append");
        assert!(results.iter().all(Result::is_ok));
    }
    let sent = || proxies["plant-a"].forwarded_bytes(Direction::ToTarget);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (start, before) = (Instant::now(), sent());
    tokio::time::sleep(window).await;
    let rate = (sent() - before) as f64 / start.elapsed().as_secs_f64();
    let delivered = cluster.status("plant-a")["forward"]["facts"]
        .as_u64()
        .unwrap_or_default();
    println!("cap on {capped:?}: {rate:.0} bytes/s over {window:?} (cap {CAP}); {delivered} of {FACTS} delivered");
    assert!(
        delivered < FACTS as u64,
        "the backlog was still draining at the end of the window"
    );
    rate
}

fn assert_within_ten_percent(rate: f64) {
    let cap = CAP as f64;
    assert!(
        (0.9 * cap..=1.1 * cap).contains(&rate),
        "{rate:.0} bytes/s is not within 10 % of {CAP}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_capping_what_it_sends_drains_at_the_cap() {
    assert_within_ten_percent(drain_rate(("enterprise", "plant-a"), WINDOW).await);
}

/// The receiver's cap paces its pulls: a plant can cap its downlink without the other side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_capping_what_it_pulls_drains_at_the_cap() {
    assert_within_ten_percent(drain_rate(("plant-a", "enterprise"), Duration::from_secs(15)).await);
}

/// The receiver's cap paces the artifacts it pulls as well as the pages: a plant capping its
/// downlink alone is not flooded by a large artifact (before, only pages were paced on the way
/// in). Measured on the wire by the fault proxy while a 4 MB artifact crosses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_capping_what_it_pulls_paces_artifacts_too() {
    let mut cluster = Cluster::pair();
    let proxies = cluster.proxy_all();
    cluster.net.set_dial("plant-a", "enterprise", false).expect("plant-a");
    cluster
        .net
        .set_peer_cap("plant-a", "enterprise", Some(CAP))
        .expect("capped");
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    let producer = cluster.client("enterprise").await;
    let content: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let fact = harness::message("enterprise", "plant-a", "recording");
    let artifact = ("qa", "recording.bin", "application/octet-stream");
    harness::append_with_artifact(&producer, fact, artifact, &content).await;

    let sent = || proxies["plant-a"].forwarded_bytes(Direction::ToTarget);
    // Past QUIC's first flow-control window (1.25 MB), which the sender may fill at once, however
    // late the pull began on a loaded host.
    harness::observe::wait_until(Duration::from_secs(60), "the first window has crossed", || {
        sent() > 2_000_000
    })
    .await;
    let (start, before) = (Instant::now(), sent());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rate = (sent() - before) as f64 / start.elapsed().as_secs_f64();
    let delivered = cluster.status("plant-a")["forward"]["facts"]
        .as_u64()
        .unwrap_or_default();
    println!("artifact through a cap on the receiver: {rate:.0} bytes/s (cap {CAP})");
    assert_eq!(delivered, 0, "the artifact was still crossing at the end of the window");
    assert_within_ten_percent(rate);
}
