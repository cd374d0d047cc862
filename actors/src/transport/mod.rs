//! QUIC transport: TLS material and verifiers, framed streams, the RPC server that authenticates
//! callers and dispatches their calls to the buffers.

pub mod drain;
pub mod framed;
mod server;
pub mod tls;

pub use drain::{DrainHandle, DrainOutcome, DRAIN_GRACE};
pub use server::{Caller, DialedConnections, Directory, Roles, RpcServer, ServerDeps};
