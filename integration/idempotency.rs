//! Property: AppendFact is idempotent on `message_id` with "same content" meaning the fact and the
//! envelope's business fields, not the send time. Running the same `bsfg append` again, or sending
//! a message again with a new `produced_at_unix_ms`, answers the original offset with
//! `duplicate: true` (exit 0); the same id with another subject, predicate, object or business
//! envelope field is `ALREADY_EXISTS` naming the original offset (exit 1, one line on stderr) —
//! through the CLI and through the wire. The peer receives one copy, with its first send time. A
//! retryable failure of `bsfg append` without `--message-id` names the id it chose, to retry with.

use crate::harness;

use std::time::Duration;

use bsfg_proto::{ErrorCode, Message};
use harness::{json_lines, receive, stderr, Cluster};

const FACT: [&str; 8] = [
    "--to",
    "plant-a",
    "--subject",
    "order/7",
    "--predicate",
    "released",
    "--object-json",
    r#"{"qty": 5}"#,
];

/// A field's name and how to change it.
type Change = (&'static str, fn(&mut Message));

/// `bsfg append` of [`FACT`] with `--message-id wo-7`, with `change` replacing or adding flags.
fn append(cluster: &Cluster, change: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = ["append", "--message-id", "wo-7"].into();
    args.extend(FACT);
    for pair in change.chunks(2) {
        match args.iter().position(|a| *a == pair[0]) {
            Some(at) => args[at + 1] = pair[1],
            None => args.extend(pair),
        }
    }
    cluster.cli("enterprise", &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_a_duplicate_whatever_its_send_time_and_other_content_a_conflict() {
    let mut cluster = Cluster::pair();
    cluster.start_all();

    // The CLI stamps produced_at_unix_ms anew on every run: the rerun is still a duplicate.
    let first = append(&cluster, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let offset = json_lines(&first)[0]["offset"].as_u64().expect("offset");
    std::thread::sleep(Duration::from_millis(5));
    let again = append(&cluster, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        json_lines(&again),
        [serde_json::json!({"offset": offset, "duplicate": true})]
    );

    // Each changed field of the content is a conflict naming the original offset, reported once.
    let changes: [&[&str]; 5] = [
        &["--subject", "order/8"],
        &["--predicate", "held"],
        &["--object-json", r#"{"qty": 6}"#],
        &["--label", "line=3"],
        &["--object-schema", "order/v2"],
    ];
    for change in changes {
        let conflict = append(&cluster, change);
        let text = stderr(&conflict);
        assert_eq!(conflict.status.code(), Some(1), "{change:?}: {text}");
        assert!(
            text.starts_with("error: ALREADY_EXISTS: ") && text.contains(&format!("(offset {offset})")),
            "{change:?}: {text}"
        );
        assert_eq!(text.lines().count(), 1, "reported once: {text}");
    }

    // JSON lines with explicit send times: the second line differs only in produced_at.
    let line = |at: u64| {
        format!(
            r#"{{"envelope":{{"message_id":"wo-8","to_zone":"plant-a","produced_at_unix_ms":{at}}},"fact":{{"subject":"order/8","predicate":"released","object_json":{{"qty":1}}}}}}"#
        )
    };
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), format!("{}\n{}\n", line(42), line(43))).expect("write");
    let out = cluster.cli(
        "enterprise",
        &["append", "--jsonl", file.path().to_str().expect("path")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let expected =
        serde_json::json!({"appended": 1, "duplicates": 1, "first_offset": offset + 1, "last_offset": offset + 1});
    assert_eq!(json_lines(&out), [expected]);

    // Through the wire: the same, message by message.
    let client = cluster.client("enterprise").await;
    let original = harness::message("enterprise", "plant-a", "wo-9");
    let stored = client.append(original.clone()).await.expect("append");
    let mut retried = original.clone();
    retried.envelope.produced_at_unix_ms += 60_000;
    let again = client.append(retried).await.expect("retry");
    assert_eq!((again.offset, again.duplicate), (stored.offset, true));
    let changes: [Change; 7] = [
        ("subject", |m| m.fact.subject.push('x')),
        ("predicate", |m| m.fact.predicate.push('x')),
        ("object_json", |m| m.fact.object_json = "{\"changed\":true}".into()),
        ("correlation_id", |m| m.envelope.correlation_id = Some("c-1".into())),
        ("causation_id", |m| m.envelope.causation_id = Some("k-1".into())),
        ("labels", |m| {
            m.envelope.labels.insert("line".into(), "3".into());
        }),
        ("object_schema", |m| m.envelope.object_schema = Some("v2".into())),
    ];
    for (field, change) in changes {
        let mut changed = original.clone();
        change(&mut changed);
        let error = client.append(changed).await.expect_err(field);
        assert_eq!(
            (error.code(), error.retryable()),
            (ErrorCode::AlreadyExists, false),
            "{field}"
        );
        assert!(
            error.to_string().contains(&format!("(offset {})", stored.offset)),
            "{field}: {error}"
        );
    }

    // The peer got each message once, with the send time of its first append.
    let plant = cluster.client("plant-a").await;
    let facts = receive(&plant, "check", 3, Duration::from_secs(30)).await;
    let ids: Vec<(&str, u64)> = facts
        .iter()
        .map(|f| {
            (
                f.message.envelope.message_id.as_str(),
                f.message.envelope.produced_at_unix_ms,
            )
        })
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(
        &ids[1..],
        [("wo-8", 42), ("wo-9", original.envelope.produced_at_unix_ms)]
    );
    assert_eq!(ids[0].0, "wo-7");
    let extra = plant.fetch("check", 10, 500, None).await.expect("fetch");
    assert!(extra.facts.is_empty(), "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_names_the_message_id_that_was_chosen() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let admin = cluster.admin("enterprise");
    let (status, body) = harness::admin::http(admin, "POST", "/v1/admin/drain", None);
    assert_eq!(status, 200, "{body}");
    let mut args = vec!["append"];
    args.extend(FACT);
    let refused = cluster.cli("enterprise", &args);
    assert_eq!(refused.status.code(), Some(75), "{}", stderr(&refused));
    let said = stderr(&refused);
    let id = said
        .split("retry with --message-id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the chosen id is named: {said}"))
        .to_owned();
    assert_eq!(id.len(), 32, "{said}");

    let (status, body) = harness::admin::http(admin, "POST", "/v1/admin/resume", None);
    assert_eq!(status, 200, "{body}");
    args.extend(["--message-id", &id]);
    let stored = cluster.cli("enterprise", &args);
    assert!(stored.status.success(), "{}", stderr(&stored));
    assert_eq!(json_lines(&stored)[0]["duplicate"], false);
    let again = cluster.cli("enterprise", &args);
    assert_eq!(json_lines(&again)[0]["duplicate"], true, "retried with it, stored once");
}

/// A store buffer near its high watermark reclaims the facts its peer confirmed, but not their
/// ids: a producer running its file again after that gets the original offsets, `duplicate:
/// true`, and other content under a delivered id is still `ALREADY_EXISTS`. Before, the reclaim
/// deleted the ids too: the retry was stored again, and the other content was acknowledged here,
/// refused by the peer as a conflict, and never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_outlive_the_facts_a_full_store_reclaims() {
    let mut cluster = Cluster::pair();
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").extra =
        "\n[store]\ncapacity_bytes = \"256KiB\"\n".to_owned();
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;
    let producer = cluster.client("enterprise").await;
    let consumer = cluster.client("plant-a").await;
    // Facts of 2 KB: 80 of them fill three quarters of the store, 40 more pass the watermark.
    let first = harness::append_many(&producer, "enterprise", "plant-a", "first", 80, 2_000).await;
    receive(&consumer, "mes", 80, Duration::from_secs(30)).await;
    harness::append_many(&producer, "enterprise", "plant-a", "more", 40, 2_000).await;
    receive(&consumer, "mes", 40, Duration::from_secs(30)).await;
    harness::observe::wait_until(Duration::from_secs(20), "the store reclaims confirmed facts", || {
        cluster.status("enterprise")["store"]["facts"]
            .as_u64()
            .is_some_and(|n| n < 120)
    })
    .await;

    let again = producer
        .append(harness::padded_message("enterprise", "plant-a", &first[0], 2_000))
        .await
        .expect("a retry of a reclaimed fact");
    assert!(again.duplicate, "a duplicate, not a new fact: {again:?}");
    assert_eq!(again.offset, 1, "its original offset");
    let mut other = harness::padded_message("enterprise", "plant-a", &first[1], 2_000);
    other.fact.object_json = "{\"other\":true}".into();
    let refused = producer
        .append(other)
        .await
        .expect_err("other content under a delivered id");
    assert_eq!(refused.code(), ErrorCode::AlreadyExists, "{refused}");
    let extra = tokio::time::timeout(Duration::from_secs(3), consumer.fetch("mes", 10, 2_000, None))
        .await
        .expect("the fetch ends")
        .expect("fetch");
    assert!(
        extra.facts.is_empty(),
        "nothing more reaches the consumer: {:?}",
        extra.facts
    );
}
