//! Property: a disk that stops completing writes is reported and answered, not waited on for
//! ever, and loses nothing. plant-a's data directory is an ext4 image that is frozen under the
//! running node, so every write to it hangs, as on a hung controller or a network file system
//! gone away. Past `node.write_stall_timeout` the append waiting on that write is answered
//! `UNAVAILABLE` (retryable, its outcome unknown), `/readyz` answers 503, `storage_failed` is
//! logged with what hangs and `bsfg_storage_errors_total{operation="commit"}` rises; later
//! appends are refused at once instead of queueing behind the hung write. Once the file system
//! is thawed the write completes, the node is ready again by itself, the retried append finds
//! its fact stored by the write that hung, and every fact reaches the peer exactly once.
//!
//! A node that holds a call without answering (here: a stall timeout of an hour) does not hold
//! its client for ever either: the client library gives up on an answer that makes no progress
//! (`UNAVAILABLE`, retryable), an upload's answer included, and its retry after the thaw is a
//! duplicate.

use crate::harness;

use std::time::Duration;

use bsfg_proto::{ErrorCode, PutObjectRequest};
use futures::future::join_all;
use harness::{
    disk::Mount,
    message,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

const MIB: u64 = 1 << 20;
/// plant-a's node section: a short stall timeout, and a reserve its small disk can keep.
const NODE: &str = "write_stall_timeout = \"2s\"\ndisk_reserve_bytes = \"16MiB\"\n";

fn logged(cluster: &Cluster, event: &str, field: &str, fragment: &str) -> bool {
    events(cluster, "plant-a", event)
        .iter()
        .any(|line| line[field].as_str().is_some_and(|text| text.contains(fragment)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_hangs_is_answered_unavailable_and_its_fact_stored_once_when_it_returns() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let node = cluster.net.nodes.get_mut("plant-a").expect("plant-a");
    node.node_extra = NODE.to_owned();
    // Declared after the cluster: a failing test thaws it before the nodes are killed.
    let disk = Mount::ext4(&node.data_dir.clone(), 256 * MIB);
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    let producer = cluster.client("plant-a").await;
    producer
        .append(message("plant-a", "enterprise", "before"))
        .await
        .expect("before");

    disk.freeze(true);
    let hung = tokio::time::timeout(
        Duration::from_secs(30),
        producer.append(message("plant-a", "enterprise", "during")),
    )
    .await
    .expect("answered, not left waiting on the hung write");
    let refused = hung.expect_err("a write that hangs is not acknowledged");
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    assert!(
        refused.retryable() && refused.to_string().contains("write_stall_timeout"),
        "{refused}"
    );
    assert_eq!(cluster.readyz("plant-a"), 503, "not ready while its writes hang");
    wait_until(Duration::from_secs(10), "plant-a logs what hangs", || {
        logged(&cluster, "storage_failed", "error_message", "no write has completed")
    })
    .await;
    assert!(logged(
        &cluster,
        "storage_failed",
        "reason",
        "becomes ready again by itself"
    ));
    let commit_errors = "bsfg_storage_errors_total{operation=\"commit\"}";
    assert_eq!(
        metric(&cluster, "plant-a", commit_errors),
        1.0,
        "one stall, counted once"
    );
    let later = tokio::time::timeout(
        Duration::from_secs(10),
        producer.append(message("plant-a", "enterprise", "later")),
    )
    .await
    .expect("answered without waiting for the hung write")
    .expect_err("refused while a write hangs");
    assert_eq!(later.code(), ErrorCode::Unavailable, "{later}");

    disk.freeze(false);
    wait_until(Duration::from_secs(30), "plant-a is ready again", || {
        cluster.readyz("plant-a") == 200
    })
    .await;
    wait_until(Duration::from_secs(10), "plant-a logs its recovery", || {
        !events(&cluster, "plant-a", "storage_recovered").is_empty()
    })
    .await;
    let during = producer
        .append(message("plant-a", "enterprise", "during"))
        .await
        .expect("the retry");
    assert!(during.duplicate, "the write that hung stored it: {during:?}");
    let later = producer
        .append(message("plant-a", "enterprise", "later"))
        .await
        .expect("later");
    assert!(!later.duplicate, "refused at once, it was never queued: {later:?}");

    let consumer = cluster.client("enterprise").await;
    let delivered = receive(&consumer, "mes", 3, Duration::from_secs(60)).await;
    assert_eq!(harness::ids(&delivered), ["before", "during", "later"]);
    drop(cluster);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_on_an_answer_that_makes_no_progress() {
    let mut cluster = Cluster::pair();
    let node = cluster.net.nodes.get_mut("plant-a").expect("plant-a");
    // The node itself would hold the call for an hour.
    node.node_extra = "write_stall_timeout = \"1h\"\ndisk_reserve_bytes = \"16MiB\"\n".to_owned();
    let disk = Mount::ext4(&node.data_dir.clone(), 256 * MIB);
    cluster.start("plant-a");
    let producer = cluster
        .client("plant-a")
        .await
        .with_answer_timeout(Duration::from_secs(2));
    let facts = || vec![message("plant-a", "enterprise", "held")];
    let streamed = || message("plant-a", "enterprise", "streamed");

    disk.freeze(true);
    let given_up = tokio::time::timeout(Duration::from_secs(30), producer.append_in_order(facts()))
        .await
        .expect("the client gives up by itself")
        .expect_err("no answer came");
    assert_eq!(given_up.code(), ErrorCode::Unavailable, "{given_up}");
    assert!(
        given_up.retryable() && given_up.to_string().contains("no data within 2s"),
        "{given_up}"
    );
    let given_up = tokio::time::timeout(Duration::from_secs(30), producer.append(streamed()))
        .await
        .expect("the append stream gives up by itself")
        .expect_err("no answer came on the append stream");
    assert_eq!(given_up.code(), ErrorCode::Unavailable, "{given_up}");
    assert!(given_up.to_string().contains("no data within 2s"), "{given_up}");
    // An upload's answer comes once the artifact is durable, which the frozen disk holds up.
    let pdf = b"%PDF-1.7 held";
    let request = PutObjectRequest {
        bucket: "coa".into(),
        key: "held.pdf".into(),
        size: pdf.len() as u64,
        media_type: None,
    };
    let mut body = std::io::Cursor::new(&pdf[..]);
    let put = producer.put_object(request, &mut body, |_| {});
    let given_up = tokio::time::timeout(Duration::from_secs(30), put)
        .await
        .expect("put-object gives up by itself")
        .expect_err("no answer came to the upload");
    assert_eq!(given_up.code(), ErrorCode::Unavailable, "{given_up}");
    assert!(given_up.to_string().contains("no data within 2s"), "{given_up}");
    // Holding its calls, the node grants no more streams than it lets open at once (1 024): the
    // calls past that give up waiting for a stream as the others do waiting for an answer.
    let crowd =
        (0..1100).map(|i| producer.append_in_order(vec![message("plant-a", "enterprise", &format!("crowd-{i}"))]));
    let crowd = tokio::time::timeout(Duration::from_secs(60), join_all(crowd))
        .await
        .expect("every call gives up by itself, those waiting for a stream too");
    assert!(
        crowd
            .iter()
            .all(|c| c.as_ref().is_err_and(|e| e.code() == ErrorCode::Unavailable)),
        "{:?}",
        crowd.iter().find(|c| c.is_ok())
    );
    let no_stream = tokio::time::timeout(Duration::from_secs(30), producer.append(streamed()))
        .await
        .expect("the append stream gives up waiting for a stream");
    assert!(no_stream.is_err_and(|e| e.code() == ErrorCode::Unavailable));

    disk.freeze(false);
    let retried = producer.append_in_order(facts()).await.expect("the retry");
    let stored = retried[0].as_ref().expect("stored");
    assert!(
        stored.duplicate,
        "the write the client gave up on completed: {stored:?}"
    );
    let streamed = producer.append(streamed()).await.expect("the retry on a new stream");
    assert!(streamed.duplicate, "{streamed:?}");
    drop(cluster);
    drop(disk);
}
