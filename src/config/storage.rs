//! `[storage]` (SPEC §9, §15): which engine holds the node's facts. `rocksdb` (the default) is a
//! single node on its own disk; `jetstream` makes this node one instance of an HA zone, whose
//! replicated write-ahead log lives on a NATS JetStream cluster (`[storage.jetstream]`).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::values::{self, ByteSize};

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub engine: EngineKind,
    /// Required when `engine = "jetstream"`, refused otherwise.
    pub jetstream: Option<JetStreamSection>,
}

/// `storage.engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Single node: RocksDB in `node.data_dir`.
    #[default]
    Rocksdb,
    /// An HA zone's instance on a NATS JetStream cluster; `node.data_dir` holds its replica.
    Jetstream,
}

/// `[storage.jetstream]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamSection {
    /// `nats://HOST:PORT` or `tls://HOST:PORT` of every engine server of the zone.
    pub urls: Vec<String>,
    /// This instance's name, unique within the zone (same syntax as a zone name).
    #[serde(deserialize_with = "values::identity")]
    pub instance: String,
    /// Engine servers holding each record: 3 for an HA zone (1 only for trials).
    #[serde(default = "three")]
    pub replicas: usize,
    /// A standby takes over once the active instance has not renewed for this long.
    #[serde(default = "five_seconds", deserialize_with = "values::duration")]
    pub lease_ttl: Duration,
    /// How long a commit may stay unknown (retrying through an engine election) before the
    /// instance steps down; longer than an engine election (4–9 s).
    #[serde(default = "fifteen_seconds", deserialize_with = "values::duration")]
    pub commit_timeout: Duration,
    /// `http://HOST:PORT` monitoring URL of every engine server: the start-up check that each
    /// fsyncs before acknowledging (`sync_interval: always`).
    #[serde(default)]
    pub monitor_urls: Vec<String>,
    /// Start even when the fsync check fails or cannot run (logged, and exported as
    /// `bsfg_engine_durability_verified 0`).
    #[serde(default)]
    pub assume_durable: bool,
    /// CA certificate of the engine servers (turns TLS on).
    #[serde(default, deserialize_with = "values::opt_path")]
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for servers that verify clients (both or neither).
    #[serde(default, deserialize_with = "values::opt_path")]
    pub cert: Option<PathBuf>,
    #[serde(default, deserialize_with = "values::opt_path")]
    pub key: Option<PathBuf>,
    /// A NATS credentials file.
    #[serde(default, deserialize_with = "values::opt_path")]
    pub creds: Option<PathBuf>,
    /// The write-ahead log's byte budget: beyond it appends are refused (`UNAVAILABLE`), never
    /// records dropped. Unlimited when absent.
    #[serde(default)]
    pub wal_max_bytes: Option<ByteSize>,
    /// Log bytes a standby applies between two snapshots of its replica (the log is purged below
    /// the older of the two snapshots kept).
    #[serde(default = "one_gib")]
    pub snapshot_every: ByteSize,
}

fn one_gib() -> ByteSize {
    ByteSize::gib(1)
}

fn three() -> usize {
    3
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn fifteen_seconds() -> Duration {
    Duration::from_secs(15)
}

impl JetStreamSection {
    /// The file paths, to be resolved against the config file's directory.
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [&mut self.ca, &mut self.cert, &mut self.key, &mut self.creds]
            .into_iter()
            .flatten()
    }
}

/// The cross-field rules of `[storage]`; the first broken one, with its key.
pub(super) fn check(storage: &StorageSection) -> Result<(), (String, String)> {
    let fail = |key: &str, reason: String| Err((format!("storage.{key}"), reason));
    let js = match (storage.engine, &storage.jetstream) {
        (EngineKind::Rocksdb, None) => return Ok(()),
        (EngineKind::Rocksdb, Some(_)) => {
            return fail(
                "jetstream",
                "is set but storage.engine is \"rocksdb\"; set engine = \"jetstream\" or remove the section".into(),
            )
        }
        (EngineKind::Jetstream, None) => {
            return fail(
                "jetstream",
                "required key is missing: engine = \"jetstream\" needs [storage.jetstream]".into(),
            )
        }
        (EngineKind::Jetstream, Some(js)) => js,
    };
    if js.urls.is_empty() {
        return fail("jetstream.urls", "must list at least one engine server".into());
    }
    for (i, url) in js.urls.iter().enumerate() {
        if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() < 8 {
            return fail(
                &format!("jetstream.urls[{i}]"),
                format!("{url:?} is not nats://HOST:PORT or tls://HOST:PORT"),
            );
        }
    }
    for (i, url) in js.monitor_urls.iter().enumerate() {
        if !url.starts_with("http://") {
            return fail(
                &format!("jetstream.monitor_urls[{i}]"),
                format!("{url:?} is not http://HOST:PORT"),
            );
        }
    }
    if !(1..=5).contains(&js.replicas) {
        return fail(
            "jetstream.replicas",
            format!("{} is not between 1 and 5 (3 for an HA zone)", js.replicas),
        );
    }
    if js.cert.is_some() != js.key.is_some() {
        return fail("jetstream.cert", "cert and key go together: set both or neither".into());
    }
    if js.lease_ttl < Duration::from_secs(1) {
        return fail(
            "jetstream.lease_ttl",
            format!("{:?} is below the minimum of 1s", js.lease_ttl),
        );
    }
    if js.commit_timeout < js.lease_ttl {
        return fail(
            "jetstream.commit_timeout",
            format!("{:?} is shorter than lease_ttl ({:?})", js.commit_timeout, js.lease_ttl),
        );
    }
    // A standby looks once a second whether a snapshot is due: a threshold of a few bytes
    // would upload its whole database every second.
    if js.snapshot_every.bytes() < MIN_SNAPSHOT_EVERY {
        return fail(
            "jetstream.snapshot_every",
            format!(
                "{} is below the minimum of {}: a snapshot is a copy of the whole replica",
                js.snapshot_every,
                bytesize::ByteSize(MIN_SNAPSHOT_EVERY)
            ),
        );
    }
    Ok(())
}

/// The least log a standby applies between two snapshots.
const MIN_SNAPSHOT_EVERY: u64 = 4 << 10;
