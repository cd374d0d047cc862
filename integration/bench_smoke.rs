//! `bsfg bench` runs to completion in every mode and its `--json` report keeps the schema that
//! `scripts/bench.sh` and the JetStream comparison read, with every acknowledged fact delivered
//! exactly once where the mode moves facts. Tiny counts: this proves the instrument works, never
//! how fast anything is (no timing value is asserted).

use std::process::Command;

use serde_json::Value;

const FACTS: u64 = 200;

/// Runs `bsfg bench --mode <mode> --count 200 --batch <batch> --json`; returns the parsed report.
/// A batch of 16 leaves each producer's 100 facts a short last call.
fn bench(mode: &str, batch: u64) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_bsfg"))
        .args(["bench", "--mode", mode, "--count", &FACTS.to_string(), "--json"])
        .args(["--producers", "2", "--concurrency", "8", "--batch", &batch.to_string()])
        .output()
        .expect("run bsfg bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bsfg bench --mode {mode} failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}); stderr: {stderr}"))
}

fn assert_numbers(section: &Value, keys: &[&str]) {
    for key in keys {
        assert!(section[key].is_number(), "{key} is not a number in {section}");
    }
}

/// The fields every mode reports, and exactly the measured sections `sections` present.
fn assert_common(report: &Value, mode: &str, batch: u64, sections: &[&str], zones: &[&str]) {
    assert_eq!(report["tool"], "bsfg");
    assert_eq!(report["mode"], mode);
    assert_eq!(report["facts"], FACTS);
    assert_eq!(report["producers"], 2);
    assert_eq!(report["concurrency"], 8);
    assert_eq!(report["batch"], batch);
    assert_eq!(report["payload_bytes"], 256);
    assert!(report["rate_per_second"].is_null());
    assert_eq!(report["durability"], "fsync before ack (group commit)");
    for section in ["append", "replication", "replay", "startup"] {
        assert_eq!(
            report.get(section).is_some(),
            sections.contains(&section),
            "section {section} in a {mode} report"
        );
    }
    assert_numbers(&report["append"], &["seconds", "facts_per_second"]);
    assert_numbers(&report["append"]["latency_ms"], &["p50", "p99", "p999", "max"]);
    let nodes = report["nodes"].as_object().expect("nodes");
    assert_eq!(nodes.keys().map(String::as_str).collect::<Vec<_>>(), zones);
    for node in nodes.values().chain([&report["generator"]]) {
        assert!(node["peak_rss_bytes"].as_u64().is_some_and(|bytes| bytes > 0), "{node}");
        assert_numbers(node, &["cpu_seconds"]);
    }
    assert!(report["machine"]["cpus"].as_u64().is_some_and(|cpus| cpus > 0));
    assert!(report["machine"]["model"].is_string());
}

#[test]
fn append_reports_throughput_and_latency() {
    let report = bench("append", 1);
    assert_common(&report, "append", 1, &["append"], &["enterprise"]);
}

#[test]
fn replicate_delivers_every_fact_and_reports_end_to_end_latency() {
    let report = bench("replicate", 16);
    assert_common(
        &report,
        "replicate",
        16,
        &["append", "replication"],
        &["enterprise", "plant-a"],
    );
    let replication = &report["replication"];
    assert_eq!(replication["delivered"], FACTS);
    assert_numbers(replication, &["seconds", "facts_per_second"]);
    assert_numbers(&replication["end_to_end_ms"], &["p50", "p99", "p999", "max"]);
}

#[test]
fn replay_delivers_the_whole_backlog_after_the_heal() {
    let report = bench("replay", 16);
    assert_common(&report, "replay", 16, &["append", "replay"], &["enterprise", "plant-a"]);
    let replay = &report["replay"];
    assert_eq!(replay["backlog_facts"], FACTS);
    assert_numbers(replay, &["reconnect_seconds", "replay_seconds", "facts_per_second"]);
}

#[test]
fn startup_restarts_a_filled_node_after_a_crash_and_a_clean_stop() {
    let report = bench("startup", 1);
    assert_common(&report, "startup", 1, &["append", "startup"], &["enterprise"]);
    let startup = &report["startup"];
    assert_eq!(startup["retained_facts"], FACTS);
    assert_numbers(startup, &["clean_seconds", "after_kill_seconds"]);
}
