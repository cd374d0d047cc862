//! The artifact store's second tier (an HA zone's engine bucket) against a real RocksDB and real
//! files: new content is uploaded outside the catalog's lock, so a slow upload holds up no other
//! put or reference; content the zone let go of while an upload ran is uploaded again; content
//! refused after its upload does not stay in the second tier.
//!
//! The second tier here is a directory whose uploads can be held at a gate: what the engine's
//! bucket does slowly (a large blob to three servers), it does on cue.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Mutex, PoisonError},
    thread,
    time::Duration,
};

use bsfg_proto::ObjectDigest;

use super::{
    catalog::Catalog,
    remote::RemoteBlobs,
    tests::{gauges, put, reference, ROOMY},
    ObjectError,
};
use crate::storage::{ObjectEntry, ObjectIndex, RocksStorage, StorageError};

/// How long a call that must not wait for the held upload may take.
const PROMPT: Duration = Duration::from_secs(10);

/// Holds the next upload once it has stored its copy, until released.
struct Gate {
    entered: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

#[derive(Default)]
struct DirRemote {
    dir: PathBuf,
    gate: Mutex<Option<Gate>>,
    /// Holds the next delete before it removes anything, until released.
    delete_gate: Mutex<Option<Gate>>,
}

impl DirRemote {
    fn file(&self, digest: &ObjectDigest) -> PathBuf {
        self.dir.join(digest.to_string())
    }

    fn holds(&self, body: &[u8]) -> bool {
        self.file(&ObjectDigest::of(body)).exists()
    }

    /// Arms the gate for the next upload: returns (its arrival, its release).
    fn arm(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        arm(&self.gate)
    }

    /// Arms the gate for the next delete.
    fn arm_delete(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        arm(&self.delete_gate)
    }
}

fn arm(slot: &Mutex<Option<Gate>>) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered, arrived) = mpsc::channel();
    let (release, released) = mpsc::channel();
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Gate {
        entered,
        release: released,
    });
    (arrived, release)
}

fn pass(slot: &Mutex<Option<Gate>>) -> io::Result<()> {
    let gate = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(gate) = gate {
        gate.entered.send(()).map_err(io::Error::other)?;
        gate.release.recv().map_err(io::Error::other)?;
    }
    Ok(())
}

impl DirRemote {}

impl RemoteBlobs for DirRemote {
    fn upload(&self, digest: &ObjectDigest, path: &Path) -> io::Result<()> {
        fs::copy(path, self.file(digest))?;
        pass(&self.gate)
    }

    fn download(&self, digest: &ObjectDigest, path: &Path) -> io::Result<bool> {
        match fs::copy(self.file(digest), path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<ObjectDigest>> {
        let names = fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned());
        Ok(names.filter_map(|name| name.parse().ok()).collect())
    }

    fn delete(&self, digest: &ObjectDigest) -> io::Result<()> {
        pass(&self.delete_gate)?;
        match fs::remove_file(self.file(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The catalog (and with it the database) drops before the directory is removed.
struct Zone {
    catalog: Catalog,
    remote: Arc<DirRemote>,
    /// The logs a sweep reads (the index's database).
    logs: Arc<RocksStorage>,
    _dir: tempfile::TempDir,
}

fn zone() -> Zone {
    zone_with(|storage| storage)
}

/// A zone whose index is `index(the RocksDB index)`.
fn zone_with(index: impl FnOnce(Arc<RocksStorage>) -> Arc<dyn ObjectIndex>) -> Zone {
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = Arc::new(DirRemote {
        dir: dir.path().join("engine"),
        ..DirRemote::default()
    });
    fs::create_dir(&remote.dir).expect("engine dir");
    let storage = Arc::new(RocksStorage::open(&dir.path().join("db"), "plant-a").expect("rocksdb"));
    let tier = Some(remote.clone() as Arc<dyn RemoteBlobs>);
    let logs = storage.clone();
    let catalog = Catalog::open(
        dir.path(),
        index(storage),
        gauges(),
        ROOMY.capacity_bytes,
        ROOMY.retention,
        tier,
    )
    .expect("catalog");
    Zone {
        catalog,
        remote,
        logs,
        _dir: dir,
    }
}

#[test]
fn a_slow_upload_to_the_second_tier_holds_up_no_other_put_or_reference() {
    let z = zone();
    put(&z.catalog, "batch-1.pdf", b"first certificate").expect("put");
    let (arrived, release) = z.remote.arm();
    let (catalog, remote) = (&z.catalog, &*z.remote);
    // `move`: a failed assertion drops the release with the closure, which frees the held
    // upload, so the scope's join does not wait for it for ever.
    thread::scope(move |s| {
        let slow = s.spawn(|| put(catalog, "batch-2.pdf", b"a large recording"));
        arrived.recv_timeout(PROMPT).expect("the upload reached the engine");

        let (done, finished) = mpsc::channel();
        s.spawn(move || {
            let checked = catalog.reference(&reference("batch-1.pdf", b"first certificate"), None);
            let other = put(catalog, "batch-3.pdf", b"third certificate");
            let _ = done.send((checked, other));
        });
        let (checked, other) = finished
            .recv_timeout(PROMPT)
            .expect("a reference and another put went through while the upload was held");
        checked.expect("reference");
        other.expect("other put");
        assert!(remote.holds(b"third certificate"));

        release.send(()).expect("release");
        slow.join().expect("no panic").expect("the slow put");
    });
    assert!(z.remote.holds(b"a large recording"));
}

#[test]
fn content_let_go_of_while_its_upload_ran_is_uploaded_again() {
    let z = zone();
    let (arrived, release) = z.remote.arm();
    let (catalog, remote) = (&z.catalog, &*z.remote);
    // `move`: a failed assertion drops the release with the closure, which frees the held
    // upload, so the scope's join does not wait for it for ever.
    thread::scope(move |s| {
        let first = s.spawn(|| put(catalog, "k1", b"shared content"));
        arrived.recv_timeout(PROMPT).expect("the first upload stored its copy");
        // Meanwhile another key takes the same content and lets go of it: the zone deletes it
        // from the second tier, after the first upload stored it there.
        let (done, finished) = mpsc::channel();
        s.spawn(move || {
            let taken = put(catalog, "k2", b"shared content");
            let replaced = put(catalog, "k2", b"other content!");
            let _ = done.send((taken, replaced));
        });
        let (taken, replaced) = finished
            .recv_timeout(PROMPT)
            .expect("another key's puts went through while the upload was held");
        taken.expect("k2");
        replaced.expect("k2 replaced");
        assert!(!remote.holds(b"shared content"), "deleted once no key named it");

        release.send(()).expect("release");
        first.join().expect("no panic").expect("k1");
    });
    assert!(
        z.remote.holds(b"shared content"),
        "k1 names content the second tier must hold"
    );
}

#[test]
fn an_upload_that_overlaps_a_delete_of_its_content_is_uploaded_again() {
    let z = zone();
    put(&z.catalog, "k1", b"shared content").expect("k1");
    let (delete_began, finish_delete) = z.remote.arm_delete();
    let catalog = &z.catalog;
    let remote = &*z.remote;
    thread::scope(move |s| {
        // k1 lets go of the content: its delete from the second tier is held before it removes.
        let replace = s.spawn(|| put(catalog, "k1", b"other content!"));
        delete_began.recv_timeout(PROMPT).expect("the delete began");
        // Meanwhile k2 takes the same content and uploads it outside the lock, before the
        // delete that began earlier removes it.
        let (uploaded, go_on) = remote.arm();
        let (done, finished) = mpsc::channel();
        s.spawn(move || {
            let _ = done.send(put(catalog, "k2", b"shared content"));
        });
        uploaded.recv_timeout(PROMPT).expect("k2's upload stored its copy");
        go_on.send(()).expect("k2 goes on to the lock");
        finish_delete.send(()).expect("the delete removes the copy");
        replace.join().expect("no panic").expect("k1 replaced");
        finished.recv_timeout(PROMPT).expect("k2 answered").expect("k2");
    });
    assert!(
        z.remote.holds(b"shared content"),
        "k2 names content the second tier must hold"
    );
}

#[test]
fn content_refused_after_its_upload_does_not_stay_in_the_second_tier() {
    let z = zone();
    put(&z.catalog, "coa.pdf", b"signed: batch 7").expect("put");
    z.catalog
        .reference(&reference("coa.pdf", b"signed: batch 7"), None)
        .expect("referenced");
    let refused = put(&z.catalog, "coa.pdf", b"signed: batch 8");
    assert!(matches!(refused, Err(ObjectError::Immutable { .. })), "{refused:?}");
    assert!(!z.remote.holds(b"signed: batch 8"));
    assert!(z.remote.holds(b"signed: batch 7"));
}

/// An index whose next entry write ends as `failure` (after writing it, when `lands`): an HA
/// instance's append whose outcome it could not learn, or one the log refused.
struct FailingWrite {
    inner: Arc<RocksStorage>,
    failure: Mutex<Option<(StorageError, bool)>>,
}

impl ObjectIndex for FailingWrite {
    fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectEntry>, StorageError> {
        self.inner.object(bucket, key)
    }

    fn blob_refs(&self, digest: &ObjectDigest) -> Result<u64, StorageError> {
        self.inner.blob_refs(digest)
    }

    fn write_object(
        &self,
        bucket: &str,
        key: &str,
        entry: &ObjectEntry,
        blob_refs: &[(ObjectDigest, u64)],
    ) -> Result<(), StorageError> {
        match self.failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
            None => self.inner.write_object(bucket, key, entry, blob_refs),
            Some((failure, lands)) => {
                if lands {
                    self.inner.write_object(bucket, key, entry, blob_refs)?;
                }
                Err(failure)
            }
        }
    }

    fn remove_object(&self, bucket: &str, key: &str, blob_refs: &[(ObjectDigest, u64)]) -> Result<(), StorageError> {
        self.inner.remove_object(bucket, key, blob_refs)
    }

    fn usage_by_bucket(&self) -> Result<std::collections::BTreeMap<String, u64>, StorageError> {
        self.inner.usage_by_bucket()
    }

    fn visit_objects(&self, visit: &mut dyn FnMut(&str, &str, ObjectEntry)) -> Result<(), StorageError> {
        self.inner.visit_objects(visit)
    }
}

/// A put whose index write has an unknown outcome keeps its copy in the second tier: the entry
/// may be in the zone's log, and the instance that applies it must find the blob there. One the
/// log refused outright leaves no copy behind.
#[test]
fn a_put_whose_index_write_has_an_unknown_outcome_keeps_its_copy_in_the_second_tier() {
    for (failure, lands, kept) in [
        (
            StorageError::OutcomeUnknown("the engine did not answer".into()),
            true,
            true,
        ),
        (
            StorageError::OutcomeUnknown("the engine did not answer".into()),
            false,
            true,
        ),
        (StorageError::EngineUnavailable("no quorum".into()), false, false),
    ] {
        let what = failure.to_string();
        let z = zone_with(|storage| {
            Arc::new(FailingWrite {
                inner: storage,
                failure: Mutex::new(Some((failure, lands))),
            })
        });
        let body = b"batch record 12";
        let failed = put(&z.catalog, "batch-12.pdf", body);
        assert!(matches!(failed, Err(ObjectError::Storage(_))), "{what}: {failed:?}");
        assert_eq!(z.remote.holds(body), kept, "{what} (written: {lands})");
    }
}

/// A copy in the second tier that no key names (an instance that stopped between its upload and
/// its index write, a delete that failed) is deleted by a sweep; a named one stays, and the same
/// content put later is uploaded again.
#[test]
fn copies_in_the_second_tier_no_key_names_are_swept() {
    let z = zone();
    put(&z.catalog, "kept.pdf", b"named content").expect("put");
    let orphan_file = z._dir.path().join("orphan");
    fs::write(&orphan_file, b"uploaded, never named").expect("file");
    let orphan = ObjectDigest::of(b"uploaded, never named");
    z.remote.upload(&orphan, &orphan_file).expect("an orphan copy");

    let logs: &dyn crate::storage::Storage = z.logs.as_ref();
    let swept = z.catalog.sweep(logs, bsfg_proto::model::now_unix_ms()).expect("sweep");
    assert_eq!(swept.orphans, 1, "{swept:?}");
    assert!(!z.remote.holds(b"uploaded, never named"), "the orphan copy is gone");
    assert!(z.remote.holds(b"named content"), "a named copy stays");

    put(&z.catalog, "late.pdf", b"uploaded, never named").expect("put");
    assert!(z.remote.holds(b"uploaded, never named"));
}
