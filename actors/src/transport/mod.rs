//! QUIC network plumbing, shared by the node and its clients: TLS material and the verifiers
//! that authenticate identities (`tls`), frames and raw bodies on QUIC streams (`framed`),
//! pacing writes to a rate (`pacing`), and peer addresses resolved at each dial (`address`).
//! It imports nothing from the rest of the crate: what a call means is the RPC server's business
//! (`crate::rpc`).

pub mod address;
pub mod framed;
pub mod pacing;
#[cfg(test)]
pub(crate) mod test_ca;
pub mod tls;
