//! The supervision tree: the only code that knows how the actors are wired. Opens storage,
//! starts the journal, the buffer actors, one `PeerLink` per peer, the RPC server on one QUIC
//! endpoint and the `CertWatcher` that swaps that endpoint's TLS material, and takes them down
//! again in order.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use actix::prelude::*;
use slog::{info, Logger};
use tokio::sync::watch;

use crate::{
    cert_watcher::{CertWatcherConfig, CertWatcherDeps, Certificate, TlsPaths},
    journal::{Journal, JournalError},
    metrics::Metrics,
    peer_link::{PeerLinkConfig, PeerLinkDeps},
    status::{Progress, Refresher},
    storage::{RocksStorage, StorageError},
    transport::{tls::TlsMaterial, Directory, DrainHandle, Roles, RpcServer, ServerDeps},
    zone_gate::{self, GateSwitches},
    CertWatcher, ForwardBuffer, ForwardBufferConfig, GateState, PeerLink, StoreBuffer, StoreBufferConfig, ZoneGate,
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
}

/// A running node.
pub struct Node {
    endpoint: quinn::Endpoint,
    handles: Handles,
    status: tokio::task::JoinHandle<()>,
    server: RpcServer,
    links: Vec<Addr<PeerLink>>,
    log: Logger,
}

impl Node {
    /// Starts the node; must run inside an actix `System`.
    pub async fn start(settings: NodeSettings, tls: &TlsMaterial, log: Logger) -> Result<Self, NodeError> {
        let journal = open_journal(&settings).await?;
        let status_journal = journal.clone();
        let store = StoreBuffer::new(store_config(&settings), journal.clone()).start();
        let forward = ForwardBuffer::new(
            ForwardBufferConfig {
                max_frame_bytes: settings.max_frame_bytes,
            },
            journal,
        )
        .start();
        let peers: Vec<String> = settings.peers.iter().map(|p| p.zone.clone()).collect();
        let peer_zones = peers.clone();
        let gate_log = log.clone();
        let metrics = Arc::new(
            Metrics::new(&settings.zone, env!("CARGO_PKG_VERSION"), &peers)
                .map_err(|e| NodeError::Metrics(e.to_string()))?,
        );
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
        };
        Ok(Self {
            endpoint,
            handles,
            status,
            server,
            links: links.into_values().collect(),
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

    /// Closes connections with an application code, stops the links; storage closes when the
    /// last journal handle drops.
    pub async fn shutdown(self) {
        self.handles.metrics.node_up.set(0);
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

async fn open_journal(settings: &NodeSettings) -> Result<Journal, NodeError> {
    let (path, zone) = (settings.data_dir.clone(), settings.zone.clone());
    let opened = tokio::task::spawn_blocking(move || RocksStorage::open(&path, &zone))
        .await
        .map_err(|e| NodeError::Journal(JournalError::Storage(e.to_string())))?;
    let storage = opened.map_err(|source| NodeError::Storage {
        path: settings.data_dir.clone(),
        source,
    })?;
    Ok(Journal::start(Arc::new(storage))?)
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
