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

use rocksdb::{DBRecoveryMode, Direction, IteratorMode, WriteBatch, WriteBatchIteratorCf, WriteOptions};

use super::{
    be_u64, engine, wal, RocksStorage, CURSORS, FAMILIES, FWD_AGE, FWD_IDEM, FWD_LOG, META, META_FORWARD_HIGH,
    META_LOSSES, META_STORE_HIGH, META_USAGE, OBJECTS, STORE_IDEM, STORE_LOG, STORE_ROUTE,
};
use crate::storage::{LossRecord, Offsets, Storage, StorageError, Usage};

const SALVAGE_DIR: &str = "salvage.new";
/// In `salvage.new/`: the copy is complete; holds the name of the directory for the old files.
const COMPLETE: &str = "COMPLETE";
/// In `salvage.new/`: the old files have been moved away.
const OLD_MOVED: &str = "OLD_MOVED";
/// Entries per write batch of the copy.
const COPY_BATCH: usize = 4096;

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
        fs::write(new.join(COMPLETE), &stamp).map_err(|e| salvage_io("marking the copy complete", &e))?;
        progress("moving the damaged files aside and the copy into place");
        let moved_to = swap(path).map_err(|e| salvage_io("moving files", &e))?;
        Ok(Salvaged {
            record: Some(record),
            kept,
            moved_to: Some(moved_to),
        })
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
        let families = FAMILIES.map(|name| super::family(name, &cache));
        let db = rocksdb::DB::open_cf_descriptors_read_only(&options, path, families, false).map_err(engine)?;
        Ok(Self::around(db, path))
    }

    /// The facts the damaged records of the write-ahead log held: appended after what a replay
    /// up to the damage holds, and in none of the whole batches logged after it (offsets are
    /// handed out in commit order, so they are the gap between the two).
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
            let source = RocksStorage::open_read_only(path, DBRecoveryMode::PointInTime)?;
            Ok((source, report.lost, Some(cause)))
        }
        Err(error) => Err(error),
    }
}

/// The copy into `salvage.new/`.
struct Copy<'a> {
    source: &'a RocksStorage,
    dest: RocksStorage,
}

impl<'a> Copy<'a> {
    fn new(source: &'a RocksStorage, dest: RocksStorage) -> Self {
        Self { source, dest }
    }

    /// Copies both logs (skipping damaged entries into `lost`), then every other family (without
    /// the index entries of lost facts).
    fn run(&self, lost: &mut Offsets, progress: &mut dyn FnMut(&str)) -> Result<(), StorageError> {
        let highs = self.source.recover()?;
        self.copy_log(STORE_LOG, highs.store_high, &mut lost.store)?;
        self.copy_log(FWD_LOG, highs.forward_high, &mut lost.forward)?;
        lost.store.sort_unstable();
        lost.forward.sort_unstable();
        progress(&format!("logs copied; {} damaged entries skipped", lost.len()));
        let (store, forward): (HashSet<u64>, HashSet<u64>) = (
            lost.store.iter().copied().collect(),
            lost.forward.iter().copied().collect(),
        );
        let route_offset = |key: &[u8], _: &[u8]| key.len() >= 8 && store.contains(&tail_offset(key));
        self.copy_family(STORE_ROUTE, route_offset)?;
        self.copy_family(STORE_IDEM, |_, value| store.contains(&head_offset(value)))?;
        self.copy_family(FWD_IDEM, |_, value| forward.contains(&head_offset(value)))?;
        self.copy_family(FWD_AGE, |key, _| forward.contains(&head_offset(key)))?;
        for family in [CURSORS, OBJECTS, META] {
            self.copy_family(family, |_, _| false)?;
        }
        Ok(())
    }

    /// Applies the whole write batches logged after the damage of the write-ahead log of
    /// `path`, in order (applying one twice changes nothing: puts and deletions of fixed keys).
    fn replay(&self, path: &Path) -> Result<(), StorageError> {
        let batches = wal::batches_after_damage(path).map_err(|e| salvage_io("reading the write-ahead log", &e))?;
        for batch in batches {
            self.write(WriteBatch::from_data(&batch))?;
        }
        Ok(())
    }

    /// Copies `log`, stepping over entries that cannot be read (up to offset `high`).
    fn copy_log(&self, log: &'static str, high: u64, lost: &mut Vec<u64>) -> Result<(), StorageError> {
        let (from_cf, to_cf) = (self.source.cf(log)?, self.dest.cf(log)?);
        let mut batch = WriteBatch::default();
        let mut next = 0u64;
        loop {
            let start = next.to_be_bytes();
            let mut advanced = false;
            let mut damaged = false;
            for entry in self
                .source
                .db
                .iterator_cf(from_cf, IteratorMode::From(&start, Direction::Forward))
            {
                match entry {
                    Ok((key, value)) => {
                        next = be_u64(&key, "log key", &key)?.saturating_add(1);
                        batch.put_cf(to_cf, key, value);
                        advanced = true;
                        self.flush_if_full(&mut batch)?;
                    }
                    Err(error) if engine(error.clone()).is_damage() => {
                        damaged = true;
                        break;
                    }
                    Err(error) => return Err(engine(error)),
                }
            }
            if !damaged {
                break;
            }
            // Step over the damaged block by point reads; a key that reads (or is absent) where
            // the iterator failed again at once is a hole inside the block: step past it too.
            next = self.step_over(from_cf, next, high, advanced, lost)?;
            if next > high {
                break;
            }
        }
        self.write(batch)
    }

    fn step_over(
        &self,
        cf: &rocksdb::ColumnFamily,
        mut next: u64,
        high: u64,
        advanced: bool,
        lost: &mut Vec<u64>,
    ) -> Result<u64, StorageError> {
        let mut stepped = false;
        while next <= high {
            match self.source.db.get_pinned_cf(cf, next.to_be_bytes()) {
                Err(error) if engine(error.clone()).is_damage() => lost.push(next),
                Err(error) => return Err(engine(error)),
                Ok(_) if stepped || advanced => return Ok(next),
                Ok(_) => {}
            }
            next += 1;
            stepped = true;
        }
        Ok(next)
    }

    /// Copies `family` as it is, leaving out the entries `lost` picks; damage here cannot be
    /// stepped over (its keys are not offsets) and stops the copy.
    fn copy_family(&self, family: &'static str, lost: impl Fn(&[u8], &[u8]) -> bool) -> Result<(), StorageError> {
        let (from_cf, to_cf) = (self.source.cf(family)?, self.dest.cf(family)?);
        let mut batch = WriteBatch::default();
        for entry in self.source.db.iterator_cf(from_cf, IteratorMode::Start) {
            let (key, value) = entry.map_err(|error| {
                StorageError::Salvage(format!(
                    "the column family {family} is damaged ({}); it holds indexes or metadata that cannot be \
                     rebuilt entry by entry: restore the data directory from a backup",
                    error.into_string()
                ))
            })?;
            if !lost(&key, &value) {
                batch.put_cf(to_cf, key, value);
                self.flush_if_full(&mut batch)?;
            }
        }
        self.write(batch)
    }

    fn flush_if_full(&self, batch: &mut WriteBatch) -> Result<(), StorageError> {
        if batch.len() >= COPY_BATCH {
            self.write(std::mem::take(batch))?;
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut unlogged = WriteOptions::default();
        unlogged.disable_wal(true);
        self.dest.db.write_opt(batch, &unlogged).map_err(engine)
    }

    /// The copy's own metadata — recounted usage, the highest offsets, the loss added to the
    /// recorded ones — then everything flushed to table files and closed.
    fn finish(self, source: &RocksStorage, record: &LossRecord, kept: Usage) -> Result<(), StorageError> {
        let highs = self.dest.recover()?;
        let mut losses = source.losses()?;
        losses.push(record.clone());
        let meta = self.dest.cf(META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, META_USAGE, super::encode_usage(&kept));
        batch.put_cf(meta, META_STORE_HIGH, highs.store_high.to_be_bytes());
        batch.put_cf(meta, META_FORWARD_HIGH, highs.forward_high.to_be_bytes());
        batch.put_cf(meta, META_LOSSES, super::encode_losses(&losses)?);
        self.dest.db.write_opt(batch, &super::synced()).map_err(engine)?;
        let families = FAMILIES
            .iter()
            .map(|f| self.dest.cf(f))
            .collect::<Result<Vec<_>, _>>()?;
        let mut wait = rocksdb::FlushOptions::default();
        wait.set_wait(true);
        self.dest.db.flush_cfs_opt(&families, &wait).map_err(engine)?;
        let closed = self.dest.closed();
        drop(self.dest);
        let _ = closed.recv();
        Ok(())
    }
}

/// The offset at the end of a route key (`zone ‖ 0x00 ‖ offset`).
fn tail_offset(key: &[u8]) -> u64 {
    head_offset(&key[key.len().saturating_sub(8)..])
}

/// The offset at the start of a value or key (`offset ‖ ...`); 0 when too short.
fn head_offset(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Whether `name` is one of RocksDB's files (the ones the swap moves).
fn rocksdb_file(name: &str) -> bool {
    ["CURRENT", "IDENTITY", "LOCK", "LOG"].contains(&name)
        || ["LOG.old.", "MANIFEST-", "OPTIONS-"]
            .iter()
            .any(|p| name.starts_with(p))
        || [".sst", ".log", ".blob"].iter().any(|s| name.ends_with(s))
}

/// Moves the old RocksDB files of `path` into the directory named in `salvage.new/COMPLETE`,
/// then the copy's files into `path`; each half is skipped when a marker says it is done.
fn swap(path: &Path) -> std::io::Result<PathBuf> {
    let new = path.join(SALVAGE_DIR);
    let aside = path.join(fs::read_to_string(new.join(COMPLETE))?.trim());
    if !new.join(OLD_MOVED).exists() {
        fs::create_dir_all(&aside)?;
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if rocksdb_file(&entry.file_name().to_string_lossy()) {
                fs::rename(entry.path(), aside.join(entry.file_name()))?;
            }
        }
        sync_dir(path)?;
        fs::write(new.join(OLD_MOVED), b"")?;
    }
    for entry in fs::read_dir(&new)? {
        let entry = entry?;
        if rocksdb_file(&entry.file_name().to_string_lossy()) {
            fs::rename(entry.path(), path.join(entry.file_name()))?;
        }
    }
    sync_dir(path)?;
    fs::remove_dir_all(&new)?;
    Ok(aside)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

fn salvage_io(what: &str, error: &std::io::Error) -> StorageError {
    StorageError::Salvage(format!("accept-loss: {what}: {error}"))
}
