//! A replica of an HA zone's write-ahead log in RocksDB: every record's effects are written with
//! the replica's new position (`meta.wal`: sequence ‖ chain ‖ epoch) in the same write batch, so
//! the position always says exactly which records the database holds. The write is not synced:
//! the engine's quorum holds the record durably, and a replica that lost its last writes in a
//! crash applies them again from its position on.

use rocksdb::{WriteBatch, WriteOptions};

use super::{engine, RocksStorage, META};
use crate::storage::{
    wal::{WalBody, WalPosition},
    StorageError,
};

/// `meta` key of the replica's position.
const META_WAL: &[u8] = b"wal";

impl RocksStorage {
    /// The last record this replica applied (sequence 0 and a zero chain before the first).
    pub fn wal_position(&self) -> Result<WalPosition, StorageError> {
        match self.db.get_cf(self.cf(META)?, META_WAL).map_err(engine)? {
            None => Ok(WalPosition::default()),
            Some(bytes) => WalPosition::decode(&bytes).ok_or_else(|| StorageError::Corrupt {
                what: "meta wal position",
                key: META_WAL.to_vec(),
                reason: format!("expected 48 bytes, found {}", bytes.len()),
            }),
        }
    }

    /// A consistent copy of the database in the new directory `dir` (hard links where it can).
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StorageError> {
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(engine)?;
        checkpoint.create_checkpoint(dir).map_err(engine)
    }

    /// Writes `body`'s effects and the position `at` together, unsynced.
    pub fn apply(&self, body: &WalBody, at: &WalPosition) -> Result<(), StorageError> {
        let mut wb = match body {
            WalBody::Journal(batch) => self.write_batch(batch)?,
            WalBody::Object(write) => {
                self.object_batch(&write.bucket, &write.key, write.entry.as_ref(), &write.blob_refs)?
            }
            WalBody::Epoch { .. } => WriteBatch::default(),
        };
        wb.put_cf(self.cf(META)?, META_WAL, at.encode());
        self.db.write_opt(wb, &WriteOptions::default()).map_err(engine)
    }
}
