//! A development network on loopback: a PKI, one config per zone with free ports, and `bsfg
//! serve` child processes. Used by `bsfg demo` and by the end-to-end tests, so both run the same
//! real binary the same way. [`estate`] is the reference four-zone estate with its routes and
//! relay rules. [`proxy`] puts a fault-injecting UDP proxy between two nodes;
//! [`procstat`] tells what a node process costs; [`nats`] runs a NATS JetStream cluster, the
//! engine of an HA zone.

pub mod estate;
pub mod ha;
pub mod nats;
pub mod ports;
pub mod procstat;
pub mod proxy;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bsfg_actors::transport::address::PeerAddress;

/// How long a node may take to start serving.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a starting node is looked at; short, because `bsfg bench` times start-up with it.
const POLL: Duration = Duration::from_millis(5);

use crate::{admin::client::AdminClient, client::ClientOptions};

/// A peer entry of one node's config.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub zone: String,
    /// One address, or every instance of an HA peer zone.
    pub addresses: Vec<PeerAddress>,
    pub dial: bool,
    /// `max_bytes_per_second` of the peer entry.
    pub max_bytes_per_second: Option<u64>,
}

/// One node: where it listens, where it keeps data, whom it peers with, and any extra TOML.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub zone: String,
    pub rpc: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub peers: Vec<PeerSpec>,
    /// Client identities and their roles (`"produce"`, `"consume"`).
    pub clients: Vec<(String, Vec<String>)>,
    /// Appended verbatim to the generated config (extra sections).
    pub extra: String,
    /// Appended verbatim to the generated `[node]` section (extra keys of it).
    pub node_extra: String,
    /// `[tls] crl`: the revocation lists the node applies, if any.
    pub crl: Option<PathBuf>,
    /// Environment variables the node's process starts with, beside the inherited ones.
    pub env: Vec<(String, String)>,
}

/// A set of zones with their PKI and configs under one directory.
#[derive(Debug, Clone)]
pub struct Devnet {
    pub dir: PathBuf,
    pub pki: PathBuf,
    pub nodes: BTreeMap<String, NodeSpec>,
}

impl Devnet {
    /// PKI for `zones` and `clients` in `dir/pki`; every client may produce and consume on every
    /// node; each pair in `links` peers both ways (both dial). Writes the configs.
    pub fn new(dir: &Path, zones: &[&str], links: &[(&str, &str)], clients: &[&str]) -> anyhow::Result<Self> {
        let pki = dir.join("pki");
        let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        crate::pki::init(&pki, &owned(zones), &owned(clients), 30)?;
        let mut nodes = BTreeMap::new();
        for zone in zones {
            let clients = clients
                .iter()
                .map(|c| (c.to_string(), vec!["produce".into(), "consume".into()]))
                .collect();
            nodes.insert(zone.to_string(), node_spec(dir, zone, clients)?);
        }
        let mut net = Self {
            dir: dir.to_owned(),
            pki,
            nodes,
        };
        for (a, b) in links {
            net.link(a, b)?;
            net.link(b, a)?;
        }
        net.write_configs()?;
        Ok(net)
    }

    fn link(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        let address = self.node(to)?.rpc.into();
        let node = self.nodes.get_mut(from).with_context(|| format!("no zone {from}"))?;
        node.peers.push(PeerSpec {
            zone: to.to_owned(),
            addresses: vec![address],
            dial: true,
            max_bytes_per_second: None,
        });
        Ok(())
    }

    /// Makes `from` reach its peer `to` at `address` (e.g. a [`proxy::FaultProxy`], or a host
    /// name) from the next [`Devnet::write_configs`] on; a running node sees it when restarted.
    pub fn set_peer_address(&mut self, from: &str, to: &str, address: impl Into<PeerAddress>) -> anyhow::Result<()> {
        self.peer_mut(from, to)?.addresses = vec![address.into()];
        Ok(())
    }

    /// Whether `from` dials its peer `to` or only accepts its connections, from the next
    /// [`Devnet::write_configs`] on.
    pub fn set_dial(&mut self, from: &str, to: &str, dial: bool) -> anyhow::Result<()> {
        self.peer_mut(from, to)?.dial = dial;
        Ok(())
    }

    /// Caps what `from` exchanges with its peer `to` at `bytes_per_second` each way, from the
    /// next [`Devnet::write_configs`] on.
    pub fn set_peer_cap(&mut self, from: &str, to: &str, bytes_per_second: Option<u64>) -> anyhow::Result<()> {
        self.peer_mut(from, to)?.max_bytes_per_second = bytes_per_second;
        Ok(())
    }

    fn peer_mut(&mut self, from: &str, to: &str) -> anyhow::Result<&mut PeerSpec> {
        let node = self
            .nodes
            .get_mut(from)
            .with_context(|| format!("no zone {from} in this devnet"))?;
        node.peers
            .iter_mut()
            .find(|peer| peer.zone == to)
            .with_context(|| format!("zone {from} has no peer {to}"))
    }

    pub fn node(&self, zone: &str) -> anyhow::Result<&NodeSpec> {
        self.nodes
            .get(zone)
            .with_context(|| format!("no zone {zone} in this devnet"))
    }

    /// (Re)writes every node's config file from its spec.
    pub fn write_configs(&self) -> anyhow::Result<()> {
        for node in self.nodes.values() {
            fs::write(&node.config, self.config_text(node)?)
                .with_context(|| format!("writing {}", node.config.display()))?;
        }
        Ok(())
    }

    fn config_text(&self, node: &NodeSpec) -> anyhow::Result<String> {
        let pki = self.pki.display();
        let mut text = format!(
            "[node]\nzone = \"{zone}\"\ndata_dir = \"{data}\"\n{node_extra}\n[listen]\nrpc = \"{rpc}\"\nadmin = \"{admin}\"\n\n\
             [tls]\nca = \"{pki}/ca.pem\"\ncert = \"{pki}/{zone}.pem\"\nkey = \"{pki}/{zone}.key\"\n",
            zone = node.zone,
            data = node.data_dir.display(),
            node_extra = node.node_extra,
            rpc = node.rpc,
            admin = node.admin,
        );
        if let Some(crl) = &node.crl {
            writeln!(text, "crl = \"{}\"", crl.display())?;
        }
        for peer in &node.peers {
            let addresses = match peer.addresses.as_slice() {
                [one] => format!("address = \"{one}\""),
                many => format!(
                    "addresses = {:?}",
                    many.iter().map(ToString::to_string).collect::<Vec<_>>()
                ),
            };
            write!(
                text,
                "\n[[peers]]\nzone = \"{}\"\n{addresses}\ndial = {}\n",
                peer.zone, peer.dial
            )?;
            if let Some(cap) = peer.max_bytes_per_second {
                writeln!(text, "max_bytes_per_second = {cap}")?;
            }
        }
        for (identity, roles) in &node.clients {
            write!(text, "\n[[clients]]\nidentity = \"{identity}\"\nroles = {roles:?}\n")?;
        }
        text.push('\n');
        text.push_str(&node.extra);
        Ok(text)
    }

    /// Client options for `identity` talking to the node of `zone`.
    pub fn client(&self, zone: &str, identity: &str) -> anyhow::Result<ClientOptions> {
        let node = self.node(zone)?;
        Ok(ClientOptions {
            node: node.rpc.to_string(),
            ca: self.pki.join("ca.pem"),
            cert: self.pki.join(format!("{identity}.pem")),
            key: self.pki.join(format!("{identity}.key")),
            server_name: node.zone.clone(),
        })
    }

    /// Starts `bin serve` for `zone`, logging to `dir/<zone>.log`, and waits until it serves
    /// (its `admin_listening` log line, after `node_started`; so the node must log at `info` or below).
    pub fn spawn(&self, bin: &Path, zone: &str) -> anyhow::Result<NodeProcess> {
        let log_offset = self.log_len(zone);
        let mut process = self.launch(bin, zone)?;
        process.wait_started(log_offset, STARTUP_TIMEOUT)?;
        Ok(process)
    }

    /// Starts `bin serve` for every zone of `zones` at once, then waits until each serves: nodes
    /// that start together dial each other at the same moment.
    pub fn spawn_together(&self, bin: &Path, zones: &[&str]) -> anyhow::Result<Vec<NodeProcess>> {
        let offsets: Vec<u64> = zones.iter().map(|zone| self.log_len(zone)).collect();
        let mut processes = zones
            .iter()
            .map(|zone| self.launch(bin, zone))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (process, offset) in processes.iter_mut().zip(offsets) {
            process.wait_started(offset, STARTUP_TIMEOUT)?;
        }
        Ok(processes)
    }

    /// Starts `bin serve` for `zone` and waits until its admin listener answers `/readyz` with
    /// 200, whatever the log level.
    pub fn spawn_ready(&self, bin: &Path, zone: &str) -> anyhow::Result<NodeProcess> {
        let mut process = self.launch(bin, zone)?;
        process.wait_ready(self.node(zone)?.admin, STARTUP_TIMEOUT)?;
        Ok(process)
    }

    /// Starts `bin serve` for `zone`, logging to `dir/<zone>.log`, without waiting for anything.
    fn launch(&self, bin: &Path, zone: &str) -> anyhow::Result<NodeProcess> {
        let node = self.node(zone)?;
        let log_path = self.log_path(zone);
        let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            .envs(node.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(NodeProcess {
            zone: zone.to_owned(),
            child,
            log: log_path,
        })
    }

    fn log_path(&self, zone: &str) -> PathBuf {
        self.dir.join(format!("{zone}.log"))
    }

    fn log_len(&self, zone: &str) -> u64 {
        fs::metadata(self.log_path(zone)).map_or(0, |m| m.len())
    }
}

fn node_spec(dir: &Path, zone: &str, clients: Vec<(String, Vec<String>)>) -> anyhow::Result<NodeSpec> {
    Ok(NodeSpec {
        zone: zone.to_owned(),
        rpc: ports::choose_udp()?,
        admin: ports::choose_tcp()?,
        data_dir: dir.join(format!("{zone}-data")),
        config: dir.join(format!("{zone}.toml")),
        peers: Vec::new(),
        clients,
        extra: String::new(),
        node_extra: String::new(),
        crl: None,
        env: Vec::new(),
    })
}

/// Whether the node at `admin` answers `GET /readyz` with 200.
fn is_ready(admin: SocketAddr) -> bool {
    AdminClient::at(admin, None)
        .timeout(Duration::from_secs(1))
        .get("/readyz")
        .is_ok_and(|answer| answer.status == 200)
}

/// Sends signal `name` (`TERM`, `STOP`, `CONT`) to `pid` with kill(1) (no unsafe code here).
fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !sent.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// A running `bsfg serve` child process.
#[derive(Debug)]
pub struct NodeProcess {
    pub zone: String,
    pub log: PathBuf,
    child: Child,
}

impl NodeProcess {
    /// Waits until the node logged `admin_listening` (after `node_started`): its RPC and admin
    /// listeners both answer from then on.
    fn wait_started(&mut self, log_offset: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, |process| {
            let text = fs::read(&process.log).unwrap_or_default();
            String::from_utf8_lossy(text.get(log_offset as usize..).unwrap_or_default()).contains("admin_listening")
        })
    }

    /// Waits until `admin` (this node's admin listener) answers `GET /readyz` with 200.
    fn wait_ready(&mut self, admin: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, |_| is_ready(admin))
    }

    /// Polls `ready` every few milliseconds; fails if the process exits or `timeout` passes first.
    fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut(&Self) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ready(self) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "node {} exited with {status} while starting; log: {}",
                    self.zone,
                    self.log.display()
                );
            }
            std::thread::sleep(POLL);
        }
        bail!(
            "node {} did not start within {timeout:?}; log: {}",
            self.zone,
            self.log.display()
        )
    }

    /// SIGKILL: the crash the durability guarantees are about.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        signal(self.child.id(), "TERM").with_context(|| format!("stopping node {}", self.zone))?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()?;
        bail!("node {} did not stop within {timeout:?} of SIGTERM", self.zone)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
