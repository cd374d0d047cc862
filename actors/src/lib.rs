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
//! The modules, top floor first; imports only run down (`docs/architecture.md` has the map):
//! - [`node`]: the supervision tree that wires everything together, each component from its own
//!   config in [`node::NodeSettings`].
//! - [`rpc`]: the RPC server: callers and roles, dispatch to the buffers, drain, per-call audit
//!   and metrics.
//! - `peer_link` (actor, one per peer): connection, pipelined pull loop, artifact pulls, confirm,
//!   reconnect backoff.
//! - `ha`: an HA zone's instance: follows the zone's log, takes the lease, promotes, demotes;
//!   `standing`: whether this instance serves (read by the RPC server, the links, `/readyz`).
//! - [`cert_watcher`] (actor): reloads the TLS material on file change, SIGHUP or admin request.
//! - [`status`]: refreshes the progress gauges and the per-peer backlog once a second.
//! - `trace`: where one fact is on this node (`bsfg trace`).
//! - `store_buffer` (actor): outbound log; validates and appends, serves peers' pulls and
//!   frontiers. `forward_buffer` (actor): inbound log; `putIfAbsent` of pulled pages, local
//!   consumers. Both fetch through `long_poll`.
//! - [`backpressure`] (actor): fill of both buffers, admission of appends, pull pause, trims and
//!   retention sweeps (deletion plans applied by the journal).
//! - [`zone_gate`] (actor): per-peer gate state (`normal` / `autonomous` / `reconciliation`) and
//!   the operator's gate switches.
//! - [`relay`]: routes through intermediary zones as a plain value: next hops, the receipt
//!   rule, the relay rules, and the sorting of pulled pages by them.
//! - `objects`: the artifact store (content-addressed blobs + index), fed from any byte source.
//! - `clock`: the wall clock retention reads (facts and artifacts), never ahead of the
//!   monotonic clock's count since start.
//! - `journal`: the single writer in front of storage; idempotency, offsets, group commit.
//! - `events`: typed internal events, each writing its log line and its metrics together.
//! - [`metrics`]: every Prometheus metric of SPEC §11, from one table, in one registry.
//! - [`storage`]: the storage port and its RocksDB adapter (format documented there); an HA
//!   instance's replicated storage (the zone's log in front of the local replica) and its records.
//! - [`transport`]: TLS material and verifiers, frames on QUIC streams.

pub mod backpressure;
pub mod cert_watcher;
mod clock;
mod events;
mod forward_buffer;
mod ha;
mod journal;
mod long_poll;
pub mod metrics;
pub mod node;
mod objects;
mod peer_link;
pub mod relay;
pub mod rpc;
mod standing;
pub mod status;
pub mod storage;
mod store_buffer;
#[cfg(test)]
mod testkit;
mod trace;
pub mod transport;
pub mod zone_gate;

// The configs of components whose modules are private: the binary builds them into `NodeSettings`.
pub use forward_buffer::{Consumers, ForwardBufferConfig, Rewound, MAX_CONSUMERS};
pub use journal::DEFAULT_WRITE_STALL;
pub use long_poll::{MAX_PAGE, MAX_WAIT_MS};
pub use objects::ObjectsConfig;
pub use peer_link::PeerLinkConfig;
pub use store_buffer::StoreBufferConfig;
// What the admin API asks of an HA instance, and whether a node serves.
pub use ha::{HaHandle, HaStatus, InstanceSeen, StepDownError};
pub use standing::Standing;
// What the admin API asks of the buffers: consumer management and fact traces.
pub use trace::{Found, Received, Stored, Tracer};
// What the admin API reports of storage health; the tag of audit lines, which the log lets through.
pub use events::{Damage, Failing, HealthReport, StorageHealth, StorageOp, AUDIT, RESTART_HINT};
