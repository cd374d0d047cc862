//! The storage port: what the buffers need from durable storage, as a trait, with the RocksDB
//! adapter ([`rocks::RocksStorage`]) behind it (SPEC §7, objective O4).
//!
//! # Format
//! Column families and key layouts (all integers big-endian, so keys sort by offset):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `store_log`   | offset `u64` | appended_at_unix_ms `u64` ‖ encoded `Message` |
//! | `store_route` | peer ‖ `0x00` ‖ offset `u64` | empty (per-peer index of `store_log`) |
//! | `store_idem`  | message_id, or `0xFF` ‖ from_zone ‖ `0x00` ‖ message_id | offset `u64` ‖ content digest |
//! | `fwd_log`     | offset `u64` | received_at_unix_ms `u64` ‖ source offset `u64` ‖ encoded `Message` |
//! | `fwd_idem`    | from_zone ‖ `0x00` ‖ message_id | offset `u64` ‖ content digest, or offset alone |
//! | `cursors`     | `s` ‖ peer zone (store buffer) or `f` ‖ consumer name (forward buffer) | cursor `u64` |
//! | `meta`        | `format`, `zone`, `store_high`, `forward_high`, `usage` | version, zone name, highest offsets, [`Usage`] |
//! | `fwd_age`     | offset `u64` | received_at_unix_ms `u64` ‖ from_zone ‖ `0x00` ‖ message_id |
//! | `objects`     | see [`object_index`] | the artifact index |
//! | `store_age`   | offset `u64` | reclaimed_at_unix_ms `u64` ‖ origin ‖ `0x00` ‖ message_id (origin empty for a fact produced here) |
//!
//! Zone names never contain `0x00`, so the separators are unambiguous. The *peer* of a store fact
//! is the peer that pulls it: its `to_zone` when that is a peer, else the `via` of the route to
//! it (SPEC §4a), decided when the fact is stored. A fact produced here is keyed in `store_idem`
//! by its `message_id`; a fact relayed here from another zone by `0xFF` ‖ from_zone ‖ `0x00` ‖
//! message_id (its idempotency key is `(from_zone, message_id)`); `0xFF` never starts UTF-8
//! text, so the two kinds of key never meet, and format `2` directories need no upgrade. Messages are encoded with
//! the wire encoding of `bsfg-proto`. `meta.usage` is four `u64`: store facts, store bytes,
//! forward facts, forward bytes, where *bytes* are the value bytes of the retained log entries
//! (header and encoded message; index entries are not counted: they are small and bounded per
//! fact, and capacity is about the facts an operator keeps). `format` is `3`.
//!
//! The *content digest* of an index entry is `bsfg_proto::content`'s: the sha256 of the fact and
//! the envelope's business fields, without the send time, so a retry stamped anew is a duplicate.
//! An index entry of the offset alone (8 bytes) is a dedupe-window entry whose content is unknown
//! (see Recovery); its id alone decides.
//!
//! `fwd_age` is the dedupe window of the forward buffer, in arrival order: one entry per inserted
//! fact, kept with its `fwd_idem` entry for `forward.retention` even after the log entry itself
//! was reclaimed, so a fact replayed days later is still recognised (SPEC §4).
//!
//! # Write batches
//! Every [`Batch`] is one RocksDB `WriteBatch`: the log entries, their index entries, the highest
//! offsets and the usage in `meta`, any cursor updates and any deletions land together or not at
//! all (a consumer's cursor deleted by an operator too). Many appends, inserts, confirms and at
//! most a few deletion plans share one batch (group
//! commit, see `journal`). A batch is written with `sync = true` unless it holds only deletions
//! of confirmed facts: such a delete lost in a crash makes the fact (and the usage counters in
//! the same batch) reappear, and the next sweep deletes it again; nobody was told about it. A
//! batch that drops or expires an unconfirmed fact is synced, because that loss has been logged
//! and counted and must not be undone.
//!
//! Deleting a store fact removes its `store_log` and `store_route` entries. A confirmed fact
//! deleted at its retention, or an unconfirmed one dropped or expired, takes `store_idem` with
//! it. A confirmed fact *reclaimed* before its retention (a trim for room, a low disk) keeps its
//! `store_idem` entry, and a `store_age` entry stamped with the reclaim's time says when to
//! forget it: a sweep past `store.retention` from then deletes both. So a producer's retry is a
//! duplicate (and other content under its id `ALREADY_EXISTS`) for at least the retention,
//! however early its fact was reclaimed. Deleting a forward fact removes its `fwd_log` entry
//! (reclaim), and when it leaves the dedupe window its `fwd_age` and `fwd_idem` entries too.
//! `store_age` came after format `3` without a format change: a directory without it gets it at
//! open, and nothing before it needs an entry.
//!
//! # Recovery
//! After a crash the database holds exactly the batches whose write returned (an unsynced
//! deletion batch may be lost, see above; a synced batch written after it makes it durable too,
//! as RocksDB's log is sequential). On open the highest offsets are `max(meta.*_high, last key of
//! the log)`, so offsets are never reused even after retention has deleted the newest entries;
//! cursors and usage are read back as they were last committed. A directory written in format
//! `1` (no `usage`, no `fwd_age`) is upgraded once at open: usage is recounted by a scan and
//! `fwd_age` is rebuilt from `fwd_log` (nothing was ever deleted in format `1`). Formats `1` and
//! `2` hashed the whole encoded message (send time included) into the idempotency indexes; at
//! open every `store_idem` and `fwd_idem` entry is rewritten with the content digest of its log
//! entry, and a `fwd_idem` entry whose log entry was already reclaimed (kept only for the dedupe
//! window) keeps its offset alone: a fact replayed to it is a duplicate by its id.

mod damage;
#[cfg(test)]
mod damage_tests;
pub mod object_index;
#[cfg(test)]
mod read_tests;
pub mod replicated;
mod rocks;
pub mod wal;

pub use damage::{ranges, DamageReport, LossRecord, Offsets, WalDamage};
pub use object_index::{ObjectEntry, ObjectIndex};
pub use rocks::{RocksStorage, Salvaged};

use std::collections::{BTreeSet, HashMap};

use bincode::{Decode, Encode};
use bsfg_proto::Message;

/// A message's content digest (`Message::content_digest`): "same content" for idempotency.
pub type Digest = bsfg_proto::ContentDigest;

/// Where an idempotency key was first stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdemRecord {
    pub offset: u64,
    /// `None` for a dedupe-window entry carried over from format 2 whose fact was already
    /// reclaimed: its content is unknown.
    pub digest: Option<Digest>,
}

impl IdemRecord {
    /// Whether a fact with content `digest` is the one recorded here (a duplicate). When the
    /// recorded content is unknown, the id alone decides.
    pub fn holds(&self, digest: &Digest) -> bool {
        self.digest.as_ref().is_none_or(|recorded| recorded == digest)
    }
}

/// Which idempotency index a lookup goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// Keyed by `message_id`.
    Store,
    /// Keyed by `(from_zone, message_id)`.
    Forward,
}

/// One of the two logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Log {
    Store,
    Forward,
}

impl Log {
    /// The buffer's name in logs and metric labels (`buffer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Forward => "forward",
        }
    }

    /// Value bytes of a log entry holding a message of `encoded_len` bytes (what [`Usage`] counts).
    pub fn entry_bytes(self, encoded_len: usize) -> u64 {
        let header = match self {
            Self::Store => STORE_HEADER,
            Self::Forward => FORWARD_HEADER,
        };
        (header + encoded_len) as u64
    }
}

/// A durable cursor's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum CursorKey {
    /// A peer's confirmed position in our store buffer (its frontier).
    Peer(String),
    /// A local consumer's confirmed position in our forward buffer.
    Consumer(String),
}

impl CursorKey {
    /// The forward offset every local consumer among `cursors` has confirmed (0 when none is
    /// known: nothing is confirmed then).
    pub fn consumed<'a>(cursors: impl IntoIterator<Item = (&'a CursorKey, &'a u64)>) -> u64 {
        cursors
            .into_iter()
            .filter(|(key, _)| matches!(key, CursorKey::Consumer(_)))
            .map(|(_, cursor)| *cursor)
            .min()
            .unwrap_or(0)
    }
}

/// Retained facts and bytes of one buffer (bytes: value bytes of its log entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct BufferUsage {
    pub facts: u64,
    pub bytes: u64,
}

impl BufferUsage {
    pub fn add(&mut self, bytes: u64) {
        self.facts += 1;
        self.bytes += bytes;
    }

    pub fn remove(&mut self, bytes: u64) {
        self.facts = self.facts.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// Exact usage of both buffers, kept by the journal and persisted with every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct Usage {
    pub store: BufferUsage,
    pub forward: BufferUsage,
}

impl Usage {
    pub fn of(&self, log: Log) -> BufferUsage {
        match log {
            Log::Store => self.store,
            Log::Forward => self.forward,
        }
    }
}

/// A new store-log entry. `encoded` is the message in the wire encoding.
#[derive(Debug, Clone, Encode, Decode)]
pub struct StoreAppend {
    pub offset: u64,
    pub appended_at_unix_ms: u64,
    pub message_id: String,
    /// The peer that pulls it (see "Format").
    pub peer: String,
    /// `Some(from_zone)` for a fact relayed here: its idempotency key is `(from_zone, message_id)`.
    pub origin: Option<String>,
    pub digest: Digest,
    pub encoded: Vec<u8>,
}

/// A new forward-log entry, received from `from_zone` at `source_offset`.
#[derive(Debug, Clone, Encode, Decode)]
pub struct ForwardInsert {
    pub offset: u64,
    pub received_at_unix_ms: u64,
    pub source_offset: u64,
    pub from_zone: String,
    pub message_id: String,
    pub digest: Digest,
    pub encoded: Vec<u8>,
}

/// Bytes before the encoded message in a `store_log` value.
const STORE_HEADER: usize = 8;
/// Bytes before the encoded message in a `fwd_log` value.
const FORWARD_HEADER: usize = 16;

/// Why a fact is deleted; only losses of unconfirmed facts are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum DeleteReason {
    /// Confirmed (by the peer, or by every consumer), or only leaving the dedupe window.
    Confirmed,
    /// Unconfirmed, deleted by the `drop_oldest` policy.
    Dropped,
    /// Unconfirmed, older than the retention.
    Expired,
    /// Store buffer: confirmed, deleted before its retention for room (a trim, a low disk). Its
    /// idempotency entry stays, in the store's dedupe window (`store_age`), for the retention
    /// from now: a producer's retry is still a duplicate, other content under its id still
    /// `ALREADY_EXISTS`.
    Reclaimed,
    /// Store buffer: only the dedupe-window entry of a reclaimed fact, past the retention.
    Forgotten,
}

impl DeleteReason {
    /// Whether the deletion loses a fact someone still waits for.
    pub fn is_loss(self) -> bool {
        matches!(self, Self::Dropped | Self::Expired)
    }
}

/// A store fact to delete: its `store_log`, `store_route` and `store_idem` entries.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoreDelete {
    pub offset: u64,
    /// The peer whose route index holds it.
    pub peer: String,
    /// As [`StoreAppend::origin`].
    pub origin: Option<String>,
    /// Its final destination (for the log line of a loss).
    pub to_zone: String,
    pub message_id: String,
    pub reason: DeleteReason,
}

/// A forward fact to delete: its log entry, its dedupe-window entries, or both.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ForwardDelete {
    pub offset: u64,
    pub from_zone: String,
    pub message_id: String,
    pub reason: DeleteReason,
    /// Delete the `fwd_log` entry.
    pub log: bool,
    /// Leave the dedupe window: delete the `fwd_age` and `fwd_idem` entries.
    pub window: bool,
}

/// An entry of the forward buffer's dedupe window (`fwd_age`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowEntry {
    pub offset: u64,
    /// When the fact was received (forward buffer) or reclaimed (store buffer).
    pub received_at_unix_ms: u64,
    /// Its origin: for the store buffer, empty for a fact produced here.
    pub from_zone: String,
    pub message_id: String,
}

/// Room a commit's record in an HA zone's log keeps beside its facts: its own framing, and a
/// group's cursors, usage and gate switches.
pub const RECORD_ROOM: usize = 64 << 10;
/// The most bytes one fact takes in a commit's record beside its encoding: its offset, times,
/// message id, zones and digest (pinned by a test in `wal`).
pub const FACT_RECORD_ROOM: usize = 640;

/// Whether `facts` facts whose encodings hold `bytes` in all fit one record of `limit` bytes
/// ([`Storage::record_limit`]), beside everything else a commit writes.
pub fn fits_record(bytes: usize, facts: usize, limit: usize) -> bool {
    bytes + facts * FACT_RECORD_ROOM + RECORD_ROOM <= limit
}

/// Everything one group commit writes, atomically.
#[derive(Debug, Clone, Default, Encode, Decode)]
pub struct Batch {
    pub store: Vec<StoreAppend>,
    pub forward: Vec<ForwardInsert>,
    pub cursors: Vec<(CursorKey, u64)>,
    /// Cursors forgotten (an operator deleted a consumer).
    pub cursor_deletes: Vec<CursorKey>,
    pub store_deletes: Vec<StoreDelete>,
    pub forward_deletes: Vec<ForwardDelete>,
    pub store_high: Option<u64>,
    pub forward_high: Option<u64>,
    /// Usage after this batch, when it changed (or when the batch is a probe).
    pub usage: Option<Usage>,
    /// Written only to learn whether storage takes writes (it rewrites the usage as it is).
    pub probe: bool,
    /// Operator gate switches set by this batch: `(peer, closed)`.
    pub gates: Vec<(String, bool)>,
    /// The writer epoch the batch was planned under ([`Storage::writer_epoch`]): a replicated
    /// storage refuses a batch planned before it last changed hands.
    pub epoch: u64,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
            && self.forward.is_empty()
            && self.cursors.is_empty()
            && self.cursor_deletes.is_empty()
            && self.store_deletes.is_empty()
            && self.forward_deletes.is_empty()
            && !self.probe
            && self.gates.is_empty()
    }

    /// Whether the batch must be fsync'd: everything but the deletion of confirmed facts
    /// (see "Write batches" above).
    pub fn needs_sync(&self) -> bool {
        !(self.store.is_empty()
            && self.forward.is_empty()
            && self.cursors.is_empty()
            && self.cursor_deletes.is_empty()
            && self.gates.is_empty())
            || self.probe
            || self.store_deletes.iter().any(|d| d.reason.is_loss())
            || self.forward_deletes.iter().any(|d| d.log && d.reason.is_loss())
    }
}

/// One entry read back from a log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub offset: u64,
    /// When the entry was written on this node.
    pub stored_at_unix_ms: u64,
    /// Value bytes of the entry (what [`Usage`] counts).
    pub stored_bytes: u64,
    /// A forward entry's offset in its sender's store buffer (0 for a store entry).
    pub source_offset: u64,
    /// The message as it was stored (`codec::encode_value`): pages are served from these bytes
    /// as they are, so only readers that need the message's fields decode it.
    pub encoded: Vec<u8>,
}

impl LogRecord {
    /// The stored message, decoded.
    pub fn message(&self) -> Result<Message, StorageError> {
        bsfg_proto::codec::decode_body(&self.encoded).map_err(|e| StorageError::Corrupt {
            what: "log entry",
            key: self.offset.to_be_bytes().to_vec(),
            reason: e.to_string(),
        })
    }
}

/// What a node needs to resume after opening its storage.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub store_high: u64,
    pub forward_high: u64,
    pub cursors: HashMap<CursorKey, u64>,
    pub usage: Usage,
    /// Peers whose gate an operator closed (and has not opened since).
    pub closed_gates: BTreeSet<String>,
}

/// The file system under the data directory, and what storage itself will still write to it
/// without being asked (RocksDB's space accounting): memtables not yet flushed become table
/// files, and the write-ahead log grows by preallocated chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Bytes in memtables, which a flush writes out (less what was deleted meanwhile).
    pub memtable_bytes: u64,
    /// Bytes the write-ahead log takes at once when it grows (it is preallocated in chunks).
    pub log_chunk_bytes: u64,
}

impl DiskSpace {
    /// Bytes storage may write by itself, unasked: its memtables and the log's next chunk.
    pub fn pending_bytes(&self) -> u64 {
        self.memtable_bytes.saturating_add(self.log_chunk_bytes)
    }
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
    #[error("data directory {path} has storage format {found:?}, newer than this version understands")]
    NewerFormat { path: String, found: String },
    #[error("{0}")]
    Damaged(Box<DamageReport>),
    /// The data directory cannot be created, read or written by the node's user.
    #[error(
        "the data directory {path} {reason}: it must be owned by and writable for the node's user (uid {uid}); \
         fix its ownership or mode, or run the node as its owner"
    )]
    Inaccessible { path: String, uid: u32, reason: String },
    /// RocksDB's logs or tables without the `CURRENT` file that lists them.
    #[error(
        "the data directory {path} holds a database's files ({}) but not its CURRENT file: it is damaged \
         or was restored in part, and opening it would start an empty database; nothing was changed. \
         Restore the whole directory from a backup (docs/operations.md, \"Damaged storage\")",
        listed(files)
    )]
    Headless { path: String, files: Vec<String> },
    #[error("{0}")]
    Salvage(String),
    /// This instance of an HA zone is not the writer (a standby, or demoted).
    #[error("{0}")]
    Standby(String),
    /// Another instance took over the zone's log: this one must never write again until it has
    /// caught up and been promoted again.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The zone's engine did not say whether the write is in its log; nothing was answered, and
    /// the instance stepped down so that the next writer's catch-up decides.
    #[error("outcome unknown, the instance stepped down: {0}")]
    OutcomeUnknown(String),
    /// The zone's engine refused the write (no quorum): certainly not written.
    #[error("engine unavailable: {0}")]
    EngineUnavailable(String),
}

/// The first few of `files`, and how many more.
fn listed(files: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut text = files.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if files.len() > SHOWN {
        text.push_str(&format!(" and {} more", files.len() - SHOWN));
    }
    text
}

impl StorageError {
    /// The data directory is not this node's to open: another zone's, written by a newer
    /// version, or closed to its user. The configuration, the package or the directory's owner
    /// must change; retrying cannot help.
    pub fn is_misplaced(&self) -> bool {
        matches!(
            self,
            Self::WrongZone { .. } | Self::NewerFormat { .. } | Self::Inaccessible { .. }
        )
    }

    /// Stored data that cannot be read as written: a checksum mismatch, a damaged file, an entry
    /// that does not decode. Retrying does not help; an operator must decide.
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::Damaged(_) | Self::Headless { .. })
    }
}

/// The storage port. Implementations must make [`Storage::commit`] atomic, and durable before it
/// returns when [`Batch::needs_sync`]; reads may run concurrently with commits and see only
/// committed batches.
pub trait Storage: Send + Sync + 'static {
    /// Highest offsets, cursors, usage and closed gates as last committed.
    fn recover(&self) -> Result<Recovered, StorageError>;
    /// The epoch of the writer this storage accepts batches from now (0 for a single node; an HA
    /// zone's instance changes it when it is promoted or demoted, and the journal then recovers
    /// its state before planning again, see [`Batch::epoch`]).
    fn writer_epoch(&self) -> u64 {
        0
    }
    /// The most bytes one commit may carry, when the storage writes each as one record of a
    /// replicated log (an HA zone: 4 MiB); `None` when a batch of any size commits.
    fn record_limit(&self) -> Option<usize> {
        None
    }
    /// Looks up idempotency keys `(from_zone, message_id)`; for [`Index::Store`] an empty
    /// `from_zone` names a fact produced here.
    fn lookup(&self, index: Index, keys: &[(&str, &str)]) -> Result<Vec<Option<IdemRecord>>, StorageError>;
    /// Writes a batch atomically (and durably when it needs sync).
    fn commit(&self, batch: &Batch) -> Result<(), StorageError>;
    /// Store-log entries addressed to `peer` with offsets in `(after, upto]`, at most `limit`.
    fn read_store(&self, peer: &str, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError>;
    /// How many store-log entries addressed to `peer` have offsets in `(after, upto]`, counted
    /// from the per-peer index alone (the status refresher's backlog).
    fn count_store(&self, peer: &str, after: u64, upto: u64) -> Result<u64, StorageError>;
    /// Forward-log entries with offsets in `(after, upto]`, at most `limit`.
    fn read_forward(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<LogRecord>, StorageError>;
    /// Every peer that has entries in the store log.
    fn store_zones(&self) -> Result<Vec<String>, StorageError>;
    /// The oldest entries of a buffer's dedupe window after `after`, at most `limit`: every fact
    /// of the forward buffer (`fwd_age`), the reclaimed facts of the store buffer (`store_age`).
    fn read_window(&self, log: Log, after: u64, limit: usize) -> Result<Vec<WindowEntry>, StorageError>;
    /// The value size of each log entry, `None` where it is gone.
    fn log_sizes(&self, log: Log, offsets: &[u64]) -> Result<Vec<Option<u64>>, StorageError>;
    /// One log entry, `None` where it is gone (`bsfg trace`).
    fn read_entry(&self, log: Log, offset: u64) -> Result<Option<LogRecord>, StorageError>;
    /// Free space on the data directory's file system and what storage still needs of it.
    fn disk(&self) -> Result<DiskSpace, StorageError>;
    /// Gives back the disk space of deleted entries: flushes the memtables (which frees the
    /// write-ahead log they pin) and compacts each log below the offset given for it, where
    /// deletions are. Needs room for the flush (at most [`DiskSpace::memtable_bytes`]); call it
    /// only when there is.
    fn reclaim(&self, store_below: u64, forward_below: u64) -> Result<(), StorageError>;
    /// After a read of `log` failed on damaged data: which entries among those it would have
    /// returned — offsets in `(after, upto]`, at most `limit`, addressed to `peer` for the store
    /// log — cannot be read. Fails when the entries cannot even be listed (a damaged index).
    fn find_damage(
        &self,
        log: Log,
        peer: Option<&str>,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError>;
}
