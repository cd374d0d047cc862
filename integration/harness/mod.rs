//! End-to-end harness: clusters of real `bsfg serve` processes on loopback with a real PKI, real
//! RocksDB on disk and real QUIC, built on `bsfg::devnet`. Node logs are printed when a test fails.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod history;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use bsfg::{
    client::{Client, ClientOptions},
    devnet::{Devnet, NodeProcess},
};
use bsfg_proto::{Envelope, Fact, FetchedFact, Message};

pub const CLIENT: &str = "tester";

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
        let dir = tempfile::Builder::new().prefix("bsfg-e2e-").tempdir().expect("tempdir");
        let net = Devnet::new(dir.path(), zones, links, &[CLIENT]).expect("devnet");
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

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn start(&mut self, zone: &str) {
        self.net.write_configs().expect("configs");
        let process = self
            .net
            .spawn(&bin(), zone)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()));
        self.nodes.insert(zone.to_owned(), process);
    }

    pub fn start_all(&mut self) {
        let zones: Vec<String> = self.net.nodes.keys().cloned().collect();
        for zone in zones {
            self.start(&zone);
        }
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

    /// Runs the CLI with `args` followed by the connection flags for `zone` as `identity`.
    pub fn cli_as(&self, zone: &str, identity: &str, args: &[&str]) -> Output {
        let o = self.net.client(zone, identity).expect("client options");
        std::process::Command::new(bin())
            .args(args)
            .args(["--node", &o.node, "--server-name", &o.server_name])
            .arg("--ca")
            .arg(&o.ca)
            .arg("--cert")
            .arg(&o.cert)
            .arg("--key")
            .arg(&o.key)
            .output()
            .expect("run bsfg")
    }

    pub fn cli(&self, zone: &str, args: &[&str]) -> Output {
        self.cli_as(zone, CLIENT, args)
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
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
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
