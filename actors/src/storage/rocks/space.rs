//! Disk space, RocksDB's way: how much the data directory's file system has left, what RocksDB
//! will still write there by itself, and giving back the space of deleted entries.
//!
//! RocksDB writes without being asked: memtables become table files when they fill or the
//! write-ahead log has grown past its bound, and the log grows by preallocated chunks of
//! [`WAL_CHUNK_BYTES`]. A full disk at one of those moments stops every write, confirms
//! included, until RocksDB finds enough room again, so those bytes are counted as pending and
//! kept free (see `backpressure`). Deleted entries only leave the disk once their memtables are
//! flushed (which also retires the write-ahead log that held them) and compaction has dropped
//! their table entries.

use rocksdb::FlushOptions;

use super::{engine, RocksStorage, FAMILIES, FWD_LOG, STORE_LOG, WRITE_BUFFER_BYTES};
use crate::storage::{DiskSpace, StorageError};

/// RocksDB preallocates the write-ahead log in chunks of 1.1 × the largest write buffer.
pub(super) const WAL_CHUNK_BYTES: u64 = WRITE_BUFFER_BYTES as u64 * 11 / 10;

impl RocksStorage {
    pub(super) fn space(&self) -> Result<DiskSpace, StorageError> {
        let stat = rustix::fs::statvfs(&self.path)
            .map_err(|e| StorageError::Engine(format!("cannot read the free space of {}: {e}", self.path.display())))?;
        let mut memtables = 0;
        for name in FAMILIES {
            let bytes = self
                .db
                .property_int_value_cf(self.cf(name)?, "rocksdb.cur-size-all-mem-tables")
                .map_err(engine)?;
            memtables += bytes.unwrap_or(0);
        }
        Ok(DiskSpace {
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            memtable_bytes: memtables,
            log_chunk_bytes: WAL_CHUNK_BYTES,
        })
    }

    pub(super) fn give_back(&self, store_below: u64, forward_below: u64) -> Result<(), StorageError> {
        let families = FAMILIES
            .iter()
            .map(|name| self.cf(name))
            .collect::<Result<Vec<_>, _>>()?;
        let mut wait = FlushOptions::default();
        wait.set_wait(true);
        self.db.flush_cfs_opt(&families, &wait).map_err(engine)?;
        for (log, below) in [(STORE_LOG, store_below), (FWD_LOG, forward_below)] {
            self.db
                .compact_range_cf(self.cf(log)?, None::<&[u8]>, Some(below.to_be_bytes()));
        }
        Ok(())
    }
}
