//! The demo's laboratory: a two-zone dev network on loopback, one fault proxy in front of each
//! node (the other node dials the proxy, never the node itself), and the node processes.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};

use super::screen::print;
use crate::devnet::{proxy::FaultProxy, Devnet, NodeProcess};

pub const ZONES: [&str; 2] = ["enterprise", "plant-a"];
pub const CLIENT: &str = "demo-client";

/// How long a node may take to drain and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Lab {
    pub net: Devnet,
    /// `proxies[i]` stands in front of the node of `ZONES[i]`.
    proxies: Vec<FaultProxy>,
    nodes: Vec<NodeProcess>,
}

impl Lab {
    /// Writes PKI and configs into `dir` and starts both nodes. Must be called inside a tokio
    /// runtime: the proxies' tasks are spawned on it.
    pub fn start(dir: &Path, link_timeout: Duration) -> anyhow::Result<Self> {
        print(&format!(
            "bsfg demo: zones {} and {} on loopback; PKI, configs, data and logs in {}",
            ZONES[0],
            ZONES[1],
            dir.display()
        ))?;
        let mut net = Devnet::new(dir, &ZONES, &[(ZONES[0], ZONES[1])], &[CLIENT])?;
        let mut proxies = Vec::new();
        for (zone, peer) in [(ZONES[0], ZONES[1]), (ZONES[1], ZONES[0])] {
            let proxy = FaultProxy::start(net.node(zone)?.rpc).context("starting a fault proxy")?;
            net.set_peer_address(peer, zone, proxy.addr())?;
            set_link_timeout(&mut net, zone, link_timeout)?;
            proxies.push(proxy);
        }
        net.write_configs()?;
        let mut lab = Self {
            net,
            proxies,
            nodes: Vec::new(),
        };
        let bin = std::env::current_exe().context("locating the bsfg binary")?;
        for zone in ZONES {
            lab.nodes.push(lab.net.spawn(&bin, zone)?);
        }
        lab.introduce()?;
        Ok(lab)
    }

    fn introduce(&self) -> anyhow::Result<()> {
        for ((zone, peer), proxy) in [(ZONES[0], ZONES[1]), (ZONES[1], ZONES[0])].iter().zip(&self.proxies) {
            print(&format!(
                "  {zone:<10} node listens on {}; {peer} reaches it through proxy {}; log {}",
                self.net.node(zone)?.rpc,
                proxy.addr(),
                self.log(zone).display()
            ))?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.net.dir
    }

    pub fn log(&self, zone: &str) -> PathBuf {
        self.net.dir.join(format!("{zone}.log"))
    }

    /// Both proxies drop every datagram, both ways: a partition between the zones.
    pub fn cut(&self) {
        for proxy in &self.proxies {
            proxy.blackhole();
        }
    }

    /// Both proxies relay again.
    pub fn heal(&self) {
        for proxy in &self.proxies {
            proxy.heal();
        }
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

/// A shorter `replication.link_timeout`; the devnet writes no `[replication]` section itself.
fn set_link_timeout(net: &mut Devnet, zone: &str, timeout: Duration) -> anyhow::Result<()> {
    let node = net.nodes.get_mut(zone).with_context(|| format!("no zone {zone}"))?;
    node.extra.push_str(&format!(
        "[replication]\nlink_timeout = \"{}\"\n",
        humantime::format_duration(timeout)
    ));
    Ok(())
}
