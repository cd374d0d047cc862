//! Wire vocabulary of bsfg, shared by nodes and clients.
//!
//! - [`model`]: the message model of SPEC §2 (`Message` = envelope + fact) and its validation;
//!   `envelope` holds the envelope's binary encoding (how `hops` joined it compatibly).
//! - [`content`]: "same content" for idempotency — the fields a retry must repeat, and their digest.
//! - [`object`]: artifacts — content digests, bucket and key syntax, the artifact reference.
//! - [`rpc`]: one request and one response per QUIC stream (SPEC §3, plus the batched
//!   `AppendFacts`); `PutObject` and
//!   `GetObject` carry the artifact's raw bytes after their frame.
//! - [`error`]: wire error codes with their `retryable` flag.
//! - [`codec`]: frames (`u32` big-endian length + bincode 2 body) with bounded decoding.
//! - [`close`]: QUIC application codes of closed connections and stopped or reset streams.
//!
//! This crate knows nothing of actix, tokio or RocksDB: it is plain data and pure functions, so both
//! sides of the wire and the storage layer can share it.

pub mod close;
pub mod codec;
pub mod content;
mod envelope;
pub mod error;
pub mod model;
pub mod object;
pub mod rpc;

pub use close::{CloseCode, StreamCode};
pub use codec::FrameError;
pub use content::ContentDigest;
pub use error::{ErrorCode, RpcError};
pub use model::{Envelope, Fact, Message, ValidationError, MAX_HOPS};
pub use object::{ArtifactError, ArtifactRef, ObjectDigest, ObjectHasher};
pub use rpc::{
    AppendBatchRequest, AppendBatchResponse, AppendRequest, AppendResponse, BatchTally, ConfirmRequest,
    ConfirmResponse, EncodedFact, EncodedPage, FetchHeldRequest, FetchRequest, FetchResponse, FetchedFact,
    GetObjectFromRequest, GetObjectRequest, ObjectMeta, PutObjectRequest, Request, Response,
};
