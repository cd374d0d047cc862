//! The journal: the single writer in front of the storage port, with group commit.
//!
//! Appends, pulled pages (facts delivered into the forward log and facts relayed into the store
//! log, one command per page) and cursor confirmations from every caller queue on one bounded
//! channel. A dedicated thread (never an actix arbiter) takes everything waiting, decides
//! idempotency and assigns offsets in queue order, writes it all as one `Batch` (one fsync), and
//! only then answers each caller. Being the only writer is what makes offset assignment and
//! `putIfAbsent` race-free, and what keeps [`Usage`] exact: the writer counts every entry it
//! writes or deletes (deletions are journal commands too, see `delete`) and persists the counters
//! in the same batch. Watch channels publish the highest committed offsets, so fetchers can
//! long-poll without touching storage, and the usage, so admission never reads storage. Every
//! commit's outcome goes to the node's [`StorageHealth`]; while commits fail, a probe (a commit
//! that only rewrites the usage) tells when storage works again. A commit that hangs is watched
//! (`stall`): past the node's `write_stall_timeout` its callers are answered `UNAVAILABLE`.

mod budget;
mod delete;
#[cfg(test)]
mod fault_tests;
mod group;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod relay_tests;
mod stall;
#[cfg(test)]
mod tests;

pub use delete::DeletePlan;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bsfg_proto::{codec, AppendResponse, Envelope, ErrorCode, FetchedFact, Message, RpcError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    events::StorageHealth,
    storage::{fits_record, CursorKey, Digest, Storage, StorageError, Usage},
};

/// One group commit stops taking commands once it holds this many entries (facts appended or
/// inserted, cursors, deletion plans); a command is never split, so a group may end a little past it.
const MAX_GROUP: usize = 4096;
/// A group takes no command that would bring its facts' encodings past this many bytes, so
/// that it fits one record of an HA zone's log (4 MiB) with room to spare; a command is never
/// split, so a larger one (an in-order call, one large fact) is a group alone.
const MAX_GROUP_BYTES: usize = 2 << 20;
/// A pulled page, and an append of facts that each stand alone, are queued in commands of at
/// most this many bytes of fact encodings (a single larger fact alone), so that a group holding
/// one stays within a record of an HA zone's log whatever the size of the page or call (up to
/// `max_frame_bytes`).
const MAX_COMMAND_BYTES: usize = 1 << 20;
/// Queue length in front of the writer; callers wait (backpressure) when it is full.
const QUEUE: usize = 16 * 1024;
/// How long a commit may hang before its callers are answered (`node.write_stall_timeout`).
pub const DEFAULT_WRITE_STALL: Duration = Duration::from_secs(30);

/// Why the journal refused or failed a command.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("message_id {message_id:?} already holds other content (offset {offset})")]
    AlreadyExists { message_id: String, offset: u64 },
    #[error("cannot confirm offset {offset}: the buffer ends at {high}")]
    BeyondEnd { offset: u64, high: u64 },
    #[error("the store buffer is full: {retained} bytes retained, this fact needs {needed} more, capacity is {capacity} bytes; retry in a moment (confirmed facts are being reclaimed) or once the peer has caught up")]
    Full { retained: u64, needed: u64, capacity: u64 },
    #[error("the data directory's file system is nearly full: new facts are refused until confirmed facts are reclaimed or space is freed (node.disk_reserve_bytes)")]
    DiskFull,
    #[error("message does not encode: {0}")]
    Encode(String),
    #[error("no consumer {0:?} with a cursor: it has never confirmed anything, or it was deleted")]
    UnknownCursor(String),
    #[error("cannot rewind {name:?} to {to}: its cursor is at {cursor}, and a rewind only moves it back")]
    RewindForward { name: String, to: u64, cursor: u64 },
    #[error(
        "an in-order append of {bytes} bytes of facts cannot be one record of this HA zone's log, which \
         takes at most {limit} bytes with each fact's keys: send it in smaller calls (bsfg append --jsonl sends \
         at most 1 MiB per call)"
    )]
    TooLargeForLog { bytes: usize, limit: usize },
    #[error("storage fault: {0}")]
    Storage(String),
    #[error("storage stalled: a write to the data directory has not completed within node.write_stall_timeout ({0:?}); the outcome of this call is unknown, retry it (a retried append is stored once)")]
    Stalled(Duration),
    /// This instance of an HA zone is not the zone's writer (a standby): no fault of its storage.
    #[error("{0}")]
    NotWriter(String),
    #[error("the journal has shut down")]
    Closed,
}

impl From<JournalError> for RpcError {
    fn from(error: JournalError) -> Self {
        let code = match &error {
            JournalError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            JournalError::BeyondEnd { .. }
            | JournalError::Encode(_)
            | JournalError::RewindForward { .. }
            | JournalError::TooLargeForLog { .. } => ErrorCode::InvalidArgument,
            JournalError::UnknownCursor(_) => ErrorCode::NotFound,
            JournalError::Full { .. } | JournalError::DiskFull => ErrorCode::ResourceExhausted,
            JournalError::Storage(_) | JournalError::Stalled(_) | JournalError::NotWriter(_) | JournalError::Closed => {
                ErrorCode::Unavailable
            }
        };
        RpcError::new(code, error.to_string())
    }
}

impl From<StorageError> for JournalError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Standby(refused) => Self::NotWriter(refused),
            error => Self::Storage(error.to_string()),
        }
    }
}

/// A message encoded and its content digested on the caller's thread, so the writer only writes.
/// Only the envelope is kept, for idempotency and routing: the fact's text is freed on the
/// caller's thread too, not the writer's.
#[derive(Debug)]
pub struct Prepared {
    pub envelope: Envelope,
    encoded: Vec<u8>,
    digest: Digest,
    /// For the store log: the peer that pulls it (its `to_zone` unless [`Prepared::via`] says
    /// otherwise).
    peer: String,
}

impl Prepared {
    pub fn new(message: Message) -> Result<Self, JournalError> {
        let encoded = codec::encode_value(&message).map_err(|e| JournalError::Encode(e.to_string()))?;
        let digest = message
            .content_digest()
            .map_err(|e| JournalError::Encode(e.to_string()))?;
        let peer = message.envelope.to_zone.clone();
        Ok(Self {
            envelope: message.envelope,
            encoded,
            digest,
            peer,
        })
    }

    /// The same fact, to be pulled by `peer` (the next hop of a routed or relayed fact).
    pub fn via(mut self, peer: &str) -> Self {
        peer.clone_into(&mut self.peer);
        self
    }
}

/// What a failed fact of an append command means for the facts after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AppendMode {
    /// Each fact gets the outcome it would get alone (AppendFact, AppendFacts).
    #[default]
    EachAlone,
    /// Nothing after the first failed fact is appended or answered: what the command stores is a
    /// prefix of it, so a producer that keeps order can resend the rest after fixing the failure.
    StopAtFailure,
}

/// What became of one fact of a pulled page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Stored now.
    New,
    /// Already stored with the same content.
    Duplicate,
    /// Its idempotency key already holds other content: skipped (counted by the caller).
    Conflict,
}

/// What a pulled page came to, fact by fact, in the page's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// The facts delivered here, in the forward buffer (key `(from_zone, message_id)`).
    pub delivered: Vec<Put>,
    /// The facts relayed, in the store buffer (key `(from_zone, message_id)` too).
    pub relayed: Vec<Put>,
}

impl InsertOutcome {
    pub fn inserted(&self) -> usize {
        count(&self.delivered, Put::New)
    }

    pub fn duplicates(&self) -> usize {
        count(&self.delivered, Put::Duplicate)
    }

    /// Adds the outcome of the next part of the same page.
    fn absorb(&mut self, part: InsertOutcome) {
        self.delivered.extend(part.delivered);
        self.relayed.extend(part.relayed);
    }

    /// Same `(from_zone, message_id)` as a stored fact but other content, delivered or relayed.
    pub fn conflicts(&self) -> usize {
        count(&self.delivered, Put::Conflict) + count(&self.relayed, Put::Conflict)
    }
}

/// `items` in order, in parts of at most [`MAX_COMMAND_BYTES`] by `size` (an item larger than
/// that alone in its part).
fn cut<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut parts: Vec<Vec<T>> = Vec::new();
    let mut filled = 0;
    for item in items {
        let bytes = size(&item);
        match parts.last_mut() {
            Some(part) if filled + bytes <= MAX_COMMAND_BYTES => {
                part.push(item);
                filled += bytes;
            }
            _ => {
                parts.push(vec![item]);
                filled = bytes;
            }
        }
    }
    parts
}

fn count(puts: &[Put], which: Put) -> usize {
    puts.iter().filter(|p| **p == which).count()
}

type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

/// A page of facts pulled from one peer: those delivered here with their source offsets, and
/// those relayed (already carrying this zone in their hops, each with its next hop).
struct InsertPage {
    facts: Vec<(u64, Prepared)>,
    relayed: Vec<Prepared>,
    reply: Reply<InsertOutcome>,
}

/// The outcome of each fact of one append command, in its order.
pub type Appended = Vec<Result<AppendResponse, JournalError>>;

/// A command queued on the journal, whose answer comes once the group that takes it is durable,
/// or [`JournalError::Stalled`] once a commit hangs past the write stall timeout.
pub struct Queued<T> {
    answer: oneshot::Receiver<Result<T, JournalError>>,
    stalled: watch::Receiver<bool>,
    after: Duration,
}

impl<T> Queued<T> {
    pub async fn answer(self) -> Result<T, JournalError> {
        let Self {
            answer,
            mut stalled,
            after,
        } = self;
        let stall = async move {
            if stalled.wait_for(|stalled| *stalled).await.is_err() {
                // The journal is gone: its writer drops the answer too.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            answered = answer => answered.map_err(|_| JournalError::Closed)?,
            () = stall => Err(JournalError::Stalled(after)),
        }
    }
}

/// An append queued on the journal: one command, or the last part of one queued in parts with
/// the outcomes of the parts before it (see [`Journal::queue_append`]).
pub struct QueuedFacts {
    done: Appended,
    last: Option<Queued<Appended>>,
}

impl QueuedFacts {
    /// Every fact's outcome, in order, once all of them are durable. A part that failed as a
    /// whole fails the answer, as a crash would: its facts are not durable, those of the parts
    /// before it are, and a caller's retry finds them as duplicates.
    pub async fn answer(self) -> Result<Appended, JournalError> {
        let mut appended = self.done;
        if let Some(last) = self.last {
            appended.extend(last.answer().await?);
        }
        Ok(appended)
    }
}

enum Command {
    Append(Vec<Prepared>, AppendMode, Reply<Appended>),
    Insert(InsertPage),
    Confirm(CursorKey, u64, Reply<u64>),
    Cursor(CursorChange, Reply<CursorMove>),
    Delete(DeletePlan, Reply<DeletePlan>),
    Probe(Reply<()>),
    Gate(String, bool, Reply<()>),
}

/// An operator's change to a cursor, beside the confirms that only move it forward.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CursorChange {
    /// Move an existing cursor back to the offset.
    Rewind(CursorKey, u64),
    /// Forget the cursor.
    Remove(CursorKey),
}

/// A cursor before and after a [`CursorChange`] (`None`: it does not exist).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CursorMove {
    pub previous: Option<u64>,
    pub cursor: Option<u64>,
}

/// Plain configuration of the journal.
#[derive(Debug, Clone, Copy)]
pub struct JournalConfig {
    /// Appends that would take the store buffer's bytes past this fail with
    /// [`JournalError::Full`] (the hard limit under the `reject` policy).
    pub store_byte_limit: Option<u64>,
    /// How long a commit may hang before its callers, and later ones until it returns, are
    /// answered [`JournalError::Stalled`] and storage is reported failing.
    pub write_stall: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            store_byte_limit: None,
            write_stall: DEFAULT_WRITE_STALL,
        }
    }
}

struct Shared {
    storage: Arc<dyn Storage>,
    cursors: Mutex<HashMap<CursorKey, u64>>,
    store_high: watch::Sender<u64>,
    forward_high: watch::Sender<u64>,
    usage: watch::Sender<Usage>,
    health: StorageHealth,
    disk: budget::DiskBudget,
    stall: stall::Stall,
}

/// Handle to the journal; cheap to clone. The writer thread stops when the last handle drops.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
}

impl Journal {
    /// Recovers state from `storage` and starts the writer thread, which reports every commit to
    /// `health`.
    pub fn start(
        storage: Arc<dyn Storage>,
        config: JournalConfig,
        health: StorageHealth,
    ) -> Result<Self, JournalError> {
        let mut recovered = storage.recover()?;
        let shared = Arc::new(Shared {
            storage,
            cursors: Mutex::new(std::mem::take(&mut recovered.cursors)),
            store_high: watch::Sender::new(recovered.store_high),
            forward_high: watch::Sender::new(recovered.forward_high),
            usage: watch::Sender::new(recovered.usage),
            health,
            disk: budget::DiskBudget::default(),
            stall: stall::Stall::new(config.write_stall),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = group::Writer::new(shared.clone(), &recovered, config);
        let thread = |name: &str| std::thread::Builder::new().name(name.into());
        let cannot = |e| JournalError::Storage(format!("cannot start a journal thread: {e}"));
        thread("bsfg-journal").spawn(move || writer.run(rx)).map_err(cannot)?;
        let watched = Arc::downgrade(&shared);
        thread("bsfg-journal-watch")
            .spawn(move || stall::watch(watched, config.write_stall))
            .map_err(cannot)?;
        Ok(Self { shared, tx })
    }

    /// Durable idempotent append of `facts` to the store log, in their order, each with its own
    /// outcome (up to the first failure with [`AppendMode::StopAtFailure`]); answers once all
    /// are durable: after the fsync of the one group commit that takes them, or, where commits
    /// are records of a size-limited log, of the last of the parts it is queued in (see
    /// [`Journal::queue_append`]).
    pub async fn append(&self, facts: Vec<Prepared>, mode: AppendMode) -> Result<Appended, JournalError> {
        self.queue_append(facts, mode).await?.answer().await
    }

    /// [`Journal::append`] in two steps: this one returns once the facts are queued. Commands are
    /// planned in the order they were queued, so the new facts of appends queued one after
    /// another take offsets in that order, whenever their answers are awaited.
    ///
    /// Where commits are records of a size-limited log ([`Journal::splits`]), facts that each
    /// stand alone ([`AppendMode::EachAlone`]) and pass [`MAX_COMMAND_BYTES`] together go in
    /// parts of that size, each queued once the one before it is durable: their offsets keep
    /// the call's order (other calls' facts may come between parts), and once a part met the
    /// store's byte limit the rest of the call is refused with it, unqueued, as the writer
    /// refuses the rest of a command — facts of the rest already stored included, which the
    /// writer would answer as duplicates: the refusal is retryable, and the retry answers them.
    /// Facts in order stay one command: the planning of each decides whether the next is
    /// appended. Such a command whose facts alone pass the log's record limit can never be
    /// committed, so it is refused before it is queued ([`JournalError::TooLargeForLog`], a
    /// permanent error) rather than failing its group's commit at every retry.
    pub async fn queue_append(&self, facts: Vec<Prepared>, mode: AppendMode) -> Result<QueuedFacts, JournalError> {
        let bytes: usize = facts.iter().map(|f| f.encoded.len()).sum();
        if mode == AppendMode::StopAtFailure {
            let limit = self.shared.storage.record_limit();
            if let Some(limit) = limit.filter(|limit| !fits_record(bytes, facts.len(), *limit)) {
                return Err(JournalError::TooLargeForLog { bytes, limit });
            }
        }
        if mode == AppendMode::StopAtFailure || !self.splits(bytes) {
            let last = self.queue(|reply| Command::Append(facts, mode, reply)).await?;
            return Ok(QueuedFacts {
                done: Vec::new(),
                last: Some(last),
            });
        }
        let mut done = Vec::with_capacity(facts.len());
        let mut parts = cut(facts, |f| f.encoded.len()).into_iter().peekable();
        while let Some(part) = parts.next() {
            let queued = self.queue(|reply| Command::Append(part, mode, reply)).await?;
            if parts.peek().is_none() {
                return Ok(QueuedFacts {
                    done,
                    last: Some(queued),
                });
            }
            let appended = queued.answer().await?;
            let full = appended.iter().find_map(|result| match result {
                Err(error @ (JournalError::Full { .. } | JournalError::DiskFull)) => Some(error.clone()),
                _ => None,
            });
            done.extend(appended);
            if let Some(error) = full {
                done.extend(parts.flatten().map(|_| Err(error.clone())));
                break;
            }
        }
        Ok(QueuedFacts { done, last: None })
    }

    /// Whether a command of `bytes` of fact encodings is queued in parts: only where a commit is
    /// one record of a size-limited log (an HA zone), and only past [`MAX_COMMAND_BYTES`].
    fn splits(&self, bytes: usize) -> bool {
        bytes > MAX_COMMAND_BYTES && self.shared.storage.record_limit().is_some()
    }

    /// `putIfAbsent` of a page of pulled facts, in order (key `(from_zone, message_id)`);
    /// answers after the fsync.
    pub async fn insert(&self, facts: Vec<FetchedFact>) -> Result<InsertOutcome, JournalError> {
        self.insert_page(facts, Vec::new()).await
    }

    /// A pulled page: `putIfAbsent` of `facts` into the forward log and of `relayed` into the
    /// store log (for their next hop), answered once all of it is durable: one command, or,
    /// where commits are records of a size-limited log ([`Journal::splits`]), parts of at most
    /// [`MAX_COMMAND_BYTES`] inserted in order, one after the other. A part that fails (a crash,
    /// the disk guard's `DiskFull`) fails the answer; the parts before it stay stored, and the
    /// page pulled again finds them as duplicates, so their facts are not reported as new
    /// (their delivery latency and `fact_relayed` lines are not recorded). Relayed facts count
    /// in the store's usage but are never refused by its byte limit (see `group::insert`).
    pub async fn insert_page(
        &self,
        facts: Vec<FetchedFact>,
        relayed: Vec<Prepared>,
    ) -> Result<InsertOutcome, JournalError> {
        let prepared = facts
            .into_iter()
            .map(|f| Ok((f.offset, Prepared::new(f.message)?)))
            .collect::<Result<Vec<_>, JournalError>>()?;
        let bytes: usize = prepared.iter().map(|(_, f)| f.encoded.len()).sum::<usize>()
            + relayed.iter().map(|f| f.encoded.len()).sum::<usize>();
        if !self.splits(bytes) {
            return self.insert_part(prepared, relayed).await;
        }
        let mut outcome = InsertOutcome::default();
        for part in cut(prepared, |(_, f)| f.encoded.len()) {
            outcome.absorb(self.insert_part(part, Vec::new()).await?);
        }
        for part in cut(relayed, |f| f.encoded.len()) {
            outcome.absorb(self.insert_part(Vec::new(), part).await?);
        }
        Ok(outcome)
    }

    /// One insert command: a page, or a part of one.
    async fn insert_part(
        &self,
        facts: Vec<(u64, Prepared)>,
        relayed: Vec<Prepared>,
    ) -> Result<InsertOutcome, JournalError> {
        self.call(|reply| Command::Insert(InsertPage { facts, relayed, reply }))
            .await
    }

    /// Durable cursor = max(cursor, offset); returns the cursor after the call.
    pub async fn confirm(&self, key: CursorKey, offset: u64) -> Result<u64, JournalError> {
        self.call(|reply| Command::Confirm(key, offset, reply)).await
    }

    /// Moves the existing cursor `key` back to `to` (an operator's rewind: the facts after `to`
    /// that are still retained are delivered again).
    pub async fn rewind(&self, key: CursorKey, to: u64) -> Result<CursorMove, JournalError> {
        self.call(|reply| Command::Cursor(CursorChange::Rewind(key, to), reply))
            .await
    }

    /// Forgets the existing cursor `key`.
    pub async fn remove(&self, key: CursorKey) -> Result<CursorMove, JournalError> {
        self.call(|reply| Command::Cursor(CursorChange::Remove(key), reply))
            .await
    }

    /// Persists an operator's gate switch toward `peer` (closed or open); answers once durable.
    pub async fn switch_gate(&self, peer: String, closed: bool) -> Result<(), JournalError> {
        self.call(|reply| Command::Gate(peer, closed, reply)).await
    }

    /// Applies a deletion plan (skipping what is already gone); answers with what was deleted.
    pub async fn delete(&self, plan: DeletePlan) -> Result<DeletePlan, JournalError> {
        self.call(|reply| Command::Delete(plan, reply)).await
    }

    /// A commit that changes nothing (it writes the usage as it is), to learn whether storage
    /// takes writes again after failures.
    pub async fn probe(&self) -> Result<(), JournalError> {
        self.call(Command::Probe).await
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, JournalError> {
        self.queue(command).await?.answer().await
    }

    async fn queue<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<Queued<T>, JournalError> {
        let stall = &self.shared.stall;
        if stall.is_stalled() {
            return Err(JournalError::Stalled(stall.after()));
        }
        let (reply, answer) = oneshot::channel();
        self.tx.send(command(reply)).await.map_err(|_| JournalError::Closed)?;
        Ok(Queued {
            answer,
            stalled: stall.subscribe(),
            after: stall.after(),
        })
    }

    /// The committed cursor (0 when never confirmed).
    pub fn cursor(&self, key: &CursorKey) -> u64 {
        let cursors = self.shared.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        cursors.get(key).copied().unwrap_or(0)
    }

    /// Every committed cursor.
    pub fn cursors(&self) -> HashMap<CursorKey, u64> {
        self.shared
            .cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Highest committed store-log offset, updated after every commit.
    pub fn store_high(&self) -> watch::Receiver<u64> {
        self.shared.store_high.subscribe()
    }

    /// Highest committed forward-log offset, updated after every commit.
    pub fn forward_high(&self) -> watch::Receiver<u64> {
        self.shared.forward_high.subscribe()
    }

    /// Usage of both buffers, updated after every commit that changed it.
    pub fn usage(&self) -> watch::Receiver<Usage> {
        self.shared.usage.subscribe()
    }

    /// The storage port, for reads (run them off the async arbiters).
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.shared.storage.clone()
    }

    /// How many disk bytes new facts may still take (a fresh measurement of the disk); each new
    /// fact spends twice its size, and facts are refused with `RESOURCE_EXHAUSTED` once it is
    /// spent. Until the first measurement nothing is refused.
    pub fn set_disk_budget(&self, bytes: u64) {
        self.shared.disk.set(bytes);
    }

    /// The most disk bytes one refused commit wanted beyond the budget since the last call.
    pub fn take_disk_refused(&self) -> u64 {
        self.shared.disk.take_refused()
    }

    /// Where readers report what storage did for them.
    pub fn health(&self) -> &StorageHealth {
        &self.shared.health
    }
}
