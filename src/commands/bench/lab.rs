//! The bench's laboratory: two zones on loopback, `enterprise` (where producers append) and
//! `plant-a` (where facts go), their node processes, and, when a mode must cut the link or the
//! link is to be lossy or slow ([`Network`]), a fault proxy in front of each node. In relay mode
//! the zones are those of the reference estate (`devnet::estate`): enterprise reaches plant-a only
//! through `idmz`, which relays. With `--ha` the source zone is an HA zone (SPEC §15): two
//! instances over a three-server nats-server cluster (the engine, which the lab owns), and clients
//! of it list both instances. Nodes are started as the modes need them and count as serving when
//! `/readyz` answers 200 (for an HA zone: its active instance), which also works at log levels
//! that hide `node_started`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::Mode;
use crate::{
    admin::{client::AdminClient, status::Status},
    client::ClientOptions,
    devnet::{
        estate::IDMZ,
        ha::{jetstream_storage, role},
        nats::NatsCluster,
        proxy::FaultProxy,
        Devnet, NodeProcess,
    },
};

/// Where producers append.
pub const SOURCE: &str = "enterprise";
/// Where the facts are addressed, pulled to and consumed.
pub const SINK: &str = "plant-a";
const CLIENT: &str = "bench";
/// `--ha`: the instances of the source zone.
pub const HA_INSTANCES: [&str; 2] = ["enterprise-1", "enterprise-2"];
/// How long an HA instance may take to step down.
const STEP_DOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to drain and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Log lines quoted when a node does not stop cleanly.
const LOG_TAIL_LINES: usize = 5;

/// A WAN between the zones: what the fault proxies do to every datagram, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Network {
    pub loss_percent: u8,
    /// One way, per datagram.
    #[serde(serialize_with = "millis")]
    pub delay: Duration,
    /// Each datagram's delay is drawn from `delay ± jitter`.
    #[serde(serialize_with = "millis")]
    pub jitter: Duration,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u128(duration.as_millis())
}

/// The nodes' `[log]` settings.
#[derive(Debug, Clone)]
pub struct Logging {
    pub level: String,
    pub audit: bool,
}

pub struct Lab {
    net: Devnet,
    proxies: Vec<FaultProxy>,
    nodes: BTreeMap<String, NodeProcess>,
    bin: PathBuf,
    /// The zones a fact crosses, from the source to the sink.
    path: Vec<&'static str>,
    /// `--ha`: the source zone's engine; declared after `nodes`, so it stops after them.
    engine: Option<NatsCluster>,
}

impl Lab {
    /// PKI and configs in `dir` for `mode`; nothing runs yet. In replay mode or with a `network`,
    /// each node reaches its peer through a fault proxy (started on the current tokio runtime) so
    /// the link can be cut; a `network` is applied to the proxies at once. In relay mode facts go
    /// through the DMZ. With an `engine`, the source zone is an HA zone on it.
    pub fn new(
        dir: &Path,
        logging: &Logging,
        mode: Mode,
        network: Option<&Network>,
        engine: Option<NatsCluster>,
    ) -> anyhow::Result<Self> {
        let (mut net, path) = match mode {
            Mode::Relay => (Devnet::estate(dir, &[CLIENT])?, vec![SOURCE, IDMZ, SINK]),
            _ => (
                Devnet::new(dir, &[SOURCE, SINK], &[(SOURCE, SINK)], &[CLIENT])?,
                vec![SOURCE, SINK],
            ),
        };
        let mut proxies = Vec::new();
        if mode == Mode::Replay || network.is_some() {
            for (zone, peer) in [(SOURCE, SINK), (SINK, SOURCE)] {
                let proxy = FaultProxy::start(net.node(zone)?.rpc).context("starting a fault proxy")?;
                if let Some(network) = network {
                    proxy.drop_percent(network.loss_percent);
                    proxy.delay(network.delay);
                    proxy.jitter(network.jitter);
                }
                net.set_peer_address(peer, zone, proxy.addr())?;
                proxies.push(proxy);
            }
        }
        if let Some(engine) = &engine {
            net.make_ha(SOURCE, &HA_INSTANCES, |instance| {
                jetstream_storage(engine, instance, "")
            })?;
        }
        let log = format!("[log]\nlevel = {:?}\naudit = {}\n", logging.level, logging.audit);
        for zone in &path {
            for node in net.instances(zone) {
                net.add_toml(&node, &log)?;
            }
        }
        net.write_configs()?;
        Ok(Self {
            net,
            proxies,
            nodes: BTreeMap::new(),
            bin: std::env::current_exe().context("locating the bsfg binary")?,
            path,
            engine,
        })
    }

    /// Starts every node on the facts' way, the source first.
    pub fn start_path(&mut self) -> anyhow::Result<()> {
        for zone in self.path.clone() {
            self.start(zone)?;
        }
        Ok(())
    }

    /// Starts `zone`'s node (every instance of an HA zone); returns how long it took from spawning
    /// the process to `/readyz` 200 (of the active instance).
    pub fn start(&mut self, zone: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let processes = if self.net.instances(zone) == [zone] {
            vec![self.net.spawn_ready(&self.bin, zone)?]
        } else {
            self.net.spawn_zone_ready(&self.bin, zone)?
        };
        let took = started.elapsed();
        for process in processes {
            self.nodes.insert(process.zone.clone(), process);
        }
        Ok(took)
    }

    /// Starts `instance` of the HA zone again, as a standby of the active one.
    pub fn start_standby(&mut self, instance: &str) -> anyhow::Result<()> {
        let process = self.net.spawn_standby(&self.bin, instance)?;
        self.nodes.insert(instance.to_owned(), process);
        Ok(())
    }

    /// The instance of the HA zone that reports itself active, if one does. Blocking.
    pub fn active(&self) -> anyhow::Result<Option<&'static str>> {
        for instance in HA_INSTANCES {
            if role(self.admin(instance)?).as_deref() == Some("active") {
                return Ok(Some(instance));
            }
        }
        Ok(None)
    }

    /// `bsfg admin step-down` on `instance`: 200 once it stopped writing and released the lease.
    pub fn step_down(&self, instance: &str) -> anyhow::Result<()> {
        let answer = AdminClient::at(self.admin(instance)?, None)
            .timeout(STEP_DOWN_TIMEOUT)
            .post("/v1/admin/step-down")?;
        if answer.status != 200 {
            bail!("step-down on {instance} answered {}: {}", answer.status, answer.body);
        }
        Ok(())
    }

    /// SIGTERM; the node must drain and exit 0.
    pub fn stop(&mut self, zone: &str) -> anyhow::Result<()> {
        let mut node = self
            .nodes
            .remove(zone)
            .with_context(|| format!("node {zone} is not running"))?;
        let status = node.terminate(STOP_GRACE)?;
        if !status.success() {
            // The log may live in a temporary directory that is about to go: quote its end.
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL_LINES).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "node {zone} exited with {status} after SIGTERM; its log ends:\n{}",
                tail.join("\n")
            );
        }
        Ok(())
    }

    /// SIGKILL, the crash start-up must recover from.
    pub fn kill(&mut self, zone: &str) -> anyhow::Result<()> {
        let mut node = self
            .nodes
            .remove(zone)
            .with_context(|| format!("node {zone} is not running"))?;
        node.kill()
    }

    /// Stops every running node; reports the first failure after trying them all.
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        let zones: Vec<String> = self.nodes.keys().cloned().collect();
        let mut first_failure = Ok(());
        for zone in zones {
            let stopped = self.stop(&zone);
            first_failure = first_failure.and(stopped);
        }
        first_failure
    }

    /// The running nodes' process ids, by zone (by instance in an HA zone), and the engine
    /// servers' (`engine-<name>`).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let engine = self.engine.iter().flat_map(NatsCluster::pids);
        self.nodes
            .iter()
            .map(|(zone, node)| (zone.clone(), node.pid()))
            .chain(engine.map(|(name, pid)| (format!("engine-{name}"), pid)))
            .collect()
    }

    /// Both proxies drop everything: a partition. Only in a lab built with `proxied`.
    pub fn partition(&self) {
        self.proxies.iter().for_each(|proxy| proxy.blackhole());
    }

    pub fn heal(&self) {
        self.proxies.iter().for_each(|proxy| proxy.heal());
    }

    /// Sessions with a peer that failed, as both nodes logged them so far (`peer_disconnected`,
    /// a warning: seen at the bench's default node log level). Each one is a reconnect.
    pub fn link_failures(&self) -> u64 {
        let failures = |log: &Path| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.lines()
                .filter(|line| line.contains("\"msg\":\"peer_disconnected\""))
                .count() as u64
        };
        self.nodes.values().map(|node| failures(&node.log)).sum()
    }

    /// Client options for `zone`, listing every instance of an HA zone.
    pub fn client(&self, zone: &str) -> anyhow::Result<ClientOptions> {
        self.net.client_of_zone(zone, CLIENT)
    }

    pub fn admin(&self, zone: &str) -> anyhow::Result<SocketAddr> {
        Ok(self.net.node(zone)?.admin)
    }
}

/// The state of the gate of the node at `admin` toward `peer`, from its `/v1/status`. Blocking.
pub fn gate_state(admin: SocketAddr, peer: &str) -> anyhow::Result<String> {
    let answer = AdminClient::at(admin, None)
        .timeout(Duration::from_secs(2))
        .get("/v1/status")?;
    if answer.status != 200 {
        bail!("GET /v1/status on {admin} answered {}", answer.status);
    }
    let mut status: Status = serde_json::from_str(&answer.body).context("parsing /v1/status")?;
    status
        .peers
        .remove(peer)
        .map(|p| p.state)
        .with_context(|| format!("/v1/status on {admin} has no gate toward {peer}"))
}
