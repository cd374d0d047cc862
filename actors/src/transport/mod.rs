//! QUIC transport: TLS material and verifiers, framed streams, the RPC server that authenticates
//! callers and dispatches their calls to the buffers.

mod audit;
pub mod drain;
pub mod framed;
mod server;
#[cfg(test)]
pub(crate) mod test_ca;
pub mod tls;

pub use drain::{DrainHandle, DrainOutcome, DRAIN_GRACE};
pub use server::{Caller, DialedConnections, Directory, Roles, RpcServer, ServerDeps};
