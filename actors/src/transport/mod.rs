//! QUIC transport: TLS material and verifiers, framed streams.

pub mod framed;
#[cfg(test)]
pub(crate) mod test_ca;
pub mod tls;
