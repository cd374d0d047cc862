//! Property: an artifact pull that a lost link breaks off part way resumes where it stopped
//! once the link is back (`GetObjectFrom`): the bytes that had arrived are kept, the sender sends
//! only the rest, and the artifact lands whole, with its digest, before its fact is delivered.
//! On a link that drops every few minutes a large artifact would otherwise never get across.

use crate::harness;

use std::time::{Duration, Instant};

use bsfg::devnet::proxy::Direction;
use bsfg_proto::ObjectDigest;
use harness::{
    append_with_artifact, json_lines, message,
    observe::{events, metric, wait_until},
    receive, stderr, Cluster,
};

const ARTIFACT_BYTES: u64 = 16 << 20;
/// The sender's cap toward the plant: the artifact takes about 8 s to cross, time to cut it.
const CAP: u64 = 2 << 20;
/// Received before the cut.
const BEFORE_CUT: u64 = 5 << 20;

/// Bytes in the files of uploads in progress under `zone`'s data directory.
fn receiving(cluster: &Cluster, zone: &str) -> u64 {
    let tmp = cluster.dir().join(format!("{zone}-data")).join("objects/tmp");
    std::fs::read_dir(tmp)
        .map(|files| files.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_pull_cut_off_by_the_link_resumes_where_it_stopped() {
    let mut cluster = Cluster::pair();
    let proxies = cluster.proxy_all();
    // One connection, dialled by enterprise through plant-a's proxy: what enterprise sends goes
    // to the proxy's target.
    cluster.net.set_dial("plant-a", "enterprise", false).expect("plant-a");
    cluster
        .net
        .set_peer_cap("enterprise", "plant-a", Some(CAP))
        .expect("capped");
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;

    let seed = rand::random::<u64>();
    eprintln!("artifact seed: {seed}");
    let content: Vec<u8> = {
        use rand::{RngCore, SeedableRng};
        let mut bytes = vec![0; ARTIFACT_BYTES as usize];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
        bytes
    };
    let producer = cluster.client("enterprise").await;
    let fact = message("enterprise", "plant-a", "coa-7");
    let media = "application/octet-stream";
    let reference = append_with_artifact(&producer, fact, ("coa", "batch/7.bin", media), &content).await;
    assert_eq!(reference.digest, ObjectDigest::of(&content));

    wait_until(
        Duration::from_secs(60),
        "plant-a has received 5 MB of the artifact",
        || receiving(&cluster, "plant-a") >= BEFORE_CUT,
    )
    .await;
    for proxy in proxies.values() {
        proxy.blackhole();
    }
    wait_until(Duration::from_secs(90), "plant-a gives up on the cut transfer", || {
        !events(&cluster, "plant-a", "artifact_retrieval_failed").is_empty()
    })
    .await;
    let kept = receiving(&cluster, "plant-a");
    assert!(
        (BEFORE_CUT..ARTIFACT_BYTES).contains(&kept),
        "plant-a keeps what arrived: {kept} bytes"
    );
    let sent_before = proxies["plant-a"].forwarded_bytes(Direction::ToTarget);
    for proxy in proxies.values() {
        proxy.heal();
    }
    let healed = Instant::now();

    let consumer = cluster.client("plant-a").await;
    let facts = receive(&consumer, "qa", 1, Duration::from_secs(90)).await;
    assert_eq!(facts.len(), 1, "the fact is delivered once its artifact is whole");
    eprintln!("delivered {:?} after the link came back", healed.elapsed());
    let resent = proxies["plant-a"].forwarded_bytes(Direction::ToTarget) - sent_before;

    let resumed = events(&cluster, "plant-a", "artifact_pull_resumed");
    assert_eq!(resumed.len(), 1, "one resumed pull: {resumed:?}");
    let offset = resumed[0]["offset"].as_u64().expect("offset");
    // What the file holds, and what its write buffer held besides.
    assert!(
        (kept..ARTIFACT_BYTES).contains(&offset),
        "resumed after the {kept} bytes kept: {offset}"
    );
    assert_eq!(resumed[0]["size"].as_u64(), Some(ARTIFACT_BYTES));
    assert_eq!(resumed[0]["peer"], "enterprise");
    // The rest of the body, plus QUIC's framing and the link's other traffic: far less than
    // the whole artifact again.
    let rest = ARTIFACT_BYTES - offset;
    assert!(
        resent < rest + (1 << 20),
        "enterprise sent {resent} bytes after the link came back, for the {rest} missing"
    );

    assert_eq!(metric(&cluster, "plant-a", "bsfg_artifact_retrieval_total"), 1.0);
    let copy = cluster.dir().join("copy.bin");
    let copy_path = copy.to_str().expect("utf-8 path");
    let get = ["get-object", "--bucket", "coa", "--key", "batch/7.bin", "-o", copy_path];
    let out = cluster.cli("plant-a", &get);
    assert!(out.status.success(), "get-object failed: {}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["digest"], reference.digest.to_string());
    assert_eq!(std::fs::read(&copy).expect("copy"), content, "the same bytes, whole");
    assert_eq!(receiving(&cluster, "plant-a"), 0, "nothing left behind");
    consumer.close().await;
    producer.close().await;
}

/// A client's get whose body breaks off part way (its link to the node blackholed until the body
/// stalls) resumes from the bytes it received, on a new connection, into the same sink: the node
/// sends the rest only, and the bytes written are the artifact, whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_that_breaks_off_part_way_resumes_from_the_bytes_received() {
    const SIZE: usize = 8 << 20;
    /// Past the stream's receive window (QUIC's 1.25 MB), which the node may have sent beyond
    /// what the sink had when the link was cut: those bytes are sent again after the resume.
    const CUT_AT: u64 = 4 << 20;
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let content: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let fact = message("enterprise", "plant-a", "coa-8");
    let media = "application/octet-stream";
    append_with_artifact(&producer, fact, ("coa", "batch/8.bin", media), &content).await;

    let (proxy, client) = cluster.client_through_proxy("enterprise").await;
    let client = client.with_answer_timeout(Duration::from_secs(2));
    let faults = proxy.faults();
    let (mut got, mut total, mut cut) = (Vec::new(), 0u64, false);
    let meta = client
        .get_object("coa", "batch/8.bin", &mut got, |n| {
            total += n as u64;
            if total >= CUT_AT && !cut {
                // Cut until the body has stalled past the answer timeout, then heal.
                cut = true;
                faults.blackhole();
                let faults = faults.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    faults.heal();
                });
            }
        })
        .await
        .expect("the get resumes and completes");
    assert!(cut, "the link was cut part way");
    assert_eq!(meta.digest, ObjectDigest::of(&content));
    assert_eq!(total, SIZE as u64, "progress counts each byte once");
    assert!(got == content, "the sink holds the artifact, whole and in order");
    // Resumed: the artifact, the window in flight at the cut, and QUIC's framing (some 3 %);
    // started over it would be at least the artifact and the 4 MiB before the cut.
    let sent = proxy.forwarded_bytes(Direction::FromTarget);
    assert!(
        sent < SIZE as u64 + (2 << 20),
        "the node sent {sent} bytes for an artifact of {SIZE}: only the rest after the cut"
    );
    client.close().await;
    producer.close().await;
}
