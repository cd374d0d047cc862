//! The audit trail loses nothing (SPEC §12). With `log.audit = true`, 200 000 facts appended in
//! 10 000 `AppendFacts` calls from four producers, while a consumer long-polls, and the node's
//! stdout read by a deliberately slow reader (it stalls while more lines are written than the
//! node can queue): every call has its line (the async log drain used to drop records when its
//! channel was full; with this reader it dropped about a third of them). Operator actions are audited with who did them, and
//! lines written to the journal carry their syslog priority.

use crate::harness;

use std::{
    io::Read,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use harness::{admin::http, bin, message, Cluster};

const PRODUCERS: usize = 4;
const BATCHES: usize = 2_500;
const BATCH: usize = 20;

/// Calls made before a stalled reader reads again: more lines than the node can queue.
const STALL_UNTIL_CALLS: u64 = 6_000;
/// The longest stall: a node that waits for its sink stops making calls, so the reader must not
/// wait for calls forever. A node blocked on its log sink answers nothing, not even QUIC
/// keep-alives, so the stall stays well below the idle timeouts (the node's `link_timeout` of 5 s,
/// the client's 10 s): a longer one times the producers' connections out, which is the sink's
/// backpressure working, not a lost line.
const LONGEST_STALL: Duration = Duration::from_secs(2);

/// A log shipper that stalls (until `calls` reach [`STALL_UNTIL_CALLS`], or
/// [`LONGEST_STALL`] passed), then reads `source` to its end at about 8 MB/s.
fn slow_reader(mut source: impl Read + Send + 'static, calls: Arc<AtomicU64>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let stalled = std::time::Instant::now();
        while calls.load(Ordering::Relaxed) < STALL_UNTIL_CALLS && stalled.elapsed() < LONGEST_STALL {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (mut text, mut chunk) = (Vec::new(), vec![0u8; 8 << 10]);
        loop {
            match source.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&chunk[..n]),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_has_its_line_under_load_and_a_slow_reader() {
    let cluster = Cluster::pair();
    cluster.net.write_configs().expect("configs");
    let config = cluster.net.node("enterprise").expect("enterprise").config.clone();
    let mut node = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start enterprise");
    let calls = Arc::new(AtomicU64::new(0));
    let reader = slow_reader(node.stdout.take().expect("stdout"), calls.clone());
    let admin = cluster.admin("enterprise");
    harness::observe::wait_until(Duration::from_secs(30), "enterprise serves", || {
        bsfg::admin::client::AdminClient::at(admin, None)
            .get("/readyz")
            .is_ok_and(|a| a.status == 200)
    })
    .await;

    let fetching = Arc::new(AtomicBool::new(true));
    let fetches = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (client, fetching, fetches) = (cluster.client("enterprise").await, fetching.clone(), fetches.clone());
        tokio::spawn(async move {
            while fetching.load(Ordering::Relaxed) {
                client.fetch("audit-reader", 100, 50, None).await.expect("fetch");
                fetches.fetch_add(1, Ordering::Relaxed);
            }
            client.close().await;
        })
    };
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (client, calls) = (cluster.client("enterprise").await, calls.clone());
        producers.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let batch = (0..BATCH)
                    .map(|i| message("enterprise", "plant-a", &format!("p{p}-b{b}-{i}")))
                    .collect();
                let results = client.append_batch(batch).await.expect("append batch");
                assert!(results.iter().all(Result::is_ok));
                calls.fetch_add(1, Ordering::Relaxed);
            }
            client.close().await;
        }));
    }
    for producer in producers {
        producer.await.expect("producer");
    }
    fetching.store(false, Ordering::Relaxed);
    consumer.await.expect("consumer");
    let (code, _) = http(admin, "POST", "/v1/admin/drain", None);
    assert_eq!(code, 200);
    let stopped = Command::new("kill").arg(node.id().to_string()).status().expect("kill");
    assert!(stopped.success());
    assert!(node.wait().expect("exit").success(), "a clean stop");
    let text = reader.join().expect("reader");

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let calls = |op: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["operation"] == op && l["caller"] == harness::CLIENT)
            .collect()
    };
    let appends = calls("append_facts");
    let facts: u64 = appends.iter().filter_map(|l| l["facts"].as_u64()).sum();
    assert_eq!(appends.len(), PRODUCERS * BATCHES, "one line per AppendFacts call");
    assert_eq!(facts, (PRODUCERS * BATCHES * BATCH) as u64);
    assert!(
        appends
            .iter()
            .all(|l| l["first_message_id"].is_string() && l["last_message_id"].is_string()),
        "batch lines name their first and last facts"
    );
    assert!(
        appends.iter().all(|l| l["msg"] == "fact_appended"),
        "an append that succeeded is a fact_appended line (SPEC §12)"
    );
    assert_eq!(
        calls("fetch_facts").len() as u64,
        fetches.load(Ordering::Relaxed),
        "one line per fetch"
    );
    let drains: Vec<_> = lines.iter().filter(|l| l["msg"] == "admin_action").collect();
    assert_eq!(drains.len(), 1, "{drains:?}");
    assert_eq!(
        (drains[0]["operation"].as_str(), drains[0]["caller"].as_str()),
        (Some("drain"), Some("local"))
    );
    assert!(
        lines.iter().any(|l| l["msg"] == "exited"),
        "the last line of the process is there"
    );
    assert!(!text.contains("dropped messages"), "nothing was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_to_the_journal_carry_their_priority_and_operators_are_named() {
    let mut cluster = Cluster::pair();
    let token = cluster.dir().join("admin.token");
    std::fs::write(&token, "s3cret\n").expect("token");
    let node = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
    node.extra
        .push_str(&format!("\n[admin]\ntoken_file = \"{}\"\n", token.display()));
    cluster.net.write_configs().expect("configs");
    let config = cluster.net.node("enterprise").expect("enterprise").config.clone();
    // What systemd does: stdout is the journal stream, named by JOURNAL_STREAM=<device>:<inode>.
    let journal = cluster.dir().join("journal");
    let file = std::fs::File::create(&journal).expect("journal");
    let stream = {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().expect("metadata");
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let mut node = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", &stream)
        .stdout(file.try_clone().expect("file"))
        .stderr(file)
        .spawn()
        .expect("start");
    let admin = cluster.admin("enterprise");
    harness::observe::wait_until(Duration::from_secs(30), "enterprise serves", || {
        bsfg::admin::client::AdminClient::at(admin, None)
            .get("/readyz")
            .is_ok_and(|a| a.status == 200)
    })
    .await;
    assert_eq!(
        http(admin, "POST", "/v1/admin/gates/plant-a/close", Some("s3cret")).0,
        200
    );
    assert_eq!(
        http(admin, "POST", "/v1/admin/gates/plant-a/open", Some("wrong")).0,
        401
    );
    assert_eq!(
        http(admin, "POST", "/v1/admin/gates/plant-a/open", Some("s3cret")).0,
        200
    );
    assert!(Command::new("kill")
        .arg(node.id().to_string())
        .status()
        .expect("kill")
        .success());
    assert!(node.wait().expect("exit").success());

    let text = std::fs::read_to_string(&journal).expect("journal");
    let mut actions = Vec::new();
    for line in text.lines() {
        let (priority, json) = line
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .unwrap_or_else(|| panic!("a line to the journal starts with <N>: {line}"));
        let record: serde_json::Value = serde_json::from_str(json).expect("JSON after the prefix");
        let expected = match record["level"].as_str() {
            Some("error") => "3",
            Some("warning") => "4",
            Some("info") => "6",
            other => panic!("level {other:?}"),
        };
        assert_eq!(priority, expected, "{line}");
        if record["msg"] == "admin_action" {
            actions.push(record);
        }
    }
    let seen: Vec<(&str, &str, &str)> = actions
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default();
            (field("operation"), field("caller"), field("result"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("gate_close", "admin-token", "success"),
            ("gate_open", "unauthenticated", "permanent_error"),
            ("gate_open", "admin-token", "success"),
        ]
    );
    assert!(actions
        .iter()
        .all(|a| a["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:"))));
    assert_eq!(actions[0]["peer"], "plant-a");

    // The CLI's own refusals go to the journal as errors too.
    let cli = Command::new(bin())
        .args(["status", "--admin", "http://127.0.0.1:1"])
        .env("JOURNAL_STREAM", "0:0")
        .output()
        .expect("bsfg status");
    assert!(
        String::from_utf8_lossy(&cli.stderr).starts_with("error: UNAVAILABLE"),
        "not the journal: no prefix"
    );
}

/// `log.level = "warning"` quiets the node's own info lines, not the audit trail: with `log.audit
/// = true` an append that succeeded still has its `fact_appended` line and an operator's action
/// its `admin_action` line (both info), while the node's own info lines are not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quieter_log_level_keeps_every_audit_line() {
    let mut cluster = Cluster::pair();
    let node = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
    node.extra.push_str("\n[log]\nlevel = \"warning\"\naudit = true\n");
    cluster.start_ready("enterprise");
    let client = cluster.client("enterprise").await;
    client
        .append(message("enterprise", "plant-a", "quiet-1"))
        .await
        .expect("append");
    let admin = cluster.admin("enterprise");
    assert_eq!(http(admin, "POST", "/v1/admin/gates/plant-a/close", None).0, 200);
    assert!(cluster.terminate("enterprise").success());

    let lines = cluster.log_lines("enterprise");
    let logged = |msg: &str| lines.iter().filter(|l| l["msg"] == msg).count();
    assert_eq!(logged("fact_appended"), 1, "{lines:?}");
    assert_eq!(logged("admin_action"), 1, "{lines:?}");
    assert_eq!(logged("node_started"), 0, "the level still quiets the rest: {lines:?}");
}
