//! Pages read while deletions commit, against a real RocksDB. A page of the store log is read from
//! one moment of the database: it is never short of its limit while entries after it remain, since
//! a short page tells its reader that it holds everything up to the high offset (a peer confirms
//! that far, and the artifact sweep ends its scan there).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use super::{Batch, DeleteReason, Storage, StoreDelete};
use crate::{journal::JournalConfig, testkit::Fixture};

const FACTS: u64 = 6_000;
const DELETED: u64 = 5_000;
const PAGE: usize = 10;

#[tokio::test]
async fn a_page_read_while_older_entries_are_deleted_is_never_short() {
    let fixture = Fixture::open(JournalConfig::default());
    for call in 0..FACTS / 500 {
        fixture
            .append_call((0..500).map(|i| format!("f{}", call * 500 + i)), 0)
            .await;
    }
    // Retention's order: the oldest entry first, one commit each, so the first entries of every
    // page the reader asks for are the ones being deleted.
    let reads = Arc::new(AtomicU64::new(0));
    let deleter = {
        let (storage, reads) = (fixture.storage.clone(), reads.clone());
        std::thread::spawn(move || {
            // The deletions start once the reader reads, so the two overlap however busy the host.
            while reads.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            for offset in 1..=DELETED {
                let delete = StoreDelete {
                    offset,
                    peer: "enterprise".into(),
                    origin: None,
                    to_zone: "enterprise".into(),
                    message_id: format!("f{}", offset - 1),
                    reason: DeleteReason::Confirmed,
                };
                let batch = Batch {
                    store_deletes: vec![delete],
                    ..Batch::default()
                };
                storage.commit(&batch).expect("delete");
            }
        })
    };
    while !deleter.is_finished() {
        let page = fixture
            .storage
            .read_store("enterprise", 0, u64::MAX, PAGE)
            .expect("read");
        let offsets: Vec<u64> = page.iter().map(|r| r.offset).collect();
        let (kept, read) = (FACTS - DELETED, reads.fetch_add(1, Ordering::SeqCst));
        assert_eq!(
            offsets.len(),
            PAGE,
            "read {read}: a short page while {kept} entries stay: {offsets:?}"
        );
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "read {read}: a gap in {offsets:?}"
        );
    }
    deleter.join().expect("deleter");
    let left = fixture
        .storage
        .read_store("enterprise", 0, u64::MAX, usize::MAX)
        .expect("read");
    assert_eq!(left.len() as u64, FACTS - DELETED);
    println!(
        "{} pages read while {DELETED} deletions committed",
        reads.load(Ordering::SeqCst)
    );
}
