//! The RPC server: accepts QUIC connections, authenticates callers and dispatches their calls to
//! the buffers; the drain switch; the per-call audit line.

mod call;
pub mod drain;
mod objects;
mod server;

pub use drain::{DrainHandle, DrainOutcome, DRAIN_GRACE};
pub use server::{Caller, DialedConnections, Directory, Roles, RpcServer, ServerDeps};
