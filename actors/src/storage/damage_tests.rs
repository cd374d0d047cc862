//! Damage against a real RocksDB: bytes changed in the middle of a write-ahead log or of a table
//! file. A damaged log refuses to open and says where and what would be lost; a damaged table is
//! met by reads, never served; `accept_loss` keeps everything readable, records exactly the lost
//! offsets, drops their index entries (a lost fact sent again is new), and leaves usage equal to
//! a recount.

use std::{fs, path::Path};

use super::{CursorKey, Log, RocksStorage, Storage, StorageError};
use crate::{
    journal::JournalConfig,
    testkit::{message, Fixture, ZONE},
};

/// Appends `count` facts of about `pad` bytes in calls of 50.
async fn fill(fixture: &Fixture, count: usize, pad: usize) {
    for call in 0..count / 50 {
        fixture
            .append_call((0..50).map(|i| format!("f{}", call * 50 + i)), pad)
            .await;
    }
}

/// Changes 16 bytes in the middle of the largest file of `dir` with `extension`.
fn damage_largest(dir: &Path, extension: &str) {
    let largest = fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .max_by_key(|p| fs::metadata(p).map_or(0, |m| m.len()))
        .expect("a file to damage");
    let mut bytes = fs::read(&largest).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 16].copy_from_slice(&[0xde; 16]);
    fs::write(&largest, bytes).expect("write");
}

fn stored(storage: &RocksStorage) -> Vec<u64> {
    let records = storage.read_store("enterprise", 0, u64::MAX, usize::MAX).expect("read");
    records.iter().map(|r| r.offset).collect()
}

#[tokio::test]
async fn a_damaged_log_refuses_to_open_and_accepting_the_loss_records_exactly_what_it_held() {
    let fixture = Fixture::open(JournalConfig::default());
    fill(&fixture, 2000, 300).await;
    let dir = fixture.close();
    damage_largest(dir.path(), "log");

    let Err(StorageError::Damaged(report)) = RocksStorage::open(dir.path(), ZONE) else {
        panic!("a damaged log must not open");
    };
    let text = report.to_string();
    let [damage] = &report.wal[..] else { panic!("{text}") };
    assert!(damage.records_after, "{text}");
    assert!(
        text.contains(&damage.file.display().to_string()) && text.contains(damage.kind),
        "{text}"
    );
    let lost = report.lost.store.clone();
    assert!(!lost.is_empty() && lost.len() <= 100, "one or two calls of 50: {text}");
    assert!(text.contains("bsfg storage accept-loss"), "{text}");

    let salvaged = RocksStorage::accept_loss(dir.path(), ZONE, "local:test", &mut |_| {}).expect("accept");
    let record = salvaged.record.expect("a loss is recorded");
    assert_eq!(record.lost.store, lost, "what was reported is what is recorded");
    let storage = RocksStorage::open(dir.path(), ZONE).expect("opens now");
    let offsets = stored(&storage);
    assert_eq!(offsets.len() + lost.len(), 2000);
    assert!(lost.iter().all(|o| !offsets.contains(o)), "nothing lost is present");
    assert_eq!(storage.losses().expect("losses"), vec![record]);
    assert_eq!(
        storage.recover().expect("recover").usage,
        storage.recount().expect("recount")
    );
    assert_eq!(
        storage.recover().expect("recover").store_high,
        2000,
        "offsets are never reused"
    );
}

#[tokio::test]
async fn a_damaged_commit_followed_only_by_its_confirmation_is_counted_lost_and_its_offsets_never_reused() {
    let fixture = Fixture::open(JournalConfig::default());
    fill(&fixture, 50, 100).await;
    // The last call is large, so the middle of the log falls in it; then the peer confirms it.
    fixture.append_call((0..50).map(|i| format!("big{i}")), 10_000).await;
    let peer = CursorKey::Peer("enterprise".into());
    fixture.journal.confirm(peer.clone(), 100).await.expect("confirm");
    let dir = fixture.close();
    damage_largest(dir.path(), "log");

    let Err(StorageError::Damaged(report)) = RocksStorage::open(dir.path(), ZONE) else {
        panic!("a damaged log must not open");
    };
    let expected: Vec<u64> = (51..=100).collect();
    assert_eq!(
        report.lost.store, expected,
        "the large call, bounded by its confirmation: {report}"
    );
    let salvaged = RocksStorage::accept_loss(dir.path(), ZONE, "local:test", &mut |_| {}).expect("accept");
    assert_eq!(salvaged.record.expect("a loss is recorded").lost.store, expected);
    let storage = RocksStorage::open(dir.path(), ZONE).expect("opens now");
    let recovered = storage.recover().expect("recover");
    assert_eq!(recovered.cursors.get(&peer), Some(&100));
    assert_eq!(
        recovered.store_high, 100,
        "new facts get offsets above the peer's frontier, never ones it already confirmed"
    );
}

#[tokio::test]
async fn a_damaged_table_is_never_served_and_accepting_the_loss_keeps_the_rest() {
    let fixture = Fixture::open(JournalConfig::default());
    fill(&fixture, 1000, 8000).await;
    fixture.storage.reclaim(0, 0).expect("flush to table files");
    let dir = fixture.close();
    damage_largest(dir.path(), "sst");

    let storage = RocksStorage::open(dir.path(), ZONE).expect("a damaged table still opens");
    let read = storage.read_store("enterprise", 0, u64::MAX, usize::MAX);
    assert!(matches!(&read, Err(e) if e.is_damage()), "{read:?}");
    let damaged = storage.find_damage(Log::Store, Some("enterprise"), 0, u64::MAX, usize::MAX);
    let damaged = damaged.expect("located");
    assert!(!damaged.is_empty() && damaged.len() < 10, "{damaged:?}");
    drop(storage);

    let salvaged = RocksStorage::accept_loss(dir.path(), ZONE, "local:test", &mut |_| {}).expect("accept");
    let record = salvaged.record.expect("recorded");
    assert_eq!(record.lost.store, damaged, "exactly the damaged entries");
    assert!(
        salvaged.moved_to.is_some_and(|d| d.exists()),
        "the damaged files are kept aside"
    );
    let fixture = Fixture::open_in(dir, JournalConfig::default());
    assert_eq!(stored(&fixture.storage).len(), 1000 - damaged.len(), "the rest reads");
    let usage = fixture.storage.recover().expect("recover").usage;
    assert_eq!(usage, fixture.storage.recount().expect("recount"));
    let again = message(ZONE, "enterprise", &format!("f{}", damaged[0] - 1));
    let ack = fixture.append(again).await.expect("append");
    assert!(
        !ack.duplicate && ack.offset > 1000,
        "a lost fact sent again is new: {ack:?}"
    );
}

#[tokio::test]
async fn accepting_a_loss_where_nothing_is_damaged_changes_nothing() {
    let fixture = Fixture::open(JournalConfig::default());
    fill(&fixture, 100, 10).await;
    let dir = fixture.close();
    let salvaged = RocksStorage::accept_loss(dir.path(), ZONE, "local:test", &mut |_| {}).expect("accept");
    assert_eq!((salvaged.record, salvaged.moved_to), (None, None));
    assert_eq!(salvaged.kept.store.facts, 100);
    let storage = RocksStorage::open(dir.path(), ZONE).expect("open");
    assert!(storage.losses().expect("losses").is_empty());
}

/// Every file of `dir` with its content, sorted by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

/// A directory whose `CURRENT` file is gone (deleted by hand, a partial restore) holds facts in
/// logs and tables nothing lists any more: it is refused, at every try and without a change to
/// it, rather than opened as a new, empty database that the next open would clean up.
#[tokio::test]
async fn a_directory_without_its_current_file_is_refused_every_time_and_left_as_it_is() {
    let fixture = Fixture::open(JournalConfig::default());
    fill(&fixture, 500, 300).await;
    let dir = fixture.close();
    fs::remove_file(dir.path().join("CURRENT")).expect("remove CURRENT");
    let before = contents(dir.path());
    for attempt in 1..=2 {
        let refused = RocksStorage::open(dir.path(), ZONE).err();
        let Some(error @ StorageError::Headless { .. }) = refused else {
            panic!("attempt {attempt}: opened, or refused otherwise: {refused:?}");
        };
        assert!(error.is_damage(), "an operator must decide");
        let text = error.to_string();
        assert!(text.contains("CURRENT") && text.contains(".log"), "{text}");
        assert_eq!(contents(dir.path()), before, "attempt {attempt} changed the directory");
    }
    assert_eq!(
        RocksStorage::unlisted_files(&dir.path().join("absent")).expect("list"),
        Vec::<String>::new(),
        "a directory that does not exist yet is a new database"
    );
}

/// A table file gone (or its index changed) refuses the open too, but no replay goes around it:
/// the refusal says so and sends the operator to a backup, and `accept-loss` says the same
/// instead of RocksDB's bare error, changing nothing.
#[tokio::test]
async fn a_missing_table_file_is_refused_with_the_way_out_that_works() {
    let fixture = Fixture::open(JournalConfig::default());
    fill(&fixture, 500, 300).await;
    fixture.storage.flush().expect("flush to table files");
    let dir = fixture.close();
    let table = fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a table file");
    fs::remove_file(&table).expect("remove the table");

    let refused = RocksStorage::open(dir.path(), ZONE).err();
    let Some(StorageError::Damaged(report)) = refused else {
        panic!("a missing table must not open: {refused:?}");
    };
    let text = report.to_string();
    assert!(report.wal.is_empty(), "{text}");
    assert!(text.contains("table file") && text.contains("backup"), "{text}");
    assert!(!text.contains("run `bsfg storage accept-loss"), "{text}");

    let before = contents(dir.path());
    let refused = RocksStorage::accept_loss(dir.path(), ZONE, "local:test", &mut |_| {}).err();
    let Some(StorageError::Salvage(reason)) = refused else {
        panic!("accept-loss cannot go around a missing table: {refused:?}");
    };
    assert!(
        reason.contains("backup") && reason.contains("Nothing was changed"),
        "{reason}"
    );
    assert_eq!(contents(dir.path()), before, "accept-loss changed the directory");
}
