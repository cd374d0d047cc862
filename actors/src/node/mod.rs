//! The supervision tree: the only code that knows how the actors are wired. Opens storage,
//! starts the journal, the buffer actors, one `PeerLink` per peer, the RPC server on one QUIC
//! endpoint and the `CertWatcher` that swaps that endpoint's TLS material, and takes them down
//! again in order.
//!
//! Every component is built from its own plain config in [`NodeSettings`], which the binary maps
//! from the configuration file once; the runtime handles each one needs are made here (`start`).

mod ha;
mod progress;
mod start;

pub use ha::HaSettings;
pub use progress::StartProgress;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{mpsc, Arc},
    time::Duration,
};

use actix::prelude::*;
use slog::{info, warn, Logger};
use tokio::sync::watch;

use crate::{
    backpressure::{BackpressureConfig, DiskState, UsageReport},
    cert_watcher::{CertWatcher, CertWatcherConfig, Certificate},
    events::StorageHealth,
    forward_buffer::{Consumers, ForwardBufferConfig},
    ha::HaHandle,
    journal::JournalError,
    metrics::Metrics,
    objects::{ObjectError, ObjectsConfig},
    peer_link::{PeerLink, PeerLinkConfig},
    relay::Routing,
    rpc::{Authorisations, DrainHandle, RpcConfig, RpcServer},
    standing::StandingRx,
    status::Progress,
    storage::{LossRecord, RocksStorage, StorageError, Usage},
    store_buffer::StoreBufferConfig,
    trace::Tracer,
    transport::tls::{TlsError, TlsMaterial},
    zone_gate::{self, GateState, GateSwitches, ZoneGate},
};

/// Everything the node needs, as plain data: one config per component.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub zone: String,
    pub data_dir: PathBuf,
    /// `node.write_stall_timeout`: how long a write to `data_dir` may hang before the node
    /// reports its storage failing and answers the calls waiting on it (see `journal`).
    pub write_stall: Duration,
    /// Capacity, retention and when-full policy of both buffers (and the journal's hard limit).
    pub buffers: BackpressureConfig,
    pub store: StoreBufferConfig,
    pub forward: ForwardBufferConfig,
    pub objects: ObjectsConfig,
    /// One per configured peer.
    pub links: Vec<PeerLinkConfig>,
    /// Peers, routes and relay rules (shared with the store buffer's and the links' configs).
    pub routing: Arc<Routing>,
    pub rpc: RpcConfig,
    /// Where the TLS material is reloaded from; the node starts with the material already loaded
    /// from there, and its QUIC configs use the watcher's idle timeout.
    pub certs: CertWatcherConfig,
    /// An instance of an HA zone (`[storage] engine = "jetstream"`); `None`: a single node.
    pub ha: Option<HaSettings>,
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
    Tls(#[from] TlsError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The zone's engine cannot be trusted with acknowledged facts (too old, no fsync before
    /// acknowledging): an operator must change it or the configuration.
    #[error("the zone's engine is refused: {0}")]
    EngineRefused(String),
    #[error("the zone's engine: {0}")]
    Engine(String),
}

impl NodeError {
    /// Storage that cannot be opened because its data is damaged (an operator must decide).
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Storage { source, .. } if source.is_damage())
    }

    /// The node cannot start as configured, whatever the wait: the engine is refused, or the
    /// data directory is another zone's or a newer version's (see [`StorageError::is_misplaced`]).
    pub fn is_misconfigured(&self) -> bool {
        match self {
            Self::EngineRefused(_) => true,
            Self::Storage { source, .. } => source.is_misplaced(),
            _ => false,
        }
    }
}

/// What the admin API and the signal handlers act on; cheap to clone.
#[derive(Clone)]
pub struct Handles {
    pub metrics: Arc<Metrics>,
    /// The node's drain switch, shared with the RPC server (SPEC §10).
    pub drain: DrainHandle,
    /// The zone gate: state snapshots ([`zone_gate::Snapshot`]) and operator switches.
    pub gate: Addr<ZoneGate>,
    pub switches: GateSwitches,
    /// The peers and clients calls are judged by; a configuration reload replaces the clients.
    pub authorisations: Authorisations,
    pub certs: Addr<CertWatcher>,
    /// The certificate the node presents now.
    pub certificate: watch::Receiver<Certificate>,
    /// Replication and consumption progress, refreshed once a second.
    pub progress: watch::Receiver<Progress>,
    /// Exact usage of both buffers, published by the journal after every commit.
    pub usage: watch::Receiver<Usage>,
    /// Capacities the usage is measured against.
    pub buffers: Arc<BackpressureConfig>,
    /// The forward buffer's consumers: list, delete, rewind.
    pub consumers: Consumers,
    /// Where a fact is on this node.
    pub tracer: Tracer,
    /// Whether storage works; `/readyz` and `bsfg_node_up` follow it.
    pub health: StorageHealth,
    /// The data directory's free space and whether appends are refused for lack of it.
    pub disk: watch::Receiver<DiskState>,
    /// The losses operators accepted in this data directory (`bsfg storage accept-loss`).
    pub losses: Arc<Vec<LossRecord>>,
    /// Routes and relay rules, for `/v1/status`.
    pub routing: Arc<Routing>,
    /// Whether this node serves (always, unless it is an HA zone's standby).
    pub standing: StandingRx,
    /// An HA instance's controller (status, step-down).
    pub ha: Option<HaHandle>,
}

impl Handles {
    /// Retained facts, bytes and fill of both buffers (for `/v1/status`).
    pub fn usage(&self) -> UsageReport {
        UsageReport::new(&self.usage.borrow(), &self.buffers)
    }
}

/// A running node.
pub struct Node {
    endpoint: quinn::Endpoint,
    handles: Handles,
    status: tokio::task::JoinHandle<()>,
    /// The artifact store's retention sweep.
    sweeper: tokio::task::JoinHandle<()>,
    server: RpcServer,
    links: Vec<Addr<PeerLink>>,
    /// Flushed at a clean stop (see [`Node::shutdown`]).
    local: Arc<RocksStorage>,
    storage_closed: mpsc::Receiver<()>,
    log: Logger,
}

/// How long a stopping HA instance waits for its controller to hand the zone over.
const STEP_DOWN_PATIENCE: Duration = Duration::from_secs(5);

/// What is left of a node after [`Node::shutdown`]: its storage, closed once every actor and
/// task holding it has been dropped (stop the actix system first).
#[derive(Debug)]
pub struct Stopped {
    storage_closed: mpsc::Receiver<()>,
}

impl Stopped {
    /// Waits up to `timeout` for RocksDB to close; `false` if it is still open then. Exiting the
    /// process while RocksDB's background threads run can abort it in static destructors.
    pub fn wait_storage_closed(self, timeout: Duration) -> bool {
        matches!(
            self.storage_closed.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Disconnected)
        )
    }
}

impl Node {
    /// Starts the node; must run inside an actix `System`. A start that takes long (an HA
    /// instance restoring its replica) says how far it came in `progress`.
    pub async fn start(
        settings: NodeSettings,
        tls: &TlsMaterial,
        log: Logger,
        progress: &StartProgress,
    ) -> Result<Self, NodeError> {
        start::start(settings, tls, log, progress).await
    }

    /// What the admin API and the signal handlers act on.
    pub fn handles(&self) -> Handles {
        self.handles.clone()
    }

    /// The gate state toward every peer (empty if the gate is gone).
    pub async fn gates(&self) -> BTreeMap<String, GateState> {
        self.handles.gate.send(zone_gate::Snapshot).await.unwrap_or_default()
    }

    /// The QUIC address actually bound (useful with port 0).
    pub fn rpc_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Closes connections with an application code and stops the links. Storage closes when the
    /// last handle on it drops (the actors', the journal writer's): wait for it with
    /// [`Stopped::wait_storage_closed`] once the actix system is gone.
    pub async fn shutdown(self) -> Stopped {
        if let Some(ha) = &self.handles.ha {
            // An active instance hands over at once rather than after its lease's TTL. Not for
            // longer than a few seconds: a controller busy promoting (a catch-up that waits on
            // an engine that answers nothing) reads no step-down, and the stop must not wait on it.
            if tokio::time::timeout(STEP_DOWN_PATIENCE, ha.step_down()).await.is_err() {
                warn!(self.log, "step_down_skipped"; "reason" => format!(
                    "the HA controller did not answer within {STEP_DOWN_PATIENCE:?}; stopping without handing over (the lease expires after its TTL)"
                ));
            }
        }
        self.handles.health.stopped();
        self.status.abort();
        self.sweeper.abort();
        self.server.abort();
        for link in &self.links {
            let _ = link.send(crate::peer_link::Stop).await;
        }
        self.endpoint
            .close(bsfg_proto::CloseCode::Shutdown.code().into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        // What the memtables hold goes into tables, so that no stored fact lives only in the
        // write-ahead log while the node is stopped: a log file deleted then (a cleanup job that
        // removes `*.log`) loses nothing. Facts written after this are in the log as always.
        let local = self.local.clone();
        let flushed = tokio::task::spawn_blocking(move || local.flush())
            .await
            .map_err(|e| e.to_string())
            .and_then(|flushed| flushed.map_err(|e| e.to_string()));
        match flushed {
            Ok(()) => info!(self.log, "node_stopped"; "storage_flushed" => true),
            Err(reason) => warn!(self.log, "node_stopped"; "storage_flushed" => false, "reason" => reason),
        }
        Stopped {
            storage_closed: self.storage_closed,
        }
    }
}
