//! Runtime of a bsfg node.
//!
//! ```text
//!  producer ──AppendFact──▶ RpcServer ──Append──▶ StoreBuffer ──┐
//!  peer node ─FetchFacts──▶ RpcServer ──PeerFetch/PeerConfirm──▶ StoreBuffer │
//!                                                               ├─▶ Journal (one writer thread,
//!  PeerLink ──FetchFacts──▶ peer's RpcServer                    │    group commit) ─▶ Storage port
//!      └────Insert (putIfAbsent)──▶ ForwardBuffer ──────────────┘                     (RocksDB)
//!  consumer ─FetchFacts/ConfirmReceipt──▶ RpcServer ──▶ ForwardBuffer
//! ```
//!
//! - [`StoreBuffer`] (actor): outbound log; validates and appends, serves peers' pulls and frontiers.
//! - [`ForwardBuffer`] (actor): inbound log; `putIfAbsent` of pulled pages, local consumers.
//! - [`PeerLink`] (actor, one per peer): connection, pipelined pull loop, confirm, reconnect backoff.
//! - [`ZoneGate`] (actor): per-peer gate state (`normal` / `autonomous` / `reconciliation`) and
//!   the operator's gate switches.
//! - [`Backpressure`] (actor): fill of both buffers, admission of appends, pull pause, trims and
//!   retention sweeps (deletion plans applied by the journal).
//! - [`CertWatcher`] (actor): reloads the TLS material on file change, SIGHUP or admin request.
//! - [`objects`]: the artifact store (content-addressed blobs + index); `PutObject`/`GetObject`
//!   bodies stream through it, AppendFact checks artifact references against it, and `PeerLink`
//!   pulls referenced artifacts into it before inserting their facts.
//! - [`metrics`]: every Prometheus metric of SPEC §11, in one registry.
//! - `journal`: the single writer in front of storage; idempotency, offsets, group commit.
//! - [`storage`]: the storage port and its RocksDB adapter (format documented there).
//! - [`transport`]: TLS material and verifiers, frames on QUIC streams, the RPC server.
//! - [`status`]: refreshes the progress gauges and the per-peer backlog once a second.
//! - [`node`]: the supervision tree that wires them together.

pub mod backpressure;
pub mod cert_watcher;
mod forward_buffer;
mod journal;
mod long_poll;
pub mod metrics;
pub mod node;
pub mod objects;
mod peer_link;
pub mod rpc;
pub mod status;
pub mod storage;
mod store_buffer;
#[cfg(test)]
mod testkit;
pub mod transport;
pub mod zone_gate;

pub use backpressure::{Backpressure, BackpressureConfig};
pub use cert_watcher::CertWatcher;
pub use forward_buffer::{ForwardBuffer, ForwardBufferConfig};
pub use journal::{DeletePlan, InsertOutcome, Journal, JournalConfig, JournalError, Prepared};
pub use peer_link::PeerLink;
pub use store_buffer::{StoreBuffer, StoreBufferConfig};
pub use zone_gate::{GateState, ZoneGate};
