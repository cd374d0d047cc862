//! The supervision tree: the only code that knows how the actors are wired. Opens storage,
//! starts the journal, the buffer actors, one `PeerLink` per peer, the RPC server on one QUIC
//! endpoint and the `CertWatcher` that swaps that endpoint's TLS material, and takes them down
//! again in order.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::{mpsc, Arc},
    time::Duration,
};

use actix::prelude::*;
use slog::{info, Logger};
use tokio::sync::watch;

use crate::{
    backpressure::{BackpressureDeps, UsageReport, WhenFull},
    cert_watcher::{CertWatcherConfig, CertWatcherDeps, Certificate, TlsPaths},
    journal::{Journal, JournalConfig, JournalError},
    metrics::Metrics,
    objects::{ObjectError, ObjectStore},
    peer_link::{PeerLinkConfig, PeerLinkDeps},
    rpc::{Directory, DrainHandle, Roles, RpcServer, ServerDeps},
    status::{Progress, Refresher},
    storage::{RocksStorage, StorageError, Usage},
    transport::tls::TlsMaterial,
    zone_gate::{self, GateSwitches},
    Backpressure, BackpressureConfig, CertWatcher, ForwardBuffer, ForwardBufferConfig, GateState, PeerLink,
    StoreBuffer, StoreBufferConfig, ZoneGate,
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
    /// Reloaded by the `CertWatcher`; the node starts with the material already loaded from them.
    pub tls: TlsPaths,
    /// Log every RPC call, not only failures (`log.audit`).
    pub audit: bool,
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
    /// Capacity, retention and when-full policy of both buffers.
    pub buffers: BackpressureConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("configuration: {0}")]
    Config(String),
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

/// What the admin API and the signal handlers act on; cheap to clone.
#[derive(Clone)]
pub struct Handles {
    pub metrics: Arc<Metrics>,
    /// The node's drain switch, shared with the RPC server (SPEC §10).
    pub drain: DrainHandle,
    /// The zone gate: state snapshots ([`zone_gate::Snapshot`]) and operator switches.
    pub gate: Addr<ZoneGate>,
    pub switches: GateSwitches,
    pub certs: Addr<CertWatcher>,
    /// The certificate the node presents now.
    pub certificate: watch::Receiver<Certificate>,
    /// Replication and consumption progress, refreshed once a second.
    pub progress: watch::Receiver<Progress>,
    /// Exact usage of both buffers, published by the journal after every commit.
    pub usage: watch::Receiver<Usage>,
    /// Capacities the usage is measured against.
    pub buffers: Arc<BackpressureConfig>,
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
    server: RpcServer,
    links: Vec<Addr<PeerLink>>,
    storage_closed: mpsc::Receiver<()>,
    log: Logger,
}

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
    /// Starts the node; must run inside an actix `System`.
    pub async fn start(settings: NodeSettings, tls: &TlsMaterial, log: Logger) -> Result<Self, NodeError> {
        settings.buffers.check().map_err(NodeError::Config)?;
        let storage = open_storage(&settings).await?;
        let storage_closed = storage.closed();
        let journal = Journal::start(storage.clone(), journal_config(&settings))?;
        let status_journal = journal.clone();
        let peers: Vec<String> = settings.peers.iter().map(|p| p.zone.clone()).collect();
        let metrics = Arc::new(
            Metrics::new(&settings.zone, env!("CARGO_PKG_VERSION"), &peers)
                .map_err(|e| NodeError::Metrics(e.to_string()))?,
        );
        let backpressure = Backpressure::new(
            settings.buffers.clone(),
            BackpressureDeps {
                journal: journal.clone(),
                metrics: metrics.clone(),
                log: log.clone(),
            },
        );
        let (admission, pulls_paused) = (backpressure.admission(), backpressure.pulls_paused());
        Supervisor::start(move |_| backpressure);
        let objects = open_objects(&settings, storage, &metrics).await?;
        let store = StoreBuffer::new(store_config(&settings), journal.clone(), admission, objects.clone()).start();
        let forward = ForwardBuffer::new(
            ForwardBufferConfig {
                max_frame_bytes: settings.max_frame_bytes,
            },
            journal.clone(),
        )
        .start();
        let peer_zones = peers.clone();
        let gate_log = log.clone();
        let gate_metrics = metrics.clone();
        let switches = GateSwitches::new(peers.clone());
        let gate_switches = switches.clone();
        let gate = Supervisor::start(move |_| ZoneGate::new(peers, gate_switches, gate_metrics, gate_log));
        let endpoint = quinn::Endpoint::server(tls.quic_server_config(settings.link_timeout)?, settings.rpc_listen)
            .map_err(|source| NodeError::Listen {
                addr: settings.rpc_listen,
                source,
            })?;
        let (client_config, client_config_rx) = watch::channel(tls.quic_client_config(settings.link_timeout)?);
        let (certificate, certificate_rx) = watch::channel(Certificate::of(tls));
        let certs = start_cert_watcher(
            &settings,
            CertWatcherDeps {
                endpoint: endpoint.clone(),
                client_config,
                certificate,
                metrics: metrics.clone(),
                log: log.clone(),
            },
        );
        let (dialed_tx, dialed_rx) = tokio::sync::mpsc::unbounded_channel();
        let link_deps = PeerLinkDeps {
            endpoint: endpoint.clone(),
            client_config: client_config_rx,
            switches: switches.clone(),
            forward: forward.clone(),
            gate: gate.clone(),
            objects: objects.clone(),
            metrics: metrics.clone(),
            pulls_paused,
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
            switches: switches.clone(),
            max_frame_bytes: settings.max_frame_bytes,
            audit: settings.audit,
            log: log.clone(),
        };
        let server = RpcServer::spawn(endpoint.clone(), deps, dialed_rx);
        info!(log, "node_started"; "rpc" => %endpoint.local_addr().map_err(|source| NodeError::Listen { addr: settings.rpc_listen, source })?);
        let (progress, progress_rx) = watch::channel(Progress::default());
        let refresher = Refresher {
            journal: status_journal,
            metrics: metrics.clone(),
            peers: peer_zones,
            certificate: certificate_rx.clone(),
            progress,
        };
        let status = tokio::spawn(refresher.run());
        // Set now, not at the refresher's first tick: a scrape may come first.
        let expiry = Certificate::of(tls).time_left(std::time::SystemTime::now());
        metrics.certificate_expiry_seconds.set(expiry.as_secs_f64());
        metrics.node_up.set(1);
        let handles = Handles {
            metrics,
            drain,
            gate,
            switches,
            certs,
            certificate: certificate_rx,
            progress: progress_rx,
            usage: journal.usage(),
            buffers: Arc::new(settings.buffers.clone()),
        };
        Ok(Self {
            endpoint,
            handles,
            status,
            server,
            links: links.into_values().collect(),
            storage_closed,
            log,
        })
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
        self.handles.metrics.node_up.set(0);
        self.status.abort();
        self.server.abort();
        for link in &self.links {
            let _ = link.send(crate::peer_link::Stop).await;
        }
        self.endpoint.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        info!(self.log, "node_stopped");
        Stopped {
            storage_closed: self.storage_closed,
        }
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

/// Under `reject` the store buffer never grows past its capacity, whatever the timing.
fn journal_config(settings: &NodeSettings) -> JournalConfig {
    let buffers = &settings.buffers;
    JournalConfig {
        store_byte_limit: (buffers.when_full == WhenFull::Reject).then_some(buffers.store.capacity_bytes),
    }
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

fn start_cert_watcher(settings: &NodeSettings, deps: CertWatcherDeps) -> Addr<CertWatcher> {
    let config = CertWatcherConfig {
        zone: settings.zone.clone(),
        paths: settings.tls.clone(),
        idle_timeout: settings.link_timeout,
    };
    Supervisor::start(move |_| CertWatcher::new(config, deps))
}

fn directory(settings: &NodeSettings) -> Directory {
    Directory {
        peers: settings.peers.iter().map(|p| p.zone.clone()).collect(),
        clients: settings.clients.iter().cloned().collect(),
    }
}
