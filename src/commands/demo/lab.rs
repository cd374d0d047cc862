//! The demo's laboratory: a dev network on loopback with fault proxies on its links, and the node
//! processes. The pair (`enterprise`, `plant-a`) has one proxy in front of each node (the other
//! node dials the proxy, never the node itself); the estate (`--estate`: enterprise, idmz, two
//! plants) one proxy per leg in front of the DMZ, so one leg can be cut alone. The HA zone
//! (`--ha`): `plant-a` as two instances over a three-server JetStream cluster, no proxies (its
//! fault is a killed process).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};

use super::screen::print;
use crate::devnet::{
    estate::{Legs, IDMZ},
    ha::jetstream_storage,
    nats::{NatsCluster, NatsOptions},
    proxy::FaultProxy,
    Devnet, NodeProcess,
};

pub const ZONES: [&str; 2] = ["enterprise", "plant-a"];
pub const CLIENT: &str = "demo-client";
/// `--ha`: the HA zone and its instances.
pub const HA_ZONE: &str = ZONES[1];
pub const HA_INSTANCES: [&str; 2] = ["plant-a-1", "plant-a-2"];
/// `--ha`: how long the standby waits out a silent active instance (the default is 5 s).
pub const HA_LEASE_TTL: &str = "2s";

/// How long a node may take to drain and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Lab {
    pub net: Devnet,
    /// The fault proxies by name: the zone a proxy fronts (pair), or the leg it carries (estate).
    proxies: BTreeMap<String, FaultProxy>,
    nodes: Vec<NodeProcess>,
    /// `--ha`: the zone's engine, stopped when the lab is dropped (after the nodes).
    engine: Option<NatsCluster>,
}

impl Lab {
    /// The pair: PKI and configs in `dir`, a proxy in front of each node. Must be called inside a
    /// tokio runtime: the proxies' tasks are spawned on it.
    pub fn pair(dir: &Path, link_timeout: Duration) -> anyhow::Result<Self> {
        print(&format!(
            "bsfg demo: zones {} and {} on loopback; PKI, configs, data and logs in {}",
            ZONES[0],
            ZONES[1],
            dir.display()
        ))?;
        let mut net = Devnet::new(dir, &ZONES, &[(ZONES[0], ZONES[1])], &[CLIENT])?;
        let mut proxies = BTreeMap::new();
        for (zone, peer) in [(ZONES[0], ZONES[1]), (ZONES[1], ZONES[0])] {
            let proxy = FaultProxy::start(net.node(zone)?.rpc).context("starting a fault proxy")?;
            net.set_peer_address(peer, zone, proxy.addr())?;
            proxies.insert(zone.to_owned(), proxy);
        }
        let lab = Self::launch(net, proxies, link_timeout)?;
        for (zone, proxy) in &lab.proxies {
            let peer = ZONES.iter().find(|z| *z != zone).copied().unwrap_or_default();
            print(&format!(
                "  {zone:<10} node listens on {}; {peer} reaches it through proxy {}; log {}",
                lab.net.node(zone)?.rpc,
                proxy.addr(),
                lab.log(zone).display()
            ))?;
        }
        Ok(lab)
    }

    /// The reference estate (`devnet::estate`) with a proxy on each leg. Inside a tokio runtime.
    pub fn estate(dir: &Path, link_timeout: Duration) -> anyhow::Result<Self> {
        print(&format!(
            "bsfg demo --estate: enterprise ↔ idmz ↔ plant-a, plant-b on loopback; PKI, configs, data and \
             logs in {}",
            dir.display()
        ))?;
        let mut net = Devnet::estate(dir, &[CLIENT])?;
        let proxies = Legs::start(&mut net)?.into_proxies();
        let lab = Self::launch(net, proxies, link_timeout)?;
        print(&format!(
            "  {IDMZ:<10} node listens on {}; it dials nobody and relays enterprise ↔ plants; log {}",
            lab.net.node(IDMZ)?.rpc,
            lab.log(IDMZ).display()
        ))?;
        for (leg, proxy) in &lab.proxies {
            print(&format!(
                "  {leg:<10} node listens on {}; it dials idmz through proxy {} (its leg); log {}",
                lab.net.node(leg)?.rpc,
                proxy.addr(),
                lab.log(leg).display()
            ))?;
        }
        Ok(lab)
    }

    /// The HA zone: enterprise, and plant-a as two instances over a three-server nats-server
    /// cluster with `sync_interval: always` (from `BSFG_NATS_SERVER`, which `scripts/demo.sh --ha`
    /// installs). Inside a tokio runtime.
    pub async fn ha(dir: &Path, link_timeout: Duration) -> anyhow::Result<Self> {
        print(&format!(
            "bsfg demo --ha: zone {} and HA zone {HA_ZONE} ({} over a three-server JetStream cluster) on \
             loopback; PKI, configs, data and logs in {}",
            ZONES[0],
            HA_INSTANCES.join(" and "),
            dir.display()
        ))?;
        let engine = NatsCluster::start(&dir.join("engine"), NatsOptions::default())
            .await
            .context("starting the zone's engine (nats-server; scripts/demo.sh --ha installs it)")?;
        print(&format!(
            "  engine     nats-server × {} at {}",
            engine.len(),
            engine.urls().join(", ")
        ))?;
        let mut net = Devnet::new(dir, &ZONES, &[(ZONES[0], ZONES[1])], &[CLIENT])?;
        let lease = format!("lease_ttl = \"{HA_LEASE_TTL}\"");
        net.make_ha(HA_ZONE, &HA_INSTANCES, |instance| {
            jetstream_storage(&engine, instance, &lease)
        })?;
        let mut lab = Self::launch(net, BTreeMap::new(), link_timeout)?;
        lab.engine = Some(engine);
        for node in lab.net.nodes.keys() {
            print(&format!(
                "  {node:<10} node listens on {}; log {}",
                lab.net.node(node)?.rpc,
                lab.log(node).display()
            ))?;
        }
        Ok(lab)
    }

    /// Shortens every node's link timeout, writes the configs and starts every node.
    fn launch(mut net: Devnet, proxies: BTreeMap<String, FaultProxy>, link_timeout: Duration) -> anyhow::Result<Self> {
        let zones: Vec<String> = net.nodes.keys().cloned().collect();
        let replication = format!(
            "[replication]\nlink_timeout = \"{}\"\n",
            humantime::format_duration(link_timeout)
        );
        for zone in &zones {
            net.add_toml(zone, &replication)?;
        }
        net.write_configs()?;
        let mut lab = Self {
            net,
            proxies,
            nodes: Vec::new(),
            engine: None,
        };
        let bin = std::env::current_exe().context("locating the bsfg binary")?;
        for zone in &zones {
            lab.nodes.push(lab.net.spawn(&bin, zone)?);
        }
        Ok(lab)
    }

    pub fn dir(&self) -> &Path {
        &self.net.dir
    }

    pub fn log(&self, zone: &str) -> PathBuf {
        self.net.dir.join(format!("{zone}.log"))
    }

    /// The named proxies drop every datagram, both ways.
    pub fn cut(&self, names: &[&str]) {
        for name in names {
            if let Some(proxy) = self.proxies.get(*name) {
                proxy.blackhole();
            }
        }
    }

    /// The named proxies relay again.
    pub fn heal(&self, names: &[&str]) {
        for name in names {
            if let Some(proxy) = self.proxies.get(*name) {
                proxy.heal();
            }
        }
    }

    /// SIGKILL to `node` (an instance of the HA zone), as a power cut would.
    pub fn kill(&mut self, node: &str) -> anyhow::Result<()> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.zone == node)
            .with_context(|| format!("no node {node} runs"))?;
        self.nodes.remove(index).kill()
    }

    /// SIGTERM to every node; each must drain and exit 0. Reports the first failure, after
    /// trying them all.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let mut first_failure = Ok(());
        for node in &mut self.nodes {
            let stopped = node.terminate(STOP_GRACE).and_then(|status| {
                if !status.success() {
                    bail!("node {} exited with {status}", node.zone);
                }
                Ok(())
            });
            first_failure = first_failure.and(stopped);
        }
        first_failure
    }
}
