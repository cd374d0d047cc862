//! The storage of one instance of an HA zone (SPEC §15): the zone's replicated, fenced
//! write-ahead log in the engine, applied to this instance's own RocksDB replica.
//!
//! - **Writing** (the active instance only): every journal group commit and every artifact index
//!   write becomes one [`WalRecord`], appended with the sequence this replica last applied as the
//!   expectation (compare-and-append) and acknowledged only once the engine's quorum has it
//!   fsync'd. Then the record's effects are applied locally, unsynced, with the new position in
//!   the same RocksDB batch. One lock serialises appends, so the local replica is always exactly
//!   the log's prefix this writer appended.
//! - **The unknown-outcome rule**: the engine adapter re-sends the same bytes with the same
//!   expectation until `commit_timeout`. If it is still unknown then, or another writer's record
//!   holds the sequence (fenced), or the log disagrees with the replica, the instance stops
//!   writing at once (under the lock: no later batch can pass) and reports why on
//!   [`ReplicatedStorage::demotions`]. Nothing is given back: the next writer's catch-up reads
//!   the truth from the log. A refusal by the engine (no quorum) fails only the group: it was
//!   certainly not written.
//! - **Following** (standbys): [`ReplicatedStorage::follow`] applies records in order after the
//!   chain check of [`WalPosition::follow`]; a record of another history is refused and never
//!   applied.
//! - **Reads** come from the local replica, unchanged.
//!
//! The journal thread and the artifact writer call [`Storage::commit`] and
//! [`ObjectIndex::write_object`] from threads of their own (never an actix arbiter), and the
//! engine's futures run on the node's runtime through a handle. The writer's lock is held across
//! an append, so it is only ever taken on such threads (or the blocking pool): a runtime worker
//! blocked on it could starve the very engine connection the append waits for. What async code
//! reads (the position, the writer epoch, the name of the active instance) is published beside
//! the lock.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};

use bsfg_engine::{LogError, ReplicatedLog};
use bsfg_proto::ObjectDigest;
use prometheus::Histogram;
use tokio::sync::watch;

use super::{
    wal::{Divergence, ObjectWrite, WalBody, WalPosition, WalRecord, WalWriter, WAL_FORMAT},
    Batch, DiskSpace, IdemRecord, Index, Log, LogRecord, ObjectEntry, ObjectIndex, Recovered, RocksStorage, Storage,
    StorageError, WindowEntry,
};

/// Why this instance stopped writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Demotion {
    /// Another instance's record holds the sequence this one expected to take.
    Fenced(String),
    /// An append's outcome stayed unknown until its deadline.
    OutcomeUnknown(String),
    /// The log does not continue this replica's history, or the replica could not apply it.
    Diverged(String),
}

impl Demotion {
    /// The `reason` of `ha_demoted` and of `bsfg_ha_demotions_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fenced(_) => "fenced",
            Self::OutcomeUnknown(_) => "outcome_unknown",
            Self::Diverged(_) => "diverged",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Self::Fenced(d) | Self::OutcomeUnknown(d) | Self::Diverged(d) => d,
        }
    }
}

/// Who this instance is, how long an append may stay unknown, and where commit times go.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub zone: String,
    pub instance: String,
    pub commit_timeout: Duration,
    /// Observes each record the engine acknowledged: from the first send to the quorum's
    /// acknowledgement, resends under the unknown-outcome rule included.
    pub commit_latency: Histogram,
}

/// The writer's state, under one lock with every append and apply.
struct Writer {
    position: WalPosition,
    /// `Some(epoch)` while this instance may write.
    active: Option<u64>,
    /// Records appended in this epoch (the record id's last part).
    appended: u64,
}

/// One HA instance's storage: the engine's log `L` in front of the local replica.
pub struct ReplicatedStorage<L: ReplicatedLog> {
    config: ReplicaConfig,
    local: Arc<RocksStorage>,
    log: Arc<L>,
    runtime: tokio::runtime::Handle,
    writer: Mutex<Writer>,
    /// The position, as last changed under the writer's lock.
    position: watch::Sender<WalPosition>,
    /// The epoch this instance writes in (0: it does not), as last changed under the lock.
    epoch: AtomicU64,
    /// Whom to name in refusals while standing by.
    active_instance: Mutex<String>,
    /// Bytes of the records followed since start (when to take a snapshot).
    followed_bytes: AtomicU64,
    demoted: watch::Sender<Option<Demotion>>,
}

impl<L: ReplicatedLog> ReplicatedStorage<L> {
    /// An artifact index write (or removal, `entry` `None`) through the zone's log.
    fn object_write(
        &self,
        bucket: &str,
        key: &str,
        entry: Option<ObjectEntry>,
        blob_refs: &[(ObjectDigest, u64)],
    ) -> Result<(), StorageError> {
        let write = ObjectWrite {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            entry,
            blob_refs: blob_refs.to_vec(),
        };
        let mut writer = self.lock();
        self.append(&mut writer, WalBody::Object(write))
    }

    /// A standby over `local`, at the position the replica recorded.
    pub fn new(
        config: ReplicaConfig,
        local: Arc<RocksStorage>,
        log: Arc<L>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, StorageError> {
        let position = local.wal_position()?;
        Ok(Self {
            config,
            local,
            log,
            runtime,
            writer: Mutex::new(Writer {
                position,
                active: None,
                appended: 0,
            }),
            position: watch::Sender::new(position),
            epoch: AtomicU64::new(0),
            active_instance: Mutex::default(),
            followed_bytes: AtomicU64::new(0),
            demoted: watch::Sender::new(None),
        })
    }

    /// The local replica.
    pub fn local(&self) -> &Arc<RocksStorage> {
        &self.local
    }

    pub fn log(&self) -> &Arc<L> {
        &self.log
    }

    /// The last record applied here.
    pub fn position(&self) -> WalPosition {
        *self.position.borrow()
    }

    /// Why this instance last stopped writing on its own (set by a failed append).
    pub fn demotions(&self) -> watch::Receiver<Option<Demotion>> {
        self.demoted.subscribe()
    }

    /// Names `instance` in the refusals of a standby.
    pub fn set_active_instance(&self, instance: &str) {
        let mut active = self.active_instance.lock().unwrap_or_else(PoisonError::into_inner);
        instance.clone_into(&mut active);
    }

    /// Applies the record `bytes` read at `seq` (a standby, or a writer catching up before its
    /// promotion). A record that does not continue this replica's chain is refused, not applied.
    pub fn follow(&self, seq: u64, bytes: &[u8]) -> Result<WalPosition, FollowError> {
        let mut writer = self.lock();
        if writer.active.is_some() {
            return Err(FollowError::Storage(StorageError::Standby(
                "the active instance does not follow the log".into(),
            )));
        }
        if seq <= writer.position.seq {
            // Delivered again (a reader that started before an earlier apply finished): the
            // sequence is already applied here.
            return Ok(writer.position);
        }
        let record = WalRecord::decode(seq, bytes)?;
        let next = writer.position.follow(&self.config.zone, seq, bytes, &record)?;
        self.local.apply(&record.body, &next)?;
        self.moved(&mut writer, next);
        self.followed_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(next)
    }

    /// Bytes of the records this standby applied since it started.
    pub fn followed_bytes(&self) -> u64 {
        self.followed_bytes.load(Ordering::Relaxed)
    }

    /// A checkpoint of the replica in the new directory `dir`, and the position it holds; only
    /// while standing by (the active instance keeps serving instead).
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<WalPosition, StorageError> {
        let writer = self.lock();
        if writer.active.is_some() {
            return Err(StorageError::Standby("the active instance takes no snapshot".into()));
        }
        self.local.checkpoint(dir)?;
        Ok(writer.position)
    }

    /// Takes over as writer in `epoch`: appends the `Epoch` record right after this replica's
    /// position, which fences every older writer. Fails if the log went on past the position
    /// (catch up first) or another writer got there first.
    pub fn promote(&self, epoch: u64, lease_revision: u64) -> Result<WalPosition, StorageError> {
        let mut writer = self.lock();
        writer.active = Some(epoch);
        writer.appended = 0;
        self.demoted.send_replace(None);
        match self.append(&mut writer, WalBody::Epoch { lease_revision }) {
            Ok(()) => {
                self.epoch.store(epoch, Ordering::SeqCst);
                Ok(writer.position)
            }
            Err(error) => {
                writer.active = None;
                Err(error)
            }
        }
    }

    /// Stops writing in `epoch` (lease lost, step-down, shutdown); a later epoch is left alone.
    pub fn demote(&self, epoch: u64) {
        let mut writer = self.lock();
        if writer.active == Some(epoch) {
            writer.active = None;
            self.epoch.store(0, Ordering::SeqCst);
        }
    }

    /// The replica moved to `next` (under the lock).
    fn moved(&self, writer: &mut Writer, next: WalPosition) {
        writer.position = next;
        self.position.send_replace(next);
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refuse(&self) -> StorageError {
        let active = self
            .active_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let active = match active.as_str() {
            "" => "not known yet".to_owned(),
            name => name.to_owned(),
        };
        StorageError::Standby(format!(
            "instance {} of zone {} is a standby; the active instance is {active}",
            self.config.instance, self.config.zone
        ))
    }

    /// Appends `body` after the writer's position and applies it locally; on a final failure the
    /// writer stops (see the module's rules).
    fn append(&self, writer: &mut Writer, body: WalBody) -> Result<(), StorageError> {
        let Some(epoch) = writer.active else {
            return Err(self.refuse());
        };
        let record = WalRecord {
            format: WAL_FORMAT,
            zone: self.config.zone.clone(),
            writer: WalWriter {
                instance: self.config.instance.clone(),
                epoch,
            },
            prev: writer.position.chain,
            body,
        };
        let bytes = record.encode()?;
        writer.appended += 1;
        let id = format!("{}.{epoch}.{}", self.config.instance, writer.appended);
        let started = Instant::now();
        let deadline = started + self.config.commit_timeout;
        let expected = writer.position.seq;
        let appended = self
            .runtime
            .block_on(self.log.append(expected, &id, bytes.clone().into(), deadline));
        let seq = match appended {
            Ok(seq) => {
                self.config.commit_latency.observe(started.elapsed().as_secs_f64());
                seq
            }
            Err(error) => return Err(self.failed(writer, error)),
        };
        let next = writer.position.after(seq, &bytes, epoch);
        if let Err(error) = self.local.apply(&record.body, &next) {
            // The log holds a record this replica does not: it must not write again before it
            // has caught up as a follower.
            return Err(self.stop(
                writer,
                Demotion::Diverged(format!("local apply of {seq} failed: {error}")),
            ));
        }
        self.moved(writer, next);
        Ok(())
    }

    fn failed(&self, writer: &mut Writer, error: LogError) -> StorageError {
        match error {
            LogError::Unavailable { reason } => StorageError::EngineUnavailable(reason),
            LogError::TooLarge { .. } | LogError::Invalid(_) => StorageError::Engine(error.to_string()),
            LogError::Fenced { .. } => self.stop(writer, Demotion::Fenced(error.to_string())),
            LogError::Unknown { .. } => self.stop(writer, Demotion::OutcomeUnknown(error.to_string())),
            LogError::Conflict { .. } | LogError::Gap { .. } | LogError::Corrupt { .. } => {
                self.stop(writer, Demotion::Diverged(error.to_string()))
            }
        }
    }

    fn stop(&self, writer: &mut Writer, demotion: Demotion) -> StorageError {
        writer.active = None;
        self.epoch.store(0, Ordering::SeqCst);
        let error = match &demotion {
            Demotion::Fenced(detail) => StorageError::Fenced(detail.clone()),
            Demotion::OutcomeUnknown(detail) => StorageError::OutcomeUnknown(detail.clone()),
            Demotion::Diverged(detail) => StorageError::Engine(format!("the zone's log diverged: {detail}")),
        };
        self.demoted.send_replace(Some(demotion));
        error
    }
}

/// Why a record could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{0}")]
    Diverged(#[from] Divergence),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

impl<L: ReplicatedLog> Storage for ReplicatedStorage<L> {
    fn recover(&self) -> Result<Recovered, StorageError> {
        self.local.recover()
    }

    fn writer_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn record_limit(&self) -> Option<usize> {
        Some(self.log.max_record_bytes())
    }

    fn lookup(&self, index: Index, keys: &[(&str, &str)]) -> Result<Vec<Option<IdemRecord>>, StorageError> {
        self.local.lookup(index, keys)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        let mut writer = self.lock();
        if writer.active != Some(batch.epoch) {
            return Err(self.refuse());
        }
        self.append(&mut writer, WalBody::Journal(batch.clone()))
    }

    fn read_store(&self, peer: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError> {
        self.local.read_store(peer, after, upto, limit)
    }

    fn count_store(&self, peer: &str, after: u64, upto: u64) -> Result<u64, StorageError> {
        self.local.count_store(peer, after, upto)
    }

    fn read_forward(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError> {
        self.local.read_forward(after, upto, limit)
    }

    fn store_zones(&self) -> Result<Vec<String>, StorageError> {
        self.local.store_zones()
    }

    fn read_window(&self, log: Log, after: u64, limit: usize) -> Result<Vec<WindowEntry>, StorageError> {
        self.local.read_window(log, after, limit)
    }

    fn log_sizes(&self, log: Log, offsets: &[u64]) -> Result<Vec<Option<u64>>, StorageError> {
        self.local.log_sizes(log, offsets)
    }

    fn read_entry(&self, log: Log, offset: u64) -> Result<Option<LogRecord>, StorageError> {
        self.local.read_entry(log, offset)
    }

    // The disk and its repair are this instance's own: what the replica holds locally.
    fn disk(&self) -> Result<DiskSpace, StorageError> {
        self.local.disk()
    }

    fn reclaim(&self, store_below: u64, forward_below: u64) -> Result<(), StorageError> {
        self.local.reclaim(store_below, forward_below)
    }

    fn find_damage(
        &self,
        log: Log,
        peer: Option<&str>,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        self.local.find_damage(log, peer, after, upto, limit)
    }
}

impl<L: ReplicatedLog> ObjectIndex for ReplicatedStorage<L> {
    fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectEntry>, StorageError> {
        self.local.object(bucket, key)
    }

    fn blob_refs(&self, digest: &ObjectDigest) -> Result<u64, StorageError> {
        self.local.blob_refs(digest)
    }

    fn write_object(
        &self,
        bucket: &str,
        key: &str,
        entry: &ObjectEntry,
        blob_refs: &[(ObjectDigest, u64)],
    ) -> Result<(), StorageError> {
        self.object_write(bucket, key, Some(entry.clone()), blob_refs)
    }

    fn remove_object(&self, bucket: &str, key: &str, blob_refs: &[(ObjectDigest, u64)]) -> Result<(), StorageError> {
        self.object_write(bucket, key, None, blob_refs)
    }

    fn visit_objects(&self, visit: &mut dyn FnMut(&str, &str, ObjectEntry)) -> Result<(), StorageError> {
        self.local.visit_objects(visit)
    }

    fn usage_by_bucket(&self) -> Result<BTreeMap<String, u64>, StorageError> {
        self.local.usage_by_bucket()
    }
}
