//! The supervision tree: the only code that knows how the actors are wired. Opens storage,
//! starts the journal, the buffer actors, one `PeerLink` per peer and the RPC server on one QUIC
//! endpoint, and takes them down again in order.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use actix::prelude::*;
use slog::{info, Logger};

use crate::{
    journal::{Journal, JournalError},
    metrics::Metrics,
    objects::{ObjectError, ObjectStore},
    peer_link::{PeerLinkConfig, PeerLinkDeps},
    storage::{RocksStorage, StorageError},
    transport::{tls::TlsMaterial, Directory, DrainHandle, Roles, RpcServer, ServerDeps},
    zone_gate, ForwardBuffer, ForwardBufferConfig, GateState, PeerLink, StoreBuffer, StoreBufferConfig, ZoneGate,
};

/// One configured peer.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub zone: String,
    pub address: Option<SocketAddr>,
    pub dial: bool,
}

/// Everything the node needs, as plain data (the binary maps its config file onto this).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub zone: String,
    pub data_dir: PathBuf,
    pub rpc_listen: SocketAddr,
    pub peers: Vec<PeerSettings>,
    pub clients: Vec<(String, Roles)>,
    pub max_fact_bytes: usize,
    pub max_frame_bytes: usize,
    /// Largest artifact `PutObject` accepts.
    pub max_object_bytes: u64,
    pub batch_limit: u32,
    pub max_wait: Duration,
    pub backoff_cap: Duration,
    /// Dead-link detection time.
    pub link_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open storage in {path}: {source}")]
    Storage { path: PathBuf, source: StorageError },
    #[error("cannot start the journal: {0}")]
    Journal(#[from] JournalError),
    #[error("cannot open the object store in {path}: {source}")]
    Objects { path: PathBuf, source: ObjectError },
    #[error("TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// A running node.
pub struct Node {
    endpoint: quinn::Endpoint,
    metrics: Arc<Metrics>,
    drain: DrainHandle,
    gate: Addr<ZoneGate>,
    status: tokio::task::JoinHandle<()>,
    server: RpcServer,
    links: Vec<Addr<PeerLink>>,
    log: Logger,
}

impl Node {
    /// Starts the node; must run inside an actix `System`.
    pub async fn start(settings: NodeSettings, tls: &TlsMaterial, log: Logger) -> Result<Self, NodeError> {
        let storage = open_storage(&settings).await?;
        let journal = Journal::start(storage.clone())?;
        let status_journal = journal.clone();
        let forward = ForwardBuffer::new(
            ForwardBufferConfig {
                max_frame_bytes: settings.max_frame_bytes,
            },
            journal.clone(),
        )
        .start();
        let peers: Vec<String> = settings.peers.iter().map(|p| p.zone.clone()).collect();
        let peer_zones = peers.clone();
        let gate_log = log.clone();
        let metrics = Arc::new(
            Metrics::new(&settings.zone, env!("CARGO_PKG_VERSION"), &peers)
                .map_err(|e| NodeError::Metrics(e.to_string()))?,
        );
        let objects = open_objects(&settings, storage, &metrics).await?;
        let store = StoreBuffer::new(store_config(&settings), journal, objects.clone()).start();
        let gate_metrics = metrics.clone();
        let gate = Supervisor::start(move |_| ZoneGate::new(peers, gate_metrics, gate_log));
        let endpoint = quinn::Endpoint::server(tls.quic_server_config(settings.link_timeout)?, settings.rpc_listen)
            .map_err(|source| NodeError::Listen {
                addr: settings.rpc_listen,
                source,
            })?;
        let (dialed_tx, dialed_rx) = tokio::sync::mpsc::unbounded_channel();
        let link_deps = PeerLinkDeps {
            endpoint: endpoint.clone(),
            client_config: tls.quic_client_config(settings.link_timeout)?,
            forward: forward.clone(),
            gate: gate.clone(),
            objects: objects.clone(),
            metrics: metrics.clone(),
            dialed: dialed_tx,
            log: log.clone(),
        };
        let links: HashMap<String, Addr<PeerLink>> = settings
            .peers
            .iter()
            .map(|peer| (peer.zone.clone(), start_link(&settings, peer, link_deps.clone())))
            .collect();
        let drain = DrainHandle::new(metrics.draining.clone());
        let deps = ServerDeps {
            zone: settings.zone.clone(),
            store,
            forward,
            gate: gate.clone(),
            objects,
            metrics: metrics.clone(),
            links: links.clone(),
            directory: Arc::new(directory(&settings)),
            drain: drain.clone(),
            max_frame_bytes: settings.max_frame_bytes,
            log: log.clone(),
        };
        let server = RpcServer::spawn(endpoint.clone(), deps, dialed_rx);
        info!(log, "node_started"; "rpc" => %endpoint.local_addr().map_err(|source| NodeError::Listen { addr: settings.rpc_listen, source })?);
        let status = tokio::spawn(crate::status::refresh(status_journal, metrics.clone(), peer_zones));
        let expiry = tls
            .not_after()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        metrics.certificate_expiry_seconds.set(expiry.as_secs_f64());
        metrics.node_up.set(1);
        Ok(Self {
            endpoint,
            metrics,
            drain,
            gate,
            status,
            server,
            links: links.into_values().collect(),
            log,
        })
    }

    /// The node's metrics, for the admin API.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The node's drain switch, shared with the RPC server (SPEC §10).
    pub fn drain_handle(&self) -> DrainHandle {
        self.drain.clone()
    }

    /// The zone gate, for status queries ([`zone_gate::Snapshot`]).
    pub fn gate(&self) -> Addr<ZoneGate> {
        self.gate.clone()
    }

    /// The gate state toward every peer (empty if the gate is gone).
    pub async fn gates(&self) -> BTreeMap<String, GateState> {
        self.gate.send(zone_gate::Snapshot).await.unwrap_or_default()
    }

    /// The QUIC address actually bound (useful with port 0).
    pub fn rpc_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Closes connections with an application code, stops the links; storage closes when the
    /// last journal handle drops.
    pub async fn shutdown(self) {
        self.metrics.node_up.set(0);
        self.status.abort();
        self.server.abort();
        for link in &self.links {
            let _ = link.send(crate::peer_link::Stop).await;
        }
        self.endpoint.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        info!(self.log, "node_stopped");
    }
}

async fn open_storage(settings: &NodeSettings) -> Result<Arc<RocksStorage>, NodeError> {
    let (path, zone) = (settings.data_dir.clone(), settings.zone.clone());
    let opened = tokio::task::spawn_blocking(move || RocksStorage::open(&path, &zone))
        .await
        .map_err(|e| NodeError::Journal(JournalError::Storage(e.to_string())))?;
    let storage = opened.map_err(|source| NodeError::Storage {
        path: settings.data_dir.clone(),
        source,
    })?;
    Ok(Arc::new(storage))
}

/// The artifact store shares the RocksDB instance (column family `objects`) for its index.
async fn open_objects(
    settings: &NodeSettings,
    storage: Arc<RocksStorage>,
    metrics: &Metrics,
) -> Result<ObjectStore, NodeError> {
    let (path, limit, usage) = (
        settings.data_dir.clone(),
        settings.max_object_bytes,
        metrics.object_store_usage_bytes.clone(),
    );
    let error = |source| NodeError::Objects {
        path: settings.data_dir.clone(),
        source,
    };
    tokio::task::spawn_blocking(move || ObjectStore::open(&path, storage, limit, usage))
        .await
        .map_err(|e| error(ObjectError::Io(std::io::Error::other(e.to_string()))))?
        .map_err(error)
}

fn store_config(settings: &NodeSettings) -> StoreBufferConfig {
    StoreBufferConfig {
        zone: settings.zone.clone(),
        peers: settings.peers.iter().map(|p| p.zone.clone()).collect::<HashSet<_>>(),
        max_fact_bytes: settings.max_fact_bytes,
        max_frame_bytes: settings.max_frame_bytes,
    }
}

fn start_link(settings: &NodeSettings, peer: &PeerSettings, deps: PeerLinkDeps) -> Addr<PeerLink> {
    let config = PeerLinkConfig {
        zone: settings.zone.clone(),
        peer: peer.zone.clone(),
        address: peer.address,
        dial: peer.dial,
        batch_limit: settings.batch_limit,
        max_wait: settings.max_wait,
        max_frame_bytes: settings.max_frame_bytes,
        backoff_cap: settings.backoff_cap,
        link_timeout: settings.link_timeout,
    };
    Supervisor::start(move |_| PeerLink::new(config, deps))
}

fn directory(settings: &NodeSettings) -> Directory {
    Directory {
        peers: settings.peers.iter().map(|p| p.zone.clone()).collect(),
        clients: settings.clients.iter().cloned().collect(),
    }
}
