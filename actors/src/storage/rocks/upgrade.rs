//! Opening a directory written by an older version. Format `1` had no usage counters and no dedupe
//! window index; nothing was ever deleted in it, so usage is a count of both logs and `fwd_age`
//! is one entry per `fwd_log` entry. The upgrade runs once, before the journal starts; a crash in
//! the middle leaves format `1` and the next open redoes it (every write is a plain put).

use std::path::Path;

use rocksdb::{IteratorMode, WriteBatch};

use super::{
    corrupt, decode_record, encode_usage, engine, sweep, synced, RocksStorage, FORMAT_VERSION, FWD_AGE, FWD_LOG, META,
    META_FORMAT, META_USAGE, STORE_LOG,
};
use crate::storage::{BufferUsage, StorageError, Usage, FORWARD_HEADER};

/// Window entries written per batch while upgrading.
const UPGRADE_BATCH: usize = 10_000;

impl RocksStorage {
    pub(super) fn upgrade(&self, path: &Path) -> Result<(), StorageError> {
        let format = self.db.get_cf(self.cf(META)?, META_FORMAT).map_err(engine)?;
        match format.as_deref() {
            Some(FORMAT_VERSION) => Ok(()),
            Some(b"1") => self.upgrade_from_1(),
            found => Err(StorageError::NewerFormat {
                path: path.display().to_string(),
                found: String::from_utf8_lossy(found.unwrap_or_default()).into_owned(),
            }),
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
        wb.put_cf(meta, META_FORMAT, FORMAT_VERSION);
        self.db.write_opt(wb, &synced()).map_err(engine)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Batch, ForwardInsert, Log, Storage, StoreAppend};

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
        let window = storage.read_window(0, 10).expect("window");
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
