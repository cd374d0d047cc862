//! End-to-end harness: clusters of real `bsfg serve` processes on loopback with a real PKI, real
//! RocksDB on disk and real QUIC, built on `bsfg::devnet`. Node logs are printed when a test fails.
//! [`engine`] runs the engine of an HA zone (a real nats-server cluster) for the engine tests.

pub mod admin;
pub mod damage;
pub mod disk;
pub mod drill;
pub mod engine;
pub mod estate;
pub mod failure;
pub mod ha;
pub mod history;
pub mod notify;
pub mod observe;
pub mod raw;
pub mod traffic;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use bsfg::{
    client::{Client, ClientOptions},
    devnet::{procstat, proxy::FaultProxy, Devnet, NodeProcess},
};
use bsfg_proto::{ArtifactRef, Envelope, Fact, FetchedFact, Message, PutObjectRequest};

pub const CLIENT: &str = "tester";

/// The zones of [`Cluster::pair`], each with its peer.
pub const PAIR: [(&str, &str); 2] = [("enterprise", "plant-a"), ("plant-a", "enterprise")];

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bsfg"))
}

/// A set of zones, their processes, and a scratch directory that lives as long as the cluster.
pub struct Cluster {
    pub net: Devnet,
    pub nodes: BTreeMap<String, NodeProcess>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Zones peered pairwise along `links`, with the client `tester` allowed everything everywhere.
    /// Nothing runs until [`Cluster::start`].
    pub fn new(zones: &[&str], links: &[(&str, &str)]) -> Self {
        Self::with(|dir| Devnet::new(dir, zones, links, &[CLIENT]))
    }

    /// The reference estate (`bsfg::devnet::estate`): enterprise, idmz, plant-a and plant-b with
    /// their routes and relay rules, the client `tester` allowed everything everywhere.
    pub fn estate() -> Self {
        Self::with(|dir| Devnet::estate(dir, &[CLIENT]))
    }

    fn with(net: impl FnOnce(&std::path::Path) -> anyhow::Result<Devnet>) -> Self {
        failure::remember();
        let dir = tempfile::Builder::new().prefix("bsfg-e2e-").tempdir().expect("tempdir");
        let net = net(dir.path()).expect("devnet");
        Self {
            net,
            nodes: BTreeMap::new(),
            dir,
        }
    }

    /// Two zones, `enterprise` and `plant-a`, peered both ways.
    pub fn pair() -> Self {
        Self::new(&["enterprise", "plant-a"], &[("enterprise", "plant-a")])
    }

    /// The pair with a 2 s `replication.link_timeout`, started, once both gates are `normal`.
    pub async fn linked_pair() -> Self {
        let mut cluster = Self::pair();
        cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
        cluster.start_all();
        cluster.wait_linked(Duration::from_secs(20)).await;
        cluster
    }

    /// Waits until both gates of the pair are `normal`; panics after `timeout`.
    pub async fn wait_linked(&self, timeout: Duration) {
        for (zone, peer) in PAIR {
            let up = self.wait_gate(zone, peer, "normal", timeout).await;
            assert!(
                up.is_some(),
                "{zone} did not reach normal toward {peer} within {timeout:?}"
            );
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn start(&mut self, zone: &str) {
        self.start_with(zone, Devnet::spawn);
    }

    /// Starts `zone` and waits until `/readyz` answers 200: for a node whose log level hides
    /// the `admin_listening` line [`Cluster::start`] waits for.
    pub fn start_ready(&mut self, zone: &str) {
        self.start_with(zone, Devnet::spawn_ready);
    }

    fn start_with(&mut self, zone: &str, spawn: fn(&Devnet, &std::path::Path, &str) -> anyhow::Result<NodeProcess>) {
        self.net.write_configs().expect("configs");
        let process = spawn(&self.net, &bin(), zone).unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()));
        self.nodes.insert(zone.to_owned(), process);
    }

    pub fn start_all(&mut self) {
        let zones: Vec<String> = self.net.nodes.keys().cloned().collect();
        for zone in zones {
            self.start(&zone);
        }
    }

    /// Starts every zone's node at the same moment (they dial each other at once).
    pub fn start_together(&mut self) {
        self.net.write_configs().expect("configs");
        let zones: Vec<String> = self.net.nodes.keys().cloned().collect();
        let names: Vec<&str> = zones.iter().map(String::as_str).collect();
        let processes = self
            .net
            .spawn_together(&bin(), &names)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()));
        for process in processes {
            self.nodes.insert(process.zone.clone(), process);
        }
    }

    /// SIGTERM, and the node's exit status.
    pub fn terminate(&mut self, zone: &str) -> std::process::ExitStatus {
        let mut node = self.nodes.remove(zone).expect("the node runs");
        node.terminate(Duration::from_secs(45)).expect("terminate")
    }

    /// SIGKILL.
    pub fn kill(&mut self, zone: &str) {
        if let Some(mut node) = self.nodes.remove(zone) {
            node.kill().expect("kill");
        }
    }

    pub fn options(&self, zone: &str) -> ClientOptions {
        self.net.client(zone, CLIENT).expect("client options")
    }

    pub async fn client(&self, zone: &str) -> Client {
        Client::connect(&self.options(zone)).await.expect("connect")
    }

    /// A client of `zone` whose connection goes through a fault proxy of its own, and the proxy.
    pub async fn client_through_proxy(&self, zone: &str) -> (FaultProxy, Client) {
        let proxy = FaultProxy::start(self.net.node(zone).expect("zone").rpc).expect("proxy");
        let mut options = self.options(zone);
        options.node = proxy.addr().to_string();
        let client = Client::connect(&options).await.expect("connect");
        (proxy, client)
    }

    /// Runs the CLI with `args` followed by the connection flags for `zone` as `identity`. The
    /// private key goes in `BSFG_KEY`: in `put-object`/`get-object`, `--key` names the object.
    pub fn cli_as(&self, zone: &str, identity: &str, args: &[&str]) -> Output {
        let node = self.net.client(zone, identity).expect("client options").node;
        self.cli_command(zone, identity, &node, args)
            .output()
            .expect("run bsfg")
    }

    /// The CLI with `args` and the connection flags for `zone` as `identity`, dialling `node`
    /// (the node's own address, or a fault proxy in front of it); not started yet.
    pub fn cli_command(&self, zone: &str, identity: &str, node: &str, args: &[&str]) -> std::process::Command {
        let o = self.net.client(zone, identity).expect("client options");
        let mut command = std::process::Command::new(bin());
        command
            .args(args)
            .args(["--node", node, "--server-name", &o.server_name])
            .arg("--ca")
            .arg(&o.ca)
            .arg("--cert")
            .arg(&o.cert)
            .env("BSFG_KEY", &o.key);
        command
    }

    pub fn cli(&self, zone: &str, args: &[&str]) -> Output {
        self.cli_as(zone, CLIENT, args)
    }

    /// `bsfg append` of a small fact to `to` on `zone`'s node, as the CLI prints it.
    pub fn cli_append(&self, zone: &str, to: &str) -> Output {
        self.cli_append_as(zone, CLIENT, to)
    }

    /// [`Cluster::cli_append`] as the client `identity`.
    pub fn cli_append_as(&self, zone: &str, identity: &str, to: &str) -> Output {
        let fact = ["--subject", "s", "--predicate", "p", "--object-json", "{}"];
        self.cli_as(zone, identity, &[&["append", "--to", to][..], &fact].concat())
    }

    /// Puts a fault proxy in front of every node and routes every peer entry through it; the
    /// map is keyed by the zone each proxy fronts. Call before starting the nodes.
    pub fn proxy_all(&mut self) -> BTreeMap<String, FaultProxy> {
        let mut proxies = BTreeMap::new();
        for (zone, node) in &self.net.nodes {
            proxies.insert(zone.clone(), FaultProxy::start(node.rpc).expect("fault proxy"));
        }
        let routes: Vec<(String, String)> = self
            .net
            .nodes
            .values()
            .flat_map(|n| n.peers.iter().map(|p| (n.zone.clone(), p.zone.clone())))
            .collect();
        for (from, to) in routes {
            self.net
                .set_peer_address(&from, &to, proxies[&to].addr())
                .expect("route through proxy");
        }
        proxies
    }

    /// Appends TOML to every node's config (e.g. a `[replication]` section).
    pub fn configure_all(&mut self, extra: &str) {
        for node in self.net.nodes.values_mut() {
            node.extra.push_str(extra);
        }
    }

    /// Every `gate_transition` logged by `zone`'s node toward `peer`, oldest first, as
    /// `(previous, new, reason)`.
    pub fn gate_transitions(&self, zone: &str, peer: &str) -> Vec<(String, String, String)> {
        observe::events(self, zone, "gate_transition")
            .into_iter()
            .filter(|v| v["peer"] == peer)
            .map(|v| {
                let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (field("previous"), field("new"), field("reason"))
            })
            .collect()
    }

    /// The gate state `zone`'s node last logged toward `peer` (`autonomous` before any).
    pub fn gate_state(&self, zone: &str, peer: &str) -> String {
        self.gate_transitions(zone, peer)
            .pop()
            .map_or_else(|| "autonomous".to_owned(), |(_, new, _)| new)
    }

    /// Waits until `zone`'s gate toward `peer` is `state`; returns how long that took, or
    /// `None` after `timeout`.
    pub async fn wait_gate(&self, zone: &str, peer: &str, state: &str, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.gate_state(zone, peer) == state {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Sends `signal` (e.g. `HUP`) to `zone`'s node.
    pub fn signal(&self, zone: &str, signal: &str) {
        let pid = self.nodes.get(zone).expect("the node runs").pid();
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Every line `zone`'s node logged, each checked to be a JSON object with the fields every
    /// line carries (SPEC §12): `timestamp` (RFC 3339, ms), `level`, `zone` and `msg`.
    pub fn log_lines(&self, zone: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{zone}.log"))).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{zone} logged a line that is not JSON: {l:?}: {e}"))
            })
            .collect();
        for line in &lines {
            let timestamp = line["timestamp"].as_str().unwrap_or_default();
            assert!(
                timestamp.len() == 24 && timestamp.ends_with('Z') && timestamp.as_bytes()[19] == b'.',
                "timestamp is RFC 3339 with milliseconds: {line}"
            );
            assert!(line["level"].is_string() && line["msg"].is_string(), "{line}");
            assert_eq!(line["zone"], zone, "{line}");
        }
        lines
    }

    /// The peak resident memory (`VmHWM`) of `zone`'s running node process, in bytes.
    pub fn peak_rss(&self, zone: &str) -> u64 {
        let pid = self
            .nodes
            .get(zone)
            .unwrap_or_else(|| panic!("{zone} is not running"))
            .pid();
        procstat::read(&pid.to_string())
            .expect("/proc of the node")
            .peak_rss_bytes
    }

    /// The last lines of every node's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for zone in self.net.nodes.keys() {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{zone}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!(
                "---- log of {zone} (last 40 lines) ----\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        out
    }
}

impl Drop for Cluster {
    /// Kills the nodes, then unmounts what a test mounted in the scratch directory (a tmpfs or a
    /// bind mount as a data directory), so the directory can be removed: removal stops at a mount
    /// point and would leave the scratch directory behind in `/tmp`.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            failure::repeat();
        }
        self.nodes.clear();
        disk::unmount_under(self.dir.path());
    }
}

/// A message from `from` to `to` with a deterministic id and content.
pub fn message(from: &str, to: &str, id: &str) -> Message {
    Message {
        envelope: Envelope {
            message_id: id.to_owned(),
            from_zone: from.to_owned(),
            to_zone: to.to_owned(),
            produced_at_unix_ms: 1_700_000_000_000,
            ..Envelope::default()
        },
        fact: Fact {
            subject: format!("item/{id}"),
            predicate: "recorded".into(),
            object_json: format!("{{\"id\":\"{id}\"}}"),
        },
    }
}

/// A line for `bsfg append --jsonl`: a message to `to` with id `id`, and no `from_zone` or
/// `produced_at_unix_ms`, which the CLI fills in.
pub fn json_line(to: &str, id: &str) -> String {
    serde_json::json!({
        "envelope": {"message_id": id, "to_zone": to},
        "fact": {"subject": format!("item/{id}"), "predicate": "recorded", "object_json": {"id": id}},
    })
    .to_string()
}

/// [`message`] with about `pad` more bytes in its object, so a few facts fill a small buffer.
pub fn padded_message(from: &str, to: &str, id: &str, pad: usize) -> Message {
    let mut message = message(from, to, id);
    message.fact.object_json = format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat(pad));
    message
}

/// Appends `count` facts `from → to` with ids `{prefix}-{i}`, objects padded by `pad` bytes;
/// fails the test unless each is acknowledged. Returns the ids in order.
pub async fn append_many(client: &Client, from: &str, to: &str, prefix: &str, count: usize, pad: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        client
            .append(padded_message(from, to, &id, pad))
            .await
            .unwrap_or_else(|e| panic!("append {id}: {e}"));
        ids.push(id);
    }
    ids
}

/// Fetches and confirms as `consumer` until `expected` facts arrived or `timeout` passed.
pub async fn receive(client: &Client, consumer: &str, expected: usize, timeout: Duration) -> Vec<FetchedFact> {
    let deadline = Instant::now() + timeout;
    let mut facts = Vec::new();
    while facts.len() < expected && Instant::now() < deadline {
        let page = client.fetch(consumer, 1000, 200, None).await.expect("fetch");
        if let Some(last) = page.facts.last() {
            client.confirm(consumer, last.offset).await.expect("confirm");
        }
        facts.extend(page.facts);
    }
    facts
}

/// Stores `content` as `bucket/key` (of `media_type`) through `client`, then appends `fact` made
/// to reference it; returns the reference.
pub async fn append_with_artifact(
    client: &Client,
    mut fact: Message,
    (bucket, key, media_type): (&str, &str, &str),
    content: &[u8],
) -> ArtifactRef {
    let request = PutObjectRequest {
        bucket: bucket.into(),
        key: key.into(),
        size: content.len() as u64,
        media_type: Some(media_type.into()),
    };
    let mut body = std::io::Cursor::new(content);
    let stored = client
        .put_object(request, &mut body, |_| {})
        .await
        .expect("put the artifact");
    let reference = ArtifactRef {
        bucket: stored.bucket,
        key: stored.key,
        digest: stored.digest,
        size: stored.size,
        media_type: media_type.into(),
        file_name: None,
    };
    fact.envelope.object_media_type = Some(media_type.into());
    fact.fact.object_json = serde_json::to_string(&reference).expect("render the reference");
    client.append(fact).await.expect("append the fact that references it");
    reference
}

/// The message ids of `facts`, in order.
pub fn ids<'a>(facts: impl IntoIterator<Item = &'a FetchedFact>) -> Vec<&'a str> {
    facts
        .into_iter()
        .map(|f| f.message.envelope.message_id.as_str())
        .collect()
}

/// Fails the test unless `got` is `expected`, naming the first place where they differ (ids
/// lists are long, so not printed whole).
pub fn assert_same_ids(got: &[&str], expected: &[String], what: &str) {
    let differs = got.iter().zip(expected).position(|(g, e)| g != e);
    let at = differs.unwrap_or(got.len().min(expected.len()));
    let around = |ids: &[String]| ids[at.saturating_sub(2)..(at + 3).min(ids.len())].join(", ");
    let got_owned: Vec<String> = got.iter().map(|id| id.to_string()).collect();
    assert!(
        differs.is_none() && got.len() == expected.len(),
        "{what}: {} ids, expected {}; first difference at index {at}: got [{}], expected [{}]",
        got.len(),
        expected.len(),
        around(&got_owned),
        around(expected)
    );
}

/// Parses a CLI's stdout as JSON lines.
pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
