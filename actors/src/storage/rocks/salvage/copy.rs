//! The copy of `accept-loss`: everything readable of the damaged database into the fresh one,
//! log entries stepped over one by one where their table block is damaged, the index entries of
//! lost facts left out, then the write batches logged after a damaged log's damage, and the
//! copy's own metadata.

use std::{collections::HashSet, path::Path};

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{head_offset, salvage_io};
use crate::storage::{
    rocks::{
        self, be_u64, engine, wal, RocksStorage, CURSORS, FAMILIES, FWD_AGE, FWD_IDEM, FWD_LOG, META,
        META_FORWARD_HIGH, META_LOSSES, META_STORE_HIGH, META_USAGE, OBJECTS, STORE_AGE, STORE_IDEM, STORE_LOG,
        STORE_ROUTE,
    },
    CursorKey, LossRecord, Offsets, Storage, StorageError, Usage,
};

/// Entries per write batch of the copy.
const COPY_BATCH: usize = 4096;

/// The copy into `salvage.new/`.
pub(super) struct Copy<'a> {
    source: &'a RocksStorage,
    pub(super) dest: RocksStorage,
}

impl<'a> Copy<'a> {
    pub(super) fn new(source: &'a RocksStorage, dest: RocksStorage) -> Self {
        Self { source, dest }
    }

    /// Copies both logs (skipping damaged entries into `lost`), then every other family (without
    /// the index entries of lost facts).
    pub(super) fn run(&self, lost: &mut Offsets, progress: &mut dyn FnMut(&str)) -> Result<(), StorageError> {
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
        self.copy_family(STORE_AGE, |key, _| store.contains(&head_offset(key)))?;
        for family in [CURSORS, OBJECTS, META] {
            self.copy_family(family, |_, _| false)?;
        }
        Ok(())
    }

    /// Applies the whole write batches logged after the damage of the write-ahead log of
    /// `path`, in order (applying one twice changes nothing: puts and deletions of fixed keys).
    pub(super) fn replay(&self, path: &Path) -> Result<(), StorageError> {
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
        if self.source.db.cf_handle(family).is_none() {
            // A family added since the source was written: nothing to copy.
            return Ok(());
        }
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
    pub(super) fn finish(self, source: &RocksStorage, record: &LossRecord, kept: Usage) -> Result<(), StorageError> {
        let highs = self.dest.recover()?;
        // Offsets are never reused, not even those of facts lost with the damaged records whose
        // confirmation survived: a cursor is never above its log's highest offset.
        let cursors = |peer: bool| {
            let of_kind = highs
                .cursors
                .iter()
                .filter(|(key, _)| matches!(key, CursorKey::Peer(_)) == peer);
            of_kind.map(|(_, cursor)| *cursor).max().unwrap_or(0)
        };
        let store_high = highs.store_high.max(cursors(true));
        let forward_high = highs.forward_high.max(cursors(false));
        let mut losses = source.losses()?;
        losses.push(record.clone());
        let meta = self.dest.cf(META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, META_USAGE, rocks::encode_usage(&kept));
        batch.put_cf(meta, META_STORE_HIGH, store_high.to_be_bytes());
        batch.put_cf(meta, META_FORWARD_HIGH, forward_high.to_be_bytes());
        batch.put_cf(meta, META_LOSSES, super::encode_losses(&losses)?);
        self.dest.db.write_opt(batch, &rocks::synced()).map_err(engine)?;
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
