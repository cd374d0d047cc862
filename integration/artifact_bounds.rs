//! Property: the artifact store is bounded (SPEC §7, issue 14). A `PutObject` that would take it
//! past `[objects] capacity_bytes` is refused `RESOURCE_EXHAUSTED` (exit 75), one that could never
//! fit (over the whole capacity, or over `limits.max_object_bytes` while the disk is short of it
//! too) `INVALID_ARGUMENT` (exit 1); once `[objects]
//! retention` has passed, the artifacts no retained fact references are deleted (logged and
//! counted) while one a stored fact references is kept; the space comes back; and the node's
//! count of stored bytes equals a recount of the blob files on disk.

use crate::harness;

use std::{path::Path, time::Duration};

use bsfg_proto::{codec, ErrorCode, PutObjectRequest, Request, Response};

use harness::{
    json_lines,
    observe::{event_fields, metric, wait_until},
    raw::RawConnection,
    stderr, Cluster,
};

const ZONE: &str = "plant-a";

/// Bytes of every blob file under the node's data directory.
fn bytes_on_disk(data_dir: &Path) -> u64 {
    let shards = std::fs::read_dir(data_dir.join("objects/sha256")).expect("blob directory");
    let files = shards.flat_map(|shard| std::fs::read_dir(shard.expect("shard").path()).expect("shard"));
    files
        .map(|f| f.expect("file").metadata().expect("metadata").len())
        .sum()
}

fn put(cluster: &Cluster, key: &str, content: &[u8]) -> std::process::Output {
    let file = cluster.dir().join(key);
    std::fs::write(&file, content).expect("write artifact");
    let path = file.to_str().expect("utf-8 path");
    cluster.cli(ZONE, &["put-object", "--bucket", "coa", "--key", key, path])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_uploads_until_unreferenced_artifacts_expire() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[objects]\ncapacity_bytes = 1000\nretention = \"2s\"\n");
    cluster.start(ZONE);
    let data_dir = cluster.net.node(ZONE).expect("zone").data_dir.clone();

    let kept = put(&cluster, "kept", &[b'k'; 400]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    let reference = serde_json::to_string(&json_lines(&kept)[0]).expect("reference");
    // A fact to the (stopped) peer references it: it stays in the store buffer, unconfirmed.
    let append = [
        "append",
        "--to",
        "enterprise",
        "--subject",
        "batch/1",
        "--predicate",
        "certified",
        "--object-media-type",
        "application/octet-stream",
        "--object-json",
        &reference,
    ];
    let appended = cluster.cli(ZONE, &append);
    assert!(appended.status.success(), "{}", stderr(&appended));
    let loose = put(&cluster, "loose", &[b'l'; 400]);
    assert!(loose.status.success(), "{}", stderr(&loose));

    let refused = put(&cluster, "late", &[b'x'; 400]);
    assert_eq!(refused.status.code(), Some(75), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("RESOURCE_EXHAUSTED"), "{}", stderr(&refused));
    // Larger than the whole store: no retry can help, and the refusal says so and why.
    let never = put(&cluster, "never", &[b'n'; 1001]);
    assert_eq!(never.status.code(), Some(1), "{}", stderr(&never));
    for names in ["INVALID_ARGUMENT", "1001 bytes", "capacity_bytes = 1000"] {
        assert!(stderr(&never).contains(names), "names {names:?}: {}", stderr(&never));
    }
    // Announced larger than limits.max_object_bytes (1 GiB) and than the free disk: the limit is
    // what it is told, not the disk (which a retry might find with room).
    let raw = RawConnection::open(&cluster.options(ZONE)).await;
    let request = Request::PutObject(PutObjectRequest {
        bucket: "coa".into(),
        key: "terabyte".into(),
        size: 1 << 40,
        media_type: None,
    });
    let frame = codec::encode_frame(&request, 1 << 20).expect("encode");
    match raw.exchange(&frame).await.expect("an answer") {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
            assert!(e.message.contains("limits.max_object_bytes"), "{e:?}");
        }
        other => panic!("a terabyte is over the limit: {other:?}"),
    }
    assert_eq!(metric(&cluster, ZONE, "bsfg_object_store_blob_bytes"), 800.0);
    assert_eq!(metric(&cluster, ZONE, "bsfg_object_store_capacity_bytes"), 1000.0);

    wait_until(Duration::from_secs(20), "the unreferenced artifact expires", || {
        !event_fields(&cluster, ZONE, "artifact_expired", "key").is_empty()
    })
    .await;
    assert_eq!(event_fields(&cluster, ZONE, "artifact_expired", "key"), ["loose"]);
    assert_eq!(metric(&cluster, ZONE, "bsfg_artifacts_expired_total"), 1.0);
    let gone = cluster.cli(ZONE, &["get-object", "--bucket", "coa", "--key", "loose"]);
    assert!(stderr(&gone).contains("NOT_FOUND"), "{}", stderr(&gone));
    let still = cluster.cli(ZONE, &["get-object", "--bucket", "coa", "--key", "kept"]);
    assert!(still.status.success(), "{}", stderr(&still));
    assert_eq!(still.stdout, [b'k'; 400]);

    let late = put(&cluster, "late", &[b'x'; 400]);
    assert!(late.status.success(), "room again: {}", stderr(&late));
    let counted = metric(&cluster, ZONE, "bsfg_object_store_blob_bytes");
    assert_eq!(counted, 800.0);
    assert_eq!(
        counted as u64,
        bytes_on_disk(&data_dir),
        "the count equals a recount on disk"
    );
}
