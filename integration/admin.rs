//! The admin API's control endpoints (SPEC §10) against real nodes: a drain lets in-flight client
//! calls finish and refuses new ones as retryable while replication goes on, resume undoes it;
//! a configured token guards every POST; `/v1/status` reports zone and gates; SIGTERM drains and
//! exits 0.

mod harness;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bsfg_proto::ErrorCode;
use harness::{message, Cluster};

/// `method path` on the admin listener, with an optional bearer token: status code and body.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin listener");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON: {body:?}: {e}"))
}

/// The value of the sample whose name-and-labels part is exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn admin(cluster: &Cluster, zone: &str) -> SocketAddr {
    cluster.net.node(zone).expect("zone").admin
}

fn cli_append(cluster: &Cluster) -> std::process::Output {
    let args = [
        "append",
        "--to",
        "plant-a",
        "--subject",
        "s",
        "--predicate",
        "p",
        "--object-json",
        "1",
    ];
    cluster.cli("enterprise", &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_calls_refuses_new_ones_and_resume_restores_them() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let addr = admin(&cluster, "enterprise");
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
                    Err(e) => return e,
                };
            }
            unreachable!()
        }
    });
    while acked.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "POST", "/v1/admin/drain", None))
        .await
        .expect("drain request");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), serde_json::json!({"drained": true, "in_flight": 0}));

    let refused = tokio::time::timeout(Duration::from_secs(10), producer)
        .await
        .expect("the producer is refused once the node drains")
        .expect("producer task");
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    assert!(refused.to_string().contains("node is draining"), "{refused}");
    let output = cli_append(&cluster);
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
    let expected = acked.load(Ordering::SeqCst);
    let received = harness::receive(&consumer, "mes", expected, Duration::from_secs(30)).await;
    assert_eq!(
        received.len(),
        expected,
        "acknowledged facts replicate during the drain"
    );
    consumer.close().await;

    let (status, body) = http(addr, "POST", "/v1/admin/resume", None);
    assert_eq!(status, 200, "{body}");
    let output = cli_append(&cluster);
    assert_eq!(output.status.code(), Some(0), "{}", harness::stderr(&output));
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
    let addr = admin(&cluster, "enterprise");

    for path in ["/v1/admin/drain", "/v1/admin/resume"] {
        let (status, body) = http(addr, "POST", path, None);
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(json(&body)["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        let (status, body) = http(addr, "POST", path, Some("wrong"));
        assert_eq!(status, 401, "{path} with a wrong token: {body}");
    }
    assert_eq!(http(addr, "GET", "/readyz", None).0, 200, "nothing was drained");
    assert_eq!(http(addr, "GET", "/v1/status", None).0, 200, "GETs stay open");

    let (status, body) = http(addr, "POST", "/v1/admin/drain", Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["drained"], true, "{body}");
    assert_eq!(http(addr, "GET", "/readyz", None).0, 503);
    let (status, body) = http(addr, "POST", "/v1/admin/resume", Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(addr, "GET", "/readyz", None).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_zone_and_gates_and_sigterm_exits_zero() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let linked = cluster
        .wait_gate("enterprise", "plant-a", "normal", Duration::from_secs(20))
        .await;
    assert!(linked.is_some(), "the pair links");
    let (status, body) = http(admin(&cluster, "enterprise"), "GET", "/v1/status", None);
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    assert_eq!(report["zone"], "enterprise", "{body}");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"), "{body}");
    assert_eq!(report["draining"], false, "{body}");
    assert_eq!(report["peers"]["plant-a"]["state"], "normal", "{body}");
    assert!(report["peers"]["plant-a"]["frontier"].is_i64(), "{body}");
    assert!(report["peers"]["plant-a"]["lag_seconds"].is_number(), "{body}");
    assert_eq!(report["certificate"]["subject"], "CN=enterprise", "{body}");
    let left = report["certificate"]["seconds_left"].as_u64().unwrap_or_default();
    assert!(left > 29 * 86_400 && left <= 30 * 86_400, "{body}");

    let node = cluster.nodes.get_mut("enterprise").expect("enterprise runs");
    let exit = node
        .terminate(Duration::from_secs(40))
        .expect("the node stops on SIGTERM");
    assert_eq!(exit.code(), Some(0), "SIGTERM drains then exits 0");
    let log = std::fs::read_to_string(cluster.dir().join("enterprise.log")).unwrap_or_default();
    assert!(log.contains("\"drained\""), "the shutdown drained first:\n{log}");
}
