//! An HA zone in a development network (SPEC §15): the zone's one node becomes one instance per
//! name, each with its own ports, data directory and `[storage]` section (the caller's, e.g. a
//! [`super::nats::NatsCluster`]'s URLs), all presenting the zone's certificate. Every peer of the
//! zone lists every instance, and [`Devnet::client_of_zone`] gives clients the same list.

use anyhow::Context;

use super::{nats::NatsCluster, node_spec, Devnet};
use crate::client::ClientOptions;

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
