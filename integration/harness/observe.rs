//! Watching running nodes from the outside: Prometheus samples from the admin listener, events
//! from the JSON logs, and waiting until a condition holds (never a sleep hoping for the best).

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use super::Cluster;

/// The admin listener's `/metrics` text of `zone`'s node.
pub fn scrape(cluster: &Cluster, zone: &str) -> String {
    let admin = cluster.net.node(zone).expect("zone").admin;
    let mut stream = TcpStream::connect(admin).expect("connect to the admin listener");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes())
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "{response}"
    );
    response
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, body)| body.to_owned())
}

/// The value of `series` (name, and labels if any, exactly as exposed) on `zone`'s node; 0 when absent.
pub fn metric(cluster: &Cluster, zone: &str, series: &str) -> f64 {
    scrape(cluster, zone)
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every sample in `text` (a scrape) whose series starts with `prefix`: a metric's
/// name for all its labels, or a name with its first labels (`name{peer="a"`).
pub fn total(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every log record of `zone`'s node whose `msg` is `event`, oldest first.
pub fn events(cluster: &Cluster, zone: &str, event: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(cluster.dir().join(format!("{zone}.log"))).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["msg"] == event)
        .collect()
}

/// [`events`], also where a line was glued to the cut-off last line of the node's previous run
/// (a stopping node can exit before its asynchronous logger finished its last line): for events
/// logged right after a restart.
pub fn events_after_restart(cluster: &Cluster, zone: &str, event: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(cluster.dir().join(format!("{zone}.log"))).unwrap_or_default();
    let start = format!("{{\"msg\":\"{event}\"");
    text.lines()
        .filter_map(|line| line.find(&start).map(|at| &line[at..]))
        .filter_map(|record| serde_json::from_str::<serde_json::Value>(record).ok())
        .collect()
}

/// The `field` of every `event` logged by `zone`'s node, as strings.
pub fn event_fields(cluster: &Cluster, zone: &str, event: &str, field: &str) -> Vec<String> {
    events(cluster, zone, event)
        .iter()
        .map(|record| record[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls `condition` until it holds; fails the test naming `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {timeout:?} in vain until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
