//! Going on without damaged data: `bsfg storage accept-loss`, run while the node is stopped.
//!
//! The directory is read (read-only; a damaged write-ahead log is replayed up to its damage) and
//! everything readable is copied into a fresh database next to it (`salvage.new/`): the log
//! entries whose table block is damaged are skipped one by one, and so are the index entries
//! (route, idempotency, dedupe window) of every lost fact, so a producer or a peer that sends one
//! again is taken as new. The whole write batches the damaged log holds after its damage are then
//! applied to the copy, in order (a batch is all of one group commit, so what is lost is whole
//! commits: RocksDB's own "skip corrupted records" recovery fails on some damage and cannot be
//! relied on). Usage is recounted; the highest offsets stay (offsets are never reused); the loss
//! is added to `meta.losses`. Then the RocksDB files are
//! swapped: the damaged ones move into `damaged-<time>/` (for forensics; delete it to get the
//! space back), the new ones into place. The artifact store (`objects/`) is not touched.
//!
//! Every step can be interrupted: an incomplete copy is discarded and made again; once the copy
//! is complete (`salvage.new/COMPLETE`), the swap is finished by the next run, and a node refuses
//! to open a directory whose swap is unfinished.

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

mod copy;
mod swap;

use rocksdb::{DBRecoveryMode, WriteBatch, WriteBatchIteratorCf};

use self::{
    copy::Copy,
    swap::{mark_complete, swap},
};
use super::{
    corrupt, decode_cursor_key, engine, wal, RocksStorage, CURSORS, FAMILIES, FWD_LOG, META, META_FORWARD_HIGH,
    META_LOSSES, META_STORE_HIGH, STORE_LOG,
};
use crate::storage::{CursorKey, DamageReport, LossRecord, Offsets, Storage, StorageError, Usage};

const SALVAGE_DIR: &str = "salvage.new";
/// In `salvage.new/`: the copy is complete; holds the name of the directory for the old files.
const COMPLETE: &str = "COMPLETE";

/// What `accept-loss` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The loss now recorded; `None` when nothing was damaged (nothing was changed then).
    pub record: Option<LossRecord>,
    /// What the database holds afterwards.
    pub kept: Usage,
    /// Where the damaged files went.
    pub moved_to: Option<PathBuf>,
}

impl RocksStorage {
    /// Copies everything readable of the damaged directory `path` into a fresh database, records
    /// what was lost as accepted by `accepted_by`, and swaps it in. `progress` hears each step.
    pub fn accept_loss(
        path: &Path,
        zone: &str,
        accepted_by: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Salvaged, StorageError> {
        let _stopped = node_stopped(path)?;
        let new = path.join(SALVAGE_DIR);
        if new.join(COMPLETE).exists() {
            progress("finishing an interrupted accept-loss: moving files");
            let moved_to = swap(path).map_err(|e| salvage_io("moving files", &e))?;
            let kept = Self::open_read_only(path, DBRecoveryMode::TolerateCorruptedTailRecords)?;
            return Ok(Salvaged {
                record: None,
                kept: kept.recover()?.usage,
                moved_to: Some(moved_to),
            });
        }
        if new.exists() {
            fs::remove_dir_all(&new).map_err(|e| salvage_io("removing an incomplete copy", &e))?;
        }
        let (source, mut lost, cause) = open_source(path, progress)?;
        progress("copying everything readable");
        let copy = Copy::new(&source, RocksStorage::open(&new, zone)?);
        copy.run(&mut lost, progress)?;
        if cause.is_some() {
            progress("applying the write batches logged after the damage");
            copy.replay(path)?;
        }
        let kept = copy.dest.recount()?;
        if lost.is_empty() && cause.is_none() {
            drop(copy);
            fs::remove_dir_all(&new).map_err(|e| salvage_io("removing the unneeded copy", &e))?;
            return Ok(Salvaged {
                record: None,
                kept,
                moved_to: None,
            });
        }
        let record = LossRecord {
            accepted_at_unix_ms: bsfg_proto::model::now_unix_ms(),
            accepted_by: accepted_by.to_owned(),
            cause: cause.unwrap_or_else(|| "damaged table blocks".to_owned()),
            lost,
        };
        copy.finish(&source, &record, kept)?;
        drop(source);
        let stamp = format!("damaged-{}", record.accepted_at_unix_ms);
        mark_complete(&new, &stamp).map_err(|e| salvage_io("marking the copy complete", &e))?;
        progress("moving the damaged files aside and the copy into place");
        let moved_to = swap(path).map_err(|e| salvage_io("moving files", &e))?;
        Ok(Salvaged {
            record: Some(record),
            kept,
            moved_to: Some(moved_to),
        })
    }

    /// Why RocksDB refused `path` with `engine`: the damaged write-ahead log records, and the
    /// facts they held as far as two read-only replays tell (empty when they cannot).
    pub(super) fn damage_report(path: &Path, engine: String) -> DamageReport {
        DamageReport {
            path: path.to_owned(),
            engine,
            wal: wal::inspect(path).unwrap_or_default(),
            lost: Self::wal_loss(path).unwrap_or_default(),
        }
    }

    /// The losses operators accepted in this directory, oldest first.
    pub fn losses(&self) -> Result<Vec<LossRecord>, StorageError> {
        match self.db.get_cf(self.cf(META)?, META_LOSSES).map_err(engine)? {
            None => Ok(Vec::new()),
            Some(bytes) => bsfg_proto::codec::decode_body(&bytes).map_err(|e| corrupt("meta losses", META_LOSSES, e)),
        }
    }

    /// Refuses a directory whose accept-loss stopped half-way through moving files.
    pub(super) fn check_no_unfinished_swap(path: &Path) -> Result<(), StorageError> {
        match path.join(SALVAGE_DIR).join(COMPLETE).exists() {
            true => Err(StorageError::Salvage(format!(
                "{} holds an accept-loss that stopped while moving files: run `bsfg storage accept-loss` again to finish it",
                path.display()
            ))),
            false => Ok(()),
        }
    }

    /// Read-only, with the write-ahead log replayed as far as `mode` allows.
    pub(super) fn open_read_only(path: &Path, mode: DBRecoveryMode) -> Result<Self, StorageError> {
        let mut options = super::db_options();
        options.set_wal_recovery_mode(mode);
        let cache = rocksdb::Cache::new_lru_cache(super::BLOCK_CACHE_BYTES);
        // A directory of an older version lacks the families added since; read-only, they are
        // not created, and what is not there is not read.
        let present = rocksdb::DB::list_cf(&options, path).map_err(engine)?;
        let families = FAMILIES
            .into_iter()
            .filter(|name| present.iter().any(|p| p == name))
            .map(|name| super::family(name, &cache));
        let db = rocksdb::DB::open_cf_descriptors_read_only(&options, path, families, false).map_err(engine)?;
        Ok(Self::around(db, path))
    }

    /// The facts the damaged records of the write-ahead log held: appended after what a replay
    /// up to the damage holds, and in none of the whole batches logged after it (offsets are
    /// handed out in commit order, so they are the gap between the two). A batch after the
    /// damage that only confirms still bounds the gap: a cursor was only ever moved to an offset
    /// that existed.
    pub(super) fn wal_loss(path: &Path) -> Result<Offsets, StorageError> {
        let before = Self::open_read_only(path, DBRecoveryMode::PointInTime)?.recover()?;
        let batches = wal::batches_after_damage(path).map_err(|e| salvage_io("reading the write-ahead log", &e))?;
        let mut after = Logged::default();
        for batch in &batches {
            WriteBatch::from_data(batch).iterate_cf(&mut after);
        }
        let gap = |from: u64, upto: u64, present: &HashSet<u64>| {
            (from.saturating_add(1)..=upto)
                .filter(|o| !present.contains(o))
                .collect()
        };
        Ok(Offsets {
            store: gap(before.store_high, after.store_high, &after.store),
            forward: gap(before.forward_high, after.forward_high, &after.forward),
        })
    }
}

/// What whole write batches put: log entries and the highest offsets in `meta`.
#[derive(Default)]
struct Logged {
    store: HashSet<u64>,
    forward: HashSet<u64>,
    store_high: u64,
    forward_high: u64,
}

/// A column family's id: the families were created in the order of [`FAMILIES`] (new ones are
/// only ever appended), after RocksDB's `default` (id 0).
fn family_id(name: &str) -> u32 {
    FAMILIES
        .iter()
        .position(|f| *f == name)
        .map_or(u32::MAX, |i| i as u32 + 1)
}

impl WriteBatchIteratorCf for Logged {
    fn put_cf(&mut self, cf_id: u32, key: &[u8], value: &[u8]) {
        let offset = || head_offset(key);
        if cf_id == family_id(STORE_LOG) && key.len() == 8 {
            self.store.insert(offset());
        } else if cf_id == family_id(FWD_LOG) && key.len() == 8 {
            self.forward.insert(offset());
        } else if cf_id == family_id(META) && key == META_STORE_HIGH {
            self.store_high = self.store_high.max(head_offset(value));
        } else if cf_id == family_id(META) && key == META_FORWARD_HIGH {
            self.forward_high = self.forward_high.max(head_offset(value));
        } else if cf_id == family_id(CURSORS) && value.len() == 8 {
            match decode_cursor_key(key) {
                Ok(CursorKey::Peer(_)) => self.store_high = self.store_high.max(head_offset(value)),
                Ok(CursorKey::Consumer(_)) => self.forward_high = self.forward_high.max(head_offset(value)),
                Err(_) => {}
            }
        }
    }

    fn delete_cf(&mut self, _: u32, _: &[u8]) {}

    fn merge_cf(&mut self, _: u32, _: &[u8], _: &[u8]) {}
}

/// Proof that no node has `path` open, held for the whole accept-loss: RocksDB's own lock on
/// `LOCK`, taken as an open file description lock (it conflicts with RocksDB's record lock).
fn node_stopped(path: &Path) -> Result<Option<fs::File>, StorageError> {
    let Ok(lock) = fs::OpenOptions::new().read(true).write(true).open(path.join("LOCK")) else {
        return Ok(None);
    };
    match rustix::fs::fcntl_lock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(lock)),
        Err(_) => Err(StorageError::Salvage(format!(
            "{} is in use (a node is running on it): stop the node first",
            path.display()
        ))),
    }
}

/// The database to copy from: the directory as it opens, or — when its write-ahead log is
/// damaged — replayed past the damaged records, with what they held and a cause.
fn open_source(
    path: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(RocksStorage, Offsets, Option<String>), StorageError> {
    progress("opening the damaged directory read-only");
    match RocksStorage::open_read_only(path, DBRecoveryMode::TolerateCorruptedTailRecords) {
        Ok(source) => Ok((source, Offsets::default(), None)),
        Err(error) if error.is_damage() => {
            let report = RocksStorage::damage_report(path, error.to_string());
            let cause = match report.wal.first() {
                Some(d) => format!(
                    "write-ahead log {} damaged at byte {} ({})",
                    d.file.display(),
                    d.offset,
                    d.kind
                ),
                None => format!("damage met opening the directory: {error}"),
            };
            let source = RocksStorage::open_read_only(path, DBRecoveryMode::PointInTime).map_err(|e| {
                StorageError::Salvage(format!(
                    "accept-loss cannot read {}: {e}; the damage is in a table file or the manifest, which it \
                     cannot go around. Nothing was changed: restore the data directory from a backup \
                     (docs/operations.md, \"Damaged storage\")",
                    path.display()
                ))
            })?;
            Ok((source, report.lost, Some(cause)))
        }
        Err(error) => Err(error),
    }
}

/// The offset at the start of a value or key (`offset ‖ ...`); 0 when too short.
fn head_offset(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn encode_losses(losses: &[LossRecord]) -> Result<Vec<u8>, StorageError> {
    bsfg_proto::codec::encode_value(&losses.to_vec()).map_err(|e| corrupt("meta losses", META_LOSSES, e))
}

fn salvage_io(what: &str, error: &std::io::Error) -> StorageError {
    StorageError::Salvage(format!("accept-loss: {what}: {error}"))
}
