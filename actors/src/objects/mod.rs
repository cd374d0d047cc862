//! The artifact store (SPEC §3 `PutObject` / `GetObject`): content-addressed blob files under
//! `data_dir/objects` (see `blobs`) and an index `(bucket, key)` → {digest, size, media type,
//! referenced, referenced_by} behind the [`ObjectIndex`] port (RocksDB column family `objects`).
//!
//! Rules:
//! - A body is read from any byte source (a QUIC stream, in the node) in chunks of at most
//!   [`CHUNK`] bytes that go over a short channel to a blocking writer that hashes and writes
//!   them, so memory per transfer stays bounded whatever the artifact's size. An upload is acknowledged only after its file and directory are `fsync`ed
//!   and the index entry is written with a synced batch.
//! - Re-putting identical content is a no-op. Other content under an unreferenced key replaces it;
//!   under a referenced key it is refused (`ALREADY_EXISTS`): referenced objects are immutable.
//! - An object becomes referenced when a fact referencing it is appended here (the fact's
//!   `to_zone` joins `referenced_by`, the zones allowed to `GetObject` it as peers) or when it was
//!   pulled from a peer for a fact addressed to us. Blobs are shared by every key naming the same
//!   content and deleted when the last key stops naming them.
//! - The store is bounded (`space`): distinct content plus uploads in progress never exceed
//!   `[objects] capacity_bytes`; an upload that would is refused up front (`RESOURCE_EXHAUSTED`),
//!   one larger than the whole capacity as one that can never fit (`INVALID_ARGUMENT`).
//!   Artifacts no retained fact references are deleted once `[objects] retention` has passed
//!   (`sweep`); a fact on its way into a buffer holds its artifact meanwhile (`holds`).
//! - Each body being received holds a blocking-pool thread (its writer) for as long as it lasts,
//!   however slowly it arrives: at most [`MAX_UPLOADS`] producers' uploads are received at once,
//!   and one more waits for a slot as long as it may wait for a byte, then is refused
//!   (`RESOURCE_EXHAUSTED`), so slow uploads cannot take the threads that serve fetches. Pulls
//!   from peers (one at a time per link) do not count against it.
//!
//! - In an HA zone every blob also lives in the engine's object store (`remote`), so the instance
//!   that takes over serves the artifacts its predecessor stored.
//!
//! All file and RocksDB work runs on tokio's blocking pool, never on an async worker or arbiter.

mod blobs;
#[cfg(test)]
mod bounds_tests;
mod catalog;
mod holds;
mod remote;
#[cfg(test)]
mod remote_tests;
mod resume;
mod space;
mod sweep;
#[cfg(test)]
mod tests;
mod verify;

use std::{path::Path, sync::Arc, time::Duration};

use bsfg_proto::{object, ArtifactError, ArtifactRef, ErrorCode, ObjectDigest, ObjectHasher, ObjectMeta, RpcError};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    sync::{mpsc, Semaphore},
};

use crate::storage::{ObjectEntry, ObjectIndex, Storage, StorageError};
pub use catalog::ObjectGauges;
use catalog::{Catalog, Pull};
pub use holds::Hold;
pub use remote::{EngineBlobs, RemoteBlobs};
pub use sweep::{run_sweeps, Swept};
pub use verify::{is_damaged, VerifiedBlob};

/// Largest chunk of a body handed to the blocking writer at once.
pub const CHUNK: usize = 64 << 10;
/// Chunks in flight between the network and the blocking writer of one upload.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{0}")]
    Name(#[from] ArtifactError),
    #[error("object of {size} bytes is over the limit of {limit} bytes (limits.max_object_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "object of {size} bytes can never fit in the artifact store ([objects] capacity_bytes = {capacity}); \
         raise capacity_bytes or keep artifacts smaller"
    )]
    OverCapacity { size: u64, capacity: u64 },
    #[error("object {bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error(
        "object {bucket}/{key} is referenced by a fact and holds other content ({digest}); referenced objects are immutable"
    )]
    Immutable {
        bucket: String,
        key: String,
        digest: ObjectDigest,
    },
    #[error("{0}")]
    BadReference(String),
    #[error("offset {offset} is beyond the end of the object ({size} bytes)")]
    BeyondEnd { offset: u64, size: u64 },
    #[error("the {offset} bytes received before the transfer broke off are no longer kept; it starts over")]
    ResumeLost { offset: u64 },
    #[error("body is longer than the announced {size} bytes")]
    Oversized { size: u64 },
    #[error("body ended after {got} of {expected} bytes")]
    Truncated { expected: u64, got: u64 },
    #[error("content has digest {actual}, expected {expected}")]
    DigestMismatch {
        expected: ObjectDigest,
        actual: ObjectDigest,
    },
    #[error("body transfer failed: no data within {0:?}")]
    Stalled(Duration),
    #[error(
        "{MAX_UPLOADS} uploads are being received, the most this node takes at once, and none ended within {0:?}; retry later"
    )]
    Busy(Duration),
    #[error("body transfer failed: {0}")]
    Body(std::io::Error),
    #[error("object store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The blob file of a stored object is gone or has another size: damaged behind the node's
    /// back. Waiting does not repair it; putting the original again does.
    #[error(
        "artifact {bucket}/{key}: its file {path} {reason}: the artifact store is damaged. Put the original \
         again (bsfg put-object, same bucket and key) or restore the file from a backup"
    )]
    Damaged {
        bucket: String,
        key: String,
        path: String,
        reason: String,
    },
    #[error("object index: {0}")]
    Storage(#[from] StorageError),
    #[error(
        "object store is full: {size} more bytes do not fit beside {used} stored and {reserved} being uploaded \
         ([objects] capacity_bytes = {capacity}); artifacts no fact references are deleted after [objects] retention"
    )]
    Full {
        size: u64,
        used: u64,
        reserved: u64,
        capacity: u64,
    },
}

impl From<ObjectError> for RpcError {
    fn from(error: ObjectError) -> Self {
        let code = match &error {
            ObjectError::NotFound { .. } => ErrorCode::NotFound,
            ObjectError::Immutable { .. } => ErrorCode::AlreadyExists,
            // A body whose bytes stopped coming: the caller's link, not its request, is at fault.
            ObjectError::Body(_) | ObjectError::Stalled(_) | ObjectError::Io(_) | ObjectError::Storage(_) => {
                ErrorCode::Unavailable
            }
            ObjectError::Full { .. } | ObjectError::Busy(_) => ErrorCode::ResourceExhausted,
            ObjectError::Damaged { .. } => ErrorCode::Internal,
            _ => ErrorCode::InvalidArgument,
        };
        RpcError::new(code, error.to_string())
    }
}

/// Plain configuration of the artifact store.
#[derive(Debug, Clone, Copy)]
pub struct ObjectsConfig {
    /// Largest artifact `PutObject` (or a pull from a peer) accepts (`limits.max_object_bytes`).
    pub max_object_bytes: u64,
    /// Bytes of distinct content the store may hold (`[objects] capacity_bytes`).
    pub capacity_bytes: u64,
    /// Artifacts no retained fact references are deleted this long after they were stored
    /// (`[objects] retention`).
    pub retention: Duration,
}

impl ObjectsConfig {
    /// How often the sweep runs: a tenth of the retention, between 250 ms and 10 minutes.
    pub fn sweep_interval(&self) -> Duration {
        (self.retention / 10).clamp(Duration::from_millis(250), Duration::from_secs(600))
    }
}

/// Where an upload comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `PutObject` from a local producer.
    Producer,
    /// Pulled from a peer for a fact addressed to us: the content must have this digest, and the
    /// object is referenced as soon as it is stored.
    Peer { digest: ObjectDigest },
}

/// One object to store.
#[derive(Debug, Clone)]
pub struct PutSpec {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub media_type: Option<String>,
    pub origin: Origin,
}

/// The most producers' uploads (`PutObject`) a node receives at once: each holds one of tokio's
/// blocking-pool threads (512) while its body arrives.
pub const MAX_UPLOADS: usize = 32;

/// Handle to the artifact store; cheap to clone.
#[derive(Clone)]
pub struct ObjectStore {
    catalog: Arc<Catalog>,
    max_object_bytes: u64,
    capacity_bytes: u64,
    uploads: Arc<Semaphore>,
}

impl ObjectStore {
    /// Opens the store under `data_dir/objects` (with an HA zone's second tier, `remote`); its
    /// usage is recounted from the index. Blocks: run it off the async workers.
    pub fn open(
        data_dir: &Path,
        index: Arc<dyn ObjectIndex>,
        config: ObjectsConfig,
        gauges: ObjectGauges,
        remote: Option<Arc<dyn RemoteBlobs>>,
    ) -> Result<Self, ObjectError> {
        let (capacity, retention) = (config.capacity_bytes, config.retention);
        let catalog = Catalog::open(data_dir, index, gauges, capacity, retention, remote)?;
        Ok(Self {
            catalog: Arc::new(catalog),
            max_object_bytes: config.max_object_bytes,
            capacity_bytes: capacity,
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
        })
    }

    /// Keeps `(bucket, key)` from being swept until the hold drops: taken before a fact that
    /// references it is checked, kept until that fact is durable (or refused).
    pub fn hold(&self, bucket: &str, key: &str) -> Hold {
        self.catalog.holds.hold(bucket, key)
    }

    /// `[objects] retention`.
    pub fn retention(&self) -> Duration {
        self.catalog.retention
    }

    /// Deletes what the retention allows (see `sweep`); `logs` are read for references.
    pub async fn sweep(&self, logs: Arc<dyn Storage>, now_ms: u64) -> Result<Swept, ObjectError> {
        self.blocking(move |catalog| catalog.sweep(logs.as_ref(), now_ms)).await
    }

    /// Streams a body of `spec.size` bytes from `body` into the store; every read may take at
    /// most `read_timeout`, so a transfer is bounded by its progress, not its total time. A
    /// producer's upload first waits up to `read_timeout` for one of [`MAX_UPLOADS`] slots.
    /// Returns once the object is durable.
    pub async fn receive(
        &self,
        spec: PutSpec,
        body: &mut (impl AsyncRead + Unpin),
        read_timeout: Duration,
    ) -> Result<ObjectMeta, ObjectError> {
        self.check(&spec)?;
        let _slot = match spec.origin {
            Origin::Producer => match tokio::time::timeout(read_timeout, self.uploads.acquire()).await {
                Ok(Ok(slot)) => Some(slot),
                // The semaphore is never closed; a wait that ran out is the same refusal.
                Ok(Err(_)) | Err(_) => return Err(ObjectError::Busy(read_timeout)),
            },
            Origin::Peer { .. } => None,
        };
        self.stream_in(spec, None, body, read_timeout).await
    }

    /// Bytes of the artifact `digest` received from `peer` before a pull of it broke off, kept
    /// to be resumed: the body of the next pull starts there (0: from the first byte). What is
    /// kept of other content from `peer` is dropped.
    pub async fn resumable(&self, peer: &str, digest: ObjectDigest) -> Result<u64, ObjectError> {
        let peer = peer.to_owned();
        self.blocking(move |catalog| Ok(catalog.kept.received(&peer, &digest)))
            .await
    }

    /// Drops what is kept of a broken pull from `peer` (its peer would not resume it).
    pub async fn forget_pull(&self, peer: &str) -> Result<(), ObjectError> {
        let peer = peer.to_owned();
        self.blocking(move |catalog| {
            catalog.kept.forget(&peer);
            Ok(())
        })
        .await
    }

    /// [`ObjectStore::receive`] for an artifact pulled from `peer` (`spec.origin` is
    /// `Origin::Peer`): `body` holds its bytes from `offset` on, the point
    /// [`ObjectStore::resumable`] gave. When the body breaks off, what arrived is kept.
    pub async fn receive_pulled(
        &self,
        spec: PutSpec,
        peer: &str,
        offset: u64,
        body: &mut (impl AsyncRead + Unpin),
        read_timeout: Duration,
    ) -> Result<ObjectMeta, ObjectError> {
        self.check(&spec)?;
        let pull = Pull {
            peer: peer.to_owned(),
            offset,
        };
        self.stream_in(spec, Some(pull), body, read_timeout).await
    }

    /// Hands `body` chunk by chunk to a blocking writer, which stores what arrives after the
    /// `offset` bytes of a resumed pull.
    async fn stream_in(
        &self,
        spec: PutSpec,
        pull: Option<Pull>,
        body: &mut (impl AsyncRead + Unpin),
        read_timeout: Duration,
    ) -> Result<ObjectMeta, ObjectError> {
        let size = spec.size;
        let mut got = pull.as_ref().map_or(0, |pull| pull.offset);
        let (chunks, received) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let catalog = self.catalog.clone();
        let writer = tokio::task::spawn_blocking(move || catalog.receive(&spec, pull.as_ref(), received));
        let mut broke = None;
        while got < size {
            let chunk = match read_chunk(body, size - got, read_timeout).await {
                Ok(chunk) if chunk.is_empty() => Err(ObjectError::Truncated { expected: size, got }),
                read => read,
            };
            match chunk {
                Ok(chunk) => {
                    got += chunk.len() as u64;
                    if chunks.send(chunk).await.is_err() {
                        // The writer stopped early (a refusal or a disk error): its answer says why.
                        break;
                    }
                }
                Err(e) => {
                    broke = Some(e);
                    break;
                }
            }
        }
        // The writer sees a short body when the read broke off: it deletes its file, or keeps
        // a pull's. Awaited, so the next attempt finds what it kept.
        drop(chunks);
        let written = writer
            .await
            .map_err(|e| ObjectError::Io(std::io::Error::other(e.to_string())))?;
        match broke {
            Some(e) => Err(e),
            None => written,
        }
    }

    /// Whether `spec` could ever be stored here: its names, and its size against the limits.
    /// Checked before anything that waits or refuses for lack of room, which a retry may find:
    /// an object that can never fit is refused as such (`INVALID_ARGUMENT`).
    pub fn check(&self, spec: &PutSpec) -> Result<(), ObjectError> {
        object::check_bucket(&spec.bucket)?;
        object::check_key(&spec.key)?;
        if let Some(media_type) = &spec.media_type {
            object::check_media_type(media_type)?;
        }
        self.check_size(spec.size)
    }

    /// Whether an object of `size` bytes could ever be stored here.
    pub fn check_size(&self, size: u64) -> Result<(), ObjectError> {
        if size > self.max_object_bytes {
            return Err(ObjectError::TooLarge {
                size,
                limit: self.max_object_bytes,
            });
        }
        if size > self.capacity_bytes {
            return Err(ObjectError::OverCapacity {
                size,
                capacity: self.capacity_bytes,
            });
        }
        Ok(())
    }

    /// The index entry of `(bucket, key)`, if any.
    pub async fn lookup(&self, bucket: &str, key: &str) -> Result<Option<ObjectEntry>, ObjectError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |catalog| catalog.lookup(&bucket, &key)).await
    }

    /// Checks that `reference` names a stored object with its digest and size, and makes that
    /// object immutable (readable by the peer `zone`, when given). `BadReference` otherwise.
    pub async fn reference(&self, reference: ArtifactRef, zone: Option<String>) -> Result<(), ObjectError> {
        self.blocking(move |catalog| catalog.reference(&reference, zone.as_deref()))
            .await
    }

    /// Opens an object for reading: its entry and its blob's bytes from `offset` (at most the
    /// object's size) on, checked against its digest as they are read ([`VerifiedBlob`]).
    pub async fn open_blob(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
    ) -> Result<(ObjectMeta, ObjectEntry, VerifiedBlob), ObjectError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |catalog| {
            let entry = catalog.lookup(&bucket, &key)?.ok_or_else(|| ObjectError::NotFound {
                bucket: bucket.clone(),
                key: key.clone(),
            })?;
            if offset > entry.size {
                return Err(ObjectError::BeyondEnd {
                    offset,
                    size: entry.size,
                });
            }
            catalog.ensure_local(&entry.digest)?;
            let path = catalog.blobs().path(&entry.digest);
            let damaged = |reason: String| ObjectError::Damaged {
                bucket: bucket.clone(),
                key: key.clone(),
                path: path.display().to_string(),
                reason,
            };
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(damaged("is missing".to_owned())),
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()),
            };
            // A truncated file would otherwise be served as far as it goes, the stream then reset.
            let len = file.metadata()?.len();
            if len != entry.size {
                return Err(damaged(format!("holds {len} bytes, not the {} stored", entry.size)));
            }
            // The bytes before `offset` (a resumed pull) count in the digest the end checks.
            let mut hasher = ObjectHasher::default();
            std::io::copy(&mut std::io::Read::take(&mut file, offset), &mut hasher)?;
            let what = format!("blob {} of {bucket}/{key}", path.display());
            if offset == entry.size && hasher.clone().finish() != entry.digest {
                return Err(damaged("does not hold the content of its digest".to_owned()));
            }
            let left = entry.size - offset;
            let blob = VerifiedBlob::new(tokio::fs::File::from_std(file), hasher, left, entry.digest, what);
            Ok((catalog::meta(&bucket, &key, &entry), entry, blob))
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Catalog) -> Result<T, ObjectError> + Send + 'static,
    ) -> Result<T, ObjectError> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || work(&catalog))
            .await
            .map_err(|e| ObjectError::Io(std::io::Error::other(e.to_string())))?
    }
}

/// The next chunk of a body: what arrives until [`CHUNK`] bytes (at most `left`) are read or the
/// body ends; empty once it has ended.
async fn read_chunk(
    body: &mut (impl AsyncRead + Unpin),
    left: u64,
    read_timeout: Duration,
) -> Result<Vec<u8>, ObjectError> {
    let want = CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX));
    let mut chunk = vec![0; want];
    let mut filled = 0;
    while filled < want {
        let read = tokio::time::timeout(read_timeout, body.read(&mut chunk[filled..]))
            .await
            .map_err(|_| ObjectError::Stalled(read_timeout))?;
        match read.map_err(ObjectError::Body)? {
            0 => break,
            n => filled += n,
        }
    }
    chunk.truncate(filled);
    Ok(chunk)
}
