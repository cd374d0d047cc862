//! RocksDB adapter of the storage port. The format it writes is documented in the parent module;
//! deletions and the dedupe window live in `sweep`, the upgrade of older directories in `upgrade`,
//! disk space in `space`, damaged write-ahead logs in `wal`, and going on without damaged data in
//! `salvage`.

mod salvage;
mod space;
mod sweep;
mod upgrade;
mod wal;

pub use salvage::Salvaged;

mod object_index;
mod replica;

use std::{
    path::{Path, PathBuf},
    sync::{mpsc, Mutex, PoisonError},
};

use rocksdb::{
    AsColumnFamilyRef, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    IteratorMode, Options, Snapshot, WriteBatch, WriteOptions, DB,
};

use super::{
    Batch, CursorKey, Digest, DiskSpace, IdemRecord, Index, Log, LogRecord, Recovered, Storage, StorageError, Usage,
    WindowEntry, FORWARD_HEADER, STORE_HEADER,
};

const STORE_LOG: &str = "store_log";
const STORE_ROUTE: &str = "store_route";
const STORE_IDEM: &str = "store_idem";
const FWD_LOG: &str = "fwd_log";
const FWD_IDEM: &str = "fwd_idem";
const CURSORS: &str = "cursors";
const META: &str = "meta";
// New families are appended: the order is only the order of creation.
const FWD_AGE: &str = "fwd_age";
const OBJECTS: &str = "objects";
/// The store buffer's dedupe window of reclaimed facts: offset → reclaimed_at ‖ origin ‖ `0x00` ‖
/// message_id (origin empty for a fact produced here).
const STORE_AGE: &str = "store_age";
const FAMILIES: [&str; 10] = [
    STORE_LOG,
    STORE_ROUTE,
    STORE_IDEM,
    FWD_LOG,
    FWD_IDEM,
    CURSORS,
    META,
    FWD_AGE,
    OBJECTS,
    STORE_AGE,
];

const FORMAT_VERSION: &[u8] = b"3";
const META_FORMAT: &[u8] = b"format";
const META_ZONE: &[u8] = b"zone";
const META_STORE_HIGH: &[u8] = b"store_high";
const META_FORWARD_HIGH: &[u8] = b"forward_high";
const META_USAGE: &[u8] = b"usage";
/// The losses operators accepted (`bsfg storage accept-loss`), bincode-encoded.
const META_LOSSES: &[u8] = b"losses";
/// `gate:` ‖ peer zone → `1` while an operator keeps the peer's gate closed.
const META_GATE: &[u8] = b"gate:";

/// RocksDB behind the [`Storage`] port.
pub struct RocksStorage {
    db: DB,
    /// The data directory, whose file system's free space [`Storage::disk`] reports.
    path: PathBuf,
    /// Declared after `db`, so dropped after it: the receivers handed out by
    /// [`RocksStorage::closed`] disconnect only once the database is closed and its background
    /// threads are joined.
    close_watchers: Mutex<Vec<mpsc::Sender<()>>>,
}

impl RocksStorage {
    /// Opens (or creates) the database under `path` for `zone`. A data directory written by
    /// another zone is refused rather than mixed.
    ///
    /// A damaged write-ahead log is never replayed past its damage (a torn last record is
    /// dropped): the directory is refused with a [`DamageReport`] saying where, what kind, and
    /// which facts going on without it would lose.
    pub fn open(path: &Path, zone: &str) -> Result<Self, StorageError> {
        Self::check_access(path)?;
        Self::check_no_unfinished_swap(path)?;
        Self::check_whole(path)?;
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let families = FAMILIES.map(|name| family(name, &cache));
        let mut options = db_options();
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        let db = match DB::open_cf_descriptors(&options, path, families) {
            Ok(db) => db,
            Err(error) if engine(error.clone()).is_damage() => {
                let report = Self::damage_report(path, error.into_string());
                return Err(StorageError::Damaged(Box::new(report)));
            }
            Err(error) => return Err(engine(error)),
        };
        let storage = Self::around(db, path);
        storage.claim_zone(path, zone)?;
        storage.upgrade(path)?;
        Ok(storage)
    }

    /// The directory (created when missing) must be readable, writable and searchable by this
    /// process: otherwise RocksDB fails deep inside with a bare I/O error, and the node would
    /// exit as if a retry could help.
    fn check_access(path: &Path) -> Result<(), StorageError> {
        use rustix::fs::{access, Access};
        let inaccessible = |reason: String| StorageError::Inaccessible {
            path: path.display().to_string(),
            uid: rustix::process::geteuid().as_raw(),
            reason,
        };
        match std::fs::create_dir_all(path) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Err(inaccessible(format!("cannot be created: {e}")));
            }
            Err(e) => return Err(StorageError::Engine(format!("cannot create {}: {e}", path.display()))),
        }
        match access(path, Access::READ_OK | Access::WRITE_OK | Access::EXEC_OK) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e,
                    rustix::io::Errno::ACCESS | rustix::io::Errno::PERM | rustix::io::Errno::ROFS
                ) =>
            {
                Err(inaccessible(format!(
                    "is not readable, writable and searchable: {}",
                    std::io::Error::from(e)
                )))
            }
            Err(e) => Err(StorageError::Engine(format!("cannot use {}: {e}", path.display()))),
        }
    }

    /// A directory that holds RocksDB's logs or tables but no `CURRENT` file (damaged, or
    /// restored in part) is refused: opening it would create a new, empty database beside them,
    /// and the next open of that would delete them.
    fn check_whole(path: &Path) -> Result<(), StorageError> {
        let unlisted = Self::unlisted_files(path)
            .map_err(|e| StorageError::Engine(format!("cannot list the data directory {}: {e}", path.display())))?;
        match unlisted.is_empty() {
            true => Ok(()),
            false => Err(StorageError::Headless {
                path: path.display().to_string(),
                files: unlisted,
            }),
        }
    }

    /// The write-ahead logs and tables in `path` when it has no `CURRENT` file to list them
    /// (empty for a directory with one, or without any, or that does not exist).
    pub fn unlisted_files(path: &Path) -> std::io::Result<Vec<String>> {
        if path.join("CURRENT").exists() {
            return Ok(Vec::new());
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let numbered = |suffix: &str| {
                name.strip_suffix(suffix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            };
            if numbered(".log") || numbered(".sst") {
                files.push(name);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Writes every family's memtable to a table and waits for it: afterwards no entry lives
    /// only in the write-ahead log.
    pub fn flush(&self) -> Result<(), StorageError> {
        let families: Vec<&ColumnFamily> = FAMILIES.iter().filter_map(|name| self.db.cf_handle(name)).collect();
        self.db
            .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
            .map_err(engine)
    }

    fn around(db: DB, path: &Path) -> Self {
        Self {
            db,
            path: path.to_owned(),
            close_watchers: Mutex::default(),
        }
    }

    /// A receiver that disconnects when this storage is dropped and the database closed: a
    /// process must not exit while RocksDB's background threads still run.
    pub fn closed(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        self.close_watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    fn claim_zone(&self, path: &Path, zone: &str) -> Result<(), StorageError> {
        let meta = self.cf(META)?;
        match self.db.get_cf(meta, META_ZONE).map_err(engine)? {
            Some(found) => zone_of(path, zone, &found),
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, META_ZONE, zone.as_bytes());
                batch.put_cf(meta, META_FORMAT, FORMAT_VERSION);
                batch.put_cf(meta, META_USAGE, encode_usage(&Usage::default()));
                self.db.write_opt(batch, &synced()).map_err(engine)
            }
        }
    }

    /// Whether `open` would take the database in `path` as `zone`'s, read without changing
    /// anything (`bsfg check`): [`StorageError::WrongZone`] or [`StorageError::NewerFormat`] as
    /// `open` refuses them. A directory without a database passes.
    pub fn check_owner(path: &Path, zone: &str) -> Result<(), StorageError> {
        if !path.join("CURRENT").exists() {
            return Ok(());
        }
        let mut options = Options::default();
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        // Read-only, the `meta` family alone: a node that runs keeps its lock and its files.
        let db = DB::open_cf_for_read_only(&options, path, [META], false).map_err(engine)?;
        let meta = db
            .cf_handle(META)
            .ok_or_else(|| StorageError::Engine(format!("column family {META} is missing")))?;
        let read = |key: &[u8]| db.get_cf(meta, key).map_err(engine);
        if let Some(found) = read(META_ZONE)? {
            zone_of(path, zone, &found)?;
        }
        match read(META_FORMAT)? {
            Some(format) if !upgrade::understood(&format) => Err(upgrade::newer_format(path, &format)),
            _ => Ok(()),
        }
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Engine(format!("column family {name} is missing")))
    }

    fn high(&self, meta_key: &[u8], log: &'static str) -> Result<u64, StorageError> {
        let recorded = match self.db.get_cf(self.cf(META)?, meta_key).map_err(engine)? {
            Some(bytes) => be_u64(&bytes, "meta high offset", meta_key)?,
            None => 0,
        };
        let last = match self.db.iterator_cf(self.cf(log)?, IteratorMode::End).next() {
            Some(entry) => be_u64(&entry.map_err(engine)?.0, "log key", b"")?,
            None => 0,
        };
        Ok(recorded.max(last))
    }

    /// Offsets in `(after, upto]` of the store-log entries addressed to `peer`, at most `limit`,
    /// as `view` sees them.
    fn route_offsets(
        &self,
        view: &Snapshot<'_>,
        peer: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let start = route_key(peer, after.saturating_add(1));
        let prefix_len = peer.len() + 1;
        let mut offsets = Vec::new();
        for entry in view.iterator_cf(self.cf(STORE_ROUTE)?, IteratorMode::From(&start, Direction::Forward)) {
            let (key, _) = entry.map_err(engine)?;
            if offsets.len() >= limit || key.len() != prefix_len + 8 || key[..prefix_len] != start[..prefix_len] {
                break;
            }
            let offset = be_u64(&key[prefix_len..], "route key", &key)?;
            if offset > upto {
                break;
            }
            offsets.push(offset);
        }
        Ok(offsets)
    }

    fn read_log(
        &self,
        view: &Snapshot<'_>,
        log: &'static str,
        offsets: &[u64],
        header: usize,
    ) -> Result<Vec<LogRecord>, StorageError> {
        let cf = self.cf(log)?;
        let keys: Vec<_> = offsets.iter().map(|o| (cf, o.to_be_bytes())).collect();
        let values = view.multi_get_cf(keys);
        let mut records = Vec::with_capacity(offsets.len());
        for (offset, value) in offsets.iter().zip(values) {
            // Retention deletes an index entry and its log entry in one batch, and the two are
            // read in one snapshot: an offset is skipped only when `offsets` came from elsewhere.
            if let Some(value) = value.map_err(engine)? {
                records.push(decode_record(*offset, &value, header)?);
            }
        }
        Ok(records)
    }
}

impl Storage for RocksStorage {
    fn recover(&self) -> Result<Recovered, StorageError> {
        let mut cursors = std::collections::HashMap::new();
        for entry in self.db.iterator_cf(self.cf(CURSORS)?, IteratorMode::Start) {
            let (key, value) = entry.map_err(engine)?;
            cursors.insert(decode_cursor_key(&key)?, be_u64(&value, "cursor", &key)?);
        }
        let usage = match self.db.get_cf(self.cf(META)?, META_USAGE).map_err(engine)? {
            Some(bytes) => decode_usage(&bytes)?,
            None => return Err(corrupt("meta", META_USAGE, "missing")),
        };
        Ok(Recovered {
            store_high: self.high(META_STORE_HIGH, STORE_LOG)?,
            forward_high: self.high(META_FORWARD_HIGH, FWD_LOG)?,
            cursors,
            usage,
            closed_gates: self.closed_gates()?,
        })
    }

    fn lookup(&self, index: Index, keys: &[(&str, &str)]) -> Result<Vec<Option<IdemRecord>>, StorageError> {
        let cf = self.cf(match index {
            Index::Store => STORE_IDEM,
            Index::Forward => FWD_IDEM,
        })?;
        let encoded: Vec<Vec<u8>> = keys.iter().map(|(zone, id)| idem_key(index, zone, id)).collect();
        let values = self.db.multi_get_cf(encoded.iter().map(|k| (cf, k.as_slice())));
        values
            .into_iter()
            .zip(&encoded)
            .map(|(value, key)| value.map_err(engine)?.map(|v| decode_idem(&v, key)).transpose())
            .collect()
    }

    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        let wb = self.write_batch(batch)?;
        let options = if batch.needs_sync() {
            synced()
        } else {
            WriteOptions::default()
        };
        self.db.write_opt(wb, &options).map_err(engine)
    }

    fn read_store(&self, peer: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError> {
        // The index and the log are read in one snapshot. Were a deletion committed between the
        // two reads, the page would come back short of `limit` with later entries unread, and a
        // short page tells its reader that it holds everything up to `upto`: a peer would confirm
        // past facts it never received, and the artifact sweep would stop its scan early.
        let view = self.db.snapshot();
        let offsets = self.route_offsets(&view, peer, after, upto, limit)?;
        self.read_log(&view, STORE_LOG, &offsets, STORE_HEADER)
    }

    fn read_forward(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError> {
        // Iterated rather than multi-got by offset: reclaimed entries leave gaps.
        let start = after.saturating_add(1).to_be_bytes();
        let mut records = Vec::new();
        for entry in self
            .db
            .iterator_cf(self.cf(FWD_LOG)?, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = entry.map_err(engine)?;
            let offset = be_u64(&key, "log key", &key)?;
            if records.len() >= limit || offset > upto {
                break;
            }
            records.push(decode_record(offset, &value, FORWARD_HEADER)?);
        }
        Ok(records)
    }

    fn store_zones(&self) -> Result<Vec<String>, StorageError> {
        self.route_zones()
    }

    fn read_window(&self, log: Log, after: u64, limit: usize) -> Result<Vec<WindowEntry>, StorageError> {
        self.window(log, after, limit)
    }

    fn log_sizes(&self, log: Log, offsets: &[u64]) -> Result<Vec<Option<u64>>, StorageError> {
        self.sizes(log, offsets)
    }

    fn read_entry(&self, log: Log, offset: u64) -> Result<Option<LogRecord>, StorageError> {
        let (cf, header) = match log {
            Log::Store => (STORE_LOG, STORE_HEADER),
            Log::Forward => (FWD_LOG, FORWARD_HEADER),
        };
        Ok(self.read_log(&self.db.snapshot(), cf, &[offset], header)?.pop())
    }

    fn find_damage(
        &self,
        log: Log,
        peer: Option<&str>,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        self.damage(log, peer, after, upto, limit)
    }

    fn disk(&self) -> Result<DiskSpace, StorageError> {
        self.space()
    }

    fn reclaim(&self, store_below: u64, forward_below: u64) -> Result<(), StorageError> {
        self.give_back(store_below, forward_below)
    }

    fn count_store(&self, peer: &str, after: u64, upto: u64) -> Result<u64, StorageError> {
        if upto <= after {
            return Ok(0);
        }
        // Keys only, between two keys of the same peer: the bound keeps other peers out.
        let end = match upto.checked_add(1) {
            Some(next) => route_key(peer, next),
            None => [peer.as_bytes(), &[1]].concat(),
        };
        let mut bounded = rocksdb::ReadOptions::default();
        bounded.set_iterate_upper_bound(end);
        let start = route_key(peer, after + 1);
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut keys = self.db.iterator_cf_opt(self.cf(STORE_ROUTE)?, bounded, mode);
        keys.try_fold(0, |count, key| key.map(|_| count + 1).map_err(engine))
    }
}

impl RocksStorage {
    /// Every write of `batch`, as one RocksDB write batch (not yet written).
    fn write_batch(&self, batch: &Batch) -> Result<WriteBatch, StorageError> {
        // Sized once for the facts' encodings and their index entries, rather than grown by
        // doubling (a copy of the whole batch each time) on the journal's thread.
        let facts = batch.store.len() + batch.forward.len();
        let encoded: usize = batch.store.iter().map(|a| a.encoded.len()).sum::<usize>()
            + batch.forward.iter().map(|i| i.encoded.len()).sum::<usize>();
        let mut wb = WriteBatch::with_capacity_bytes(encoded + facts * ENTRY_OVERHEAD_BYTES + 1024);
        let mut scratch = Scratch::default();
        self.put_store(&mut wb, &mut scratch, batch)?;
        self.put_forward(&mut wb, &mut scratch, batch)?;
        let cursors = self.cf(CURSORS)?;
        for (key, value) in &batch.cursors {
            wb.put_cf(cursors, encode_cursor_key(key), value.to_be_bytes());
        }
        for key in &batch.cursor_deletes {
            wb.delete_cf(cursors, encode_cursor_key(key));
        }
        self.put_deletes(&mut wb, batch)?;
        let meta = self.cf(META)?;
        if let Some(usage) = &batch.usage {
            wb.put_cf(meta, META_USAGE, encode_usage(usage));
        }
        for (peer, closed) in &batch.gates {
            let key = [META_GATE, peer.as_bytes()].concat();
            match closed {
                true => wb.put_cf(meta, key, [1]),
                false => wb.delete_cf(meta, key),
            }
        }
        Ok(wb)
    }

    /// Peers whose gate an operator closed, as last committed.
    pub fn closed_gates(&self) -> Result<std::collections::BTreeSet<String>, StorageError> {
        let mut closed = std::collections::BTreeSet::new();
        let mode = IteratorMode::From(META_GATE, Direction::Forward);
        for entry in self.db.iterator_cf(self.cf(META)?, mode) {
            let (key, _) = entry.map_err(engine)?;
            let Some(peer) = key.strip_prefix(META_GATE) else { break };
            closed.insert(String::from_utf8(peer.to_vec()).map_err(|e| corrupt("gate key", &key, e))?);
        }
        Ok(closed)
    }

    fn put_store(&self, wb: &mut WriteBatch, scratch: &mut Scratch, batch: &Batch) -> Result<(), StorageError> {
        let (log, route, idem) = (self.cf(STORE_LOG)?, self.cf(STORE_ROUTE)?, self.cf(STORE_IDEM)?);
        for append in &batch.store {
            let offset = append.offset.to_be_bytes();
            let at = append.appended_at_unix_ms.to_be_bytes();
            scratch.put(wb, log, &[&offset], &[&at, &append.encoded]);
            scratch.put(wb, route, &route_key_parts(&append.peer, &offset), &[]);
            let origin = append.origin.as_deref().unwrap_or_default();
            let key = idem_key_parts(Index::Store, origin, &append.message_id);
            scratch.put(wb, idem, &key, &idem_value_parts(&offset, Some(&append.digest)));
        }
        if let Some(high) = batch.store_high {
            wb.put_cf(self.cf(META)?, META_STORE_HIGH, high.to_be_bytes());
        }
        Ok(())
    }

    fn put_forward(&self, wb: &mut WriteBatch, scratch: &mut Scratch, batch: &Batch) -> Result<(), StorageError> {
        let (log, idem, age) = (self.cf(FWD_LOG)?, self.cf(FWD_IDEM)?, self.cf(FWD_AGE)?);
        for insert in &batch.forward {
            let offset = insert.offset.to_be_bytes();
            let received = insert.received_at_unix_ms.to_be_bytes();
            let source = insert.source_offset.to_be_bytes();
            scratch.put(wb, log, &[&offset], &[&received, &source, &insert.encoded]);
            let key = idem_key_parts(Index::Forward, &insert.from_zone, &insert.message_id);
            scratch.put(wb, idem, &key, &idem_value_parts(&offset, Some(&insert.digest)));
            let window = sweep::age_value_parts(&received, &insert.from_zone, &insert.message_id);
            scratch.put(wb, age, &[&offset], &window);
        }
        if let Some(high) = batch.forward_high {
            wb.put_cf(self.cf(META)?, META_FORWARD_HIGH, high.to_be_bytes());
        }
        Ok(())
    }
}

/// Memory RocksDB may hold for all column families together (SPEC §14: a node stays within
/// 150 MB under load). Without these caps every family had its own 32 MiB write buffers (two
/// while one flushes) and its own block cache, and a node replaying a 1 000 000-fact backlog
/// peaked at 192 MB.
const MEMTABLE_BUDGET_BYTES: usize = 48 << 20;
const WRITE_BUFFER_BYTES: usize = 16 << 20;
const BLOCK_CACHE_BYTES: usize = 16 << 20;

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    // One budget for every family's memtables: reaching it flushes the largest.
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
    // Flush what pins old logs (small families such as `meta` are never the largest memtable)
    // once the logs hold twice the memtable budget; RocksDB's default would let them grow to
    // four times every family's write buffers, over 1 GiB, before anything is flushed.
    opts.set_max_total_wal_size(2 * MEMTABLE_BUDGET_BYTES as u64);
    opts
}

/// Logs are append-mostly and read soon after writing: no compression on the hot path, write
/// buffers large enough that most reads of a live link come from the memtable, bloom filters
/// for point lookups, and one block cache shared by all families.
fn family(name: &str, cache: &Cache) -> ColumnFamilyDescriptor {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::None);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(cache);
    opts.set_block_based_table_factory(&table);
    ColumnFamilyDescriptor::new(name, opts)
}

/// Refuses a directory whose `meta.zone` (`found`) is another zone's than `zone`.
fn zone_of(path: &Path, zone: &str, found: &[u8]) -> Result<(), StorageError> {
    match found == zone.as_bytes() {
        true => Ok(()),
        false => Err(StorageError::WrongZone {
            path: path.display().to_string(),
            expected: zone.to_owned(),
            found: String::from_utf8_lossy(found).into_owned(),
        }),
    }
}

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

/// RocksDB's error as ours; damaged data (a checksum mismatch, a damaged file) is
/// [`StorageError::Corrupt`], so it is reported as damage rather than retried.
fn engine(error: rocksdb::Error) -> StorageError {
    match error.kind() {
        rocksdb::ErrorKind::Corruption => StorageError::Corrupt {
            what: "stored data",
            key: Vec::new(),
            reason: error.into_string(),
        },
        _ => StorageError::Engine(error.into_string()),
    }
}

/// What a fact adds to a batch besides its encoding: its keys, index entries and RocksDB's
/// record headers (an estimate, for sizing the batch).
const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Two buffers reused for every key and value of one batch: `put_cf` copies what it is given, so
/// a fresh `Vec` per key and value, several per fact, only fed the allocator on the journal's
/// thread.
#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Scratch {
    /// Puts the key and the value, each the concatenation of its parts.
    fn put(&mut self, wb: &mut WriteBatch, cf: &impl AsColumnFamilyRef, key: &[&[u8]], value: &[&[u8]]) {
        for (buffer, parts) in [(&mut self.key, key), (&mut self.value, value)] {
            buffer.clear();
            parts.iter().for_each(|part| buffer.extend_from_slice(part));
        }
        wb.put_cf(cf, &self.key, &self.value);
    }
}

fn route_key(zone: &str, offset: u64) -> Vec<u8> {
    route_key_parts(zone, &offset.to_be_bytes()).concat()
}

fn route_key_parts<'a>(zone: &'a str, offset: &'a [u8; 8]) -> [&'a [u8]; 3] {
    [zone.as_bytes(), &[0], offset]
}

/// The first byte of a relayed fact's `store_idem` key: never the first byte of UTF-8 text.
const RELAYED: u8 = 0xFF;

fn idem_key(index: Index, zone: &str, message_id: &str) -> Vec<u8> {
    idem_key_parts(index, zone, message_id).concat()
}

fn idem_key_parts<'a>(index: Index, zone: &'a str, message_id: &'a str) -> [&'a [u8]; 4] {
    let (zone, id) = (zone.as_bytes(), message_id.as_bytes());
    match index {
        Index::Store if zone.is_empty() => [id, &[], &[], &[]],
        Index::Store => [&[RELAYED], zone, &[0], id],
        Index::Forward => [zone, &[0], id, &[]],
    }
}

/// The offset, then the content digest when it is known (see "Format" in the parent module).
fn idem_value(offset: u64, digest: Option<&Digest>) -> Vec<u8> {
    idem_value_parts(&offset.to_be_bytes(), digest).concat()
}

fn idem_value_parts<'a>(offset: &'a [u8; 8], digest: Option<&'a Digest>) -> [&'a [u8]; 2] {
    [offset, digest.map_or(&[][..], |d| &d[..])]
}

fn decode_idem(value: &[u8], key: &[u8]) -> Result<IdemRecord, StorageError> {
    let corrupt = || corrupt("idempotency record", key, "expected 8 or 40 bytes");
    let (offset, digest) = match value.len() {
        8 => (value, None),
        40 => (&value[..8], Some(value[8..].try_into().map_err(|_| corrupt())?)),
        _ => return Err(corrupt()),
    };
    Ok(IdemRecord {
        offset: be_u64(offset, "idempotency record", key)?,
        digest,
    })
}

fn encode_cursor_key(key: &CursorKey) -> Vec<u8> {
    match key {
        CursorKey::Peer(zone) => [b"s", zone.as_bytes()].concat(),
        CursorKey::Consumer(name) => [b"f", name.as_bytes()].concat(),
    }
}

fn decode_cursor_key(key: &[u8]) -> Result<CursorKey, StorageError> {
    let name = |rest: &[u8]| String::from_utf8(rest.to_vec()).map_err(|e| corrupt("cursor key", key, e));
    match key.split_first() {
        Some((b's', rest)) => Ok(CursorKey::Peer(name(rest)?)),
        Some((b'f', rest)) => Ok(CursorKey::Consumer(name(rest)?)),
        _ => Err(corrupt("cursor key", key, "unknown kind")),
    }
}

fn decode_record(offset: u64, value: &[u8], header: usize) -> Result<LogRecord, StorageError> {
    let key = offset.to_be_bytes();
    let stored_at = be_u64(value.get(..8).unwrap_or_default(), "log entry", &key)?;
    let body = value
        .get(header..)
        .ok_or_else(|| corrupt("log entry", &key, "shorter than its header"))?;
    let source_offset = match header {
        FORWARD_HEADER => be_u64(&value[8..16], "log entry", &key)?,
        _ => 0,
    };
    Ok(LogRecord {
        offset,
        stored_at_unix_ms: stored_at,
        stored_bytes: value.len() as u64,
        source_offset,
        encoded: body.to_vec(),
    })
}

fn encode_usage(usage: &Usage) -> Vec<u8> {
    [
        usage.store.facts,
        usage.store.bytes,
        usage.forward.facts,
        usage.forward.bytes,
    ]
    .iter()
    .flat_map(|n| n.to_be_bytes())
    .collect()
}

fn decode_usage(bytes: &[u8]) -> Result<Usage, StorageError> {
    if bytes.len() != 32 {
        return Err(corrupt("meta usage", META_USAGE, "expected 32 bytes"));
    }
    let n = |i: usize| be_u64(&bytes[i * 8..(i + 1) * 8], "meta usage", META_USAGE);
    let mut usage = Usage::default();
    (usage.store.facts, usage.store.bytes) = (n(0)?, n(1)?);
    (usage.forward.facts, usage.forward.bytes) = (n(2)?, n(3)?);
    Ok(usage)
}

fn be_u64(bytes: &[u8], what: &'static str, key: &[u8]) -> Result<u64, StorageError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| corrupt(what, key, "expected 8 bytes"))?;
    Ok(u64::from_be_bytes(array))
}

fn corrupt(what: &'static str, key: &[u8], reason: impl ToString) -> StorageError {
    StorageError::Corrupt {
        what,
        key: key.to_vec(),
        reason: reason.to_string(),
    }
}
