//! Opening a directory written by an older version, one format at a time. Each upgrade runs once,
//! before the journal starts; a crash in the middle leaves the old format and the next open redoes
//! it (every write is a plain put, computed from the logs, so doing it twice changes nothing).
//!
//! - `1` → `2`: format 1 had no usage counters and no dedupe window index; nothing was ever
//!   deleted in it, so usage is a count of both logs and `fwd_age` is one entry per `fwd_log` entry.
//! - `2` → `3`: the idempotency indexes held the sha256 of the whole encoded message, send time
//!   included; they now hold its content digest (`bsfg_proto::content`). Each entry is recomputed
//!   from its log entry; a `fwd_idem` entry whose log entry was reclaimed keeps its offset alone.

use std::path::Path;

use rocksdb::{IteratorMode, WriteBatch};

use super::{
    corrupt, decode_idem, decode_record, encode_usage, engine, idem_value, sweep, synced, RocksStorage, FORMAT_VERSION,
    FWD_AGE, FWD_IDEM, FWD_LOG, META, META_FORMAT, META_USAGE, STORE_IDEM, STORE_LOG,
};
use crate::storage::{BufferUsage, Digest, StorageError, Usage, FORWARD_HEADER, STORE_HEADER};

/// Entries written per batch while upgrading.
const UPGRADE_BATCH: usize = 10_000;
const FORMAT_2: &[u8] = b"2";

/// The refusal of a directory of `format`, which this version does not open.
pub(super) fn newer_format(path: &Path, format: &[u8]) -> StorageError {
    StorageError::NewerFormat {
        path: path.display().to_string(),
        found: String::from_utf8_lossy(format).into_owned(),
    }
}

/// This version opens a directory of `format`: its own, or one it upgrades.
pub(super) fn understood(format: &[u8]) -> bool {
    matches!(format, FORMAT_VERSION | FORMAT_2 | b"1")
}

impl RocksStorage {
    pub(super) fn upgrade(&self, path: &Path) -> Result<(), StorageError> {
        let format = self.db.get_cf(self.cf(META)?, META_FORMAT).map_err(engine)?;
        match format.as_deref() {
            Some(FORMAT_VERSION) => Ok(()),
            Some(FORMAT_2) => self.upgrade_from_2(),
            Some(b"1") => {
                self.upgrade_from_1()?;
                self.upgrade_from_2()
            }
            found => Err(newer_format(path, found.unwrap_or_default())),
        }
    }

    fn upgrade_from_1(&self) -> Result<(), StorageError> {
        let age = self.cf(FWD_AGE)?;
        let mut wb = WriteBatch::default();
        for entry in self.db.iterator_cf(self.cf(FWD_LOG)?, IteratorMode::Start) {
            let (key, value) = entry.map_err(engine)?;
            let offset = super::be_u64(&key, "log key", &key)?;
            let record = decode_record(offset, &value, FORWARD_HEADER)?;
            let envelope = record.message()?.envelope;
            let window = sweep::age_value(record.stored_at_unix_ms, &envelope.from_zone, &envelope.message_id);
            wb.put_cf(age, key, window);
            if wb.len() >= UPGRADE_BATCH {
                self.db.write(std::mem::take(&mut wb)).map_err(engine)?;
            }
        }
        let usage = self.recount()?;
        let meta = self.cf(META)?;
        wb.put_cf(meta, META_USAGE, encode_usage(&usage));
        wb.put_cf(meta, META_FORMAT, FORMAT_2);
        self.db.write_opt(wb, &synced()).map_err(engine)
    }

    fn upgrade_from_2(&self) -> Result<(), StorageError> {
        self.rehash(STORE_IDEM, STORE_LOG, STORE_HEADER)?;
        self.rehash(FWD_IDEM, FWD_LOG, FORWARD_HEADER)?;
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(META)?, META_FORMAT, FORMAT_VERSION);
        // Synced, and RocksDB's log is sequential: the unsynced batches before it are durable too.
        self.db.write_opt(wb, &synced()).map_err(engine)
    }

    /// Rewrites every entry of an idempotency index with the content digest of the log entry it
    /// names, or with its offset alone when that entry is gone (a dedupe-window entry).
    fn rehash(&self, index: &'static str, log: &'static str, header: usize) -> Result<(), StorageError> {
        let (index_cf, log_cf) = (self.cf(index)?, self.cf(log)?);
        let mut wb = WriteBatch::default();
        // The iterator reads a snapshot, so the rewrites below do not disturb it.
        for entry in self.db.iterator_cf(index_cf, IteratorMode::Start) {
            let (key, value) = entry.map_err(engine)?;
            let offset = decode_idem(&value, &key)?.offset;
            let digest = match self.db.get_cf(log_cf, offset.to_be_bytes()).map_err(engine)? {
                Some(stored) => Some(content_digest(offset, &stored, header)?),
                None => None,
            };
            wb.put_cf(index_cf, key, idem_value(offset, digest.as_ref()));
            if wb.len() >= UPGRADE_BATCH {
                self.db.write(std::mem::take(&mut wb)).map_err(engine)?;
            }
        }
        self.db.write(wb).map_err(engine)
    }

    /// Usage counted by a scan of both logs (the upgrade, and tests checking the counters).
    pub fn recount(&self) -> Result<Usage, StorageError> {
        Ok(Usage {
            store: self.count(STORE_LOG)?,
            forward: self.count(FWD_LOG)?,
        })
    }

    fn count(&self, log: &'static str) -> Result<BufferUsage, StorageError> {
        let mut usage = BufferUsage::default();
        for entry in self.db.iterator_cf(self.cf(log)?, IteratorMode::Start) {
            let (key, value) = entry.map_err(engine)?;
            if value.len() < 8 {
                return Err(corrupt("log entry", &key, "shorter than its header"));
            }
            usage.add(value.len() as u64);
        }
        Ok(usage)
    }
}

fn content_digest(offset: u64, stored: &[u8], header: usize) -> Result<Digest, StorageError> {
    let message = decode_record(offset, stored, header)?.message()?;
    message
        .content_digest()
        .map_err(|e| corrupt("log entry", &offset.to_be_bytes(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Batch, ForwardInsert, IdemRecord, Index, Log, Storage, StoreAppend};

    fn encoded(id: &str) -> Vec<u8> {
        let message = crate::testkit::message("enterprise", "plant-a", id);
        bsfg_proto::codec::encode_value(&message).expect("encode")
    }

    /// A directory as format 1 left it: entries, but no usage and no dedupe-window index.
    fn format_1(path: &Path) {
        let storage = RocksStorage::open(path, "plant-a").expect("open");
        let batch = Batch {
            store: vec![StoreAppend {
                offset: 1,
                appended_at_unix_ms: 5,
                message_id: "s".into(),
                peer: "enterprise".into(),
                origin: None,
                digest: [0; 32],
                encoded: encoded("s"),
            }],
            forward: vec![ForwardInsert {
                offset: 1,
                received_at_unix_ms: 7,
                source_offset: 9,
                from_zone: "enterprise".into(),
                message_id: "f".into(),
                digest: [0; 32],
                encoded: encoded("f"),
            }],
            ..Batch::default()
        };
        storage.commit(&batch).expect("commit");
        let meta = storage.cf(META).expect("meta");
        storage.db.delete_cf(meta, META_USAGE).expect("delete usage");
        storage.db.put_cf(meta, META_FORMAT, b"1").expect("format 1");
        storage
            .db
            .delete_cf(storage.cf(FWD_AGE).expect("fwd_age"), 1u64.to_be_bytes())
            .expect("delete window");
    }

    #[test]
    fn a_format_1_directory_gets_usage_and_its_dedupe_window_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        format_1(dir.path());
        let storage = RocksStorage::open(dir.path(), "plant-a").expect("reopen");
        let usage = storage.recover().expect("recover").usage;
        assert_eq!((usage.store.facts, usage.forward.facts), (1, 1));
        // The bytes the writer would have counted for these entries, not a second recount.
        assert_eq!(usage.store.bytes, Log::Store.entry_bytes(encoded("s").len()));
        assert_eq!(usage.forward.bytes, Log::Forward.entry_bytes(encoded("f").len()));
        let window = storage
            .read_window(crate::storage::Log::Forward, 0, 10)
            .expect("window");
        assert_eq!(window.len(), 1);
        assert_eq!(
            (
                window[0].received_at_unix_ms,
                window[0].from_zone.as_str(),
                window[0].message_id.as_str()
            ),
            (7, "enterprise", "f")
        );
        let format = storage
            .db
            .get_cf(storage.cf(META).expect("meta"), META_FORMAT)
            .expect("get");
        assert_eq!(format.as_deref(), Some(FORMAT_VERSION));
    }

    fn digest(message: &bsfg_proto::Message) -> Digest {
        message.content_digest().expect("digest")
    }

    fn forward(offset: u64, id: &str) -> ForwardInsert {
        ForwardInsert {
            offset,
            received_at_unix_ms: 7,
            source_offset: offset,
            from_zone: "enterprise".into(),
            message_id: id.into(),
            digest: [9; 32],
            encoded: encoded(id),
        }
    }

    /// A directory as format 2 left it: idempotency entries hold a digest of the whole encoded
    /// message (here a stand-in), and the forward fact `gone` was reclaimed but is still in the
    /// dedupe window.
    fn format_2(path: &Path) {
        let storage = RocksStorage::open(path, "plant-a").expect("open");
        let batch = Batch {
            store: vec![StoreAppend {
                offset: 1,
                appended_at_unix_ms: 5,
                message_id: "s".into(),
                peer: "enterprise".into(),
                origin: None,
                digest: [9; 32],
                encoded: encoded("s"),
            }],
            forward: vec![forward(1, "f"), forward(2, "gone")],
            ..Batch::default()
        };
        storage.commit(&batch).expect("commit");
        let reclaim = crate::storage::ForwardDelete {
            offset: 2,
            from_zone: "enterprise".into(),
            message_id: "gone".into(),
            reason: crate::storage::DeleteReason::Confirmed,
            log: true,
            window: false,
        };
        let batch = Batch {
            forward_deletes: vec![reclaim],
            ..Batch::default()
        };
        storage.commit(&batch).expect("reclaim");
        let meta = storage.cf(META).expect("meta");
        storage.db.put_cf(meta, META_FORMAT, FORMAT_2).expect("format 2");
    }

    #[test]
    fn a_format_2_directory_gets_content_digests_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        format_2(dir.path());
        let storage = RocksStorage::open(dir.path(), "plant-a").expect("reopen");
        let message = |id| crate::testkit::message("enterprise", "plant-a", id);
        let store = storage.lookup(Index::Store, &[("", "s")]).expect("lookup");
        let known = |offset, id| {
            Some(IdemRecord {
                offset,
                digest: Some(digest(&message(id))),
            })
        };
        assert_eq!(store, [known(1, "s")]);
        let forward = storage
            .lookup(Index::Forward, &[("enterprise", "f"), ("enterprise", "gone")])
            .expect("lookup");
        let unknown = Some(IdemRecord {
            offset: 2,
            digest: None,
        });
        assert_eq!(forward, [known(1, "f"), unknown]);
        // A retry stamped with a new send time is now recognised as the stored fact.
        let mut retried = message("s");
        retried.envelope.produced_at_unix_ms += 1;
        assert!(store[0].is_some_and(|r| r.holds(&digest(&retried))));
        let format = storage
            .db
            .get_cf(storage.cf(META).expect("meta"), META_FORMAT)
            .expect("get");
        assert_eq!(format.as_deref(), Some(FORMAT_VERSION));
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = RocksStorage::open(dir.path(), "plant-a").expect("open");
        let meta = storage.cf(META).expect("meta");
        storage.db.put_cf(meta, META_FORMAT, b"9").expect("format 9");
        drop(storage);
        let refused = RocksStorage::open(dir.path(), "plant-a").err().expect("refused");
        assert!(matches!(refused, StorageError::NewerFormat { .. }), "{refused}");
    }
}
