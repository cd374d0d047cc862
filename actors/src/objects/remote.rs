//! The artifact store's second tier in an HA zone (SPEC §15, design §4.8): every blob also lives
//! in the engine's object store (`bsfg-blobs-<zone>`), so whichever instance is active can serve
//! it. The local files stay the first tier:
//!
//! - a blob is uploaded when its content first enters the zone, before the index entry naming it
//!   is committed, so an entry never names a blob the zone does not hold;
//! - an instance that lacks the file (it was a standby when the blob was put, or its replica was
//!   rebuilt from a snapshot) fetches it the first time it is asked for it, and checks its digest;
//! - it is deleted from both tiers once no key names it; a copy in the second tier that no key
//!   names (an instance that failed between its upload and its index write, a delete that
//!   failed) is deleted by the active instance's sweep.
//!
//! A single node has no second tier. Calls block: they run on the artifact store's blocking
//! threads, never on an async worker.

use std::{io, path::Path};

use bsfg_engine::jetstream::JetStreamObjects;
use bsfg_proto::ObjectDigest;
use tokio::runtime::Handle;

/// Where blobs are kept beside this instance's files.
pub trait RemoteBlobs: Send + Sync + 'static {
    /// Stores the complete blob file at `path` under `digest` (replacing a copy already there).
    fn upload(&self, digest: &ObjectDigest, path: &Path) -> io::Result<()>;
    /// Writes the blob `digest` into the new file `path`; `false` when the zone does not hold it.
    fn download(&self, digest: &ObjectDigest, path: &Path) -> io::Result<bool>;
    fn delete(&self, digest: &ObjectDigest) -> io::Result<()>;
    /// The digest of every blob held (names that are not digests are left out).
    fn list(&self) -> io::Result<Vec<ObjectDigest>>;
}

/// [`RemoteBlobs`] on the zone's blob bucket of the engine, driven from blocking threads.
pub struct EngineBlobs {
    bucket: JetStreamObjects,
    runtime: Handle,
}

impl EngineBlobs {
    /// `runtime` runs the engine's calls; it must not be the caller's async context.
    pub fn new(bucket: JetStreamObjects, runtime: Handle) -> Self {
        Self { bucket, runtime }
    }
}

impl RemoteBlobs for EngineBlobs {
    fn upload(&self, digest: &ObjectDigest, path: &Path) -> io::Result<()> {
        let name = digest.to_string();
        self.runtime
            .block_on(self.bucket.put_file(&name, path))
            .map(|_| ())
            .map_err(io::Error::other)
    }

    fn download(&self, digest: &ObjectDigest, path: &Path) -> io::Result<bool> {
        let name = digest.to_string();
        let got = self
            .runtime
            .block_on(self.bucket.get_file_if_present(&name, path))
            .map_err(io::Error::other)?;
        Ok(got.is_some())
    }

    fn delete(&self, digest: &ObjectDigest) -> io::Result<()> {
        let name = digest.to_string();
        self.runtime
            .block_on(self.bucket.delete(&name))
            .map_err(io::Error::other)
    }

    fn list(&self) -> io::Result<Vec<ObjectDigest>> {
        let names = self.runtime.block_on(self.bucket.names()).map_err(io::Error::other)?;
        Ok(names.iter().filter_map(|name| name.parse().ok()).collect())
    }
}
