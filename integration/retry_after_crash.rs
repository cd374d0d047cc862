//! Property: a call cut off by SIGKILL of its node — the facts committed, the answer never
//! delivered — is retried by its producer, with new send times, and each fact is stored exactly
//! once: the retry answers the original offsets as duplicates, and the peer's consumer receives
//! every fact once, in order, with the send time of its first attempt. Shown through the wire and
//! by running `bsfg append --jsonl` again after it failed with exit 75, and after SIGTERM stopped
//! it (exit 75 naming the last line sent, every line up to it stored).
//!
//! Through the wire, "mid-call" is made certain with a fault proxy in front of the node that drops
//! its answers: the node stores what it is sent, the producer never hears back, and the node is
//! killed then. The CLI always has a call in flight in file order; its exit 75 with a range of
//! lines of unknown fate shows that the kill cut one off.

use crate::harness;

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use bsfg::devnet::proxy::Direction;
use bsfg_proto::Message;
use harness::{assert_same_ids, ids, json_line, json_lines, observe::wait_until, receive, stderr, Cluster, CLIENT};

/// Messages of the call cut off in the wire test.
const CUT_OFF: usize = 50;
/// Lines of the file the CLI test appends, killed part-way.
const LINES: usize = 100_000;

/// Facts in `zone`'s store buffer, as its status reports them.
fn stored(cluster: &Cluster, zone: &str) -> u64 {
    cluster.status(zone)["store"]["facts"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_by_sigkill_is_stored_once_when_retried() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let (proxy, client) = cluster.client_through_proxy("enterprise").await;
    proxy.faults().cut(Direction::FromTarget);
    // Small enough to reach the node whole within QUIC's initial congestion window, which no
    // acknowledgement from the node can grow while its answers are dropped.
    let first: Vec<Message> = (0..CUT_OFF)
        .map(|i| harness::message("enterprise", "plant-a", &format!("k-{i}")))
        .collect();
    let call = tokio::spawn({
        let messages = first.clone();
        async move { client.append_in_order(messages).await }
    });
    wait_until(Duration::from_secs(30), "the call's facts are stored", || {
        stored(&cluster, "enterprise") == CUT_OFF as u64
    })
    .await;
    cluster.kill("enterprise");
    assert!(!call.is_finished(), "the call was cut off before its answer arrived");
    call.abort();

    // The producer rebuilds its messages for the retry, stamping a new send time.
    cluster.start("enterprise");
    let retry: Vec<Message> = first
        .iter()
        .cloned()
        .map(|mut m| {
            m.envelope.produced_at_unix_ms += 60_000;
            m
        })
        .collect();
    let client = cluster.client("enterprise").await;
    let results = client.append_in_order(retry).await.expect("retry");
    let answered: Vec<(u64, bool)> = results
        .iter()
        .map(|r| r.as_ref().map(|ack| (ack.offset, ack.duplicate)).expect("stored"))
        .collect();
    let expected: Vec<(u64, bool)> = (1..=CUT_OFF as u64).map(|offset| (offset, true)).collect();
    assert_eq!(answered, expected, "the original offsets, as duplicates");

    let consumer = cluster.client("plant-a").await;
    let received = receive(&consumer, "mes", CUT_OFF, Duration::from_secs(60)).await;
    assert_eq!(ids(&received), ids_of(&first), "once each, in order");
    assert!(
        received.iter().all(|f| f.message == first_of(&first, f)),
        "as first sent"
    );
    let extra = consumer.fetch("mes", 100, 500, None).await.expect("fetch");
    assert!(extra.facts.is_empty(), "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_a_file_cut_off_by_sigkill_stores_each_line_once_in_order() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let (append, file, ids_in_file) = append_part_of_a_file(&cluster, "l").await;
    // One call is always in flight in file order: killing the node part-way cuts one off.
    cluster.kill("enterprise");

    // The run fails as retryable, at the first line whose fate it does not know.
    let out = wait_exit(append, Duration::from_secs(60)).await;
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{text}");
    assert_eq!(text.lines().count(), 1, "reported once: {text}");
    let reported: u64 = text
        .strip_prefix("error: UNAVAILABLE: line ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the failing line is reported: {text}"));
    assert!(text.contains("is unknown"), "{text}");
    assert_eq!(
        json_lines(&out)[0]["appended"],
        reported - 1,
        "the lines before it were acknowledged"
    );

    // Running the file again (new send times) finishes it: what was stored comes back as duplicates.
    cluster.start("enterprise");
    let out = cluster.cli("enterprise", &["append", "--jsonl", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = &json_lines(&out)[0];
    let duplicates = summary["duplicates"].as_u64().expect("duplicates");
    assert!(duplicates >= reported - 1, "{summary}");
    assert_eq!(
        summary["appended"].as_u64(),
        Some(LINES as u64 - duplicates),
        "{summary}"
    );
    assert_eq!(
        (summary["first_offset"].as_u64(), summary["last_offset"].as_u64()),
        (Some(1), Some(LINES as u64))
    );

    let consumer = cluster.client("plant-a").await;
    let received = receive(&consumer, "mes", LINES, Duration::from_secs(120)).await;
    assert_same_ids(&ids(&received), &ids_in_file, "each line once, in line order");
    let extra = consumer.fetch("mes", 100, 500, None).await.expect("fetch");
    assert!(extra.facts.is_empty(), "nothing twice");
}

/// SIGTERM to a running `bsfg append --jsonl` (its service stopped): it sends no further call,
/// waits for the answers of those in flight, prints the summary and exits 75 naming the last line
/// it sent. Every line up to that one is stored and none after it: running the file again stores
/// exactly the rest. Before, SIGTERM ended the command at once, with no summary and the fate of
/// the call in flight unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_sigterm_says_how_far_it_got() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let (append, file, _) = append_part_of_a_file(&cluster, "t").await;
    let pid = append.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill -TERM").success());

    let out = wait_exit(append, Duration::from_secs(30)).await;
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{text}");
    let last: u64 = text
        .strip_prefix("error: UNAVAILABLE: interrupted by SIGTERM after line ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the last line sent is named: {text}"));
    assert!(last < LINES as u64, "stopped part-way: {text}");
    let summary = &json_lines(&out)[0];
    assert_eq!(
        summary["appended"].as_u64(),
        Some(last),
        "every line sent was answered: {summary}"
    );
    assert_eq!(stored(&cluster, "enterprise"), last, "and none after it was sent");

    let out = cluster.cli("enterprise", &["append", "--jsonl", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = &json_lines(&out)[0];
    assert_eq!(
        (summary["duplicates"].as_u64(), summary["appended"].as_u64()),
        (Some(last), Some(LINES as u64 - last)),
        "running it again stores exactly the rest: {summary}"
    );
}

/// SIGTERM to `bsfg append --jsonl - --unordered` once its whole input is sent, its answers still to come (the
/// node is stopped): nothing is cut off, so the run waits for them and succeeds. Before, it exited
/// 75 as if part of the input had not been sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_after_the_whole_input_was_sent_lets_the_run_finish() {
    use std::io::Write;

    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let node = cluster.options("enterprise").node;
    let mut append = cluster
        // Unordered, so that each line's call goes out without waiting for the answer before it.
        .cli_command("enterprise", CLIENT, &node, &["append", "--jsonl", "-", "--unordered"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bsfg append");
    let mut input = append.stdin.take().expect("stdin");
    writeln!(input, "{}", json_line("plant-a", "s-1")).expect("write");
    input.flush().expect("flush");
    wait_until(Duration::from_secs(30), "the first line is stored", || {
        stored(&cluster, "enterprise") == 1
    })
    .await;
    cluster.signal("enterprise", "STOP");
    for id in ["s-2", "s-3"] {
        writeln!(input, "{}", json_line("plant-a", id)).expect("write");
    }
    drop(input);
    // Time to read the end of the input and send the last calls, which the node cannot answer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = append.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill -TERM").success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        append.try_wait().expect("try_wait").is_none(),
        "it waits for the answers"
    );
    cluster.signal("enterprise", "CONT");

    let out = wait_exit(append, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["appended"], 3, "every line was stored");
    assert_eq!(stored(&cluster, "enterprise"), 3);
}

/// `bsfg append --jsonl` of a file of `LINES` lines for plant-a (ids `<prefix>-1`, ...), running
/// on `enterprise`, once a tenth of the file is stored; the command, the file and its ids. The
/// lines carry no `produced_at_unix_ms`: the CLI stamps each with the time of each run.
async fn append_part_of_a_file(cluster: &Cluster, prefix: &str) -> (Child, String, Vec<String>) {
    let ids: Vec<String> = (1..=LINES).map(|i| format!("{prefix}-{i}")).collect();
    let lines: Vec<String> = ids.iter().map(|id| json_line("plant-a", id)).collect();
    let file = cluster.dir().join("lines.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    let file = file.to_str().expect("path").to_owned();
    let node = cluster.options("enterprise").node;
    let append = cluster
        .cli_command("enterprise", CLIENT, &node, &["append", "--jsonl", &file])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bsfg append");
    wait_until(Duration::from_secs(30), "a tenth of the file is stored", || {
        stored(cluster, "enterprise") >= LINES as u64 / 10
    })
    .await;
    (append, file, ids)
}

fn ids_of(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.envelope.message_id.as_str()).collect()
}

fn first_of(messages: &[Message], fact: &bsfg_proto::FetchedFact) -> Message {
    let id = &fact.message.envelope.message_id;
    messages
        .iter()
        .find(|m| &m.envelope.message_id == id)
        .cloned()
        .unwrap_or_default()
}

/// Waits for `child` to exit by itself; kills it and fails the test after `timeout`.
async fn wait_exit(mut child: Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bsfg append did not exit within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.wait_with_output().expect("output")
}
