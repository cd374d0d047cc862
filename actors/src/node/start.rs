//! Starting a node, in dependency order: storage and the journal, telemetry, backpressure, the
//! object store and the buffers, the zone gate, the QUIC endpoint and the certificate watcher,
//! the peer links, the RPC server, and the status refresher. Each component gets its own config
//! from [`NodeSettings`] and the runtime handles made here.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
};

use actix::prelude::*;
use bsfg_proto::model::now_unix_ms;
use slog::{info, Logger};
use tokio::sync::{mpsc, watch};

use super::{Handles, Node, NodeError, NodeSettings, StartProgress};
use crate::{
    backpressure::{Admission, Backpressure, BackpressureConfig, BackpressureDeps, DiskState, StoreRoom},
    cert_watcher::{CertWatcher, CertWatcherConfig, CertWatcherDeps, Certificate},
    events::{
        set_role, EngineChecked, FactsStranded, LossRecorded, RetentionResumed, SnapshotRestored, StorageHealth,
        Telemetry,
    },
    forward_buffer::{Consumers, ForwardBuffer, Seen},
    ha::{HaConfig, HaDeps, HaHandle, Snapshots},
    journal::{Journal, JournalConfig},
    metrics::Metrics,
    objects::{self, EngineBlobs, ObjectError, ObjectGauges, ObjectStore, ObjectsConfig, RemoteBlobs},
    peer_link::{PeerLink, PeerLinkConfig, PeerLinkDeps},
    rpc::{Authorisations, DrainHandle, RpcConfig, RpcDeps, RpcServer},
    standing::Standing,
    status::{Progress, Refresher},
    storage::{CursorKey, Log, LossRecord, ObjectIndex, RocksStorage, Storage},
    store_buffer::StoreBuffer,
    trace::Tracer,
    transport::{
        pacing::Pacer,
        tls::{TlsMaterial, Trust},
    },
    zone_gate::{self, GateSwitches, RestoreSwitches, ZoneGate},
};

pub(super) async fn start(
    settings: NodeSettings,
    tls: &TlsMaterial,
    log: Logger,
    progress: &StartProgress,
) -> Result<Node, NodeError> {
    let NodeSettings {
        zone,
        data_dir,
        write_stall,
        buffers,
        store,
        forward,
        objects,
        links,
        routing,
        rpc,
        certs,
        ha,
    } = settings;
    let peers: Vec<String> = links.iter().map(|link| link.peer.clone()).collect();
    let batch_limits: BTreeMap<String, u64> = links
        .iter()
        .map(|link| (link.peer.clone(), u64::from(link.batch_limit)))
        .collect();
    let restored = match &ha {
        Some(settings) => super::ha::restore(&zone, settings, &data_dir, progress).await?,
        None => None,
    };
    let local = open_storage(&data_dir, &zone).await?;
    let storage_closed = local.closed();
    let closed_gates = local.closed_gates().map_err(|source| NodeError::Storage {
        path: data_dir.clone(),
        source,
    })?;
    let metrics = Arc::new(Metrics::new(&zone, env!("CARGO_PKG_VERSION"))?);
    let telemetry = Telemetry::new(log.clone(), metrics.clone(), &peers);
    let losses = recorded_losses(&local, &data_dir, &telemetry)?;
    let (storage, index, replicated) = match &ha {
        None => (
            local.clone() as Arc<dyn Storage>,
            local.clone() as Arc<dyn ObjectIndex>,
            None,
        ),
        Some(settings) => {
            let local = (data_dir.as_path(), local.clone());
            let opened = super::ha::open(&zone, settings, local, &telemetry).await?;
            telemetry.emit(EngineChecked {
                durability_verified: opened.verdict.durability_verified,
                warnings: &opened.verdict.warnings,
            });
            if let Some((seq, files, bytes)) = restored {
                telemetry.emit(SnapshotRestored { seq, files, bytes });
            }
            (opened.storage.clone() as _, opened.storage.clone() as _, Some(opened))
        }
    };
    let health = StorageHealth::new(telemetry.clone());
    let journal_config = JournalConfig {
        write_stall,
        ..buffers.journal()
    };
    let journal = Journal::start(storage.clone(), journal_config, health.clone())?;
    let relaying: &[String] = if routing.relays() { &peers } else { &[] };
    telemetry.init_relay_series(routing.relay_destinations(), relaying);
    for buffer in [Log::Store, Log::Forward] {
        let retention = buffers.limits(buffer).retention.as_secs_f64();
        metrics
            .retention_seconds
            .with_label_values(&[buffer.as_str()])
            .set(retention);
    }
    report_stranded(storage.clone(), &journal, &peers, &telemetry).await;
    let last_stored = last_stored(storage.clone(), &journal).await;
    let longest = buffers.store.retention.max(buffers.forward.retention);
    if let Some(ahead) = crate::clock::resumed_behind(last_stored, now_unix_ms()) {
        let last_stored_unix_ms = last_stored.unwrap_or_default();
        telemetry.emit(RetentionResumed {
            last_stored_unix_ms,
            ahead,
            longest,
        });
    }
    let (admission, pulls_paused, disk, store_room) =
        start_backpressure(&buffers, &journal, &telemetry, last_stored, routing.relays());
    let sweep_interval = objects.sweep_interval();
    let remote = replicated.as_ref().map(|opened| {
        let blobs = EngineBlobs::new(opened.blobs.clone(), tokio::runtime::Handle::current());
        Arc::new(blobs) as Arc<dyn RemoteBlobs>
    });
    let objects = open_objects(&data_dir, objects, index, remote, &metrics).await?;
    let store = StoreBuffer::new(store, journal.clone(), admission.clone(), objects.clone()).start();
    let seen = Seen::default();
    let drain = DrainHandle::new(metrics.draining.clone());
    let forward = ForwardBuffer::new(forward, journal.clone(), seen.clone(), drain.clone()).start();
    let switches = GateSwitches::new(peers.clone());
    let (gate, linked) = start_gate(&peers, &switches, &journal, &telemetry);
    gate.do_send(RestoreSwitches(closed_gates));
    let (standing_tx, standing) = watch::channel(match &ha {
        None => Standing::Active,
        Some(settings) => Standing::Standby {
            instance: settings.instance.clone(),
            active: None,
        },
    });
    let sweeper = tokio::spawn(objects::run_sweeps(
        objects.clone(),
        storage,
        standing.clone(),
        sweep_interval,
        telemetry.clone(),
        last_stored,
    ));
    let quic = Quic::open(&rpc, certs, tls, &telemetry)?;
    let (dialed, dialed_rx) = mpsc::unbounded_channel();
    let link_deps = PeerLinkDeps {
        endpoint: quic.endpoint.clone(),
        client_config: quic.client_config.clone(),
        switches: switches.clone(),
        forward: forward.clone(),
        gate: gate.clone(),
        objects: objects.clone(),
        admission: admission.clone(),
        pulls_paused,
        store_room,
        linked,
        dialed,
        standing: standing.clone(),
        telemetry: telemetry.clone(),
    };
    let egress = links
        .iter()
        .filter_map(|link| Some((link.peer.clone(), Pacer::new(Some(link.max_bytes_per_second?)))))
        .collect();
    let links = start_links(links, &link_deps);
    let authorisations = Authorisations::new(rpc.directory.clone());
    let rpc_deps = RpcDeps {
        store,
        forward,
        gate: gate.clone(),
        objects,
        admission,
        links: links.clone(),
        drain: drain.clone(),
        switches: switches.clone(),
        standing: standing.clone(),
        authorisations: authorisations.clone(),
        trust: quic.trust.clone(),
        telemetry: telemetry.clone(),
        egress,
    };
    let server = start_rpc(&quic.endpoint, rpc, rpc_deps, dialed_rx, &log)?;
    let (status, progress) = start_status(&journal, &metrics, peers, &quic.certificate, &seen);
    tokio::spawn(zone_gate::follow_backlogs(progress.clone(), gate.clone(), batch_limits));
    health.started();
    let ha = match (ha, replicated) {
        (Some(settings), Some(opened)) => {
            let scratch = data_dir.with_extension("snapshot-tmp");
            Some(start_ha(
                settings,
                opened,
                scratch,
                standing_tx,
                &gate,
                &journal,
                telemetry,
            ))
        }
        _ => {
            set_role(&metrics, true);
            None
        }
    };
    let handles = Handles {
        metrics,
        health,
        disk,
        losses,
        drain,
        gate,
        switches,
        authorisations,
        certs: quic.certs,
        certificate: quic.certificate,
        progress,
        usage: journal.usage(),
        buffers: Arc::new(buffers),
        consumers: Consumers::new(journal.clone(), seen.clone()),
        tracer: Tracer::new(routing.clone(), journal, seen),
        routing,
        standing,
        ha,
    };
    Ok(Node {
        endpoint: quic.endpoint,
        handles,
        status,
        sweeper,
        server,
        links: links.into_values().collect(),
        local,
        storage_closed,
        log,
    })
}

/// The HA controller of an instance, as a standby.
fn start_ha(
    settings: super::HaSettings,
    opened: super::ha::Opened,
    scratch: std::path::PathBuf,
    standing: watch::Sender<Standing>,
    gate: &Addr<ZoneGate>,
    journal: &Journal,
    telemetry: Telemetry,
) -> HaHandle {
    let snapshots = Snapshots {
        instance: settings.instance.clone(),
        storage: opened.storage.clone(),
        objects: opened.snapshots,
        scratch,
        every_bytes: settings.snapshot_every_bytes,
        telemetry: telemetry.clone(),
    };
    tokio::spawn(snapshots.run());
    let config = HaConfig {
        instance: settings.instance,
    };
    let deps = HaDeps {
        storage: opened.storage,
        lease: opened.lease,
        members: opened.members,
        standing,
        gate: gate.clone(),
        journal: journal.clone(),
        telemetry,
    };
    crate::ha::start(config, deps)
}

/// The node's one QUIC endpoint (it serves calls and dials peers) and the `CertWatcher` that
/// keeps its TLS material current.
struct Quic {
    endpoint: quinn::Endpoint,
    /// The config peer links dial with, as last published by the watcher.
    client_config: watch::Receiver<quinn::ClientConfig>,
    /// What live connections are checked against, as last published by the watcher.
    trust: watch::Receiver<Trust>,
    /// The certificate the node presents now.
    certificate: watch::Receiver<Certificate>,
    certs: Addr<CertWatcher>,
}

impl Quic {
    fn open(
        rpc: &RpcConfig,
        certs: CertWatcherConfig,
        tls: &TlsMaterial,
        telemetry: &Telemetry,
    ) -> Result<Self, NodeError> {
        let server = tls.quic_server_config(certs.idle_timeout)?;
        let endpoint = quinn::Endpoint::server(server, rpc.listen).map_err(|source| NodeError::Listen {
            addr: rpc.listen,
            source,
        })?;
        let (client_config, client_config_rx) = watch::channel(tls.quic_client_config(certs.idle_timeout)?);
        let (trust, trust_rx) = watch::channel(tls.trust()?);
        let (certificate, certificate_rx) = watch::channel(Certificate::of(tls));
        let deps = CertWatcherDeps {
            endpoint: endpoint.clone(),
            client_config,
            trust,
            certificate,
            telemetry: telemetry.clone(),
        };
        Ok(Self {
            endpoint,
            client_config: client_config_rx,
            trust: trust_rx,
            certificate: certificate_rx,
            certs: Supervisor::start(move |_| CertWatcher::new(certs, deps)),
        })
    }
}

/// Serves calls on `endpoint` (and on the connections the links dial), and says so.
fn start_rpc(
    endpoint: &quinn::Endpoint,
    config: RpcConfig,
    deps: RpcDeps,
    dialed: mpsc::UnboundedReceiver<(quinn::Connection, String)>,
    log: &Logger,
) -> Result<RpcServer, NodeError> {
    let listen = config.listen;
    let server = RpcServer::spawn(endpoint.clone(), config, deps, dialed);
    let bound = endpoint
        .local_addr()
        .map_err(|source| NodeError::Listen { addr: listen, source })?;
    info!(log, "node_started"; "rpc" => %bound);
    Ok(server)
}

/// The once-a-second progress refresher; also sets the certificate's expiry gauge now, not at
/// the refresher's first tick, since a scrape may come first.
fn start_status(
    journal: &Journal,
    metrics: &Arc<Metrics>,
    peers: Vec<String>,
    certificate: &watch::Receiver<Certificate>,
    seen: &Seen,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<Progress>) {
    certificate.borrow().publish(metrics, std::time::SystemTime::now());
    let (progress, progress_rx) = watch::channel(Progress::default());
    let refresher = Refresher {
        journal: journal.clone(),
        metrics: metrics.clone(),
        peers,
        certificate: certificate.clone(),
        progress,
        seen: seen.clone(),
    };
    (tokio::spawn(refresher.run()), progress_rx)
}

/// The losses accepted in this data directory, each logged.
fn recorded_losses(
    storage: &RocksStorage,
    data_dir: &Path,
    telemetry: &Telemetry,
) -> Result<Arc<Vec<LossRecord>>, NodeError> {
    let losses = storage.losses().map_err(|source| NodeError::Storage {
        path: data_dir.to_path_buf(),
        source,
    })?;
    for loss in &losses {
        telemetry.emit(LossRecorded(loss));
    }
    Ok(Arc::new(losses))
}

async fn open_storage(data_dir: &Path, zone: &str) -> Result<Arc<RocksStorage>, NodeError> {
    let (path, zone) = (data_dir.to_path_buf(), zone.to_owned());
    let opened = tokio::task::spawn_blocking(move || RocksStorage::open(&path, &zone)).await?;
    let storage = opened.map_err(|source| NodeError::Storage {
        path: data_dir.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(storage))
}

/// Says which peers no `[[peers]]` entry names any more still have facts waiting here for them
/// (a peer removed, a route moved off a relay while facts for it waited): nothing pulls those.
async fn report_stranded(storage: Arc<dyn Storage>, journal: &Journal, peers: &[String], telemetry: &Telemetry) {
    let (cursors, high) = (journal.cursors(), *journal.store_high().borrow());
    let configured: std::collections::BTreeSet<String> = peers.iter().cloned().collect();
    let stranded = move || {
        let zones = storage.store_zones().unwrap_or_default();
        let waiting = zones
            .into_iter()
            .filter(|zone| !configured.contains(zone))
            .filter_map(|zone| {
                let frontier = cursors.get(&CursorKey::Peer(zone.clone())).copied().unwrap_or(0);
                let facts = storage.count_store(&zone, frontier, high).ok()?;
                (facts > 0).then_some((zone, facts))
            });
        waiting.collect::<Vec<_>>()
    };
    for (peer, facts) in tokio::task::spawn_blocking(stranded).await.unwrap_or_default() {
        telemetry.emit(FactsStranded { peer: &peer, facts });
    }
}

/// When this node last stored a fact, by its clock then: the newer of both logs' newest entries
/// (`None` when both are empty, or their newest entries were deleted).
async fn last_stored(storage: Arc<dyn Storage>, journal: &Journal) -> Option<u64> {
    let highs = [
        (Log::Store, *journal.store_high().borrow()),
        (Log::Forward, *journal.forward_high().borrow()),
    ];
    let newest = move || {
        highs
            .into_iter()
            .filter(|&(_, high)| high > 0)
            .filter_map(|(log, high)| storage.read_entry(log, high).ok().flatten())
            .map(|entry| entry.stored_at_unix_ms)
            .max()
    };
    tokio::task::spawn_blocking(newest).await.ok().flatten()
}

/// Starts the `Backpressure` actor; returns the store buffer's admission check, the pull pause
/// and the full store the peer links wait on, and the disk as it measures it.
fn start_backpressure(
    config: &BackpressureConfig,
    journal: &Journal,
    telemetry: &Telemetry,
    last_stored: Option<u64>,
    relays: bool,
) -> (
    Admission,
    watch::Receiver<bool>,
    watch::Receiver<DiskState>,
    watch::Receiver<StoreRoom>,
) {
    let deps = BackpressureDeps {
        journal: journal.clone(),
        telemetry: telemetry.clone(),
        relays,
    };
    let mut backpressure = Backpressure::new(config.clone(), deps, last_stored);
    backpressure.measure_disk();
    let handles = (
        backpressure.admission(),
        backpressure.pulls_paused(),
        backpressure.disk(),
        backpressure.store_room(),
    );
    Supervisor::start(move |_| backpressure);
    handles
}

/// The artifact store shares the RocksDB instance (column family `objects`) for its index.
async fn open_objects(
    data_dir: &Path,
    config: ObjectsConfig,
    storage: Arc<dyn ObjectIndex>,
    remote: Option<Arc<dyn RemoteBlobs>>,
    metrics: &Metrics,
) -> Result<ObjectStore, NodeError> {
    let gauges = ObjectGauges {
        usage: metrics.object_store_usage_bytes.clone(),
        blob_bytes: metrics.object_store_blob_bytes.clone(),
    };
    let capacity = i64::try_from(config.capacity_bytes).unwrap_or(i64::MAX);
    metrics.object_store_capacity_bytes.set(capacity);
    let path = data_dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || ObjectStore::open(&path, storage, config, gauges, remote));
    opened.await?.map_err(|source: ObjectError| NodeError::Objects {
        path: data_dir.to_path_buf(),
        source,
    })
}

/// The gate and the set of peers whose link is up, as it follows it.
fn start_gate(
    peers: &[String],
    switches: &GateSwitches,
    journal: &Journal,
    telemetry: &Telemetry,
) -> (Addr<ZoneGate>, watch::Receiver<std::collections::BTreeSet<String>>) {
    let gate = ZoneGate::new(peers.to_vec(), switches.clone(), telemetry.clone()).with_journal(journal.clone());
    let linked = gate.linked();
    (Supervisor::start(move |_| gate), linked)
}

fn start_links(links: Vec<PeerLinkConfig>, deps: &PeerLinkDeps) -> HashMap<String, Addr<PeerLink>> {
    links
        .into_iter()
        .map(|config| {
            let (peer, deps) = (config.peer.clone(), deps.clone());
            (peer, Supervisor::start(move |_| PeerLink::new(config, deps)))
        })
        .collect()
}
