//! Property: a blob damaged in place behind the node's back (same size, other bytes) is never
//! served whole. The peer's pull and a client's `get-object` both get a reset stream before the
//! body's end; the sender logs `artifact_damaged` naming the file and the repair, and counts it
//! as corruption. The fact waits at the sender (it is not delivered without its artifact), and
//! once the original is put again it arrives with the right bytes, exactly once.

use crate::harness;

use std::time::Duration;

use bsfg_proto::ObjectDigest;

use harness::{
    message,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

const SENDER: &str = "enterprise";
const RECEIVER: &str = "plant-a";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_damaged_in_place_is_never_served_whole_and_a_put_again_repairs_it() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    cluster.start(SENDER);
    let content: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(7919) % 251) as u8).collect();
    let (bucket, key, media_type) = ("coa", "batch/7.bin", "application/octet-stream");
    let producer = cluster.client(SENDER).await;
    let fact = message(SENDER, RECEIVER, "coa-7");
    let stored = harness::append_with_artifact(&producer, fact, (bucket, key, media_type), &content).await;

    let hex = stored.digest.to_string()["sha256:".len()..].to_owned();
    let node = cluster.net.node(SENDER).expect("sender spec").clone();
    let blob = node.data_dir.join("objects/sha256").join(&hex[..2]).join(&hex);
    let mut damaged = content.clone();
    damaged[123_456] ^= 0x5a;
    std::fs::write(&blob, &damaged).expect("damage the blob in place");

    let mut served = Vec::new();
    let got = producer.get_object(bucket, key, &mut served, |_| {}).await;
    assert!(got.is_err(), "a client is not served the damaged blob as whole");
    assert!(
        served.len() < content.len(),
        "its end was held back: {} bytes",
        served.len()
    );

    cluster.start(RECEIVER);
    wait_until(WAIT, "the receiver's pull fails", || {
        !events(&cluster, RECEIVER, "artifact_retrieval_failed").is_empty()
    })
    .await;
    let told = events(&cluster, SENDER, "artifact_damaged");
    let reason = told
        .first()
        .and_then(|e| e["reason"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains(&blob.display().to_string()) && reason.contains("put the original again"),
        "the sender names the file and the repair: {told:?}"
    );
    assert!(metric(&cluster, SENDER, "bsfg_storage_errors_total{operation=\"corruption\"}") >= 2.0);
    let consumer = cluster.client(RECEIVER).await;
    assert!(
        receive(&consumer, "qa", 1, Duration::from_secs(2)).await.is_empty(),
        "the fact waits for its artifact"
    );

    let mut body = std::io::Cursor::new(&content);
    let request = bsfg_proto::PutObjectRequest {
        bucket: bucket.into(),
        key: key.into(),
        size: content.len() as u64,
        media_type: Some(media_type.into()),
    };
    producer
        .put_object(request, &mut body, |_| {})
        .await
        .expect("the original put again");
    let delivered = receive(&consumer, "qa", 1, Duration::from_secs(60)).await;
    assert_eq!(harness::ids(&delivered), ["coa-7"], "delivered once, after the repair");
    let mut pulled = Vec::new();
    let meta = consumer
        .get_object(bucket, key, &mut pulled, |_| {})
        .await
        .expect("the receiver holds the artifact");
    assert_eq!(meta.digest, ObjectDigest::of(&content));
    assert!(pulled == content, "the original bytes");
    producer.close().await;
    consumer.close().await;
}
