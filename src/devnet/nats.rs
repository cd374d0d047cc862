//! A NATS JetStream cluster on loopback, the engine of an HA zone in development and tests:
//! `nats-server` child processes (three by default) on free ports, routed into one cluster, with
//! `max_payload: 8MB`, `sync_interval: always` (or without it, for the durability refusal),
//! optionally mutual TLS on the client port, and their store directories and logs under one
//! directory. Servers can be killed (SIGKILL),
//! paused (SIGSTOP), resumed (SIGCONT) and started again on the same ports and store.
//!
//! The binary comes from `BSFG_NATS_SERVER` (set by `scripts/nats-server.sh`); without it,
//! [`NatsCluster::start`] fails: a test that needs the engine never skips.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bsfg_engine::monitor;
use serde::Deserialize;

use super::{ports::choose_tcp, signal};

/// The variable naming the nats-server binary.
pub const NATS_SERVER_ENV: &str = "BSFG_NATS_SERVER";
/// How long a cluster (or one restarted server) may take to report healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one monitoring request may take (a paused server never answers).
const MONITOR_TIMEOUT: Duration = Duration::from_secs(1);

/// What cluster to run.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub servers: usize,
    /// `sync_interval: always` (fsync before every acknowledgement); `false` leaves nats-server's
    /// default (a 2-minute timer), which an HA zone must refuse.
    pub sync_always: bool,
    /// Mutual TLS on the client port (routes stay plain on loopback).
    pub tls: Option<NatsTls>,
}

/// The servers' certificate (valid for 127.0.0.1, like a devnet node's) and the CA that both
/// signs it and must sign every client's.
#[derive(Debug, Clone)]
pub struct NatsTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            servers: 3,
            sync_always: true,
            tls: None,
        }
    }
}

/// One server's addresses, files and process.
#[derive(Debug)]
struct Server {
    name: String,
    client: SocketAddr,
    monitor: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster; every server still running is killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    bin: PathBuf,
    /// `nats` or `tls`, for the client URLs.
    scheme: &'static str,
    servers: Vec<Server>,
}

impl NatsCluster {
    /// The nats-server binary named by `BSFG_NATS_SERVER`.
    pub fn binary() -> anyhow::Result<PathBuf> {
        let bin = std::env::var_os(NATS_SERVER_ENV).map(PathBuf::from).with_context(|| {
            format!("{NATS_SERVER_ENV} is not set: source scripts/nats-server.sh to install nats-server")
        })?;
        if !bin.is_file() {
            bail!("{NATS_SERVER_ENV}={} is not a file", bin.display());
        }
        Ok(bin)
    }

    /// Writes the configs under `dir`, starts every server and waits until all report healthy.
    pub async fn start(dir: &Path, options: NatsOptions) -> anyhow::Result<Self> {
        let bin = Self::binary()?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let routes = (0..options.servers)
            .map(|_| choose_tcp().map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut servers = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            servers.push(write_server(dir, i, *route, &routes, &options)?);
        }
        let scheme = if options.tls.is_some() { "tls" } else { "nats" };
        let mut cluster = Self { bin, scheme, servers };
        for i in 0..cluster.servers.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.servers.len() {
            cluster.wait_healthy(i).await?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The client URLs of every server (`nats://127.0.0.1:PORT`, `tls://` with TLS).
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("{}://{}", self.scheme, s.client))
            .collect()
    }

    /// The monitoring URLs of every server (`http://127.0.0.1:PORT`).
    pub fn monitor_urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("http://{}", s.monitor)).collect()
    }

    /// Server `i`'s name (`n<i>`), as the cluster reports leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.servers[i].name
    }

    /// SIGKILL of server `i` (a no-op if it is not running).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.servers[i].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP: server `i` stops answering anything, routes and clients included.
    pub fn stop(&self, i: usize) -> anyhow::Result<()> {
        signal(self.pid(i)?, "STOP")
    }

    /// SIGCONT of a server paused by [`NatsCluster::stop`].
    pub fn cont(&self, i: usize) -> anyhow::Result<()> {
        signal(self.pid(i)?, "CONT")
    }

    /// Starts killed server `i` again (same ports, same store) and waits until it is healthy.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.servers[i].child.is_some() {
            bail!("server {} is running", self.servers[i].name);
        }
        self.spawn(i)?;
        self.wait_healthy(i).await
    }

    /// The server leading `stream` now, as that server itself reports it (`/jsz`); `None`
    /// during an election or when no server can be asked.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        for (i, server) in self.servers.iter().enumerate() {
            if server.child.is_none() {
                continue;
            }
            let url = format!("http://{}", server.monitor);
            let jsz = monitor::get_json::<Jsz>(&url, "/jsz?accounts=true&streams=true", MONITOR_TIMEOUT).await;
            if jsz.is_ok_and(|jsz| jsz.leader_of(stream) == Some(server.name.as_str())) {
                return Some(i);
            }
        }
        None
    }

    /// Waits until some server leads `stream`; fails after `timeout`.
    pub async fn wait_stream_leader(&self, stream: &str, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.stream_leader(stream).await {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                bail!("no server leads stream {stream} after {timeout:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of every server's log, for a failing test's output.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for server in &self.servers {
            let text = fs::read_to_string(&server.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            out.push_str(&format!("--- {} ({})\n{tail}\n", server.name, server.log.display()));
        }
        out
    }

    /// The running servers' process ids, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.servers
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.child.as_ref()?.id())))
            .collect()
    }

    fn pid(&self, i: usize) -> anyhow::Result<u32> {
        let server = &self.servers[i];
        server
            .child
            .as_ref()
            .map(Child::id)
            .with_context(|| format!("server {} is not running", server.name))
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let server = &mut self.servers[i];
        let log = fs::OpenOptions::new().create(true).append(true).open(&server.log)?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&server.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        server.child = Some(child);
        Ok(())
    }

    /// Waits until server `i` answers `/healthz` with 200 (JetStream up, meta leader known).
    async fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let url = format!("http://{}", self.servers[i].monitor);
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        while Instant::now() < deadline {
            if monitor::get(&url, "/healthz", MONITOR_TIMEOUT).await.is_ok() {
                return Ok(());
            }
            let server = &mut self.servers[i];
            if let Some(status) = server.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!(
                    "nats-server {} exited with {status}; log: {}",
                    server.name,
                    server.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "nats-server {} not healthy within {HEALTHY_TIMEOUT:?}\n{}",
            self.servers[i].name,
            self.logs()
        )
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            let _ = self.kill(i);
        }
    }
}

/// Picks server `i`'s ports and writes its config.
fn write_server(
    dir: &Path,
    i: usize,
    route: SocketAddr,
    routes: &[SocketAddr],
    options: &NatsOptions,
) -> anyhow::Result<Server> {
    let name = format!("n{i}");
    let server = Server {
        client: choose_tcp()?,
        monitor: choose_tcp()?,
        config: dir.join(format!("{name}.conf")),
        log: dir.join(format!("{name}.log")),
        child: None,
        name,
    };
    let sync = if options.sync_always {
        "\n  sync_interval: always"
    } else {
        ""
    };
    let routes = routes
        .iter()
        .map(|r| format!("nats-route://{r}"))
        .collect::<Vec<_>>()
        .join(", ");
    let tls = options.tls.as_ref().map_or_else(String::new, |tls| {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
            tls.cert.display(),
            tls.key.display(),
            tls.ca.display()
        )
    });
    let text = format!(
        "server_name: {name}\nlisten: {client}\nhttp: {monitor}\nmax_payload: 8MB\n\
         jetstream {{\n  store_dir: \"{store}\"{sync}\n}}\n\
         cluster {{ name: bsfg-dev, listen: {route}, routes: [{routes}] }}\n{tls}",
        name = server.name,
        client = server.client,
        monitor = server.monitor,
        store = dir.join(&server.name).display(),
    );
    fs::write(&server.config, text).with_context(|| format!("writing {}", server.config.display()))?;
    Ok(server)
}

/// The part of `/jsz?accounts=true&streams=true` that names stream leaders.
#[derive(Debug, Deserialize)]
struct Jsz {
    #[serde(default)]
    account_details: Vec<JszAccount>,
}

#[derive(Debug, Deserialize)]
struct JszAccount {
    #[serde(default)]
    stream_detail: Vec<JszStream>,
}

#[derive(Debug, Deserialize)]
struct JszStream {
    name: String,
    #[serde(default)]
    cluster: Option<JszCluster>,
}

#[derive(Debug, Deserialize)]
struct JszCluster {
    #[serde(default)]
    leader: Option<String>,
}

impl Jsz {
    fn leader_of(&self, stream: &str) -> Option<&str> {
        self.account_details
            .iter()
            .flat_map(|a| &a.stream_detail)
            .find(|s| s.name == stream)?
            .cluster
            .as_ref()?
            .leader
            .as_deref()
    }
}
