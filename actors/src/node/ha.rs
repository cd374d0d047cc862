//! Opening the storage of an HA zone's instance (SPEC §15): connect to the zone's engine, check it
//! (version floor, fsync before acknowledging, unless `assume_durable`), open the zone's log and
//! lease (created when missing, checked when not), and put the log in front of the local replica.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bsfg_engine::{
    checks::{self, Verdict},
    jetstream::{ConnectConfig, Engine, JetStreamLog, JetStreamObjects, KvLease, KvMembers, LeaseSpec, LogSpec},
};

use super::{NodeError, StartProgress};
use crate::{
    events::{EngineConnection, Telemetry},
    storage::{
        replicated::{ReplicaConfig, ReplicatedStorage},
        RocksStorage,
    },
};

/// An HA instance's engine settings (`[storage.jetstream]`), as plain data.
#[derive(Debug, Clone)]
pub struct HaSettings {
    /// Unique within the zone.
    pub instance: String,
    /// `nats://` or `tls://` URL of every engine server.
    pub urls: Vec<String>,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub creds: Option<PathBuf>,
    pub replicas: usize,
    pub lease_ttl: Duration,
    pub commit_timeout: Duration,
    /// Every server's monitoring URL, for the durability check.
    pub monitor_urls: Vec<String>,
    pub assume_durable: bool,
    /// The log's byte budget (appends refused beyond it); `None`: unlimited.
    pub wal_max_bytes: Option<u64>,
    /// Log bytes a standby applies between two snapshots of its replica.
    pub snapshot_every_bytes: u64,
}

/// An HA instance's storage and lease, and what the checks found.
pub(super) struct Opened {
    pub storage: Arc<ReplicatedStorage<JetStreamLog>>,
    pub lease: Arc<KvLease>,
    pub members: Arc<KvMembers>,
    pub snapshots: JetStreamObjects,
    /// The zone's artifact blobs (the artifact store's second tier).
    pub blobs: JetStreamObjects,
    pub verdict: Verdict,
}

/// A snapshot restored into an empty replica: sequence, files, bytes.
pub(super) type Restored = Option<(u64, usize, u64)>;

/// An empty replica (no database in `data_dir`) of a log that no longer starts at record 1 is
/// restored from the newest snapshot first; it cannot be built from the log alone.
pub(super) async fn restore(
    zone: &str,
    settings: &HaSettings,
    data_dir: &Path,
    progress: &StartProgress,
) -> Result<Restored, NodeError> {
    if data_dir.join("CURRENT").exists() {
        return Ok(None);
    }
    let engine = Engine::connect(&connect_config(settings)).await.map_err(engine_error)?;
    let log = engine.open_log(&log_spec(zone, settings)).await.map_err(engine_error)?;
    let first = log.first_when_opened();
    if first <= 1 {
        return Ok(None);
    }
    let snapshots = engine
        .open_snapshots(zone, settings.replicas)
        .await
        .map_err(engine_error)?;
    match crate::ha::restore(&snapshots, data_dir, progress)
        .await
        .map_err(NodeError::Engine)?
    {
        Some(restored) if restored.0 + 1 >= first => Ok(Some(restored)),
        found => Err(NodeError::Engine(format!(
            "the zone's log starts at record {first} and no snapshot reaches it (found {:?}): this replica cannot be built",
            found.map(|(seq, ..)| seq)
        ))),
    }
}

fn connect_config(settings: &HaSettings) -> ConnectConfig {
    ConnectConfig {
        urls: settings.urls.clone(),
        ca: settings.ca.clone(),
        client_cert: settings.client_cert.clone(),
        creds: settings.creds.clone(),
        name: settings.instance.clone(),
    }
}

fn log_spec(zone: &str, settings: &HaSettings) -> LogSpec {
    LogSpec {
        max_bytes: settings.wal_max_bytes,
        ..LogSpec::new(zone, settings.replicas)
    }
}

pub(super) async fn open(
    zone: &str,
    settings: &HaSettings,
    (data_dir, local): (&Path, Arc<RocksStorage>),
    telemetry: &Telemetry,
) -> Result<Opened, NodeError> {
    let verdict = checks::verify(&settings.monitor_urls, settings.assume_durable)
        .await
        .map_err(|e| NodeError::EngineRefused(e.to_string()))?;
    let (observer, quiet) = (telemetry.clone(), Quiet::new(SLOW_CONSUMER_EVERY));
    let observer = Arc::new(move |event: bsfg_engine::jetstream::ConnectionEvent| {
        // The client tells each message it had to drop: one line a minute says it.
        if event.kind != "slow_consumer" || quiet.may_tell(std::time::Instant::now()) {
            observer.emit(EngineConnection(&event));
        }
    });
    let engine = Engine::connect_observed(&connect_config(settings), observer)
        .await
        .map_err(engine_error)?;
    if settings.monitor_urls.is_empty() {
        let url = settings.urls.join(", ");
        checks::check_version(&url, "the connected server", &engine.server_version())
            .map_err(|e| NodeError::EngineRefused(e.to_string()))?;
    }
    let log = engine.open_log(&log_spec(zone, settings)).await.map_err(engine_error)?;
    let snapshots = engine
        .open_snapshots(zone, settings.replicas)
        .await
        .map_err(engine_error)?;
    let blobs = engine.open_blobs(zone, settings.replicas).await.map_err(engine_error)?;
    let lease = LeaseSpec {
        zone: zone.to_owned(),
        instance: settings.instance.clone(),
        replicas: settings.replicas,
        ttl: settings.lease_ttl,
    };
    let lease = engine.open_lease(&lease).await.map_err(engine_error)?;
    let members = engine
        .open_members(zone, &settings.instance, settings.replicas)
        .await
        .map_err(engine_error)?;
    let config = ReplicaConfig {
        zone: zone.to_owned(),
        instance: settings.instance.clone(),
        commit_timeout: settings.commit_timeout,
        commit_latency: telemetry.metrics.engine_commit_latency.clone(),
    };
    let runtime = tokio::runtime::Handle::current();
    let storage =
        ReplicatedStorage::new(config, local, Arc::new(log), runtime).map_err(|source| NodeError::Storage {
            path: data_dir.to_owned(),
            source,
        })?;
    Ok(Opened {
        storage: Arc::new(storage),
        lease: Arc::new(lease),
        members: Arc::new(members),
        snapshots,
        blobs,
        verdict,
    })
}

fn engine_error(error: bsfg_engine::jetstream::EngineError) -> NodeError {
    NodeError::Engine(error.to_string())
}

/// How often, at most, a slow consumer on the engine connection is logged.
const SLOW_CONSUMER_EVERY: Duration = Duration::from_secs(60);

/// Lets a repeated event be told at most once per `every`.
struct Quiet {
    every: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Quiet {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether an event at `now` is told (and so starts the next quiet spell).
    fn may_tell(&self, now: std::time::Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tell = last.is_none_or(|told| now.duration_since(told) >= self.every);
        if tell {
            *last = Some(now);
        }
        tell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_event_is_told_once_per_spell() {
        let quiet = Quiet::new(Duration::from_secs(60));
        let start = std::time::Instant::now();
        assert!(quiet.may_tell(start));
        assert!(!quiet.may_tell(start + Duration::from_secs(1)));
        assert!(!quiet.may_tell(start + Duration::from_secs(59)));
        assert!(quiet.may_tell(start + Duration::from_secs(60)));
        assert!(!quiet.may_tell(start + Duration::from_secs(61)));
    }
}
