//! Property: AppendFact is idempotent on `message_id` — the same message again answers the
//! original offset with `duplicate: true`; the same id with other content is `ALREADY_EXISTS`
//! with exit code 1 — and the peer receives one copy (issue #2, test 2).

mod harness;

use std::time::Duration;

use harness::{json_lines, receive, stderr, Cluster};

fn append(cluster: &Cluster, id: &str, object: &str) -> std::process::Output {
    cluster.cli(
        "enterprise",
        &[
            "append",
            "--to",
            "plant-a",
            "--subject",
            "order/7",
            "--predicate",
            "released",
            "--object-json",
            object,
            "--message-id",
            id,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_return_the_original_offset_and_conflicts_fail() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    // produced_at is filled with "now" when omitted, so pin it through JSON lines for the re-send.
    let first = append(&cluster, "wo-7", r#"{"qty": 5}"#);
    assert!(first.status.success(), "{}", stderr(&first));
    let first = &json_lines(&first)[0];
    assert_eq!(first["duplicate"], false);
    let offset = first["offset"].as_u64().expect("offset");

    let line = r#"{"envelope":{"message_id":"wo-8","to_zone":"plant-a","produced_at_unix_ms":42},"fact":{"subject":"order/8","predicate":"released","object_json":{"qty":1}}}"#;
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), format!("{line}\n{line}\n")).expect("write");
    let out = cluster.cli(
        "enterprise",
        &["append", "--jsonl", file.path().to_str().expect("path")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = &json_lines(&out)[0];
    assert_eq!(
        (summary["appended"].as_u64(), summary["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(
        summary["first_offset"], summary["last_offset"],
        "the duplicate answered the original offset"
    );
    assert_eq!(summary["first_offset"].as_u64(), Some(offset + 1));

    let conflict = append(&cluster, "wo-8", r#"{"qty": 99}"#);
    assert_eq!(conflict.status.code(), Some(1), "{}", stderr(&conflict));
    assert!(
        stderr(&conflict).starts_with("error: ALREADY_EXISTS: "),
        "{}",
        stderr(&conflict)
    );

    // The same message through the library: duplicate at the same offset.
    let client = cluster.client("enterprise").await;
    let mut message = harness::message("enterprise", "plant-a", "wo-9");
    let original = client.append(message.clone()).await.expect("append");
    let again = client.append(message.clone()).await.expect("append");
    assert_eq!((again.offset, again.duplicate), (original.offset, true));
    message.fact.object_json = "{\"changed\":true}".into();
    let error = client.append(message).await.expect_err("conflict");
    assert_eq!(error.code(), bsfg_proto::ErrorCode::AlreadyExists);
    assert!(!error.retryable());

    // The peer got each message once.
    let plant = cluster.client("plant-a").await;
    let facts = receive(&plant, "check", 3, Duration::from_secs(30)).await;
    let ids: Vec<&str> = facts.iter().map(|f| f.message.envelope.message_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.contains(&"wo-7") && ids.contains(&"wo-8") && ids.contains(&"wo-9"),
        "{ids:?}"
    );
    assert!(plant
        .fetch("check", 10, 500, None)
        .await
        .expect("fetch")
        .facts
        .is_empty());
}
