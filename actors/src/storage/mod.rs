//! The storage port: what the buffers need from durable storage, as a trait, with the RocksDB
//! adapter ([`rocks::RocksStorage`]) behind it (SPEC §7, objective O4).
//!
//! # Format
//! Column families and key layouts (all integers big-endian, so keys sort by offset):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `store_log`   | offset `u64` | appended_at_unix_ms `u64` ‖ encoded `Message` |
//! | `store_route` | to_zone ‖ `0x00` ‖ offset `u64` | empty (per-peer index of `store_log`) |
//! | `store_idem`  | message_id | offset `u64` ‖ sha256 of the encoded message |
//! | `fwd_log`     | offset `u64` | received_at_unix_ms `u64` ‖ source offset `u64` ‖ encoded `Message` |
//! | `fwd_idem`    | from_zone ‖ `0x00` ‖ message_id | offset `u64` ‖ sha256 of the encoded message |
//! | `cursors`     | `s` ‖ peer zone (store buffer) or `f` ‖ consumer name (forward buffer) | cursor `u64` |
//! | `meta`        | `format`, `zone`, `store_high`, `forward_high` | version, zone name, highest offsets |
//! | `objects`     | see [`object_index`] | the artifact index |
//!
//! Zone names never contain `0x00`, so the separators are unambiguous. Messages are encoded with
//! the wire encoding of `bsfg-proto`.
//!
//! # Write batches
//! Every [`Batch`] is one RocksDB `WriteBatch` written with `sync = true`: the log entries, their
//! index entries, the highest offsets in `meta` and any cursor updates land together or not at all.
//! Many appends, inserts and confirms share one batch (group commit, see `journal`).
//!
//! # Recovery
//! After a crash the database holds exactly the batches whose write returned. On open the highest
//! offsets are `max(meta.*_high, last key of the log)`, so offsets are never reused even after
//! retention has deleted the newest entries; cursors are read back as they were last committed.

pub mod object_index;
mod rocks;

pub use object_index::{ObjectEntry, ObjectIndex};
pub use rocks::RocksStorage;

use std::collections::HashMap;

use bsfg_proto::Message;

/// sha256 of a message's encoding: "same content" for idempotency.
pub type Digest = [u8; 32];

/// Where an idempotency key was first stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdemRecord {
    pub offset: u64,
    pub digest: Digest,
}

/// Which idempotency index a lookup goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// Keyed by `message_id`.
    Store,
    /// Keyed by `(from_zone, message_id)`.
    Forward,
}

/// A durable cursor's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CursorKey {
    /// A peer's confirmed position in our store buffer (its frontier).
    Peer(String),
    /// A local consumer's confirmed position in our forward buffer.
    Consumer(String),
}

/// A new store-log entry. `encoded` is the message in the wire encoding.
#[derive(Debug, Clone)]
pub struct StoreAppend {
    pub offset: u64,
    pub appended_at_unix_ms: u64,
    pub message_id: String,
    pub to_zone: String,
    pub digest: Digest,
    pub encoded: Vec<u8>,
}

/// A new forward-log entry, received from `from_zone` at `source_offset`.
#[derive(Debug, Clone)]
pub struct ForwardInsert {
    pub offset: u64,
    pub received_at_unix_ms: u64,
    pub source_offset: u64,
    pub from_zone: String,
    pub message_id: String,
    pub digest: Digest,
    pub encoded: Vec<u8>,
}

/// Everything one group commit writes, atomically and with one fsync.
#[derive(Debug, Default)]
pub struct Batch {
    pub store: Vec<StoreAppend>,
    pub forward: Vec<ForwardInsert>,
    pub cursors: Vec<(CursorKey, u64)>,
    pub store_high: Option<u64>,
    pub forward_high: Option<u64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.store.is_empty() && self.forward.is_empty() && self.cursors.is_empty()
    }
}

/// One entry read back from a log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub offset: u64,
    /// When the entry was written on this node.
    pub stored_at_unix_ms: u64,
    pub message: Message,
}

/// What a node needs to resume after opening its storage.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub store_high: u64,
    pub forward_high: u64,
    pub cursors: HashMap<CursorKey, u64>,
}

/// Storage faults. All map to `UNAVAILABLE` on the wire: the call may succeed later.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("corrupt {what} at key {key:02x?}: {reason}")]
    Corrupt {
        what: &'static str,
        key: Vec<u8>,
        reason: String,
    },
    #[error("data directory {path} belongs to zone {found:?}, not {expected:?}")]
    WrongZone {
        path: String,
        expected: String,
        found: String,
    },
}

/// The storage port. Implementations must make [`Storage::commit`] atomic and durable before
/// it returns; reads may run concurrently with commits and see only committed batches.
pub trait Storage: Send + Sync + 'static {
    /// Highest offsets and cursors as last committed.
    fn recover(&self) -> Result<Recovered, StorageError>;
    /// Looks up idempotency keys (`message_id`, or `(from_zone, message_id)` for [`Index::Forward`]).
    fn lookup(&self, index: Index, keys: &[(&str, &str)]) -> Result<Vec<Option<IdemRecord>>, StorageError>;
    /// Writes a batch atomically and durably (fsync).
    fn commit(&self, batch: &Batch) -> Result<(), StorageError>;
    /// Store-log entries addressed to `peer` with offsets in `(after, upto]`, at most `limit`.
    fn read_store(&self, peer: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError>;
    /// Forward-log entries with offsets in `(after, upto]`, at most `limit`.
    fn read_forward(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError>;
}
