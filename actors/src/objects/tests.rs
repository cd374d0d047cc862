//! The artifact store against a real RocksDB and real files in a temporary directory: durable
//! content-addressed blobs, idempotent re-puts, replacement of unreferenced objects, immutability
//! of referenced ones, verified pulls, recovery after a crash mid-upload, and bodies read from
//! any byte source (short, stalled, forged).

use std::{fs, path::Path, sync::Arc, time::Duration};

use bsfg_proto::{ArtifactRef, ErrorCode, ObjectDigest, RpcError};
use prometheus::{IntGauge, IntGaugeVec, Opts};
use tokio::sync::mpsc;

use super::{
    catalog::Catalog, is_damaged, ObjectError, ObjectGauges, ObjectStore, ObjectsConfig, Origin, PutSpec, CHUNK,
    MAX_UPLOADS,
};
use crate::storage::RocksStorage;

/// The catalog (and with it the database) drops before the directory is removed.
pub(super) struct Fixture {
    pub(super) catalog: Catalog,
    pub(super) storage: Arc<RocksStorage>,
    pub(super) usage: IntGaugeVec,
    pub(super) blob_bytes: IntGauge,
    pub(super) dir: tempfile::TempDir,
}

/// Bounds of the fixtures that do not test them: room for everything, nothing swept.
pub(super) const ROOMY: ObjectsConfig = ObjectsConfig {
    max_object_bytes: 1 << 30,
    capacity_bytes: 1 << 40,
    retention: Duration::from_secs(3600),
};

pub(super) fn open_in(dir: tempfile::TempDir) -> Fixture {
    open_with(dir, ROOMY)
}

pub(super) fn open_with(dir: tempfile::TempDir, config: ObjectsConfig) -> Fixture {
    let storage = Arc::new(RocksStorage::open(&dir.path().join("db"), "plant-a").expect("rocksdb"));
    let gauges = gauges();
    let (capacity, retention) = (config.capacity_bytes, config.retention);
    let catalog =
        Catalog::open(dir.path(), storage.clone(), gauges.clone(), capacity, retention, None).expect("catalog");
    Fixture {
        dir,
        catalog,
        storage,
        usage: gauges.usage,
        blob_bytes: gauges.blob_bytes,
    }
}

pub(super) fn gauges() -> ObjectGauges {
    ObjectGauges {
        usage: IntGaugeVec::new(Opts::new("usage", "test"), &["bucket"]).expect("gauge"),
        blob_bytes: IntGauge::new("blob_bytes", "test").expect("gauge"),
    }
}

fn fixture() -> Fixture {
    open_in(tempfile::tempdir().expect("tempdir"))
}

pub(super) fn spec(key: &str, body: &[u8], origin: Origin) -> PutSpec {
    PutSpec {
        bucket: "coa".into(),
        key: key.into(),
        size: body.len() as u64,
        media_type: Some("application/pdf".into()),
        origin,
    }
}

/// Feeds `chunks` (in pieces of 3 bytes, so chunking is exercised) to the blocking writer.
pub(super) fn put_chunks(
    catalog: &Catalog,
    spec: &PutSpec,
    body: &[u8],
) -> Result<bsfg_proto::ObjectMeta, ObjectError> {
    let (tx, rx) = mpsc::channel(body.len().div_ceil(3).max(1));
    for piece in body.chunks(3) {
        tx.try_send(piece.to_vec()).expect("channel has room");
    }
    drop(tx);
    catalog.receive(spec, None, rx)
}

pub(super) fn put(catalog: &Catalog, key: &str, body: &[u8]) -> Result<bsfg_proto::ObjectMeta, ObjectError> {
    put_chunks(catalog, &spec(key, body, Origin::Producer), body)
}

pub(super) fn reference(key: &str, body: &[u8]) -> ArtifactRef {
    ArtifactRef {
        bucket: "coa".into(),
        key: key.into(),
        digest: ObjectDigest::of(body),
        size: body.len() as u64,
        media_type: "application/pdf".into(),
        file_name: None,
    }
}

pub(super) fn files_in(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

pub(super) fn blob_count(root: &Path) -> usize {
    let sha = root.join("objects/sha256");
    fs::read_dir(&sha)
        .expect("sha256 dir")
        .map(|shard| files_in(&shard.expect("shard").path()))
        .sum()
}

#[test]
fn a_put_lands_content_addressed_and_durable() {
    let f = fixture();
    let meta = put(&f.catalog, "batch-42.pdf", b"certificate of analysis").expect("put");
    assert_eq!(meta.digest, ObjectDigest::of(b"certificate of analysis"));
    assert_eq!(meta.size, 23);
    let path = f.catalog.blobs().path(&meta.digest);
    let hex = meta.digest.to_string()["sha256:".len()..].to_owned();
    assert_eq!(path, f.dir.path().join("objects/sha256").join(&hex[..2]).join(&hex));
    assert_eq!(fs::read(&path).expect("blob"), b"certificate of analysis");
    assert_eq!(
        files_in(&f.dir.path().join("objects/tmp")),
        0,
        "no temporary file is left behind"
    );
    let entry = f
        .catalog
        .lookup("coa", "batch-42.pdf")
        .expect("lookup")
        .expect("indexed");
    assert!(!entry.referenced);
    assert_eq!(f.usage.with_label_values(&["coa"]).get(), 23);
}

#[test]
fn identical_content_is_a_no_op_and_other_content_replaces_an_unreferenced_object() {
    let f = fixture();
    let first = put(&f.catalog, "k", b"one").expect("put");
    assert_eq!(put(&f.catalog, "k", b"one").expect("again"), first);
    assert_eq!(blob_count(f.dir.path()), 1);
    put(&f.catalog, "shared", b"one").expect("same content, other key");
    assert_eq!(blob_count(f.dir.path()), 1, "keys with the same content share one blob");

    let second = put(&f.catalog, "k", b"two!").expect("replace");
    assert_ne!(second.digest, first.digest);
    assert_eq!(
        blob_count(f.dir.path()),
        2,
        "the old blob stays while another key names it"
    );
    put(&f.catalog, "shared", b"three").expect("replace the other key");
    assert!(
        !f.catalog.blobs().path(&first.digest).exists(),
        "a blob no key names is deleted"
    );
    assert_eq!(f.usage.with_label_values(&["coa"]).get(), 4 + 5);
}

/// A put acknowledges stored bytes: a blob damaged or deleted behind the node's back is
/// replaced by the next put of its content, under its key or another. Before, the put answered
/// the reference and kept the damage (or nothing), and a fact appended with it stalled its link.
#[test]
fn a_put_again_repairs_a_damaged_or_missing_blob() {
    let f = fixture();
    let body = b"certificate of analysis, batch 42";
    let meta = put(&f.catalog, "k", body).expect("put");
    let path = f.catalog.blobs().path(&meta.digest);

    let mut damaged = body.to_vec();
    damaged[0] ^= 0xff;
    fs::write(&path, &damaged).expect("damage the blob");
    assert_eq!(
        put(&f.catalog, "other", body).expect("same content, other key"),
        meta_of(&meta, "other")
    );
    assert_eq!(
        fs::read(&path).expect("blob"),
        body,
        "repaired by a put under another key"
    );

    fs::write(&path, &damaged).expect("damage the blob");
    assert_eq!(put(&f.catalog, "k", body).expect("put again"), meta);
    assert_eq!(fs::read(&path).expect("blob"), body, "repaired by a put again");

    fs::remove_file(&path).expect("delete the blob");
    assert_eq!(put(&f.catalog, "k", body).expect("put again"), meta);
    assert_eq!(fs::read(&path).expect("blob"), body, "restored by a put again");
    assert_eq!(files_in(&f.dir.path().join("objects/tmp")), 0, "nothing left behind");
    assert_eq!(f.usage.with_label_values(&["coa"]).get(), 2 * body.len() as i64);
}

fn meta_of(meta: &bsfg_proto::ObjectMeta, key: &str) -> bsfg_proto::ObjectMeta {
    bsfg_proto::ObjectMeta {
        key: key.into(),
        ..meta.clone()
    }
}

#[test]
fn a_referenced_object_is_immutable() {
    let f = fixture();
    put(&f.catalog, "k", b"original").expect("put");
    f.catalog
        .reference(&reference("k", b"original"), Some("enterprise"))
        .expect("reference");
    let entry = f.catalog.lookup("coa", "k").expect("lookup").expect("indexed");
    assert!(entry.referenced && entry.referenced_by.contains("enterprise"));

    assert!(matches!(
        put(&f.catalog, "k", b"replaced"),
        Err(ObjectError::Immutable { .. })
    ));
    assert!(matches!(
        put(&f.catalog, "k", b"other size"),
        Err(ObjectError::Immutable { .. })
    ));
    assert_eq!(
        put(&f.catalog, "k", b"original").expect("identical").digest,
        entry.digest
    );
    assert_eq!(files_in(&f.dir.path().join("objects/tmp")), 0);
}

#[test]
fn references_must_match_a_stored_digest_and_size() {
    let f = fixture();
    let missing = f.catalog.reference(&reference("nope", b"x"), None);
    assert!(matches!(missing, Err(ObjectError::BadReference(m)) if m.contains("not stored")));
    put(&f.catalog, "k", b"content").expect("put");
    let wrong_digest = f.catalog.reference(&reference("k", b"contenT"), None);
    assert!(matches!(wrong_digest, Err(ObjectError::BadReference(m)) if m.contains("digest")));
    let mut wrong_size = reference("k", b"content");
    wrong_size.size = 8;
    let wrong_size = f.catalog.reference(&wrong_size, None);
    assert!(matches!(wrong_size, Err(ObjectError::BadReference(m)) if m.contains("bytes")));
    let entry = f.catalog.lookup("coa", "k").expect("lookup").expect("indexed");
    assert!(!entry.referenced, "a refused reference marks nothing");
}

#[test]
fn a_pull_verifies_the_digest_and_leaves_the_object_referenced() {
    let f = fixture();
    let body = b"pulled from the peer";
    let forged = Origin::Peer {
        digest: ObjectDigest::of(b"something else"),
    };
    let refused = put_chunks(&f.catalog, &spec("p", body, forged), body);
    assert!(matches!(refused, Err(ObjectError::DigestMismatch { .. })));
    assert!(f.catalog.lookup("coa", "p").expect("lookup").is_none());
    assert_eq!(blob_count(f.dir.path()), 0);

    let genuine = Origin::Peer {
        digest: ObjectDigest::of(body),
    };
    put_chunks(&f.catalog, &spec("p", body, genuine), body).expect("pull");
    let entry = f.catalog.lookup("coa", "p").expect("lookup").expect("indexed");
    assert!(entry.referenced && entry.referenced_by.is_empty());
}

#[test]
fn short_and_long_bodies_are_refused_without_a_trace() {
    let f = fixture();
    let mut short = spec("k", b"12345", Origin::Producer);
    short.size = 6;
    assert!(matches!(
        put_chunks(&f.catalog, &short, b"12345"),
        Err(ObjectError::Truncated { expected: 6, got: 5 })
    ));
    short.size = 4;
    assert!(matches!(
        put_chunks(&f.catalog, &short, b"12345"),
        Err(ObjectError::Oversized { size: 4 })
    ));
    assert!(f.catalog.lookup("coa", "k").expect("lookup").is_none());
    assert_eq!(files_in(&f.dir.path().join("objects/tmp")), 0);
    assert_eq!(blob_count(f.dir.path()), 0);
}

#[test]
fn objects_survive_a_crash_and_interrupted_uploads_are_cleared() {
    let f = fixture();
    let meta = put(&f.catalog, "k", b"durable").expect("put");
    // A crash in the middle of an upload leaves a temporary file and nothing else.
    fs::write(f.dir.path().join("objects/tmp/0123"), b"half an upl").expect("leftover");
    // A directory there (an operator's, a restore's) used to stop every start with EISDIR.
    fs::create_dir_all(f.dir.path().join("objects/tmp/stray/deeper")).expect("stray directory");
    let Fixture {
        dir, catalog, storage, ..
    } = f;
    drop(catalog);
    drop(storage);
    let f = open_in(dir);
    assert_eq!(
        files_in(&f.dir.path().join("objects/tmp")),
        0,
        "leftovers deleted on open"
    );
    let entry = f.catalog.lookup("coa", "k").expect("lookup").expect("still indexed");
    assert_eq!(entry.digest, meta.digest);
    assert_eq!(
        fs::read(f.catalog.blobs().path(&meta.digest)).expect("blob"),
        b"durable"
    );
    assert_eq!(f.usage.with_label_values(&["coa"]).get(), 7, "usage recomputed on open");
}

/// An object store over RocksDB in `dir`, refusing objects over `limit` bytes.
pub(super) fn store_in(dir: &Path, limit: u64) -> ObjectStore {
    let index = Arc::new(RocksStorage::open(&dir.join("db"), "plant-a").expect("rocksdb"));
    let config = ObjectsConfig {
        max_object_bytes: limit,
        ..ROOMY
    };
    ObjectStore::open(dir, index, config, gauges(), None).expect("store")
}

#[test]
fn names_and_the_size_limit_are_checked_before_any_byte_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), 10);
    let mut too_big = spec("k", b"0123456789a", Origin::Producer);
    assert!(matches!(
        store.check(&too_big),
        Err(ObjectError::TooLarge { size: 11, limit: 10 })
    ));
    too_big.size = 10;
    assert!(store.check(&too_big).is_ok());
    too_big.bucket = "Bad Bucket".into();
    assert!(matches!(store.check(&too_big), Err(ObjectError::Name(_))));
}

pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A blob deleted or truncated behind the node's back is reported as damage, naming its file and
/// the repair, and is not retryable. It was a bare "object store I/O error: No such file"
/// (UNAVAILABLE: retry), or, truncated, served as far as it went and reset.
#[tokio::test]
async fn a_missing_or_truncated_blob_is_damage_named_with_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), 1 << 20);
    let body = b"certificate of analysis";
    let meta = store
        .receive(spec("k", body, Origin::Producer), &mut &body[..], READ_TIMEOUT)
        .await
        .expect("stored");
    let hex = meta.digest.to_string()["sha256:".len()..].to_owned();
    let path = dir.path().join("objects/sha256").join(&hex[..2]).join(&hex);
    fs::write(&path, &body[..10]).expect("truncate");
    let truncated = store.open_blob("coa", "k", 0).await.expect_err("truncated");
    let message = truncated.to_string();
    assert!(message.contains("holds 10 bytes, not the 23"), "{message}");
    assert!(
        message.contains(&path.display().to_string()) && message.contains("put-object"),
        "{message}"
    );
    fs::remove_file(&path).expect("delete");
    let missing = store.open_blob("coa", "k", 0).await.expect_err("missing");
    assert!(missing.to_string().contains("is missing"), "{missing}");
    let answered = RpcError::from(missing);
    assert_eq!(answered.code, ErrorCode::Internal);
    assert!(!answered.retryable, "waiting does not repair it");
}

/// A blob damaged in place (same size, other bytes) is read up to its last chunk, which fails as
/// damage instead of coming back: a reader never gets it whole. From an offset too (a resumed
/// pull: the bytes before it count in the check). Putting the original again repairs it.
#[tokio::test]
async fn a_blob_damaged_in_place_fails_at_its_end_and_a_put_again_repairs_it() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), 1 << 20);
    let body: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 251) as u8).collect();
    let meta = store
        .receive(spec("k", &body, Origin::Producer), &mut &body[..], READ_TIMEOUT)
        .await
        .expect("stored");
    let read = |offset: u64| {
        let store = store.clone();
        async move {
            let (_, _, mut blob) = store.open_blob("coa", "k", offset).await.expect("open");
            let mut got = Vec::new();
            let outcome = blob.read_to_end(&mut got).await;
            (outcome, got)
        }
    };
    let (whole, got) = read(0).await;
    assert_eq!((whole.expect("intact"), got == body), (body.len(), true));

    let hex = meta.digest.to_string()["sha256:".len()..].to_owned();
    let path = dir.path().join("objects/sha256").join(&hex[..2]).join(&hex);
    let mut damaged = body.clone();
    damaged[7] ^= 0xff;
    fs::write(&path, &damaged).expect("damage in place");
    for offset in [0, CHUNK as u64 + 3] {
        let (outcome, got) = read(offset).await;
        let error = outcome.expect_err("damage is not served whole");
        assert!(is_damaged(&error), "{error}");
        assert!(
            got.len() < body.len() - offset as usize,
            "the end is held back: {} bytes",
            got.len()
        );
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("coa/k"),
            "{message}"
        );
    }
    let at_end = store.open_blob("coa", "k", body.len() as u64).await;
    assert!(matches!(at_end, Err(ObjectError::Damaged { .. })), "{at_end:?}");

    store
        .receive(spec("k", &body, Origin::Producer), &mut &body[..], READ_TIMEOUT)
        .await
        .expect("put again");
    let (repaired, got) = read(0).await;
    assert_eq!((repaired.expect("repaired"), got == body), (body.len(), true));
}

#[tokio::test]
async fn a_body_is_read_from_any_byte_source_in_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), 1 << 20);
    // Three chunks and a bit: the last chunk is short and nothing past the size is read.
    let body: Vec<u8> = (0..3 * CHUNK + 7).map(|i| (i % 251) as u8).collect();
    let mut source = [&body[..], b"trailing bytes of the next frame"].concat();
    let meta = store
        .receive(spec("big", &body, Origin::Producer), &mut &source[..], READ_TIMEOUT)
        .await
        .expect("stored");
    assert_eq!((meta.digest, meta.size), (ObjectDigest::of(&body), body.len() as u64));

    source.truncate(body.len() - 1);
    let short = store
        .receive(spec("short", &body, Origin::Producer), &mut &source[..], READ_TIMEOUT)
        .await;
    let expected = body.len() as u64;
    assert!(
        matches!(short, Err(ObjectError::Truncated { expected: e, got }) if e == expected && got == expected - 1),
        "{short:?}"
    );
    assert!(store.lookup("coa", "short").await.expect("lookup").is_none());
}

#[tokio::test]
async fn a_body_that_stops_arriving_fails_after_the_read_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), 1 << 20);
    let (mut sender, mut receiver) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut sender, b"half")
        .await
        .expect("write");
    let stalled = store
        .receive(
            spec("k", b"half and more", Origin::Producer),
            &mut receiver,
            Duration::from_millis(50),
        )
        .await;
    assert!(matches!(stalled, Err(ObjectError::Stalled(_))), "{stalled:?}");
    // Retryable: the link stalled, not the request.
    let refused = RpcError::from(stalled.expect_err("stalled"));
    assert_eq!((refused.code, refused.retryable), (ErrorCode::Unavailable, true));
    drop(sender);
    assert!(store.lookup("coa", "k").await.expect("lookup").is_none());
}

/// Slow uploads cannot take every blocking thread: beyond `MAX_UPLOADS` a producer's upload
/// waits for a slot as long as for a byte, then is refused as retryable; a pull from a peer does
/// not wait; an upload that ends frees its slot for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_uploads_beyond_the_most_received_at_once_wait_and_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), 1 << 20);
    let never = b"a body that never arrives";
    let mut senders = Vec::new();
    let mut slow = Vec::new();
    for i in 0..MAX_UPLOADS {
        let (sender, mut receiver) = tokio::io::duplex(64);
        senders.push(sender);
        let store = store.clone();
        slow.push(tokio::spawn(async move {
            let spec = spec(&format!("slow-{i}"), never, Origin::Producer);
            store.receive(spec, &mut receiver, Duration::from_secs(60)).await
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.uploads.available_permits() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow uploads took their slots"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let body = b"a complete body";
    let busy = store
        .receive(
            spec("one-more", body, Origin::Producer),
            &mut &body[..],
            Duration::from_millis(100),
        )
        .await;
    assert!(matches!(busy, Err(ObjectError::Busy(_))), "{busy:?}");
    assert_eq!(
        RpcError::from(busy.expect_err("busy")).code,
        ErrorCode::ResourceExhausted
    );
    let pulled = Origin::Peer {
        digest: ObjectDigest::of(body),
    };
    store
        .receive(spec("pulled", body, pulled), &mut &body[..], Duration::from_millis(100))
        .await
        .expect("a pull from a peer does not wait for a producer's slot");

    drop(senders.pop());
    let stored = store
        .receive(
            spec("one-more", body, Origin::Producer),
            &mut &body[..],
            Duration::from_secs(10),
        )
        .await
        .expect("stored once an upload ended");
    assert_eq!(stored.size, body.len() as u64);
    drop(senders);
    for upload in slow {
        let ended = upload.await.expect("task");
        assert!(matches!(ended, Err(ObjectError::Truncated { .. })), "{ended:?}");
    }
}

#[tokio::test]
async fn a_pulled_body_with_another_digest_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), 1 << 20);
    let announced = Origin::Peer {
        digest: ObjectDigest::of(b"the referenced content"),
    };
    let forged = b"forged content, same len";
    let refused = store
        .receive(spec("p", forged, announced), &mut &forged[..], READ_TIMEOUT)
        .await;
    assert!(
        matches!(refused, Err(ObjectError::DigestMismatch { .. })),
        "{refused:?}"
    );
    assert!(store.lookup("coa", "p").await.expect("lookup").is_none());
}
