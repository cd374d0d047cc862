//! The one mapping from the configuration tree onto the node's per-component configs
//! ([`NodeSettings`]): each component's config is built here from its sections, and nowhere
//! else. A rule a component owns is checked by its own constructor ([`Policy::new`] for the
//! store's policy); this module only names the key at fault.

use std::{collections::HashSet, sync::Arc, time::Duration};

use bsfg_actors::{
    backpressure::{BackpressureConfig, BufferLimits, Policy, PolicyError},
    cert_watcher::{CertWatcherConfig, TlsPaths},
    node::{HaSettings, NodeSettings},
    relay::Routing,
    rpc::{Directory, RpcConfig},
    transport::addresses::Addresses,
    ForwardBufferConfig, ObjectsConfig, PeerLinkConfig, StoreBufferConfig,
};

use super::{validate::invalid, ByteSize, Config, ConfigError, StoreSection, TlsSection};

impl Config {
    /// Every component's config, from the sections it reads.
    pub fn node_settings(&self) -> Result<NodeSettings, ConfigError> {
        let zone = self.node.zone.as_str().to_owned();
        let max_frame_bytes = usize_bytes(self.limits.max_frame_bytes);
        let routing = Arc::new(self.routing());
        Ok(NodeSettings {
            zone: zone.clone(),
            data_dir: self.node.data_dir.clone(),
            write_stall: self.node.write_stall_timeout,
            buffers: self.buffers()?,
            store: StoreBufferConfig {
                zone: zone.clone(),
                routing: routing.clone(),
                max_fact_bytes: usize_bytes(self.limits.max_fact_bytes),
                max_frame_bytes,
            },
            forward: ForwardBufferConfig { max_frame_bytes },
            objects: ObjectsConfig {
                max_object_bytes: self.limits.max_object_bytes.bytes(),
                capacity_bytes: self.objects.capacity_bytes.bytes(),
                retention: self.objects.retention,
            },
            links: self.links(&routing),
            routing,
            rpc: RpcConfig {
                zone: zone.clone(),
                listen: self.listen.rpc,
                directory: self.directory(),
                audit: self.log.audit,
                max_frame_bytes,
            },
            certs: CertWatcherConfig {
                zone,
                paths: TlsPaths::from(&self.tls),
                idle_timeout: self.replication.link_timeout,
            },
            ha: self.storage.jetstream.as_ref().map(ha_settings),
        })
    }

    fn buffers(&self) -> Result<BackpressureConfig, ConfigError> {
        let limits = |capacity: ByteSize, retention| BufferLimits {
            capacity_bytes: capacity.bytes(),
            retention,
        };
        Ok(BackpressureConfig {
            store: limits(self.store.capacity_bytes, self.store.retention),
            forward: limits(self.forward.capacity_bytes, self.forward.retention),
            policy: policy(&self.store)?,
            disk_reserve_bytes: self.node.disk_reserve_bytes.bytes(),
        })
    }

    fn peer_zones(&self) -> impl Iterator<Item = String> + '_ {
        self.peers.iter().map(|peer| peer.zone.as_str().to_owned())
    }

    fn links(&self, routing: &Arc<Routing>) -> Vec<PeerLinkConfig> {
        let replication = &self.replication;
        let link = |peer: &super::PeerSection| PeerLinkConfig {
            zone: self.node.zone.as_str().to_owned(),
            peer: peer.zone.as_str().to_owned(),
            addresses: Addresses::new(peer.dial_addresses()).ok(),
            dial: peer.dial,
            batch_limit: replication.batch_limit,
            max_wait: Duration::from_millis(replication.max_wait_ms),
            max_frame_bytes: usize_bytes(self.limits.max_frame_bytes),
            max_bytes_per_second: peer.max_bytes_per_second.map(ByteSize::bytes),
            routing: routing.clone(),
            audit: self.log.audit,
        };
        self.peers.iter().map(link).collect()
    }

    fn directory(&self) -> Directory {
        let peers: HashSet<String> = self.peer_zones().collect();
        let clients = self.clients.iter().map(|client| {
            let roles = client.roles.iter().copied().collect();
            (client.identity.clone(), roles)
        });
        Directory {
            peers,
            clients: clients.collect(),
        }
    }
}

/// `[storage.jetstream]` (present only with `engine = "jetstream"`, see `storage::check`).
fn ha_settings(js: &super::JetStreamSection) -> HaSettings {
    HaSettings {
        instance: js.instance.clone(),
        urls: js.urls.clone(),
        ca: js.ca.clone(),
        client_cert: js.cert.clone().zip(js.key.clone()),
        creds: js.creds.clone(),
        replicas: js.replicas,
        lease_ttl: js.lease_ttl,
        commit_timeout: js.commit_timeout,
        monitor_urls: js.monitor_urls.clone(),
        assume_durable: js.assume_durable,
        wal_max_bytes: js.wal_max_bytes.map(ByteSize::bytes),
        snapshot_every_bytes: js.snapshot_every.bytes(),
    }
}

/// The store's when-full policy and watermarks of `[store]`, checked by [`Policy::new`].
pub(super) fn policy(store: &StoreSection) -> Result<Policy, ConfigError> {
    Policy::new(
        store.backpressure,
        store.safety_critical,
        store.high_watermark_percent,
        store.low_watermark_percent,
    )
    .map_err(|error| {
        let key = match error {
            PolicyError::HighNotAPercentage { .. } => "store.high_watermark_percent",
            PolicyError::LowNotBelowHigh { .. } | PolicyError::LowZero => "store.low_watermark_percent",
            PolicyError::DropsSafetyCritical => "store.backpressure",
        };
        invalid(key, error.to_string())
    })
}

impl From<&TlsSection> for TlsPaths {
    fn from(tls: &TlsSection) -> Self {
        TlsPaths {
            ca: tls.ca.clone(),
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            crl: tls.crl.clone(),
        }
    }
}

/// A size as `usize`; sizes are at most 1 GiB once checked, so this never saturates in practice.
fn usize_bytes(size: ByteSize) -> usize {
    usize::try_from(size.bytes()).unwrap_or(usize::MAX)
}
