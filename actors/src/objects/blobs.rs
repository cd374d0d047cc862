//! The blob files of the artifact store: content-addressed, written once, and visible under their
//! digest only when complete and synced.
//!
//! ```text
//! data_dir/objects/sha256/<first 2 hex digits>/<64 hex digits>   complete blobs
//! data_dir/objects/tmp/<random>                                  uploads in progress
//! ```
//!
//! A blob is written to `tmp/` while it is hashed, `fsync`ed, renamed into place, and its directory
//! `fsync`ed: after a crash a blob path holds either nothing or the complete content. Files left in
//! `tmp/` by a crash are deleted when the store opens. Everything here blocks: callers run it on a
//! blocking thread.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use bsfg_proto::{ObjectDigest, ObjectHasher};

const WRITE_BUFFER: usize = 256 << 10;

pub(super) struct Blobs {
    sha256: PathBuf,
    tmp: PathBuf,
}

impl Blobs {
    /// Creates the directories under `data_dir/objects` and deletes leftovers of interrupted uploads.
    pub(super) fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("objects");
        let blobs = Self {
            sha256: root.join("sha256"),
            tmp: root.join("tmp"),
        };
        fs::create_dir_all(&blobs.sha256)?;
        fs::create_dir_all(&blobs.tmp)?;
        for leftover in fs::read_dir(&blobs.tmp)? {
            let path = leftover?.path();
            // Only this store writes here: whatever is left, a directory too, is a leftover.
            let removed = match path.is_dir() {
                true => fs::remove_dir_all(&path),
                false => fs::remove_file(&path),
            };
            removed
                .map_err(|e| io::Error::new(e.kind(), format!("cannot delete the leftover {}: {e}", path.display())))?;
        }
        for dir in [&root, data_dir] {
            sync_dir(dir)?;
        }
        Ok(blobs)
    }

    pub(super) fn path(&self, digest: &ObjectDigest) -> PathBuf {
        let hex = hex(digest);
        self.sha256.join(&hex[..2]).join(hex)
    }

    /// A new, empty temporary blob.
    pub(super) fn create_temp(&self) -> io::Result<TempBlob> {
        let path = self.tmp.join(format!("{:032x}", rand::random::<u128>()));
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(TempBlob {
            path: Some(path),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: ObjectHasher::default(),
            written: 0,
        })
    }

    /// Moves a sealed temporary blob into place under `digest`, over the blob there if any (same
    /// content under another key, or the same key put again): the new file's bytes were just
    /// verified against `digest`, the old one's may have been damaged or deleted since, and a
    /// producer's put again is how such a blob is repaired.
    pub(super) fn install(&self, mut temp: TempBlob, digest: &ObjectDigest) -> io::Result<()> {
        self.place(&mut temp.path, digest)
    }

    /// Fetches the blob `digest` with `download` (which writes it into the new file it is given,
    /// synced, and answers `false` when it has no such blob) into a temporary file and checks its
    /// digest; [`Blobs::install_fetched`] places it. `None` when `download` had nothing.
    pub(super) fn fetch(
        &self,
        digest: &ObjectDigest,
        download: impl FnOnce(&Path) -> io::Result<bool>,
    ) -> io::Result<Option<Fetched>> {
        let path = self.tmp.join(format!("{:032x}", rand::random::<u128>()));
        let fetched = Fetched {
            path: Some(path.clone()),
        };
        if !download(&path)? {
            return Ok(None);
        }
        let actual = hash_file(&path)?;
        if actual != *digest {
            return Err(io::Error::other(format!(
                "the zone's copy of blob {digest} has digest {actual}: it is damaged in the engine's object store"
            )));
        }
        Ok(Some(fetched))
    }

    pub(super) fn install_fetched(&self, mut fetched: Fetched, digest: &ObjectDigest) -> io::Result<()> {
        self.place(&mut fetched.path, digest)
    }

    /// Renames the complete, synced file `source` (taken, once renamed), verified against
    /// `digest`, to the blob path of `digest`, replacing what is there (a reader that has the old
    /// file open keeps reading it); the directory entry is synced.
    fn place(&self, source: &mut Option<PathBuf>, digest: &ObjectDigest) -> io::Result<()> {
        let target = self.path(digest);
        let shard = target.parent().unwrap_or(&self.sha256);
        if !shard.exists() {
            fs::create_dir(shard)?;
            sync_dir(&self.sha256)?;
        }
        let from = source.take().unwrap_or_default();
        fs::rename(&from, &target)?;
        sync_dir(shard)
    }

    /// Deletes the blob of a digest no key names any more.
    pub(super) fn remove(&self, digest: &ObjectDigest) -> io::Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(path.parent().unwrap_or(&self.sha256)),
        }
    }
}

impl Blobs {
    /// The digest of every complete blob file (names that are not digests are left alone).
    pub(super) fn list(&self) -> io::Result<Vec<ObjectDigest>> {
        let mut digests = Vec::new();
        for shard in fs::read_dir(&self.sha256)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for file in fs::read_dir(&shard)? {
                let name = file?.file_name();
                let digest: Option<ObjectDigest> = name
                    .to_str()
                    .and_then(|hex| format!("{}{hex}", bsfg_proto::object::DIGEST_PREFIX).parse().ok());
                digests.extend(digest);
            }
        }
        Ok(digests)
    }
}

/// A blob fetched from the zone's second tier, checked, not placed yet. Dropping it deletes the
/// file unless it was placed.
pub(super) struct Fetched {
    path: Option<PathBuf>,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// The digest of the content of the file at `path`.
fn hash_file(path: &Path) -> io::Result<ObjectDigest> {
    let mut hasher = ObjectHasher::default();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hasher.finish())
}

/// An upload in progress: written and hashed chunk by chunk. Dropping it deletes the file unless
/// it was installed.
pub(super) struct TempBlob {
    path: Option<PathBuf>,
    /// Network reads hand over a QUIC packet's worth at a time; the buffer turns them into
    /// few large writes.
    file: BufWriter<File>,
    hasher: ObjectHasher,
    written: u64,
}

impl TempBlob {
    pub(super) fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.file.write_all(chunk)?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Where the content is until it is installed.
    pub(super) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Makes the content durable and returns its digest.
    pub(super) fn seal(&mut self) -> io::Result<ObjectDigest> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        Ok(self.hasher.clone().finish())
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn hex(digest: &ObjectDigest) -> String {
    let text = digest.to_string();
    text[bsfg_proto::object::DIGEST_PREFIX.len()..].to_owned()
}

/// Makes a rename or a new entry in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
