//! Property: a damaged write-ahead log never loses an acknowledged fact silently (issue 16, test
//! 3). After kill -9 and 16 bytes changed in the middle of the newest log, the node refuses to
//! start, naming the file, the kind of damage and the offsets going on would lose; the operator's
//! `bsfg storage accept-loss` records exactly those, and then every other acknowledged fact
//! reaches the peer exactly once and unaltered, and the node says what it runs without.

use crate::harness;

use std::time::Duration;

use harness::{
    bin,
    damage::{damage_largest, fill, offsets},
    observe::events_after_restart,
    padded_message, receive, Cluster,
};

const FACTS: usize = 20_000;
const BATCH: usize = 100;
const PAD: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_refuses_to_start_and_the_accepted_loss_is_exactly_what_it_said() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let acked = fill(&cluster, FACTS, BATCH, PAD).await;
    cluster.kill("enterprise");
    let data = cluster.net.node("enterprise").expect("enterprise").data_dir.clone();
    let file = damage_largest(&data, "log");

    let refused = cluster
        .net
        .spawn(&bin(), "enterprise")
        .expect_err("a damaged log must not open");
    let log = std::fs::read_to_string(cluster.dir().join("enterprise.log")).expect("log");
    let said = log
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        refused.to_string().contains("exit status: 1"),
        "not retryable: {refused}"
    );
    assert!(
        said.contains(&file) && said.contains("damaged record at byte"),
        "{said}"
    );
    assert!(said.contains("bsfg storage accept-loss"), "{said}");
    let reported = said
        .split("store offsets ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .map(offsets)
        .unwrap_or_else(|| panic!("the refusal names the lost offsets: {said}"));
    assert!(!reported.is_empty() && reported.len() <= 2 * BATCH, "{said}");

    let audit = cluster.accept_loss("enterprise");
    assert_eq!(audit["msg"], "storage_loss_accepted", "{audit}");
    assert!(
        audit["accepted_by"].as_str().is_some_and(|by| by.starts_with("local:")),
        "{audit}"
    );
    let lost = offsets(audit["store_offsets"].as_str().unwrap_or_default());
    assert_eq!(lost, reported, "what was reported is what was accepted");

    cluster.start("enterprise");
    cluster.start("plant-a");
    let consumer = cluster.client("plant-a").await;
    let expected = FACTS - lost.len();
    let delivered = receive(&consumer, "mes", expected, Duration::from_secs(120)).await;
    let kept: Vec<&String> = acked
        .iter()
        .filter(|(o, _)| !lost.contains(o))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(harness::ids(&delivered), kept, "every fact not lost, once, in order");
    for fact in &delivered {
        let id = &fact.message.envelope.message_id;
        assert_eq!(
            fact.message,
            padded_message("enterprise", "plant-a", id, PAD),
            "unaltered"
        );
    }
    let recorded = events_after_restart(&cluster, "enterprise", "storage_loss_recorded");
    assert_eq!(recorded.len(), 1, "the node says what it runs without");
    assert_eq!(recorded[0]["lost_facts"], lost.len());
    let status = cluster.status("enterprise");
    assert!(
        status["storage"]["losses"][0]
            .as_str()
            .is_some_and(|l| l.contains("local:")),
        "{status}"
    );
}

/// A clean stop leaves no fact only in the write-ahead log (the node flushes its memtables as it
/// stops): a log file deleted while the node is stopped, by a cleanup job that removes `*.log`
/// files, loses nothing. Before, every fact since the last flush lived only in the newest log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_clean_stop_no_fact_lives_only_in_the_write_ahead_log() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let acked = fill(&cluster, 2_000, BATCH, PAD).await;
    assert!(cluster.terminate("enterprise").success(), "a clean stop");
    let data = cluster.net.node("enterprise").expect("enterprise").data_dir.clone();
    let mut deleted = Vec::new();
    for entry in std::fs::read_dir(&data).expect("data dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            std::fs::remove_file(entry.path()).expect("delete the log");
            deleted.push(name);
        }
    }
    assert!(!deleted.is_empty(), "a write-ahead log to delete");

    cluster.start_ready("enterprise");
    let stored = cluster.status("enterprise")["store"]["facts"].as_u64();
    assert_eq!(stored, Some(acked.len() as u64), "deleted {deleted:?}");
    cluster.start("plant-a");
    let consumer = cluster.client("plant-a").await;
    let got = receive(&consumer, "qa", acked.len(), Duration::from_secs(60)).await;
    assert_eq!(got.len(), acked.len(), "every acknowledged fact reaches the peer");
}
