//! Property: an artifact reference never lies (issue 5). A fact referencing an artifact that is
//! not stored, or stored with another digest or size, is refused on append (`INVALID_ARGUMENT`);
//! once referenced, a key cannot take other content (`ALREADY_EXISTS`) while identical content is
//! a no-op; `get-object` of an unknown key is `NOT_FOUND` (exit 1); an artifact over
//! `limits.max_object_bytes` is refused; and a peer reads only artifacts of facts addressed to it.

use crate::harness;

use std::{path::Path, process::Output};

use bsfg::client::{Client, ClientError};
use bsfg_proto::{ArtifactRef, ErrorCode, ObjectDigest, ObjectMeta};

use harness::{json_lines, observe::metric, stderr, Cluster};

/// Runs the CLI on `enterprise` and expects exit 1 with `code`; returns stderr.
fn refused(cluster: &Cluster, args: &[&str], code: &str) -> String {
    let out = cluster.cli("enterprise", args);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail permanently: {text}");
    assert!(text.starts_with(&format!("error: {code}: ")), "{args:?}: {text}");
    text
}

fn succeeded(out: Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out).remove(0)
}

fn put(cluster: &Cluster, path: &Path) -> Output {
    let file = path.to_str().expect("utf-8 path");
    cluster.cli("enterprise", &["put-object", "--bucket", "coa", "--key", "k", file])
}

fn append_args(object_json: &str) -> Vec<String> {
    [
        "append",
        "--to",
        "plant-a",
        "--subject",
        "batch/7",
        "--predicate",
        "certified",
        "--object-media-type",
        "application/pdf",
        "--object-json",
        object_json,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn reference(digest: ObjectDigest, size: u64) -> String {
    let reference = ArtifactRef {
        bucket: "coa".into(),
        key: "k".into(),
        digest,
        size,
        media_type: "application/pdf".into(),
        file_name: None,
    };
    serde_json::to_string(&reference).expect("render")
}

/// `GetObject coa/k` on enterprise with plant-a's node certificate, as that peer would.
async fn get_as_peer(cluster: &Cluster) -> Result<(ObjectMeta, Vec<u8>), ClientError> {
    let options = cluster.net.client("enterprise", "plant-a").expect("options");
    let peer = Client::connect(&options).await.expect("connect as the peer");
    let mut bytes = Vec::new();
    let got = peer.get_object("coa", "k", &mut bytes, |_| {}).await;
    peer.close().await;
    got.map(|meta| (meta, bytes))
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_are_checked_and_referenced_artifacts_are_immutable() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("[limits]\nmax_object_bytes = \"1KiB\"\n");
    // Only enterprise runs: the test then calls it with plant-a's certificate, as that peer.
    cluster.start("enterprise");
    let dir = cluster.dir();
    let (v1, v2, big) = (dir.join("v1.pdf"), dir.join("v2.pdf"), dir.join("big.pdf"));
    std::fs::write(&v1, b"certificate v1").expect("write");
    std::fs::write(&v2, b"certificate, second edition").expect("write");
    std::fs::write(&big, vec![7u8; 1025]).expect("write");

    let get_unknown = ["get-object", "--bucket", "coa", "--key", "nope"];
    refused(&cluster, &get_unknown, "NOT_FOUND");
    let missing = reference(ObjectDigest::of(b"certificate v1"), 14);
    let text = refused(&cluster, &strs(&append_args(&missing)), "INVALID_ARGUMENT");
    assert!(text.contains("not stored"), "{text}");
    refused(&cluster, &strs(&append_args("{\"pdf\":true}")), "INVALID_ARGUMENT");
    let file = big.to_str().expect("path");
    let text = refused(
        &cluster,
        &["put-object", "--bucket", "coa", "--key", "k", file],
        "INVALID_ARGUMENT",
    );
    assert!(text.contains("limits.max_object_bytes"), "{text}");

    // Unreferenced, the key takes other content; then v1 again.
    let first = succeeded(put(&cluster, &v1));
    assert_eq!(first["digest"], ObjectDigest::of(b"certificate v1").to_string());
    let second = succeeded(put(&cluster, &v2));
    assert_ne!(second["digest"], first["digest"]);
    succeeded(put(&cluster, &v1));

    let wrong_digest = reference(ObjectDigest::of(b"certificate, second edition"), 14);
    let text = refused(&cluster, &strs(&append_args(&wrong_digest)), "INVALID_ARGUMENT");
    assert!(text.contains("digest"), "{text}");
    let wrong_size = reference(ObjectDigest::of(b"certificate v1"), 15);
    refused(&cluster, &strs(&append_args(&wrong_size)), "INVALID_ARGUMENT");

    // Not yet referenced by a fact addressed to plant-a: that peer may not read it.
    let denied = get_as_peer(&cluster).await.expect_err("denied");
    assert_eq!(denied.code(), ErrorCode::PermissionDenied, "{denied}");
    succeeded(cluster.cli("enterprise", &strs(&append_args(&first.to_string()))));
    let (meta, bytes) = get_as_peer(&cluster).await.expect("the peer reads it");
    assert_eq!(bytes, b"certificate v1");
    assert_eq!(meta.digest.to_string(), first["digest"]);

    // Referenced: other content is refused, identical content is a no-op.
    let text = refused(
        &cluster,
        &[
            "put-object",
            "--bucket",
            "coa",
            "--key",
            "k",
            v2.to_str().expect("path"),
        ],
        "ALREADY_EXISTS",
    );
    assert!(text.contains("immutable"), "{text}");
    assert_eq!(succeeded(put(&cluster, &v1)), first);
    let copy = dir.join("copy.pdf");
    let get = [
        "get-object",
        "--bucket",
        "coa",
        "--key",
        "k",
        "-o",
        copy.to_str().expect("path"),
    ];
    succeeded(cluster.cli("enterprise", &get));
    assert_eq!(std::fs::read(&copy).expect("copy"), b"certificate v1");
    let to_stdout = cluster.cli("enterprise", &get[..5]);
    assert!(to_stdout.status.success(), "{}", stderr(&to_stdout));
    assert_eq!(to_stdout.stdout, b"certificate v1", "without -o the bytes go to stdout");
    assert_eq!(metric(&cluster, "enterprise", "bsfg_artifact_upload_total"), 4.0);
    assert_eq!(metric(&cluster, "enterprise", "bsfg_artifact_upload_failures"), 2.0);
}
