//! QUIC network plumbing, shared by the node and its clients: TLS material and the verifiers
//! that authenticate identities (`tls`), the revocation lists they apply (`crl`), frames and raw
//! bodies on QUIC streams (`framed`), pacing writes to a rate (`pacing`), one address written as a
//! host name or an IP literal and resolved at each dial (`address`), and the address lists nodes
//! are reached at (`addresses`).
//! It imports nothing from the rest of the crate: what a call means is the RPC server's business
//! (`crate::rpc`).

pub mod address;
pub mod addresses;
pub mod crl;
pub mod framed;
pub mod pacing;
#[cfg(test)]
pub(crate) mod test_ca;
pub mod tls;
