//! Test fixtures shared by the unit tests of the journal and the backpressure planner: a real
//! RocksDB in a temporary directory behind a running journal, and deterministic messages.

use std::{path::Path, sync::Arc, time::Duration};

use bsfg_proto::{Envelope, Fact, FetchedFact, Message};

use crate::{
    journal::{Journal, JournalConfig},
    storage::{RocksStorage, Storage},
};

pub const ZONE: &str = "plant-a";

/// A message from this node's zone to `to` (store buffer) with a deterministic id and content.
pub fn message(from: &str, to: &str, id: &str) -> Message {
    Message {
        envelope: Envelope {
            message_id: id.to_owned(),
            from_zone: from.to_owned(),
            to_zone: to.to_owned(),
            produced_at_unix_ms: 1_700_000_000_000,
            ..Envelope::default()
        },
        fact: Fact {
            subject: format!("item/{id}"),
            predicate: "recorded".into(),
            object_json: format!("{{\"id\":\"{id}\"}}"),
        },
    }
}

/// A page of facts from `from` addressed to [`ZONE`], at source offsets `first..`.
pub fn page(from: &str, first: u64, ids: &[&str]) -> Vec<FetchedFact> {
    ids.iter()
        .zip(first..)
        .map(|(id, offset)| FetchedFact {
            offset,
            message: message(from, ZONE, id),
        })
        .collect()
}

/// A journal over RocksDB in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub storage: Arc<RocksStorage>,
    pub journal: Journal,
}

impl Fixture {
    pub fn open(config: JournalConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (storage, journal) = start(dir.path(), config);
        Self { dir, storage, journal }
    }

    /// Closes the database (the writer thread stops with the last handle) and opens it again.
    pub fn reopen(self, config: JournalConfig) -> Self {
        let Self { dir, storage, journal } = self;
        drop(journal);
        let weak = Arc::downgrade(&storage);
        drop(storage);
        for _ in 0..500 {
            if weak.strong_count() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (storage, journal) = start(dir.path(), config);
        Self { dir, storage, journal }
    }

    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }
}

fn start(path: &Path, config: JournalConfig) -> (Arc<RocksStorage>, Journal) {
    let storage = Arc::new(RocksStorage::open(path, ZONE).expect("open storage"));
    let journal = Journal::start(storage.clone(), config).expect("start journal");
    (storage, journal)
}
