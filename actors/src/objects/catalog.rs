//! The blocking core of the artifact store: decides what a completed upload does to the index
//! (store, no-op, replace or refuse), marks objects referenced, and keeps the usage gauges and
//! the space held against the capacity. Runs on blocking threads only.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use bsfg_proto::{model::now_unix_ms, ArtifactRef, ObjectDigest, ObjectMeta};
use prometheus::{IntGauge, IntGaugeVec};
use tokio::sync::mpsc;

use super::{
    blobs::{Blobs, TempBlob},
    holds::Holds,
    remote::RemoteBlobs,
    resume::{Kept, Upload},
    space::Space,
    ObjectError, Origin, PutSpec,
};
use crate::storage::{ObjectEntry, ObjectIndex, StorageError};

/// A body pulled from `peer`, continuing `offset` bytes received before its transfer broke off
/// (0: from the first byte).
pub(super) struct Pull {
    pub(super) peer: String,
    pub(super) offset: u64,
}

/// The gauges the store keeps current.
#[derive(Clone)]
pub struct ObjectGauges {
    /// `bsfg_object_store_usage_bytes{bucket}`: bytes named per bucket.
    pub usage: IntGaugeVec,
    /// `bsfg_object_store_blob_bytes`: bytes of distinct content, what counts against capacity.
    pub blob_bytes: IntGauge,
}

/// Stripes of [`Catalog`]'s deletion count: a deletion of other content makes an upload repeat
/// under the lock only when their digests share a stripe.
const DELETION_STRIPES: usize = 64;

pub(super) struct Catalog {
    pub(super) blobs: Blobs,
    pub(super) index: Arc<dyn ObjectIndex>,
    /// Serialises every index read-modify-write with the blob installs and removals it implies,
    /// so a blob is never removed while another key is being pointed at it.
    lock: Mutex<()>,
    pub(super) usage: IntGaugeVec,
    pub(super) space: Arc<Space>,
    pub(super) holds: Arc<Holds>,
    /// Pulls from peers that broke off, to be resumed (see `resume`).
    pub(super) kept: Kept,
    /// Unreferenced objects stored longer ago than this are swept.
    pub(super) retention: Duration,
    /// An HA zone's second tier (see `remote`).
    remote: Option<Arc<dyn RemoteBlobs>>,
    /// Deletions from the second tier so far, in stripes by digest (counted under the lock,
    /// once each delete has returned): an upload made before the lock was taken still stands if
    /// its stripe saw no deletion since the upload began.
    remote_deletions: [AtomicU64; DELETION_STRIPES],
}

impl Catalog {
    pub(super) fn open(
        data_dir: &Path,
        index: Arc<dyn ObjectIndex>,
        gauges: ObjectGauges,
        capacity: u64,
        retention: Duration,
        remote: Option<Arc<dyn RemoteBlobs>>,
    ) -> Result<Self, ObjectError> {
        let blobs = Blobs::open(data_dir)?;
        for (bucket, bytes) in index.usage_by_bucket()? {
            gauges.usage.with_label_values(&[&bucket]).set(gauge_value(bytes));
        }
        let used = recount(index.as_ref())?;
        Ok(Self {
            blobs,
            index,
            lock: Mutex::new(()),
            usage: gauges.usage,
            space: Space::new(capacity, used, gauges.blob_bytes),
            holds: Arc::default(),
            kept: Kept::default(),
            retention,
            remote,
            remote_deletions: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    /// Taken around every change of the index and the blob files.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub(super) fn lookup(&self, bucket: &str, key: &str) -> Result<Option<ObjectEntry>, ObjectError> {
        Ok(self.index.object(bucket, key)?)
    }

    /// Writes the chunks of one upload to a temporary blob, then commits it. Exactly
    /// `spec.size` bytes must arrive before the channel closes, in all: a pull that resumes at
    /// `offset` continues the transfer kept for its peer, and a pulled body that ends short is
    /// kept for the next attempt.
    pub(super) fn receive(
        &self,
        spec: &PutSpec,
        pull: Option<&Pull>,
        mut chunks: mpsc::Receiver<Vec<u8>>,
    ) -> Result<ObjectMeta, ObjectError> {
        let mut upload = match (pull, spec.origin) {
            (Some(pull), Origin::Peer { digest }) if pull.offset > 0 => self
                .kept
                .take(&pull.peer, &digest, pull.offset)
                .ok_or(ObjectError::ResumeLost { offset: pull.offset })?,
            _ => self.begin(spec)?,
        };
        while let Some(chunk) = chunks.blocking_recv() {
            if upload.temp.written() + chunk.len() as u64 > spec.size {
                return Err(ObjectError::Oversized { size: spec.size });
            }
            upload.temp.write(&chunk)?;
        }
        let got = upload.temp.written();
        if got != spec.size {
            if let (Some(pull), Origin::Peer { digest }) = (pull, spec.origin) {
                self.kept.keep(&pull.peer, digest, upload);
            }
            return Err(ObjectError::Truncated {
                expected: spec.size,
                got,
            });
        }
        let Upload { mut temp, room } = upload;
        let digest = temp.seal()?;
        if let Origin::Peer { digest: expected } = spec.origin {
            if digest != expected {
                return Err(ObjectError::DigestMismatch {
                    expected,
                    actual: digest,
                });
            }
        }
        let committed = self.commit(spec, temp, digest);
        // Held until the blob is installed (or refused): then it counts as used, or not at all.
        drop(room);
        committed
    }

    /// A new upload of `spec`, with its room in the store.
    fn begin(&self, spec: &PutSpec) -> Result<Upload, ObjectError> {
        if let Some(stored) = self.lookup(&spec.bucket, &spec.key)? {
            // Cheap early refusal: a referenced object of another size cannot be this content.
            if stored.referenced && stored.size != spec.size {
                return Err(immutable(spec, &stored));
            }
        }
        let room = self.space.reserve(spec.size)?;
        let temp = self.blobs.create_temp()?;
        Ok(Upload { temp, room })
    }

    /// Points `(bucket, key)` at the sealed blob: identical content is a no-op (except that its
    /// retention starts again, so an artifact put again is not swept before its fact arrives),
    /// other content replaces an unreferenced object and is refused for a referenced one.
    ///
    /// In an HA zone, content new to the zone is uploaded to the second tier before the lock is
    /// taken: an upload of a large blob to the engine must not hold up every other put, every
    /// reference an append checks, and the sweep.
    fn commit(&self, spec: &PutSpec, temp: TempBlob, digest: ObjectDigest) -> Result<ObjectMeta, ObjectError> {
        let uploaded = self.upload_ahead(&temp, &digest)?;
        let _guard = self.lock();
        let committed = self.commit_locked(spec, temp, digest, uploaded);
        let unnamed = || self.index.blob_refs(&digest).is_ok_and(|n| n == 0);
        if let (Err(refused), Some(_)) = (&committed, uploaded) {
            if certainly_unwritten(refused) && unnamed() {
                // Refused after all (a referenced key, a write the log refused): no key names the
                // copy. A copy that cannot be deleted now is only space in the engine; the
                // refusal is what the producer needs to hear.
                let _ = self.remove_remote(&digest);
            }
        }
        committed
    }

    /// Uploads content the zone holds under no key yet; returns the count of deletions from the
    /// second tier when the upload began, `None` when nothing was uploaded.
    fn upload_ahead(&self, temp: &TempBlob, digest: &ObjectDigest) -> Result<Option<u64>, ObjectError> {
        let (Some(remote), Some(path)) = (&self.remote, temp.path()) else {
            return Ok(None);
        };
        if self.index.blob_refs(digest)? > 0 {
            return Ok(None);
        }
        let deletions = self.deletions_of(digest).load(Ordering::Acquire);
        remote.upload(digest, path)?;
        Ok(Some(deletions))
    }

    fn commit_locked(
        &self,
        spec: &PutSpec,
        temp: TempBlob,
        digest: ObjectDigest,
        uploaded: Option<u64>,
    ) -> Result<ObjectMeta, ObjectError> {
        let pulled = matches!(spec.origin, Origin::Peer { .. });
        let previous = self.lookup(&spec.bucket, &spec.key)?;
        match &previous {
            Some(stored) if stored.digest == digest => {
                // The verified bytes replace the blob, which may be damaged or gone since.
                self.blobs.install(temp, &digest)?;
                let mut renewed = stored.clone();
                renewed.referenced |= pulled;
                renewed.stored_at_unix_ms = now_unix_ms();
                self.index.write_object(&spec.bucket, &spec.key, &renewed, &[])?;
                return Ok(meta(&spec.bucket, &spec.key, stored));
            }
            Some(stored) if stored.referenced => return Err(immutable(spec, stored)),
            _ => {}
        }
        self.blobs.install(temp, &digest)?;
        let entry = ObjectEntry {
            digest,
            size: spec.size,
            media_type: spec.media_type.clone(),
            referenced: pulled,
            referenced_by: BTreeSet::new(),
            stored_at_unix_ms: now_unix_ms(),
        };
        let mut refs = vec![(digest, self.index.blob_refs(&digest)? + 1)];
        if let Some(old) = &previous {
            refs.push((old.digest, self.index.blob_refs(&old.digest)?.saturating_sub(1)));
        }
        let still_uploaded = uploaded.is_some_and(|at| at == self.deletions_of(&digest).load(Ordering::Acquire));
        if let (Some(remote), 1, false) = (&self.remote, refs[0].1, still_uploaded) {
            // New content for the zone: in the second tier before any entry names it. Uploaded
            // already, unless the zone held it then (under another key) and has let it go since.
            remote.upload(&digest, &self.blobs.path(&digest))?;
        }
        self.index.write_object(&spec.bucket, &spec.key, &entry, &refs)?;
        if refs[0].1 == 1 {
            self.space.add(spec.size);
        }
        if let (Some((old, 0)), Some(old_entry)) = (refs.get(1), &previous) {
            self.space.remove(old_entry.size);
            // After the commit: a crash before this line leaves an orphan file (the sweep removes
            // it), never a dangling key.
            self.remove_blob(old)?;
        }
        let freed = previous.map_or(0, |old| old.size);
        self.usage
            .with_label_values(&[&spec.bucket])
            .add(gauge_value(spec.size) - gauge_value(freed));
        Ok(meta(&spec.bucket, &spec.key, &entry))
    }

    /// Deletes the blob of `digest`, which no key names any more, from both tiers.
    pub(super) fn remove_blob(&self, digest: &ObjectDigest) -> Result<(), ObjectError> {
        self.blobs.remove(digest)?;
        self.remove_remote(digest)
    }

    /// The second tier, in an HA zone.
    pub(super) fn remote(&self) -> Option<&Arc<dyn RemoteBlobs>> {
        self.remote.as_ref()
    }

    /// Deletes `digest` from the second tier; called under the lock.
    pub(super) fn remove_remote(&self, digest: &ObjectDigest) -> Result<(), ObjectError> {
        if let Some(remote) = &self.remote {
            let deleted = remote.delete(digest);
            // After the delete (failed or not): an upload that began before it ended is redone.
            self.deletions_of(digest).fetch_add(1, Ordering::AcqRel);
            deleted?;
        }
        Ok(())
    }

    fn deletions_of(&self, digest: &ObjectDigest) -> &AtomicU64 {
        &self.remote_deletions[usize::from(digest.0[0]) % DELETION_STRIPES]
    }

    /// Makes sure this instance holds the blob of `digest` in its files, fetching it from the
    /// zone's second tier when it does not (it was a standby when the blob was put). The download
    /// runs outside the lock; it is placed only if a key still names it.
    pub(super) fn ensure_local(&self, digest: &ObjectDigest) -> Result<(), ObjectError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        if self.blobs.path(digest).exists() {
            return Ok(());
        }
        let Some(fetched) = self.blobs.fetch(digest, |path| remote.download(digest, path))? else {
            return Ok(());
        };
        let _guard = self.lock();
        if self.index.blob_refs(digest)? > 0 {
            self.blobs.install_fetched(fetched, digest)?;
        }
        Ok(())
    }

    /// Checks that `reference` names a stored object with its digest and size, and marks that
    /// object referenced (by `zone` too, when given) so it never changes again.
    pub(super) fn reference(&self, reference: &ArtifactRef, zone: Option<&str>) -> Result<(), ObjectError> {
        let _guard = self.lock();
        let (bucket, key) = (&reference.bucket, &reference.key);
        let location = format!("artifact {bucket}/{key}");
        let stored = self.lookup(bucket, key)?.ok_or_else(|| {
            ObjectError::BadReference(format!(
                "{location} is not stored on this node; PutObject it before appending a fact that references it"
            ))
        })?;
        if stored.digest != reference.digest {
            return Err(ObjectError::BadReference(format!(
                "{location} is stored with digest {}, but object_json references digest {}",
                stored.digest, reference.digest
            )));
        }
        if stored.size != reference.size {
            return Err(ObjectError::BadReference(format!(
                "{location} is {} bytes, but object_json says {} bytes",
                stored.size, reference.size
            )));
        }
        let known = stored.referenced && zone.is_none_or(|z| stored.referenced_by.contains(z));
        if !known {
            self.mark(bucket, key, stored, zone)?;
        }
        Ok(())
    }

    fn mark(&self, bucket: &str, key: &str, mut entry: ObjectEntry, zone: Option<&str>) -> Result<(), ObjectError> {
        entry.referenced = true;
        entry.referenced_by.extend(zone.map(str::to_owned));
        Ok(self.index.write_object(bucket, key, &entry, &[])?)
    }
}

/// Whether a failed commit certainly wrote no index entry. A write whose outcome is unknown (an
/// HA instance that stepped down mid-append) may be in the zone's log, naming the blob the
/// next active instance must serve: its copy in the second tier stays.
fn certainly_unwritten(error: &ObjectError) -> bool {
    match error {
        ObjectError::Storage(e) => matches!(
            e,
            StorageError::EngineUnavailable(_) | StorageError::Standby(_) | StorageError::Fenced(_)
        ),
        ObjectError::Immutable { .. } => true,
        _ => false,
    }
}

pub(super) fn meta(bucket: &str, key: &str, entry: &ObjectEntry) -> ObjectMeta {
    ObjectMeta {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        digest: entry.digest,
        size: entry.size,
        media_type: entry.media_type.clone(),
    }
}

fn immutable(spec: &PutSpec, stored: &ObjectEntry) -> ObjectError {
    ObjectError::Immutable {
        bucket: spec.bucket.clone(),
        key: spec.key.clone(),
        digest: stored.digest,
    }
}

/// Bytes of the distinct blobs the index names (content shared by keys counts once).
pub(super) fn recount(index: &dyn ObjectIndex) -> Result<u64, StorageError> {
    let mut sizes = HashMap::new();
    index.visit_objects(&mut |_, _, entry| {
        sizes.insert(entry.digest, entry.size);
    })?;
    Ok(sizes.values().sum())
}

pub(super) fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
