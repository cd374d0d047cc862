//! An HA zone in a development network (SPEC §15): the zone's one node becomes one instance per
//! name, each with its own ports, data directory and `[storage]` section (the caller's, e.g. a
//! [`super::nats::NatsCluster`]'s URLs), all presenting the zone's certificate. Every peer of the
//! zone lists every instance, and [`Devnet::client_of_zone`] gives clients the same list.
//! Also how an instance is started and how its role is read: only the active instance answers
//! `/readyz` 200 (a standby answers 503), so a zone serves once one of its instances is ready.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{is_ready, nats::NatsCluster, node_spec, Devnet, NodeProcess, POLL, STARTUP_TIMEOUT};
use crate::{admin::client::AdminClient, admin::status::Status, client::ClientOptions};

/// How often an instance's role is asked while waiting for it to change.
const ROLE_POLL: Duration = Duration::from_millis(20);

/// The HA role (`active`, `standby`) the instance whose admin listener is `admin`
/// reports in `/v1/status`, or `diverged` for a standby whose replica diverged; `None` when it
/// does not answer or is no HA instance. Blocking.
pub fn role(admin: SocketAddr) -> Option<String> {
    let answer = AdminClient::at(admin, None)
        .timeout(Duration::from_secs(2))
        .get("/v1/status")
        .ok()?;
    if answer.status != 200 {
        return None;
    }
    let status: Status = serde_json::from_str(&answer.body).ok()?;
    status
        .ha
        .map(|ha| if ha.diverged { "diverged".to_owned() } else { ha.role })
}

/// Asks the instance at `admin` until it reports the role `wanted` (returns when it did) or
/// `limit` passed.
pub async fn until_role(admin: SocketAddr, wanted: &'static str, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let role = tokio::task::spawn_blocking(move || role(admin)).await.ok().flatten();
        if role.as_deref() == Some(wanted) {
            return Some(Instant::now());
        }
        tokio::time::sleep(ROLE_POLL).await;
    }
    None
}

/// The `[storage]` section of `instance` of an HA zone on `engine`, with `extra` lines in
/// `[storage.jetstream]` (e.g. `lease_ttl = "2s"`).
pub fn jetstream_storage(engine: &NatsCluster, instance: &str, extra: &str) -> String {
    format!(
        "[storage]\nengine = \"jetstream\"\n\n[storage.jetstream]\nurls = {:?}\ninstance = \"{instance}\"\nmonitor_urls = {:?}\n{extra}\n",
        engine.urls(),
        engine.monitor_urls()
    )
}

impl Devnet {
    /// Replaces `zone`'s node by `instances` (keyed by instance name from then on), each with
    /// `storage(instance)` appended to its config.
    pub fn make_ha(&mut self, zone: &str, instances: &[&str], storage: impl Fn(&str) -> String) -> anyhow::Result<()> {
        let node = self
            .nodes
            .remove(zone)
            .with_context(|| format!("no zone {zone} in this devnet"))?;
        for instance in instances {
            let mut spec = node_spec(&self.dir, instance, node.clients.clone())?;
            spec.zone = zone.to_owned();
            spec.peers = node.peers.clone();
            spec.extra = format!("{}\n{}", node.extra, storage(instance));
            self.nodes.insert((*instance).to_owned(), spec);
        }
        let addresses: Vec<_> = instances.iter().map(|i| self.nodes[*i].rpc.into()).collect();
        for other in self.nodes.values_mut() {
            for peer in other.peers.iter_mut().filter(|p| p.zone == zone) {
                peer.addresses = addresses.clone();
            }
        }
        self.write_configs()
    }

    /// The nodes of `zone` by name: its instances when it is an HA zone, else the zone itself.
    pub fn instances(&self, zone: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.zone == zone)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Starts every instance of `zone` at once and waits until one of them (the active one)
    /// answers `/readyz` with 200, whatever the log level.
    pub fn spawn_zone_ready(&self, bin: &Path, zone: &str) -> anyhow::Result<Vec<NodeProcess>> {
        let instances = self.instances(zone);
        let mut processes = instances
            .iter()
            .map(|instance| self.launch(bin, instance))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let admins = instances
            .iter()
            .map(|instance| Ok(self.node(instance)?.admin))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if admins.iter().any(|admin| is_ready(*admin)) {
                return Ok(processes);
            }
            for process in &mut processes {
                if let Some(status) = process.child.try_wait()? {
                    bail!(
                        "instance {} exited with {status} while starting; log: {}",
                        process.zone,
                        process.log.display()
                    );
                }
            }
            std::thread::sleep(POLL);
        }
        bail!("no instance of zone {zone} became active within {STARTUP_TIMEOUT:?}")
    }

    /// Starts `instance` of an HA zone whose other instance is active and waits until it reports
    /// itself a standby.
    pub fn spawn_standby(&self, bin: &Path, instance: &str) -> anyhow::Result<NodeProcess> {
        let admin = self.node(instance)?.admin;
        let mut process = self.launch(bin, instance)?;
        process.wait_until(STARTUP_TIMEOUT, |_| role(admin).as_deref() == Some("standby"))?;
        Ok(process)
    }

    /// Client options for `identity` listing every node of `zone` (all its instances).
    pub fn client_of_zone(&self, zone: &str, identity: &str) -> anyhow::Result<ClientOptions> {
        let nodes: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.zone == zone)
            .map(|n| n.rpc.to_string())
            .collect();
        anyhow::ensure!(!nodes.is_empty(), "no node of zone {zone} in this devnet");
        let first = self.nodes.values().find(|n| n.zone == zone).map(|n| n.zone.clone());
        Ok(ClientOptions {
            node: nodes.join(","),
            server_name: first.unwrap_or_default(),
            ..self.client_any(zone, identity)?
        })
    }

    fn client_any(&self, zone: &str, identity: &str) -> anyhow::Result<ClientOptions> {
        let key = self
            .nodes
            .iter()
            .find(|(_, n)| n.zone == zone)
            .map(|(key, _)| key.clone())
            .with_context(|| format!("no node of zone {zone}"))?;
        self.client(&key, identity)
    }
}
