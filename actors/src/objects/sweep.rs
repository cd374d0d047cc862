//! The artifact sweep (SPEC §7): an artifact is deleted once no retained fact references it and
//! `[objects] retention` has passed since it was stored (or put again). Blob files that no key
//! names any more (a crash between an index commit and a file removal) are deleted too.
//!
//! A sweep, on a blocking thread:
//! 1. begins a generation of [`Holds`](super::holds::Holds), so references being made now are
//!    seen later;
//! 2. lists the candidates: entries stored before `now - retention`;
//! 3. only when a candidate was ever referenced by a fact, scans both logs for the artifacts their
//!    retained facts reference — in the store log only the facts their peer has not confirmed
//!    (every stored message is decoded, so this is the sweep's cost, paid at most once per sweep
//!    and only while such candidates exist);
//! 4. deletes each candidate that no retained fact references, under the catalog's lock, if it is
//!    neither held nor released since step 1 and its entry is still the one listed (it may have
//!    been replaced or put again meanwhile).

use std::{collections::HashSet, sync::Arc, time::Duration};

use bsfg_proto::ObjectDigest;

use super::{
    catalog::{gauge_value, Catalog},
    ObjectError, ObjectStore,
};
use crate::{
    clock::RetentionClock,
    events::{ArtifactExpired, ArtifactSweepDone, ArtifactSweepFailed, Telemetry},
    standing::StandingRx,
    storage::{CursorKey, LogRecord, ObjectEntry, Storage, StorageError},
};

/// Log entries read per page while looking for references.
const SCAN_PAGE: usize = 512;

/// An artifact the sweep deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub bucket: String,
    pub key: String,
    pub digest: ObjectDigest,
    pub size: u64,
    /// Time since it was stored.
    pub age: Duration,
    /// Whether a fact had referenced it (all such facts are gone now).
    pub was_referenced: bool,
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    pub expired: Vec<Expired>,
    /// Blob files no key named.
    pub orphans: usize,
    /// Whether the logs had to be scanned for references.
    pub scanned: bool,
}

/// Sweeps every `interval`, logging and counting what each sweep deleted, until aborted. Ages
/// are read with a [`RetentionClock`]: a wall clock stepped forward, or set ahead while the node
/// was stopped (it last stored a fact at `last_stored`), makes no artifact look older than it is
/// (backpressure's sweeps and the start log it). Only while `standing` is active: an HA zone's
/// standby changes its index only as the zone's log says, and the active instance's sweeps do.
pub async fn run_sweeps(
    store: ObjectStore,
    logs: Arc<dyn Storage>,
    standing: StandingRx,
    interval: Duration,
    telemetry: Telemetry,
    last_stored: Option<u64>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = RetentionClock::new(store.retention(), last_stored);
    loop {
        ticks.tick().await;
        if !standing.borrow().is_active() {
            continue;
        }
        match store.sweep(logs.clone(), clock.read().now_ms).await {
            Ok(swept) => report(&swept, &telemetry),
            Err(e) => telemetry.emit(ArtifactSweepFailed { reason: &e }),
        }
    }
}

fn report(swept: &Swept, telemetry: &Telemetry) {
    for e in &swept.expired {
        telemetry.emit(ArtifactExpired {
            bucket: &e.bucket,
            key: &e.key,
            digest: &e.digest,
            size: e.size,
            age: e.age,
            was_referenced: e.was_referenced,
        });
    }
    telemetry.emit(ArtifactSweepDone {
        expired: swept.expired.len(),
        orphans: swept.orphans,
        scanned: swept.scanned,
    });
}

struct Candidate {
    bucket: String,
    key: String,
    entry: ObjectEntry,
}

impl Catalog {
    /// One sweep as of `now` (Unix ms, from the sweeper's [`RetentionClock`]).
    pub(super) fn sweep(&self, logs: &dyn Storage, now: u64) -> Result<Swept, ObjectError> {
        let generation = self.holds.begin_sweep();
        self.kept.expire(self.retention);
        let cutoff = now.saturating_sub(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX));
        let candidates = self.candidates(cutoff)?;
        let scanned = candidates.iter().any(|c| c.entry.referenced);
        let referenced = match scanned {
            true => references(logs)?,
            false => HashSet::new(),
        };
        let mut swept = Swept {
            scanned,
            ..Swept::default()
        };
        for candidate in candidates {
            if referenced.contains(&(candidate.bucket.clone(), candidate.key.clone())) {
                continue;
            }
            swept.expired.extend(self.expire(candidate, generation, now)?);
        }
        swept.orphans = self.remove_orphans()? + self.remove_remote_orphans()?;
        Ok(swept)
    }

    fn candidates(&self, cutoff: u64) -> Result<Vec<Candidate>, ObjectError> {
        let mut candidates = Vec::new();
        self.index.visit_objects(&mut |bucket, key, entry| {
            if entry.stored_at_unix_ms <= cutoff {
                candidates.push(Candidate {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    entry,
                });
            }
        })?;
        Ok(candidates)
    }

    /// Deletes one candidate unless something happened to it since it was listed.
    fn expire(&self, c: Candidate, generation: u64, now: u64) -> Result<Option<Expired>, ObjectError> {
        let _guard = self.lock();
        if !self.holds.may_delete(&c.bucket, &c.key, generation) {
            return Ok(None);
        }
        if self.index.object(&c.bucket, &c.key)?.as_ref() != Some(&c.entry) {
            return Ok(None);
        }
        let digest = c.entry.digest;
        let refs = self.index.blob_refs(&digest)?.saturating_sub(1);
        self.index.remove_object(&c.bucket, &c.key, &[(digest, refs)])?;
        let usage = self.usage.with_label_values(&[&c.bucket]);
        usage.sub(gauge_value(c.entry.size));
        if usage.get() <= 0 {
            // Bucket names come from producers: a bucket the sweep emptied leaves no series, so
            // the label's values do not pile up (SPEC §11). Empty objects left in it count 0
            // bytes either way.
            let _ = self.usage.remove_label_values(&[&c.bucket]);
        }
        if refs == 0 {
            self.space.remove(c.entry.size);
            self.remove_blob(&digest)?;
        }
        Ok(Some(Expired {
            age: Duration::from_millis(now.saturating_sub(c.entry.stored_at_unix_ms)),
            bucket: c.bucket,
            key: c.key,
            digest,
            size: c.entry.size,
            was_referenced: c.entry.referenced,
        }))
    }

    /// Deletes the second tier's copies that no key names. An upload whose commit has not taken
    /// the lock yet looks the same: its copy may go, and the commit then uploads it again, as
    /// after any delete of its content that overlapped the upload (`remote_deletions`).
    fn remove_remote_orphans(&self) -> Result<usize, ObjectError> {
        let Some(remote) = self.remote() else {
            return Ok(0);
        };
        let mut removed = 0;
        for digest in remote.list()? {
            if self.index.blob_refs(&digest)? > 0 {
                continue;
            }
            let _guard = self.lock();
            if self.index.blob_refs(&digest)? == 0 {
                self.remove_remote(&digest)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes blob files whose digest no key names; each is checked again under the lock, so an
    /// upload being committed is never taken for an orphan.
    fn remove_orphans(&self) -> Result<usize, ObjectError> {
        let mut removed = 0;
        for digest in self.blobs.list()? {
            if self.index.blob_refs(&digest)? > 0 {
                continue;
            }
            let _guard = self.lock();
            if self.index.blob_refs(&digest)? == 0 {
                self.blobs.remove(&digest)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Every `(bucket, key)` a retained fact references that may still need it: every fact of the
/// forward log (its consumers read the artifact here), and the facts of the store log that their
/// peer has not confirmed. A confirmed one is in the peer's store, its artifact pulled before it
/// was: the fact stays here for its dedupe window only, and its artifact need not.
fn references(logs: &dyn Storage) -> Result<HashSet<(String, String)>, StorageError> {
    let mut keys = HashSet::new();
    let frontiers = logs.recover()?.cursors;
    for zone in logs.store_zones()? {
        let confirmed = frontiers.get(&CursorKey::Peer(zone.clone())).copied().unwrap_or(0);
        let read = |after: u64| logs.read_store(&zone, after.max(confirmed), u64::MAX, SCAN_PAGE);
        scan(read, &mut keys)?;
    }
    scan(|after| logs.read_forward(after, u64::MAX, SCAN_PAGE), &mut keys)?;
    Ok(keys)
}

fn scan(
    read: impl Fn(u64) -> Result<Vec<LogRecord>, StorageError>,
    keys: &mut HashSet<(String, String)>,
) -> Result<(), StorageError> {
    let mut after = 0;
    loop {
        let page = read(after)?;
        for record in &page {
            // A reference that does not parse was never accepted: it holds nothing.
            if let Ok(Some(artifact)) = record.message()?.artifact() {
                keys.insert((artifact.bucket, artifact.key));
            }
        }
        match page.last() {
            Some(last) if page.len() == SCAN_PAGE => after = last.offset,
            _ => return Ok(()),
        }
    }
}
