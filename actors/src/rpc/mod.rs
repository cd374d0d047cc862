//! The RPC server (SPEC §3): accepts QUIC connections on the node's endpoint, learns who calls
//! from the verified certificate, and serves one call per bidirectional stream — frame → typed
//! request → authorised dispatch to the buffer actors → response frame — logging and counting
//! each call once.
//!
//! - `server`: the accept loop, one task per connection and per stream, admission (drain,
//!   closed gates).
//! - `append_stream`: `AppendFact` frames pipelined on one stream, each a call of its own,
//!   appended in groups.
//! - `dispatch`: what each operation asks of the buffers.
//! - `objects`: `PutObject` and `GetObject`, with their raw bodies.
//! - `caller`: who is calling (peer, client with roles, unknown) and what each may do.
//! - `context`: the server's config and the actors a call can reach, shared by every task.
//! - `call`: one finished call: its metrics and its audit line, written together.
//! - [`drain`]: the node's drain switch and the count of client calls in flight.
//!
//! Imports run down from here: to the buffer actors, the zone gate, the peer links (offered
//! connections), the object store and the transport; nothing in the crate imports from `rpc`
//! but the supervision tree (`node`).

mod append_stream;
mod call;
mod caller;
mod context;
mod dispatch;
pub mod drain;
mod objects;
mod server;

pub use caller::{Authorisations, Directory, Role, Roles};
pub use context::RpcConfig;
pub(crate) use context::RpcDeps;
pub use drain::{DrainHandle, DrainOutcome, DRAIN_GRACE};
pub(crate) use server::RpcServer;
