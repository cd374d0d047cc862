//! Where a node can be reached: one address, or the instances of an HA zone in order
//! (`--node a:9443,b:9443`, `BSFG_NODE`, `[[peers]] addresses`). The one place addresses are
//! parsed and resolved, for clients and peer links alike: resolution happens at each dial, so a
//! host name may later stand for an address that changes.

use std::net::{SocketAddr, ToSocketAddrs};

/// An ordered list of `HOST:PORT` addresses; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses(Vec<String>);

/// A list that is empty, or an address that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("no node address given")]
    Empty,
    #[error("cannot resolve node address {0:?}")]
    Unresolved(String),
}

impl Addresses {
    /// `a:9443,b:9443` (blanks around commas ignored).
    pub fn parse(list: &str) -> Result<Self, AddressError> {
        let addresses: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Self::new(addresses)
    }

    pub fn new(addresses: Vec<String>) -> Result<Self, AddressError> {
        match addresses.is_empty() {
            true => Err(AddressError::Empty),
            false => Ok(Self(addresses)),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `i`-th address (wrapping around), as written.
    pub fn get(&self, i: usize) -> &str {
        &self.0[i % self.0.len()]
    }

    /// The `i`-th address (wrapping around), resolved now.
    pub fn resolve(&self, i: usize) -> Result<SocketAddr, AddressError> {
        let address = self.get(i);
        address
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| AddressError::Unresolved(address.to_owned()))
    }
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_its_order_wraps_around_and_resolves_each_address() {
        let list = Addresses::parse(" 127.0.0.1:9443, 127.0.0.1:9444 ,").expect("two addresses");
        assert_eq!(list.len(), 2);
        assert_eq!(list.get(2), "127.0.0.1:9443");
        assert_eq!(list.resolve(1), Ok("127.0.0.1:9444".parse().expect("addr")));
        assert_eq!(Addresses::parse(" , "), Err(AddressError::Empty));
        let bad = Addresses::parse("no-port").expect("one address");
        assert_eq!(bad.resolve(0), Err(AddressError::Unresolved("no-port".into())));
    }
}
