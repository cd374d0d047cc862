//! The replicated log port: an ordered, gap-free sequence of records (sequence numbers start at
//! 1 and only grow), appended by compare-and-append, read by sequence or tailed in order, and
//! truncated from the front.
//!
//! Fencing is the point of compare-and-append: an append names the sequence it believes is the
//! last one, and the engine refuses it if any other record got there first. A writer that lost
//! the race, or was paused while another took over, can therefore never write again, whatever
//! it believes about its lease.
//!
//! Every record carries an id chosen by its writer and unique in the log (for bsfg:
//! `<instance>.<epoch>.<n>`). After an outcome is unknown (a lost acknowledgement, a server
//! crash, an election) the writer re-sends the same id and bytes with the same expected
//! sequence; the id is how the log tells "this is already mine" from "someone else's"
//! ([`crate::append_rule`]).

use std::{future::Future, time::Instant};

use bytes::Bytes;
use futures::Stream;

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// The writer's id for this record (empty if the record carries none).
    pub id: String,
    pub payload: Bytes,
}

/// The records the log still holds: `first..=last`, none when `first > last` (a new log is
/// `1..=0`; after every record is purged, `first` is `last + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub first: u64,
    pub last: u64,
}

impl Bounds {
    pub fn is_empty(&self) -> bool {
        self.first > self.last
    }
}

/// Why a log operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Another writer's record holds the sequence this append expected to take: this writer is
    /// fenced and must stop writing. Terminal for the writer.
    #[error("fenced: sequence {seq} holds record {found_id:?} of another writer")]
    Fenced { seq: u64, found_id: String },
    /// The log does not end where the caller expected, and no record proves another writer took
    /// the caller's place: the log ends before `expected` (the engine lost records, or the caller's
    /// state is ahead of it), or the record after `expected` was already purged.
    #[error("the log ends at sequence {last}, not at the expected {expected}")]
    Conflict { expected: u64, last: u64 },
    /// The deadline passed and the record may or may not be in the log. The writer must not reuse
    /// the sequence for other content; whoever writes next learns the truth by reading it.
    #[error("outcome unknown after {attempts} attempts: {reason}")]
    Unknown { attempts: u32, reason: String },
    /// The engine cannot serve the call now; for an append: the record is certainly not in the log.
    #[error("engine unavailable: {reason}")]
    Unavailable { reason: String },
    /// The tail reader's next record is not the one it expected (purged below `found`).
    #[error("gap in the log: expected sequence {expected}, the next one held is {found}")]
    Gap { expected: u64, found: u64 },
    /// A record does not fit the log's limit.
    #[error("record of {size} bytes is over the log's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// A caller's argument the log cannot take (e.g. an id with a line break).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The engine answered something that breaks the log's contract (e.g. an id the writer
    /// used once found with other bytes).
    #[error("the log broke its contract at sequence {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
}

/// The replicated, fenced log. Futures are `Send` so a dedicated thread can drive them through
/// a runtime handle.
pub trait ReplicatedLog: Send + Sync + 'static {
    /// The ordered reader of [`ReplicatedLog::tail`].
    type Tail: Stream<Item = Result<Record, LogError>> + Send + Unpin + 'static;

    /// Appends `payload` as record `id` at `expected_last + 1`, only if the log ends at
    /// `expected_last`; returns the sequence (always `expected_last + 1`). Retries the same bytes
    /// with the same expectation until `deadline` while the outcome is unknown: [`LogError::Fenced`]
    /// and [`LogError::Conflict`] are final; at the deadline [`LogError::Unavailable`] means
    /// nothing was written and [`LogError::Unknown`] that it may have been.
    fn append(
        &self,
        expected_last: u64,
        id: &str,
        payload: Bytes,
        deadline: Instant,
    ) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// The record at `seq`, read from the engine's current leader (never a lagging copy); `None`
    /// when there is none (not yet written, or purged).
    fn get(&self, seq: u64) -> impl Future<Output = Result<Option<Record>, LogError>> + Send;

    /// Every record from `from` on, in order, without gaps, waiting for new ones at the end. The
    /// first item is [`LogError::Gap`] when `from` was already purged.
    fn tail(&self, from: u64) -> impl Future<Output = Result<Self::Tail, LogError>> + Send;

    /// The sequences the log holds now.
    fn bounds(&self) -> impl Future<Output = Result<Bounds, LogError>> + Send;

    /// Removes every record below `seq`; returns how many were removed.
    fn purge_before(&self, seq: u64) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// The largest payload [`ReplicatedLog::append`] takes ([`LogError::TooLarge`] beyond): a
    /// writer cuts its groups to fit.
    fn max_record_bytes(&self) -> usize;
}
