//! Deletions and the reads that plan them: the zones of the store log, the forward buffer's dedupe
//! window (`fwd_age`) and the sizes of log entries, which the journal checks before deleting so
//! nothing is deleted or counted twice; and locating damaged log entries one by one, after a read
//! of many failed.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{
    be_u64, corrupt, decode_idem, engine, idem_key, route_key, RocksStorage, FWD_AGE, FWD_IDEM, FWD_LOG, STORE_AGE,
    STORE_IDEM, STORE_LOG, STORE_ROUTE,
};
use crate::storage::{Batch, DeleteReason, Index, Log, StorageError, WindowEntry};

/// `fwd_age` value: received_at ‖ from_zone ‖ `0x00` ‖ message_id.
pub(super) fn age_value(received_at_unix_ms: u64, from_zone: &str, message_id: &str) -> Vec<u8> {
    age_value_parts(&received_at_unix_ms.to_be_bytes(), from_zone, message_id).concat()
}

pub(super) fn age_value_parts<'a>(received_at: &'a [u8; 8], from_zone: &'a str, message_id: &'a str) -> [&'a [u8]; 4] {
    [received_at, from_zone.as_bytes(), &[0], message_id.as_bytes()]
}

fn decode_window(key: &[u8], value: &[u8]) -> Result<WindowEntry, StorageError> {
    let offset = be_u64(key, "window key", key)?;
    let received_at = be_u64(value.get(..8).unwrap_or_default(), "window entry", key)?;
    let rest = &value[8..];
    let split = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| corrupt("window entry", key, "no zone separator"))?;
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|e| corrupt("window entry", key, e));
    Ok(WindowEntry {
        offset,
        received_at_unix_ms: received_at,
        from_zone: text(&rest[..split])?,
        message_id: text(&rest[split + 1..])?,
    })
}

impl RocksStorage {
    pub(super) fn put_deletes(&self, wb: &mut WriteBatch, batch: &Batch) -> Result<(), StorageError> {
        let (log, route, idem) = (self.cf(STORE_LOG)?, self.cf(STORE_ROUTE)?, self.cf(STORE_IDEM)?);
        let age = self.cf(STORE_AGE)?;
        let now = bsfg_proto::model::now_unix_ms();
        for delete in &batch.store_deletes {
            let origin = delete.origin.as_deref().unwrap_or_default();
            let key = idem_key(Index::Store, origin, &delete.message_id);
            let offset = delete.offset.to_be_bytes();
            if delete.reason != DeleteReason::Forgotten {
                wb.delete_cf(log, offset);
                wb.delete_cf(route, route_key(&delete.peer, delete.offset));
            }
            match delete.reason {
                // Its id stays known for the retention from now (an HA replica's clock gives a
                // window as long or longer: the promise is "at least the retention").
                DeleteReason::Reclaimed => wb.put_cf(age, offset, age_value(now, origin, &delete.message_id)),
                DeleteReason::Forgotten => {
                    wb.delete_cf(age, offset);
                    // Unless the id was stored again since (after a drop), under a new offset.
                    let owner = self.db.get_cf(idem, &key).map_err(engine)?;
                    if owner.is_some_and(|v| decode_idem(&v, &key).is_ok_and(|r| r.offset == delete.offset)) {
                        wb.delete_cf(idem, key);
                    }
                }
                DeleteReason::Confirmed | DeleteReason::Dropped | DeleteReason::Expired => wb.delete_cf(idem, key),
            }
        }
        let (log, idem, age) = (self.cf(FWD_LOG)?, self.cf(FWD_IDEM)?, self.cf(FWD_AGE)?);
        for delete in &batch.forward_deletes {
            if delete.log {
                wb.delete_cf(log, delete.offset.to_be_bytes());
            }
            if delete.window {
                wb.delete_cf(age, delete.offset.to_be_bytes());
                wb.delete_cf(idem, idem_key(Index::Forward, &delete.from_zone, &delete.message_id));
            }
        }
        Ok(())
    }

    /// Distinct zones of `store_route`, one seek per zone.
    pub(super) fn route_zones(&self) -> Result<Vec<String>, StorageError> {
        let cf = self.cf(STORE_ROUTE)?;
        let mut zones = Vec::new();
        let mut from = Vec::new();
        loop {
            let Some(entry) = self
                .db
                .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
                .next()
            else {
                return Ok(zones);
            };
            let (key, _) = entry.map_err(engine)?;
            let zone = match key.len().checked_sub(9) {
                Some(len) if key[len] == 0 => &key[..len],
                Some(_) => return Err(corrupt("route key", &key, "no 0x00 between zone and offset")),
                None => return Err(corrupt("route key", &key, "shorter than an offset")),
            };
            // Every key of this zone starts with zone ‖ 0x00; zone ‖ 0x01 is past all of them.
            from = [zone, &[1]].concat();
            zones.push(String::from_utf8(zone.to_vec()).map_err(|e| corrupt("route key", &key, e))?);
        }
    }

    pub(super) fn window(&self, log: Log, after: u64, limit: usize) -> Result<Vec<WindowEntry>, StorageError> {
        let start = after.saturating_add(1).to_be_bytes();
        let family = match log {
            Log::Store => STORE_AGE,
            Log::Forward => FWD_AGE,
        };
        self.db
            .iterator_cf(self.cf(family)?, IteratorMode::From(&start, Direction::Forward))
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(engine)?;
                decode_window(&key, &value)
            })
            .collect()
    }

    /// The offsets among a failed read's entries whose log entry cannot be read: the store's are
    /// listed from the per-peer index, the forward buffer's are its offsets (gaps read as absent).
    pub(super) fn damage(
        &self,
        log: Log,
        peer: Option<&str>,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let offsets: Vec<u64> = match (log, peer) {
            (Log::Store, Some(peer)) => self.route_offsets(&self.db.snapshot(), peer, after, upto, limit)?,
            _ => (after.saturating_add(1)..=upto).take(limit).collect(),
        };
        let cf = self.cf(match log {
            Log::Store => STORE_LOG,
            Log::Forward => FWD_LOG,
        })?;
        let mut damaged = Vec::new();
        for offset in offsets {
            if let Err(error) = self.db.get_pinned_cf(cf, offset.to_be_bytes()) {
                if engine(error).is_damage() {
                    damaged.push(offset);
                }
            }
        }
        Ok(damaged)
    }

    pub(super) fn sizes(&self, log: Log, offsets: &[u64]) -> Result<Vec<Option<u64>>, StorageError> {
        let cf = self.cf(match log {
            Log::Store => STORE_LOG,
            Log::Forward => FWD_LOG,
        })?;
        let keys: Vec<[u8; 8]> = offsets.iter().map(|o| o.to_be_bytes()).collect();
        self.db
            .batched_multi_get_cf(cf, &keys, false)
            .into_iter()
            .map(|value| Ok(value.map_err(engine)?.map(|v| v.len() as u64)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_key_without_its_separator_is_damage_not_an_endless_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = RocksStorage::open(&dir.path().join("db"), "enterprise").expect("open");
        let cf = storage.cf(STORE_ROUTE).expect("family");
        storage.db.put_cf(cf, route_key("plant-a", 7), []).expect("put");
        assert_eq!(storage.route_zones().expect("zones"), ["plant-a"]);
        // zone ‖ 0x05 ‖ offset: a seek past `plant-b ‖ 0x01` would land on it again and again.
        storage
            .db
            .put_cf(cf, [b"plant-b\x05".as_slice(), &[0; 8]].concat(), [])
            .expect("put");
        // On a thread, so that a scan that never ends fails the test rather than hanging it.
        let storage = std::sync::Arc::new(storage);
        let (tx, rx) = std::sync::mpsc::channel();
        let scanning = storage.clone();
        std::thread::spawn(move || tx.send(scanning.route_zones().map_err(|e| e.to_string())));
        let scanned = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the scan ends");
        let error = scanned.expect_err("damaged key");
        assert!(error.contains("no 0x00 between zone and offset"), "{error}");
    }
}
