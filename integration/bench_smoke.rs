//! `bsfg bench` runs to completion in every mode and its `--json` report keeps the schema that
//! `scripts/bench.sh` and the JetStream comparison read, with every acknowledged fact delivered
//! exactly once where the mode moves facts. Tiny counts: this proves the instrument works, never
//! how fast anything is (no timing value is asserted). The `--ha` runs (an HA source zone, and
//! the failover drills) need nats-server: they fail, never skip, without `BSFG_NATS_SERVER`
//! (`scripts/test.sh` sources `scripts/nats-server.sh`).

use std::process::Command;

use serde_json::Value;

const FACTS: u64 = 200;

const SINGLE_NODE: &str = "fsync before ack (group commit)";
const HA: &str =
    "on a quorum (2 of 3) of the engine servers' disks, fsync before ack (nats-server sync_interval: always)";
/// The nodes an `--ha` run samples: the engine's three servers and the source zone's instances.
const HA_NODES: [&str; 5] = ["engine-n0", "engine-n1", "engine-n2", "enterprise-1", "enterprise-2"];

/// Runs `bsfg bench --mode <mode> --count 200 --batch <batch> --json`; returns the parsed report.
/// A batch of 16 leaves each producer's 100 facts a short last call.
fn bench(mode: &str, batch: u64) -> Value {
    run_bench(&[
        "--mode",
        mode,
        "--count",
        &FACTS.to_string(),
        "--batch",
        &batch.to_string(),
    ])
}

/// Runs `bsfg bench <args> --producers 2 --concurrency 8 --json`; returns the parsed report.
fn run_bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_bsfg"))
        .arg("bench")
        .args(args)
        .args(["--producers", "2", "--concurrency", "8", "--json"])
        .output()
        .expect("run bsfg bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bsfg bench {args:?} failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}); stderr: {stderr}"))
}

/// `bsfg bench --ha <args>`, after checking that nats-server is there to run the zone's engine.
fn bench_ha(args: &[&str]) -> Value {
    assert!(
        std::env::var_os("BSFG_NATS_SERVER").is_some(),
        "BSFG_NATS_SERVER is not set: source scripts/nats-server.sh (scripts/test.sh does)"
    );
    run_bench(&[&["--ha"], args].concat())
}

fn assert_numbers(section: &Value, keys: &[&str]) {
    for key in keys {
        assert!(section[key].is_number(), "{key} is not a number in {section}");
    }
}

/// The fields every mode reports, and exactly the measured sections `sections` present.
fn assert_common(report: &Value, mode: &str, batch: u64, sections: &[&str], zones: &[&str]) {
    assert_eq!(report["facts"], FACTS);
    assert!(report["rate_per_second"].is_null());
    assert_run(report, mode, batch, sections, zones);
}

/// What every report holds whatever the amount and pace: the load, what an acknowledgement
/// meant (single node or HA zone), the sections, the sampled processes and the machine.
fn assert_run(report: &Value, mode: &str, batch: u64, sections: &[&str], zones: &[&str]) {
    assert_eq!(report["tool"], "bsfg");
    assert_eq!(report["mode"], mode);
    assert_eq!(report["producers"], 2);
    assert_eq!(report["concurrency"], 8);
    assert_eq!(report["batch"], batch);
    assert_eq!(report["payload_bytes"], 256);
    let ha = zones.contains(&"enterprise-1");
    assert_eq!(report["durability"], if ha { HA } else { SINGLE_NODE });
    assert_eq!(report.get("ha").is_some(), ha, "section ha in a {mode} report");
    if ha {
        assert_eq!(report["ha"]["zone"], "enterprise");
        assert_eq!(
            report["ha"]["instances"],
            serde_json::json!(["enterprise-1", "enterprise-2"])
        );
        assert_eq!(report["ha"]["engine_servers"], 3);
    }
    for section in ["append", "replication", "replay", "startup", "failover"] {
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

#[test]
fn ha_append_reports_quorum_durability_and_every_process() {
    let report = bench_ha(&["--mode", "append", "--count", &FACTS.to_string(), "--batch", "16"]);
    assert_common(&report, "append", 16, &["append"], &HA_NODES);
}

#[test]
fn ha_replicate_delivers_every_fact_from_the_ha_zone() {
    let report = bench_ha(&["--mode", "replicate", "--count", &FACTS.to_string(), "--batch", "16"]);
    let zones = [&HA_NODES[..], &["plant-a"]].concat();
    assert_common(&report, "replicate", 16, &["append", "replication"], &zones);
    assert_eq!(report["replication"]["delivered"], FACTS);
}

#[test]
fn failover_drills_kill_then_step_down_and_lose_nothing() {
    let report = bench_ha(&["--mode", "failover", "--rate", "50"]);
    let zones = [&HA_NODES[..], &["plant-a"]].concat();
    assert_run(&report, "failover", 1, &["append", "failover"], &zones);
    assert_eq!(report["rate_per_second"], 50);
    let failover = &report["failover"];
    let facts = report["facts"].as_u64().expect("facts");
    assert!(facts > 0, "nothing was appended");
    assert_eq!(failover["delivered"], facts, "every acknowledged fact, once");
    assert_numbers(&failover["end_to_end_ms"], &["p50", "p99", "p999", "max"]);
    let drills = failover["drills"].as_array().expect("drills");
    let actions: Vec<&str> = drills.iter().filter_map(|d| d["action"].as_str()).collect();
    assert_eq!(actions, ["sigkill", "step-down"]);
    for drill in drills {
        assert_ne!(drill["from"], drill["to"], "{drill}");
        assert_numbers(drill, &["active_seconds", "first_ack_seconds"]);
    }
    // The step-down hands back to the instance the kill took down (restarted as a standby).
    assert_eq!(drills[1]["from"], drills[0]["to"]);
    assert_eq!(drills[1]["to"], drills[0]["from"]);
}
