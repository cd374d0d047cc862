//! The object index in the `objects` column family (format in `storage::object_index`).

use std::collections::BTreeMap;

use bsfg_proto::ObjectDigest;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{be_u64, corrupt, engine, synced, RocksStorage, OBJECTS};
use crate::storage::{ObjectEntry, ObjectIndex, StorageError};

const ENTRY_FORMAT: u8 = 1;
const ENTRY_PREFIX: u8 = b'o';
const BLOB_PREFIX: u8 = b'b';

impl ObjectIndex for RocksStorage {
    fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectEntry>, StorageError> {
        let id = entry_key(bucket, key);
        let value = self.db.get_cf(self.cf(OBJECTS)?, &id).map_err(engine)?;
        value.map(|v| decode_entry(&id, &v)).transpose()
    }

    fn blob_refs(&self, digest: &ObjectDigest) -> Result<u64, StorageError> {
        let id = blob_key(digest);
        match self.db.get_cf(self.cf(OBJECTS)?, &id).map_err(engine)? {
            Some(count) => be_u64(&count, "blob count", &id),
            None => Ok(0),
        }
    }

    fn write_object(
        &self,
        bucket: &str,
        key: &str,
        entry: &ObjectEntry,
        blob_refs: &[(ObjectDigest, u64)],
    ) -> Result<(), StorageError> {
        let wb = self.object_batch(bucket, key, Some(entry), blob_refs)?;
        self.db.write_opt(wb, &synced()).map_err(engine)
    }

    fn remove_object(&self, bucket: &str, key: &str, blob_refs: &[(ObjectDigest, u64)]) -> Result<(), StorageError> {
        let wb = self.object_batch(bucket, key, None, blob_refs)?;
        self.db.write_opt(wb, &synced()).map_err(engine)
    }

    fn usage_by_bucket(&self) -> Result<BTreeMap<String, u64>, StorageError> {
        let mut usage = BTreeMap::new();
        self.visit_objects(&mut |bucket, _, entry| {
            *usage.entry(bucket.to_owned()).or_default() += entry.size;
        })?;
        Ok(usage)
    }

    fn visit_objects(&self, visit: &mut dyn FnMut(&str, &str, ObjectEntry)) -> Result<(), StorageError> {
        let start = [ENTRY_PREFIX];
        let entries = self
            .db
            .iterator_cf(self.cf(OBJECTS)?, IteratorMode::From(&start, Direction::Forward));
        for item in entries {
            let (id, value) = item.map_err(engine)?;
            if id.first() != Some(&ENTRY_PREFIX) {
                break;
            }
            let mut parts = id[1..].splitn(2, |b| *b == 0);
            let (bucket, key) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            let bucket = std::str::from_utf8(bucket).map_err(|e| corrupt("object key", &id, e))?;
            let key = std::str::from_utf8(key).map_err(|e| corrupt("object key", &id, e))?;
            visit(bucket, key, decode_entry(&id, &value)?);
        }
        Ok(())
    }
}

fn put_blob_refs(wb: &mut WriteBatch, cf: &rocksdb::ColumnFamily, blob_refs: &[(ObjectDigest, u64)]) {
    for (digest, count) in blob_refs {
        match count {
            0 => wb.delete_cf(cf, blob_key(digest)),
            n => wb.put_cf(cf, blob_key(digest), n.to_be_bytes()),
        }
    }
}

impl RocksStorage {
    /// The writes of [`ObjectIndex::write_object`] (`entry` given) or
    /// [`ObjectIndex::remove_object`] (`None`), as one write batch (not yet written).
    pub(super) fn object_batch(
        &self,
        bucket: &str,
        key: &str,
        entry: Option<&ObjectEntry>,
        blob_refs: &[(ObjectDigest, u64)],
    ) -> Result<WriteBatch, StorageError> {
        let cf = self.cf(OBJECTS)?;
        let mut wb = WriteBatch::default();
        match entry {
            Some(entry) => {
                let encoded =
                    bsfg_proto::codec::encode_value(entry).map_err(|e| StorageError::Engine(e.to_string()))?;
                wb.put_cf(cf, entry_key(bucket, key), [&[ENTRY_FORMAT][..], &encoded].concat());
            }
            None => wb.delete_cf(cf, entry_key(bucket, key)),
        }
        put_blob_refs(&mut wb, cf, blob_refs);
        Ok(wb)
    }
}

fn entry_key(bucket: &str, key: &str) -> Vec<u8> {
    [&[ENTRY_PREFIX], bucket.as_bytes(), &[0], key.as_bytes()].concat()
}

fn blob_key(digest: &ObjectDigest) -> Vec<u8> {
    [&[BLOB_PREFIX][..], &digest.0].concat()
}

fn decode_entry(id: &[u8], value: &[u8]) -> Result<ObjectEntry, StorageError> {
    match value.split_first() {
        Some((&ENTRY_FORMAT, body)) => bsfg_proto::codec::decode_body(body).map_err(|e| corrupt("object entry", id, e)),
        _ => Err(corrupt("object entry", id, "unknown format")),
    }
}
