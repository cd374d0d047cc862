//! The engine an HA zone stands on (SPEC §15, `design/ha-jetstream.md`): a small port, and its
//! NATS JetStream adapter.
//!
//! - [`log`]: the port's [`ReplicatedLog`], a replicated, fenced, ordered log of opaque records
//!   with compare-and-append. The zone's write-ahead log of journal group commits lives in it.
//!   [`append_rule`] decides what an append does after each answer (or silence) of the engine: the
//!   unknown-outcome rule, as a plain core without I/O.
//! - [`lease`]: the port's [`Lease`], one holder at a time by compare-and-set on a revision, with
//!   expiry measured on the observer's own monotonic clock ([`lease::LeaseView`], a plain core).
//! - [`checks`]: what the engine must be before an HA zone trusts it (server version floor, fsync
//!   before acknowledging), as pure functions over what [`monitor`] reads from the servers.
//! - [`jetstream`]: the adapter: connection, provisioning of the stream and bucket, the
//!   [`jetstream::JetStreamLog`] and [`jetstream::KvLease`].
//!
//! Nothing here knows of actix, RocksDB, bsfg's storage or wire types: records are bytes with an
//! id, and the caller (the replicated journal) gives them meaning. The port's futures are `Send`,
//! so a dedicated thread can drive them with `tokio::runtime::Handle::block_on`.

pub mod append_rule;
pub mod checks;
pub mod jetstream;
pub mod lease;
pub mod log;
pub mod monitor;
mod names;

pub use lease::{Grant, Holder, Lease, LeaseError, LeaseState};
pub use log::{Bounds, LogError, Record, ReplicatedLog};
