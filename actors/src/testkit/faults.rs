//! A seam for storage faults (sled's failpoints, as a wrapper): [`FaultyStorage`] passes every
//! call to the storage it wraps (a real RocksDB in the fixtures) unless a test has scripted what
//! the next calls of a kind do — fail with an injected engine error, or hold until released, so a
//! test can line several commands up behind one commit.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex, PoisonError,
    },
};

use tokio::sync::oneshot;

use crate::storage::{
    Batch, DiskSpace, IdemRecord, Index, Log, LogRecord, Recovered, Storage, StorageError, WindowEntry,
};

/// The kinds of storage calls a test can script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`Storage::commit`]: the journal's group commit.
    Commit,
    /// [`Storage::lookup`] in one index: the idempotency reads the journal makes while planning
    /// a group (appends look up the store index, inserts the forward index).
    Lookup(Index),
    /// Log reads: [`Storage::read_store`], [`Storage::read_forward`], [`Storage::log_sizes`].
    Read,
}

/// What one scripted call does.
enum Fault {
    Fail,
    Damaged,
    Standby,
    Hold {
        reached: oneshot::Sender<()>,
        release: mpsc::Receiver<()>,
    },
}

/// The script, shared between a test and its [`FaultyStorage`]; cheap to clone.
#[derive(Clone, Default)]
pub struct Faults(Arc<Script>);

#[derive(Default)]
struct Script {
    next: Mutex<HashMap<Op, VecDeque<Fault>>>,
    injected: AtomicU64,
    /// What [`Storage::record_limit`] answers (0: none), and the most bytes of facts a commit
    /// then takes, as an HA zone's log refuses a larger record.
    record_limit: AtomicU64,
}

/// A call held by [`Faults::hold`]: released when [`Held::release`] is called or it is dropped.
pub struct Held {
    reached: Option<oneshot::Receiver<()>>,
    release: mpsc::Sender<()>,
}

impl Held {
    /// Returns once the held call has started (and is waiting).
    pub async fn reached(&mut self) {
        if let Some(reached) = self.reached.take() {
            let _ = reached.await;
        }
    }

    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl Faults {
    /// The storage reports a record limit of `bytes` and refuses a commit whose facts' encodings
    /// pass it, as an HA zone's replicated log does.
    pub fn limit_records(&self, bytes: usize) {
        self.0.record_limit.store(bytes as u64, Ordering::SeqCst);
    }

    /// The next unscripted call of `op` fails with an injected engine error.
    pub fn fail(&self, op: Op) {
        self.push(op, Fault::Fail);
    }

    /// The next unscripted call of `op` fails as if it met damaged data.
    pub fn damage(&self, op: Op) {
        self.push(op, Fault::Damaged);
    }

    /// The next unscripted call of `op` is refused as an HA standby refuses writes.
    pub fn refuse_as_standby(&self, op: Op) {
        self.push(op, Fault::Standby);
    }

    /// The next unscripted call of `op` waits until the returned [`Held`] lets it go.
    pub fn hold(&self, op: Op) -> Held {
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = mpsc::channel();
        self.push(
            op,
            Fault::Hold {
                reached: reached_tx,
                release: release_rx,
            },
        );
        Held {
            reached: Some(reached),
            release,
        }
    }

    /// Forgets every scripted fault no call has met yet.
    pub fn clear(&self) {
        self.0.next.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// How many failures have been injected so far.
    pub fn injected(&self) -> u64 {
        self.0.injected.load(Ordering::SeqCst)
    }

    fn push(&self, op: Op, fault: Fault) {
        let mut next = self.0.next.lock().unwrap_or_else(PoisonError::into_inner);
        next.entry(op).or_default().push_back(fault);
    }

    /// Plays the script for one call of `op`.
    fn call(&self, op: Op) -> Result<(), StorageError> {
        let fault = {
            let mut next = self.0.next.lock().unwrap_or_else(PoisonError::into_inner);
            next.get_mut(&op).and_then(VecDeque::pop_front)
        };
        match fault {
            None => Ok(()),
            Some(Fault::Fail) => {
                self.0.injected.fetch_add(1, Ordering::SeqCst);
                Err(StorageError::Engine(format!("injected {op:?} fault")))
            }
            Some(Fault::Damaged) => {
                self.0.injected.fetch_add(1, Ordering::SeqCst);
                Err(StorageError::Corrupt {
                    what: "stored data",
                    key: Vec::new(),
                    reason: format!("injected {op:?} damage"),
                })
            }
            Some(Fault::Standby) => Err(StorageError::Standby("injected: this instance is a standby".into())),
            Some(Fault::Hold { reached, release }) => {
                let _ = reached.send(());
                // Released, or the test dropped its `Held`: go on either way.
                let _ = release.recv();
                Ok(())
            }
        }
    }
}

/// `S` with [`Faults`] in front of it.
pub struct FaultyStorage<S> {
    inner: Arc<S>,
    faults: Faults,
}

impl<S: Storage> FaultyStorage<S> {
    pub fn new(inner: Arc<S>, faults: Faults) -> Self {
        Self { inner, faults }
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn recover(&self) -> Result<Recovered, StorageError> {
        self.inner.recover()
    }

    fn record_limit(&self) -> Option<usize> {
        match self.faults.0.record_limit.load(Ordering::SeqCst) {
            0 => self.inner.record_limit(),
            bytes => usize::try_from(bytes).ok(),
        }
    }

    fn lookup(&self, index: Index, keys: &[(&str, &str)]) -> Result<Vec<Option<IdemRecord>>, StorageError> {
        self.faults.call(Op::Lookup(index))?;
        self.inner.lookup(index, keys)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        self.faults.call(Op::Commit)?;
        let facts = batch.store.iter().map(|a| a.encoded.len()).sum::<usize>()
            + batch.forward.iter().map(|i| i.encoded.len()).sum::<usize>();
        if let Some(limit) = self.record_limit().filter(|limit| facts > *limit) {
            return Err(StorageError::Engine(format!(
                "record of {facts} bytes is over the log's limit of {limit}"
            )));
        }
        self.inner.commit(batch)
    }

    fn read_store(&self, peer: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError> {
        self.faults.call(Op::Read)?;
        self.inner.read_store(peer, after, upto, limit)
    }

    fn count_store(&self, peer: &str, after: u64, upto: u64) -> Result<u64, StorageError> {
        self.inner.count_store(peer, after, upto)
    }

    fn read_forward(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError> {
        self.faults.call(Op::Read)?;
        self.inner.read_forward(after, upto, limit)
    }

    fn store_zones(&self) -> Result<Vec<String>, StorageError> {
        self.inner.store_zones()
    }

    fn read_window(&self, log: Log, after: u64, limit: usize) -> Result<Vec<WindowEntry>, StorageError> {
        self.inner.read_window(log, after, limit)
    }

    fn log_sizes(&self, log: Log, offsets: &[u64]) -> Result<Vec<Option<u64>>, StorageError> {
        self.faults.call(Op::Read)?;
        self.inner.log_sizes(log, offsets)
    }

    fn read_entry(&self, log: Log, offset: u64) -> Result<Option<LogRecord>, StorageError> {
        self.faults.call(Op::Read)?;
        self.inner.read_entry(log, offset)
    }

    fn find_damage(
        &self,
        log: Log,
        peer: Option<&str>,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        self.inner.find_damage(log, peer, after, upto, limit)
    }

    fn disk(&self) -> Result<DiskSpace, StorageError> {
        self.inner.disk()
    }

    fn reclaim(&self, store_below: u64, forward_below: u64) -> Result<(), StorageError> {
        self.inner.reclaim(store_below, forward_below)
    }
}
