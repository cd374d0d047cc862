//! The artifact store's bounds against a real RocksDB and real files: capacity refuses what does
//! not fit and counts shared content once; the sweep deletes artifacts past retention that no
//! retained fact references — and keeps referenced, held, young and re-put ones; the space used
//! always equals a recount of the index and of the blob files on disk.

use std::{fs, path::Path, time::Duration};

use bsfg_proto::{model::now_unix_ms, ErrorCode, Message, RpcError};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{
    catalog::recount,
    tests::{blob_count, open_with, put, reference, Fixture, ROOMY},
    ObjectError, ObjectsConfig,
};
use crate::{
    storage::{Batch, CursorKey, DeleteReason, Storage, StoreAppend, StoreDelete},
    testkit,
};

/// Everything stored is past its retention at once.
const EXPIRED: ObjectsConfig = ObjectsConfig {
    retention: Duration::ZERO,
    ..ROOMY
};

fn fixture(config: ObjectsConfig) -> Fixture {
    open_with(tempfile::tempdir().expect("tempdir"), config)
}

/// Bytes of the blob files under `root`: the recount on disk.
pub(super) fn bytes_on_disk(root: &Path) -> u64 {
    let shards = fs::read_dir(root.join("objects/sha256")).expect("sha256 dir");
    let files = shards.flat_map(|shard| fs::read_dir(shard.expect("shard").path()).expect("shard dir"));
    files
        .map(|file| file.expect("file").metadata().expect("metadata").len())
        .sum()
}

/// The used space equals the recount of the index, the blob files and the gauge.
fn assert_usage_is_exact(f: &Fixture) {
    let used = f.catalog.space.used();
    assert_eq!(used, recount(f.storage.as_ref()).expect("recount"), "used vs index");
    assert_eq!(used, bytes_on_disk(f.dir.path()), "used vs files on disk");
    assert_eq!(f.blob_bytes.get(), i64::try_from(used).expect("small"), "gauge");
}

/// A fact in the store log addressed to `enterprise` that references `coa/<key>` (content `body`).
fn append_referencing(storage: &dyn Storage, offset: u64, key: &str, body: &[u8]) {
    let mut message: Message = testkit::message(testkit::ZONE, "enterprise", &format!("m{offset}"));
    message.envelope.object_media_type = Some("application/pdf".into());
    let r = reference(key, body);
    message.fact.object_json = format!(
        r#"{{"bucket":"{}","key":"{}","digest":"{}","size":{},"media_type":"{}"}}"#,
        r.bucket, r.key, r.digest, r.size, r.media_type
    );
    let batch = Batch {
        store: vec![StoreAppend {
            offset,
            appended_at_unix_ms: 1,
            message_id: message.envelope.message_id.clone(),
            peer: "enterprise".into(),
            origin: None,
            digest: message.content_digest().expect("digest"),
            encoded: bsfg_proto::codec::encode_value(&message).expect("encode"),
        }],
        store_high: Some(offset),
        ..Batch::default()
    };
    storage.commit(&batch).expect("commit");
}

/// Offsets of the store log's facts for `enterprise`.
fn stored(storage: &dyn Storage) -> Vec<u64> {
    let records = storage.read_store("enterprise", 0, u64::MAX, usize::MAX).expect("read");
    records.iter().map(|r| r.offset).collect()
}

fn delete_fact(storage: &dyn Storage, offset: u64) {
    let batch = Batch {
        store_deletes: vec![StoreDelete {
            offset,
            peer: "enterprise".into(),
            origin: None,
            to_zone: "enterprise".into(),
            message_id: format!("m{offset}"),
            reason: DeleteReason::Confirmed,
        }],
        ..Batch::default()
    };
    storage.commit(&batch).expect("commit");
}

#[test]
fn a_put_that_would_pass_the_capacity_is_refused_as_retryable_backpressure() {
    let f = fixture(ObjectsConfig {
        capacity_bytes: 12,
        ..ROOMY
    });
    put(&f.catalog, "a", b"123456").expect("6 of 12 bytes");
    put(&f.catalog, "same-content", b"123456").expect("shared content");
    assert_eq!(f.catalog.space.used(), 6, "shared content counts once");
    let full = put(&f.catalog, "b", b"1234567").expect_err("6 + 7 > 12");
    assert!(
        matches!(
            full,
            ObjectError::Full {
                size: 7,
                used: 6,
                capacity: 12,
                ..
            }
        ),
        "{full}"
    );
    let wire = RpcError::from(full);
    assert_eq!((wire.code, wire.retryable), (ErrorCode::ResourceExhausted, true));
    assert!(wire.message.contains("capacity_bytes"), "{}", wire.message);
    put(&f.catalog, "b", b"abcdef").expect("exactly full");
    assert_eq!(blob_count(f.dir.path()), 2, "nothing of the refused upload is left");
    assert_usage_is_exact(&f);
}

#[test]
fn unreferenced_artifacts_past_retention_are_deleted_and_give_their_space_back() {
    let f = fixture(EXPIRED);
    put(&f.catalog, "a", b"never referenced").expect("put");
    put(&f.catalog, "b", b"shared").expect("put");
    put(&f.catalog, "c", b"shared").expect("same content");
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    let mut keys: Vec<_> = swept.expired.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "b", "c"]);
    assert!(
        !swept.scanned,
        "no candidate was ever referenced: the logs are not read"
    );
    assert!(f.catalog.lookup("coa", "a").expect("lookup").is_none());
    assert_eq!(blob_count(f.dir.path()), 0);
    let series: usize = prometheus::core::Collector::collect(&f.usage)
        .iter()
        .map(|family| family.get_metric().len())
        .sum();
    assert_eq!(series, 0, "the emptied bucket leaves no series behind");
    assert_usage_is_exact(&f);
}

#[test]
fn young_artifacts_are_kept() {
    let f = fixture(ROOMY);
    put(&f.catalog, "a", b"stored a moment ago").expect("put");
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    assert!(swept.expired.is_empty(), "{swept:?}");
    assert!(f.catalog.lookup("coa", "a").expect("lookup").is_some());
}

#[test]
fn an_artifact_is_kept_while_a_retained_fact_references_it() {
    let f = fixture(EXPIRED);
    put(&f.catalog, "coa-1", b"analysis").expect("put");
    f.catalog
        .reference(&reference("coa-1", b"analysis"), Some("enterprise"))
        .expect("reference");
    append_referencing(f.storage.as_ref(), 1, "coa-1", b"analysis");
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    assert!(swept.scanned && swept.expired.is_empty(), "{swept:?}");
    assert!(f.catalog.lookup("coa", "coa-1").expect("lookup").is_some());

    delete_fact(f.storage.as_ref(), 1);
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    assert_eq!(swept.expired.len(), 1, "{swept:?}");
    assert!(swept.expired[0].was_referenced);
    assert_usage_is_exact(&f);
}

/// A store-buffer fact its peer has confirmed is there, its artifact pulled: kept for its
/// retention (the dedupe window), it no longer keeps the artifact here. Before, a relay's
/// artifact store filled with artifacts its next hops had long received, and a full store
/// stalled the link for `store.retention`.
#[test]
fn a_fact_its_peer_confirmed_keeps_its_artifact_no_longer() {
    let f = fixture(EXPIRED);
    for (offset, key) in [(1, "coa-1"), (2, "coa-2")] {
        put(&f.catalog, key, key.as_bytes()).expect("put");
        f.catalog
            .reference(&reference(key, key.as_bytes()), Some("enterprise"))
            .expect("reference");
        append_referencing(f.storage.as_ref(), offset, key, key.as_bytes());
    }
    let confirm = |offset| {
        let batch = Batch {
            cursors: vec![(CursorKey::Peer("enterprise".into()), offset)],
            ..Batch::default()
        };
        f.storage.commit(&batch).expect("confirm");
    };
    confirm(1);
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    let expired: Vec<&str> = swept.expired.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(expired, ["coa-1"], "the confirmed fact's artifact only");
    assert!(
        f.catalog.lookup("coa", "coa-2").expect("lookup").is_some(),
        "still on its way"
    );
    assert_eq!(stored(f.storage.as_ref()), [1, 2], "the facts themselves stay");

    confirm(2);
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    assert_eq!(swept.expired.len(), 1, "{swept:?}");
    assert_usage_is_exact(&f);
}

#[test]
fn a_held_artifact_survives_a_sweep_that_began_before_its_fact_was_stored() {
    let f = fixture(EXPIRED);
    put(&f.catalog, "k", b"on its way").expect("put");
    // What an append does: hold, mark referenced, then journal the fact.
    let hold = f.catalog.holds.hold("coa", "k");
    f.catalog
        .reference(&reference("k", b"on its way"), None)
        .expect("reference");
    assert!(f
        .catalog
        .sweep(f.storage.as_ref(), now_unix_ms())
        .expect("sweep")
        .expired
        .is_empty());
    // The fact is committed and the hold released while the next sweep runs (after its start).
    let generation = f.catalog.holds.begin_sweep();
    append_referencing(f.storage.as_ref(), 1, "k", b"on its way");
    drop(hold);
    assert!(!f.catalog.holds.may_delete("coa", "k", generation));
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    assert!(swept.expired.is_empty(), "the fact holds it now: {swept:?}");
}

#[test]
fn putting_an_artifact_again_starts_its_retention_again() {
    let f = fixture(ObjectsConfig {
        retention: Duration::from_millis(300),
        ..ROOMY
    });
    put(&f.catalog, "k", b"content").expect("put");
    std::thread::sleep(Duration::from_millis(350));
    put(&f.catalog, "k", b"content").expect("again, identical");
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    assert!(swept.expired.is_empty(), "{swept:?}");
}

#[test]
fn blob_files_no_key_names_are_removed_by_the_sweep() {
    let f = fixture(ROOMY);
    let kept = put(&f.catalog, "k", b"named").expect("put");
    // What a crash between an index commit and a file removal leaves behind.
    let orphan = bsfg_proto::ObjectDigest::of(b"orphan");
    let path = f.catalog.blobs.path(&orphan);
    fs::create_dir_all(path.parent().expect("shard")).expect("shard");
    fs::write(&path, b"orphan").expect("orphan");
    let swept = f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
    assert_eq!(swept.orphans, 1);
    assert!(!path.exists() && f.catalog.blobs.path(&kept.digest).exists());
    assert_usage_is_exact(&f);
}

/// Random puts, replacements, references, fact deletions and sweeps: after each step the space
/// used equals a recount of the index and of the files on disk.
#[test]
fn usage_equals_a_recount_through_random_operations() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let f = fixture(ObjectsConfig {
        capacity_bytes: 64,
        ..EXPIRED
    });
    let mut offset = 0;
    for _ in 0..200 {
        let key = format!("k{}", rng.random_range(0..6));
        let body = vec![b'a' + rng.random_range(0..4u8); rng.random_range(1..12)];
        match rng.random_range(0..10) {
            0..5 => match put(&f.catalog, &key, &body) {
                Ok(_) | Err(ObjectError::Full { .. } | ObjectError::Immutable { .. }) => {}
                Err(e) => panic!("seed {seed}: {e}"),
            },
            5..7 => {
                if let Some(entry) = f.catalog.lookup("coa", &key).expect("lookup") {
                    let stored = fs::read(f.catalog.blobs.path(&entry.digest)).expect("blob");
                    f.catalog.reference(&reference(&key, &stored), None).expect("reference");
                    offset += 1;
                    append_referencing(f.storage.as_ref(), offset, &key, &stored);
                }
            }
            7 if offset > 0 => delete_fact(f.storage.as_ref(), rng.random_range(1..=offset)),
            _ => {
                f.catalog.sweep(f.storage.as_ref(), now_unix_ms()).expect("sweep");
            }
        }
        assert_usage_is_exact(&f);
    }
}
