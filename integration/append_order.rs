//! Property: `bsfg append --jsonl` stores a file in line order by default, so the peer's consumer
//! receives it in line order; `--unordered` delivers it complete and exactly once. The first
//! failing line stops the run, is reported once (line number and code), and in file order nothing
//! after it is stored; with `--unordered` every line before it is stored. A node whose frame limit
//! is below a call of the CLI takes the file all the same, in smaller calls.

use crate::harness;

use std::{collections::HashSet, path::Path, time::Duration};

use harness::{assert_same_ids, ids, json_line, json_lines, receive, stderr, Cluster};

fn line(id: &str) -> String {
    json_line("plant-a", id)
}

/// A JSON lines file of `ids`, with `replace` putting other text at some 1-based lines.
fn file(dir: &Path, name: &str, ids: &[String], replace: &[(usize, &str)]) -> String {
    let text: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match replace.iter().find(|(at, _)| *at == i + 1) {
            Some((_, text)) => format!("{text}\n"),
            None => line(id) + "\n",
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("path").to_owned()
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_lands_in_line_order_and_unordered_lands_complete_and_once() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let dir = cluster.dir();
    let consumer = cluster.client("plant-a").await;

    let ordered = numbered("o", 10_000);
    let out = cluster.cli("enterprise", &["append", "--jsonl", &file(&dir, "o", &ordered, &[])]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = serde_json::json!({"appended": 10_000, "duplicates": 0, "first_offset": 1, "last_offset": 10_000});
    assert_eq!(json_lines(&out), [summary]);
    let received = receive(&consumer, "mes", 10_000, Duration::from_secs(60)).await;
    assert_eq!(
        ids(&received),
        ordered,
        "the peer's consumer receives the file in line order"
    );

    let unordered = numbered("u", 10_000);
    let path = file(&dir, "u", &unordered, &[]);
    let out = cluster.cli(
        "enterprise",
        &["append", "--jsonl", &path, "--unordered", "--concurrency", "8"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = &json_lines(&out)[0];
    assert_eq!(
        (summary["appended"].as_u64(), summary["duplicates"].as_u64()),
        (Some(10_000), Some(0))
    );
    let received = receive(&consumer, "mes", 10_000, Duration::from_secs(60)).await;
    let got: HashSet<&str> = ids(&received).into_iter().collect();
    assert_eq!(received.len(), 10_000, "exactly once");
    assert_eq!(got, unordered.iter().map(String::as_str).collect(), "complete");
    let extra = consumer.fetch("mes", 100, 500, None).await.expect("fetch");
    assert!(extra.facts.is_empty(), "nothing twice: {:?}", ids(&extra.facts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_failing_line_stops_the_run_and_is_reported_once() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let dir = cluster.dir();
    let producer = cluster.client("enterprise").await;
    let mut taken = harness::message("enterprise", "plant-a", "taken");
    taken.fact.object_json = "{\"other\":\"content\"}".into();
    producer.append(taken).await.expect("append");

    // File order: line 1500 reuses an id with other content; nothing after it is stored.
    let conflicting = line("taken");
    let lines = numbered("a", 3000);
    let out = cluster.cli(
        "enterprise",
        &["append", "--jsonl", &file(&dir, "a", &lines, &[(1500, &conflicting)])],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = serde_json::json!({"appended": 1499, "duplicates": 0, "first_offset": 2, "last_offset": 1500});
    assert_eq!(json_lines(&out), [summary]);
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "reported once: {text}");
    assert!(text.starts_with("error: ALREADY_EXISTS: line 1500: "), "{text}");

    // A line that is not a message stops the run the same way, before anything after it.
    let lines = numbered("b", 3000);
    let out = cluster.cli(
        "enterprise",
        &["append", "--jsonl", &file(&dir, "b", &lines, &[(2100, "{not json")])],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["appended"], 2099);
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "reported once: {text}");
    assert!(
        text.starts_with("error: INVALID_ARGUMENT: line 2100: not a message"),
        "{text}"
    );

    // Unordered: the reported line is the first failing one, and every line before it is stored.
    let lines = numbered("c", 3000);
    let path = file(&dir, "c", &lines, &[(1200, &conflicting)]);
    let out = cluster.cli("enterprise", &["append", "--jsonl", &path, "--unordered"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: ALREADY_EXISTS: line 1200: "),
        "{}",
        stderr(&out)
    );
    let unordered_stored = json_lines(&out)[0]["appended"].as_u64().expect("appended") as usize;
    assert!(unordered_stored >= 1199, "{unordered_stored}");

    // What the peer received: `taken`, a-1..a-1499, b-1..b-2099, and c-1..c-1199 with whatever
    // calls were in flight after line 1200 — never a line after a failure in file order.
    let consumer = cluster.client("plant-a").await;
    let expected = 1 + 1499 + 2099 + unordered_stored;
    let received = receive(&consumer, "mes", expected, Duration::from_secs(60)).await;
    let got = ids(&received);
    let mut in_file_order: Vec<String> = vec!["taken".into()];
    in_file_order.extend(lines_before("a", 1500));
    in_file_order.extend(lines_before("b", 2100));
    assert_same_ids(
        &got[..in_file_order.len().min(got.len())],
        &in_file_order,
        "in file order",
    );
    let unordered: HashSet<&str> = got[in_file_order.len()..].iter().copied().collect();
    assert_eq!(unordered.len(), unordered_stored, "each stored line once");
    assert!(lines_before("c", 1200).iter().all(|id| unordered.contains(id.as_str())));
    let extra = consumer.fetch("mes", 100, 500, None).await.expect("fetch");
    assert!(extra.facts.is_empty(), "nothing more: {:?}", ids(&extra.facts));

    // More than one call in flight needs --unordered: a usage error.
    let out = cluster.cli("enterprise", &["append", "--jsonl", &path, "--concurrency", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--concurrency 4 needs --unordered"),
        "{}",
        stderr(&out)
    );
}

fn lines_before(prefix: &str, line: usize) -> Vec<String> {
    numbered(prefix, line - 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_small_frame_limit_takes_the_file_in_smaller_calls() {
    let mut cluster = Cluster::pair();
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
    // A call of 1024 of these lines is about 150 KB.
    enterprise.extra = "[limits]\nmax_frame_bytes = \"64KiB\"\nmax_fact_bytes = \"16KiB\"\n".into();
    cluster.start("enterprise");
    let lines = numbered("small", 3_000);
    let out = cluster.cli(
        "enterprise",
        &["append", "--jsonl", &file(&cluster.dir(), "s", &lines, &[])],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = serde_json::json!({"appended": 3_000, "duplicates": 0, "first_offset": 1, "last_offset": 3_000});
    assert_eq!(json_lines(&out), [summary]);

    // A message that no call can carry fails alone, after the messages before it are stored.
    let client = cluster.client("enterprise").await;
    let mut messages: Vec<_> = (1..=1_000)
        .map(|i| harness::message("enterprise", "plant-a", &format!("more-{i}")))
        .collect();
    messages[499].fact.object_json = format!("\"{}\"", "x".repeat(70_000));
    let results = client.append_in_order(messages).await.expect("answered");
    assert_eq!(results.len(), 500, "up to and including the one that failed");
    assert!(
        results[..499].iter().all(Result::is_ok),
        "the messages before it are stored"
    );
    let refused = results[499].as_ref().expect_err("over the frame limit");
    assert!(refused.is_frame_too_large(), "{refused:?}");
}
