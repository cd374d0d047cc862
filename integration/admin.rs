//! The admin API's control endpoints (SPEC §10) against real nodes: a drain lets in-flight client
//! calls finish and refuses new ones as retryable while replication goes on, resume undoes it;
//! a configured token guards every POST; `/v1/status` reports zone, gates, backlogs, consumers
//! and the certificate; SIGTERM drains and exits 0. `bsfg status` and `bsfg admin` drive the
//! same API, with the CLI's error codes and exit statuses.

use crate::harness;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bsfg::devnet::proxy::Direction;
use bsfg_proto::ErrorCode;
use harness::{
    admin::{http, json, sample},
    message,
    observe::wait_until,
    Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_calls_refuses_new_ones_and_resume_restores_them() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let addr = cluster.admin("enterprise");
    assert_eq!(http(addr, "GET", "/readyz", None).0, 200);

    // A producer appends back to back until the node refuses it.
    let client = cluster.client("enterprise").await;
    let acked = Arc::new(AtomicUsize::new(0));
    let producer = tokio::spawn({
        let acked = acked.clone();
        async move {
            for i in 0.. {
                match client.append(message("enterprise", "plant-a", &format!("m-{i}"))).await {
                    Ok(_) => acked.fetch_add(1, Ordering::SeqCst),
                    Err(e) => return (client, e),
                };
            }
            unreachable!()
        }
    });
    // Another appended once and keeps its append stream open, idle: the drain ends it.
    let idle = cluster.client("enterprise").await;
    idle.append(message("enterprise", "plant-a", "idle-0"))
        .await
        .expect("the idle producer's first append");
    while acked.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "POST", "/v1/admin/drain", None))
        .await
        .expect("drain request");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), serde_json::json!({"drained": true, "in_flight": 0}));
    let refused = idle
        .append(message("enterprise", "plant-a", "idle-1"))
        .await
        .expect_err("refused while draining");
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");

    let (client, refused) = tokio::time::timeout(Duration::from_secs(10), producer)
        .await
        .expect("the producer is refused once the node drains")
        .expect("producer task");
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    assert!(refused.to_string().contains("node is draining"), "{refused}");
    let output = cluster.cli_append("enterprise", "plant-a");
    assert_eq!(output.status.code(), Some(75), "{}", harness::stderr(&output));
    assert!(
        harness::stderr(&output).contains("UNAVAILABLE"),
        "{}",
        harness::stderr(&output)
    );
    assert_eq!(http(addr, "GET", "/readyz", None).0, 503);
    let (_, metrics) = http(addr, "GET", "/metrics", None);
    assert_eq!(sample(&metrics, "bsfg_draining"), Some(1.0), "{metrics}");
    assert_eq!(json(&http(addr, "GET", "/v1/status", None).1)["draining"], true);

    // Replication keeps going while draining: what was acknowledged reaches plant-a.
    let consumer = cluster.client("plant-a").await;
    let expected = acked.load(Ordering::SeqCst) + 1;
    let received = harness::receive(&consumer, "mes", expected, Duration::from_secs(30)).await;
    assert_eq!(
        received.len(),
        expected,
        "acknowledged facts replicate during the drain"
    );
    consumer.close().await;

    let (status, body) = http(addr, "POST", "/v1/admin/resume", None);
    assert_eq!(status, 200, "{body}");
    let output = cluster.cli_append("enterprise", "plant-a");
    assert_eq!(output.status.code(), Some(0), "{}", harness::stderr(&output));
    // The refusal ended the producer's append stream; its next append opens another.
    client
        .append(message("enterprise", "plant-a", "after-resume"))
        .await
        .expect("the producer appends again after the resume");
    assert_eq!(http(addr, "GET", "/readyz", None).0, 200);
    let (_, metrics) = http(addr, "GET", "/metrics", None);
    assert_eq!(sample(&metrics, "bsfg_draining"), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_guards_every_post() {
    let mut cluster = Cluster::pair();
    let token_file = cluster.dir().join("admin.token");
    std::fs::write(&token_file, "  s3cret-token\n").expect("token file");
    let node = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
    node.extra
        .push_str(&format!("\n[admin]\ntoken_file = \"{}\"\n", token_file.display()));
    cluster.start_all();
    let addr = cluster.admin("enterprise");

    let mutating = [
        "/v1/admin/drain",
        "/v1/admin/resume",
        "/v1/admin/reload",
        "/v1/admin/gates/plant-a/close",
        "/v1/admin/gates/plant-a/open",
    ];
    for path in mutating {
        let (status, body) = http(addr, "POST", path, None);
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(json(&body)["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        let (status, body) = http(addr, "POST", path, Some("wrong"));
        assert_eq!(status, 401, "{path} with a wrong token: {body}");
    }
    assert_eq!(http(addr, "GET", "/readyz", None).0, 200, "nothing was drained");
    assert_eq!(http(addr, "GET", "/v1/status", None).0, 200, "GETs stay open");
    // A wrong method says which one is right, and an unknown path says so, both as JSON (they
    // were an empty 404).
    let (status, body) = http(addr, "GET", "/v1/admin/drain", None);
    assert_eq!(status, 405, "{body}");
    assert!(
        json(&body)["message"].as_str().is_some_and(|m| m.contains("use POST")),
        "{body}"
    );
    let (status, body) = http(addr, "POST", "/v1/status", Some("s3cret-token"));
    assert_eq!(status, 405, "{body}");
    let (status, body) = http(addr, "GET", "/v1/nonexistent", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["error"], "NOT_FOUND", "{body}");
    assert!(
        json(&body)["message"]
            .as_str()
            .is_some_and(|m| m.contains("/v1/nonexistent")),
        "{body}"
    );

    let (status, body) = http(addr, "POST", "/v1/admin/drain", Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["drained"], true, "{body}");
    assert_eq!(http(addr, "GET", "/readyz", None).0, 503);
    let (status, body) = http(addr, "POST", "/v1/admin/resume", Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(addr, "GET", "/readyz", None).0, 200);

    // The CLI: refused without the token (exit 1), accepted with it, from a flag or from the env.
    let refused = cluster.admin_cli("enterprise", &["admin", "drain"]);
    assert_eq!(refused.status.code(), Some(1), "{}", harness::stderr(&refused));
    assert!(harness::stderr(&refused).starts_with("error: UNAUTHENTICATED: "));
    let token_arg = token_file.to_string_lossy().into_owned();
    let drained = cluster.admin_cli("enterprise", &["admin", "drain", "--token-file", &token_arg]);
    assert_eq!(drained.status.code(), Some(0), "{}", harness::stderr(&drained));
    assert_eq!(harness::json_lines(&drained)[0]["drained"], true);
    let resumed = std::process::Command::new(harness::bin())
        .args(["admin", "resume"])
        .env("BSFG_ADMIN", format!("http://{addr}"))
        .env("BSFG_ADMIN_TOKEN_FILE", &token_file)
        .output()
        .expect("run bsfg");
    assert_eq!(resumed.status.code(), Some(0), "{}", harness::stderr(&resumed));
    assert_eq!(http(addr, "GET", "/readyz", None).0, 200);

    // A rotated token (after a leak) takes effect at the reload: the old one is refused at once.
    std::fs::write(&token_file, "rotated-token\n").expect("token file");
    let (status, body) = http(addr, "POST", "/v1/admin/reload", Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["admin_token_changed"], true, "{body}");
    assert_eq!(http(addr, "POST", "/v1/admin/resume", Some("s3cret-token")).0, 401);
    assert_eq!(http(addr, "POST", "/v1/admin/resume", Some("rotated-token")).0, 200);
    // A token file that cannot be read refuses the whole reload, and the token in use stays.
    std::fs::write(&token_file, "  \n").expect("token file");
    let (status, body) = http(addr, "POST", "/v1/admin/reload", Some("rotated-token"));
    assert_eq!(status, 422, "{body}");
    assert!(
        json(&body)["reason"]
            .as_str()
            .is_some_and(|r| r.contains("admin.token_file")),
        "{body}"
    );
    assert_eq!(http(addr, "POST", "/v1/admin/resume", Some("rotated-token")).0, 200);
}

/// Runs `bsfg status` (table) against `zone` and returns its stdout.
fn status_table(cluster: &Cluster, zone: &str) -> String {
    let out = cluster.admin_cli(zone, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", harness::stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whitespace-separated cells of the table row starting with `first`.
fn row(table: &str, first: &str) -> Vec<String> {
    let line = table.lines().find(|l| l.split_whitespace().next() == Some(first));
    let line = line.unwrap_or_else(|| panic!("no row {first}:\n{table}"));
    line.split_whitespace().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_gates_backlogs_consumers_and_certificate_and_sigterm_exits_zero() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let linked = cluster
        .wait_gate("enterprise", "plant-a", "normal", Duration::from_secs(20))
        .await;
    assert!(linked.is_some(), "the pair links");
    let report = cluster.status("enterprise");
    assert_eq!(report["zone"], "enterprise", "{report}");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"), "{report}");
    assert_eq!(report["draining"], false, "{report}");
    assert_eq!(report["peers"]["plant-a"]["state"], "normal", "{report}");
    assert_eq!(report["peers"]["plant-a"]["backlog"], 0, "{report}");
    assert!(report["peers"]["plant-a"]["frontier"].is_u64(), "{report}");
    assert!(report["peers"]["plant-a"]["lag_seconds"].is_number(), "{report}");
    assert_eq!(report["certificate"]["subject"], "CN=enterprise", "{report}");
    let left = report["certificate"]["seconds_left"].as_u64().unwrap_or_default();
    assert!(left > 29 * 86_400 && left <= 30 * 86_400, "{report}");
    let table = status_table(&cluster, "enterprise");
    assert!(table.starts_with("zone         enterprise (bsfg "), "{table}");
    assert_eq!(row(&table, "plant-a")[1..], ["normal", "0", "0", "0.0s"], "{table}");

    // Facts for a closed gate wait here: the backlog counts them, then replication empties it.
    let close = cluster.admin_cli("enterprise", &["admin", "gate-close", "plant-a"]);
    assert_eq!(close.status.code(), Some(0), "{}", harness::stderr(&close));
    let client = cluster.client("enterprise").await;
    for i in 0..5 {
        let id = format!("m-{i}");
        client
            .append(message("enterprise", "plant-a", &id))
            .await
            .expect("append");
    }
    client.close().await;
    let backlog = |n: u64| cluster.status("enterprise")["peers"]["plant-a"]["backlog"] == n;
    wait_until(Duration::from_secs(10), "the backlog toward plant-a is 5", || {
        backlog(5)
    })
    .await;
    let cells = row(&status_table(&cluster, "enterprise"), "plant-a");
    assert_eq!(cells[1..5], ["autonomous", "(closed)", "0", "5"], "{cells:?}");
    let store = cluster.status("enterprise")["store"].clone();
    assert_eq!(store["facts"], 5, "the store buffer retains the five: {store}");
    assert!(store["bytes"].as_u64().is_some_and(|b| b > 0), "{store}");
    assert!(store["fill_percent"].as_f64().is_some_and(|f| f > 0.0), "{store}");
    let open = cluster.admin_cli("enterprise", &["admin", "gate-open", "plant-a"]);
    assert_eq!(open.status.code(), Some(0), "{}", harness::stderr(&open));
    wait_until(Duration::from_secs(30), "the backlog toward plant-a is 0", || {
        backlog(0)
    })
    .await;

    // plant-a's consumer confirms two of the five.
    let consumer = cluster.client("plant-a").await;
    let received = harness::receive(&consumer, "peek", 5, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 5);
    let forward = cluster.status("plant-a")["forward"].clone();
    assert_eq!(
        forward["facts"], 5,
        "plant-a's forward buffer holds the five: {forward}"
    );
    consumer.confirm("mes", received[1].offset).await.expect("confirm");
    consumer.close().await;
    wait_until(Duration::from_secs(10), "consumer mes has a backlog of 3", || {
        let consumers = cluster.status("plant-a")["forward"]["consumers"].clone();
        consumers
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "mes" && c["backlog"] == 3))
    })
    .await;
    let json_out = cluster.admin_cli("plant-a", &["status", "--json"]);
    assert_eq!(json_out.status.code(), Some(0), "{}", harness::stderr(&json_out));
    assert_eq!(harness::json_lines(&json_out)[0]["zone"], "plant-a");
    let cells = row(&status_table(&cluster, "plant-a"), "mes");
    assert_eq!(
        cells[1..3],
        [received[1].offset.to_string(), "3".to_owned()],
        "{cells:?}"
    );

    // No node at the address: retryable (exit 75).
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let unreachable = std::process::Command::new(harness::bin())
        .args(["status", "--admin", &format!("http://{closed_port}")])
        .output()
        .expect("run bsfg");
    assert_eq!(unreachable.status.code(), Some(75), "{}", harness::stderr(&unreachable));
    assert!(harness::stderr(&unreachable).starts_with("error: UNAVAILABLE: "));

    let node = cluster.nodes.get_mut("enterprise").expect("enterprise runs");
    let exit = node
        .terminate(Duration::from_secs(40))
        .expect("the node stops on SIGTERM");
    assert_eq!(exit.code(), Some(0), "SIGTERM drains then exits 0");
    let log = std::fs::read_to_string(cluster.dir().join("enterprise.log")).unwrap_or_default();
    assert!(log.contains("\"drained\""), "the shutdown drained first:\n{log}");
}

/// A node stopping on SIGTERM drains for good: while its drain waits for a client call in
/// flight, `resume` is refused (409, audited) and `/readyz` stays 503; then it exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_refuses_to_resume() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let addr = cluster.admin("enterprise");
    let (proxy, client) = cluster.client_through_proxy("enterprise").await;
    // A long-poll of a consumer with nothing to read, whose answer the line holds back: a
    // client call the drain waits for (its answer must be delivered, see the next test).
    let waiting = tokio::spawn(async move { client.fetch("mes", 10, 8_000, None).await });
    wait_until(Duration::from_secs(10), "the long-poll is in flight", || {
        json(&http(addr, "GET", "/v1/status", None).1)["in_flight"] == 1
    })
    .await;
    proxy.faults().cut(Direction::FromTarget);

    cluster.signal("enterprise", "TERM");
    wait_until(Duration::from_secs(10), "the node drains", || {
        http(addr, "GET", "/readyz", None).0 == 503
    })
    .await;
    let (status, body) = http(addr, "POST", "/v1/admin/resume", None);
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["error"], "INVALID_ARGUMENT", "{body}");
    assert!(body.contains("stopping"), "{body}");
    assert_eq!(http(addr, "GET", "/readyz", None).0, 503, "still not ready");
    let report = json(&http(addr, "GET", "/v1/status", None).1);
    assert_eq!(report["draining"], true, "{report}");

    proxy.faults().heal();
    let answered = waiting.await.expect("fetch task");
    assert!(answered.is_ok(), "the call in flight was answered: {answered:?}");
    let exit = cluster.terminate("enterprise");
    assert_eq!(exit.code(), Some(0));
    let log = std::fs::read_to_string(cluster.dir().join("enterprise.log")).unwrap_or_default();
    let audited = log
        .lines()
        .filter(|l| l.contains("\"admin_action\"") && l.contains("resume"))
        .collect::<Vec<_>>();
    assert_eq!(audited.len(), 1, "the refused resume is audited: {log}");
    assert!(audited[0].contains("INVALID_ARGUMENT"), "{}", audited[0]);
}

/// A stopping node's drain ends when the client has its answer, not when the answer is written:
/// the drain ends a consumer's idle long-poll at once, its (empty) answer is lost on its way (the
/// fault proxy drops what the node sends), and the node, which exits right after its drain, must
/// still be there to send it again once the line is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_until_the_last_answer_is_delivered() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let addr = cluster.admin("enterprise");
    let (proxy, client) = cluster.client_through_proxy("enterprise").await;
    let waiting = tokio::spawn(async move { client.fetch("mes", 10, 30_000, None).await });
    wait_until(Duration::from_secs(10), "the long-poll is in flight", || {
        json(&http(addr, "GET", "/v1/status", None).1)["in_flight"] == 1
    })
    .await;
    proxy.faults().cut(Direction::FromTarget);
    cluster.signal("enterprise", "TERM");
    wait_until(Duration::from_secs(10), "the node drains", || {
        http(addr, "GET", "/readyz", None).0 == 503
    })
    .await;
    // The answer is written at once and lost; QUIC sends it again every few hundred ms.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        http(addr, "GET", "/healthz", None).0,
        200,
        "the node still runs while its answer is undelivered"
    );
    proxy.faults().heal();
    let answered = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the call ends")
        .expect("fetch task");
    let page = answered.expect("the call in flight was answered");
    assert!(page.facts.is_empty(), "nothing to read: {page:?}");
    assert_eq!(cluster.terminate("enterprise").code(), Some(0));
}

/// A drain does not wait out a consumer's idle long-poll (up to a minute): the poll answers at
/// once, empty, and the drain reports drained. A restart costs producers seconds, not the
/// longest wait a consumer asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_idle_long_polls_at_once() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let addr = cluster.admin("enterprise");
    let client = cluster.client("enterprise").await;
    let asked = tokio::time::Instant::now();
    let waiting = tokio::spawn(async move { client.fetch("mes", 10, 60_000, None).await });
    wait_until(Duration::from_secs(10), "the long-poll is in flight", || {
        json(&http(addr, "GET", "/v1/status", None).1)["in_flight"] == 1
    })
    .await;
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "POST", "/v1/admin/drain", None))
        .await
        .expect("drain request");
    assert_eq!(status, 200, "{body}");
    // Within the drain's 30 s grace, which the 60 s poll would outlast.
    assert_eq!(json(&body), serde_json::json!({"drained": true, "in_flight": 0}));
    let page = waiting.await.expect("fetch task").expect("the poll is answered");
    assert!(page.facts.is_empty(), "nothing to read: {page:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "answered before the grace ran out"
    );
    let (status, body) = http(addr, "POST", "/v1/admin/resume", None);
    assert_eq!(status, 200, "{body}");
}

/// The same for an append stream, whose calls end when their answers are written: a stopping
/// node ends the stream and waits until the producer has its last answers and the stream's end,
/// which the fault proxy holds back for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_until_an_append_streams_last_answers_are_delivered() {
    const LATE: usize = 20;
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let addr = cluster.admin("enterprise");
    let (proxy, client) = cluster.client_through_proxy("enterprise").await;
    let client = Arc::new(client);
    client
        .append(message("enterprise", "plant-a", "first"))
        .await
        .expect("the stream opens with a first append");

    proxy.faults().cut(Direction::FromTarget);
    let late: Vec<_> = (0..LATE)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .append(message("enterprise", "plant-a", &format!("late-{i}")))
                    .await
            })
        })
        .collect();
    // Appended and answered into the cut: the calls are over for the node.
    wait_until(Duration::from_secs(10), "the late facts are stored", || {
        json(&http(addr, "GET", "/v1/status", None).1)["store"]["facts"] == 1 + LATE
    })
    .await;
    wait_until(Duration::from_secs(10), "their answers are written", || {
        json(&http(addr, "GET", "/v1/status", None).1)["in_flight"] == 0
    })
    .await;
    cluster.signal("enterprise", "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.faults().heal();
    for (i, call) in late.into_iter().enumerate() {
        let answered = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("the call ends")
            .expect("append task");
        assert!(
            answered.is_ok(),
            "late-{i} was stored, and its answer must reach the producer: {answered:?}"
        );
    }
    assert_eq!(cluster.terminate("enterprise").code(), Some(0));
}

/// `/healthz` answers 200 for as long as the process runs, also while the node starts; meanwhile
/// `/readyz` and the rest of the API answer 503. The start is held here by an HA instance whose
/// engine (its client and monitoring ports) accepts connections and never answers: the instance
/// waits for it for seconds, then fails to start and the process exits. A SIGHUP meanwhile does
/// not end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_the_node_starts() {
    let (mut serve, admin, answer, _cluster, _silent) = held_start();
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
    let ready = admin.get("/readyz").expect("/readyz answers");
    assert_eq!(ready.status, 503, "{}", ready.body);
    for path in ["/v1/status", "/metrics", "/v1/consumers"] {
        let answer = admin.get(path).expect("the API answers");
        assert_eq!(answer.status, 503, "{path}: {}", answer.body);
        let body = json(&answer.body);
        assert_eq!(
            (body["error"].as_str(), body["message"].as_str()),
            (Some("UNAVAILABLE"), Some("the node is starting")),
            "{path}"
        );
    }
    // A SIGHUP during the start (a renewal hook's `kill -HUP`) does not end the process.
    let hangup = std::process::Command::new("kill")
        .args(["-HUP", &serve.id().to_string()])
        .status()
        .expect("run kill");
    assert!(hangup.success(), "kill -HUP");
    // An operator's action is refused as retryable, and audited.
    let drain = admin.post("/v1/admin/drain").expect("the API answers");
    assert_eq!(drain.status, 503, "{}", drain.body);
    assert_eq!(json(&drain.body)["error"], "UNAVAILABLE");
    assert!(
        serve.try_wait().expect("wait").is_none(),
        "still starting when the answers came"
    );

    // The engine never answers and the start fails: the process exits, and with it the listener.
    let output = serve.wait_with_output().expect("wait");
    assert!(
        !output.status.success(),
        "a start without an engine fails: {}",
        output.status
    );
    assert!(
        output.status.code().is_some(),
        "the start ended it, not the SIGHUP: {}",
        output.status
    );
    assert!(
        admin.get("/healthz").is_err(),
        "no listener once the process has exited"
    );
    let log = String::from_utf8_lossy(&output.stdout);
    let audited: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["msg"] == "admin_action")
        .collect();
    assert_eq!(audited.len(), 1, "one audit line, for the drain: {log}");
    assert_eq!(
        (&audited[0]["operation"], &audited[0]["result"], &audited[0]["code"]),
        (
            &serde_json::json!("drain"),
            &serde_json::json!("retryable_error"),
            &serde_json::json!("UNAVAILABLE")
        ),
        "{}",
        audited[0]
    );
}

/// An HA instance whose engine (its client and monitoring ports) accepts connections and never
/// answers, started: held in its start for 2 s (`REQUEST_TIMEOUT`) before it gives up. Returns
/// the process once `/healthz` answers, that answer, and what must live as long as the test.
fn held_start() -> (
    std::process::Child,
    bsfg::admin::client::AdminClient,
    bsfg::admin::client::Answer,
    harness::Cluster,
    std::net::TcpListener,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent port");
    let silent = listener.local_addr().expect("its address");
    let mut cluster = harness::Cluster::new(&["enterprise", "plant-a"], &[("enterprise", "plant-a")]);
    cluster
        .net
        .make_ha("enterprise", &["enterprise-1"], |instance| {
            format!(
                "[storage]\nengine = \"jetstream\"\n\n[storage.jetstream]\nurls = [\"nats://{silent}\"]\n\
                 instance = \"{instance}\"\nmonitor_urls = [\"http://{silent}\"]\n"
            )
        })
        .expect("HA zone");
    let node = cluster.net.node("enterprise-1").expect("instance");
    let admin = bsfg::admin::client::AdminClient::at(node.admin, None);
    let mut serve = std::process::Command::new(harness::bin())
        .args(["serve", "--config"])
        .arg(&node.config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run bsfg serve");
    let answer = loop {
        if let Ok(answer) = admin.get("/healthz") {
            break answer;
        }
        if let Some(status) = serve.try_wait().expect("wait") {
            panic!("exited ({status}) before /healthz answered");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (serve, admin, answer, cluster, listener)
}

/// A SIGTERM while the node starts ends the start: exit 0, `shutdown_requested` logged. Before,
/// SIGTERM was taken over only once the node served, so one that came earlier (systemd stopping
/// a unit still starting, a test stopping a node that had just said it listens) killed the
/// process by its default action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_while_the_node_starts_ends_the_start() {
    let (serve, _admin, _answer, _cluster, _silent) = held_start();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .expect("run kill");
    assert!(term.success(), "kill -TERM");
    let output = serve.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(0), "a clean exit: {}", output.status);
    let log = String::from_utf8_lossy(&output.stdout);
    let requested = log.lines().find(|l| l.contains("\"shutdown_requested\""));
    assert!(
        requested.is_some_and(|l| l.contains("\"during\":\"start\"")),
        "the stop is logged as one during the start: {log}"
    );
}
