//! Test fixtures shared by the unit tests: a real RocksDB in a temporary directory behind a
//! running journal, with the fault seam ([`faults`]) between them; deterministic messages; and a
//! log drain that keeps every record for assertions ([`logs`]).

pub mod faults;
pub mod logs;

use std::{
    path::Path,
    sync::{mpsc, Arc},
    time::Duration,
};

use bsfg_proto::{AppendResponse, Envelope, Fact, FetchedFact, Message};

use self::faults::{Faults, FaultyStorage};
use crate::{
    events::{StorageHealth, Telemetry},
    journal::{AppendMode, Journal, JournalConfig, JournalError, Prepared},
    metrics::Metrics,
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

/// A journal over RocksDB in a temporary directory, with [`Faults`] in between: the journal's
/// storage calls follow the script of `faults`; `storage` is the database itself.
///
/// Fields drop in order: the journal (its writer thread then lets go of the database), the
/// storage, the wait for the database to close, and only then the directory. A test binary
/// that exits while RocksDB's background threads still run corrupts its heap.
pub struct Fixture {
    pub journal: Journal,
    pub storage: Arc<RocksStorage>,
    pub faults: Faults,
    closed: Closed,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn open(config: JournalConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start(dir, config)
    }

    /// Closes the database and hands back its directory, for a test to damage or open itself.
    pub fn close(self) -> tempfile::TempDir {
        let Self {
            journal,
            storage,
            closed,
            dir,
            ..
        } = self;
        drop(journal);
        drop(storage);
        drop(closed);
        dir
    }

    /// Opens a directory [`Fixture::close`] handed back.
    pub fn open_in(dir: tempfile::TempDir, config: JournalConfig) -> Self {
        Self::start(dir, config)
    }

    /// Closes the database (the writer thread stops with the last handle) and opens it again.
    pub fn reopen(self, config: JournalConfig) -> Self {
        Self::start(self.close(), config)
    }

    fn start(dir: tempfile::TempDir, config: JournalConfig) -> Self {
        let faults = Faults::default();
        let (storage, journal) = start(dir.path(), config, &faults);
        Self {
            closed: Closed(storage.closed()),
            journal,
            storage,
            faults,
            dir,
        }
    }

    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// Appends one fact, as an AppendFact call does.
    pub async fn append(&self, message: Message) -> Result<AppendResponse, JournalError> {
        let prepared = Prepared::new(message)?;
        let mut results = self.journal.append(vec![prepared], AppendMode::EachAlone).await?;
        results.pop().expect("the journal answers one outcome per fact")
    }

    /// Appends one call of facts for `enterprise` with the ids `ids`, each of about `pad` bytes;
    /// every one must be stored.
    pub async fn append_call(&self, ids: impl Iterator<Item = String>, pad: usize) {
        let facts = ids
            .map(|id| {
                let mut m = message(ZONE, "enterprise", &id);
                m.fact.object_json = format!("\"{}\"", "x".repeat(pad));
                Prepared::new(m).expect("prepare")
            })
            .collect();
        let results = self.journal.append(facts, AppendMode::EachAlone).await.expect("append");
        assert!(results.iter().all(Result::is_ok));
    }
}

/// Waits, when dropped, until the database it watches is closed.
struct Closed(mpsc::Receiver<()>);

impl Drop for Closed {
    fn drop(&mut self) {
        // Only a disconnect is expected; a timeout means a handle leaked, which the next
        // open of the same directory reports as a lock error.
        let _ = self.0.recv_timeout(Duration::from_secs(10));
    }
}

fn start(path: &Path, config: JournalConfig, faults: &Faults) -> (Arc<RocksStorage>, Journal) {
    let storage = Arc::new(RocksStorage::open(path, ZONE).expect("open storage"));
    let faulty = Arc::new(FaultyStorage::new(storage.clone(), faults.clone()));
    let journal = Journal::start(faulty, config, health()).expect("start journal");
    (storage, journal)
}

/// Telemetry that keeps nothing: a discarding logger and metrics of their own.
pub fn telemetry() -> Telemetry {
    let metrics = Arc::new(Metrics::new(ZONE, "test").expect("metrics"));
    Telemetry::new(slog::Logger::root(slog::Discard, slog::o!()), metrics, &[])
}

/// Storage health reporting into [`telemetry`].
pub fn health() -> StorageHealth {
    StorageHealth::new(telemetry())
}
