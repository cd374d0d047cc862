//! Where a node can be reached: one address, or the instances of an HA zone in order
//! (`--node a:9443,b:9443`, `BSFG_NODE`, `[[peers]] addresses`). Each is a [`PeerAddress`] (a
//! host name or an IP literal with a port, checked when parsed), resolved at each dial, so a host
//! name may later stand for an address that changes. Clients and peer links share it.

use std::{fmt, net::SocketAddr};

use super::address::{AddressError, PeerAddress, ResolveError};

/// An ordered list of addresses; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses(Vec<PeerAddress>);

/// Why a written list is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("no node address given")]
    Empty,
    #[error("invalid node address {text:?}: {source}")]
    Invalid { text: String, source: AddressError },
}

impl Addresses {
    /// `a:9443,b:9443` (blanks around commas ignored).
    pub fn parse(list: &str) -> Result<Self, ListError> {
        let addresses = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|text| {
                text.parse().map_err(|source| ListError::Invalid {
                    text: text.to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<PeerAddress>, _>>()?;
        Self::new(addresses)
    }

    pub fn new(addresses: Vec<PeerAddress>) -> Result<Self, ListError> {
        match addresses.is_empty() {
            true => Err(ListError::Empty),
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
    pub fn get(&self, i: usize) -> &PeerAddress {
        &self.0[i % self.0.len()]
    }

    /// The `i`-th dial's address: the list's `i`-th entry (wrapping around), resolved now for a
    /// socket like `family_of`; a name's own addresses are taken in turn, one more per round of
    /// the list (see [`PeerAddress::resolve`]).
    pub async fn resolve(&self, i: usize, family_of: SocketAddr) -> Result<SocketAddr, ResolveError> {
        let (address, attempt) = self.turn(i);
        address.resolve(family_of, attempt).await
    }

    /// The `i`-th dial's entry of the list, and which of its resolved addresses it takes: the
    /// entries in turn, and each entry's addresses one further per round of the list.
    fn turn(&self, i: usize) -> (&PeerAddress, usize) {
        (self.get(i), i / self.0.len())
    }
}

impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let written: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&written.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_keeps_its_order_wraps_around_and_resolves_each_address() {
        let any: SocketAddr = "[::]:0".parse().expect("addr");
        let list = Addresses::parse(" 127.0.0.1:9443, localhost:9444 ,").expect("two addresses");
        assert_eq!(list.len(), 2);
        assert_eq!(list.get(2).to_string(), "127.0.0.1:9443");
        let second = list.resolve(1, any).await.expect("localhost resolves");
        assert_eq!((second.ip().is_loopback(), second.port()), (true, 9444));
        assert_eq!(Addresses::parse(" , "), Err(ListError::Empty));
        // Dials 0..6 over two entries: each entry in turn, its next address every round.
        let turns: Vec<(String, usize)> = (0..6)
            .map(|i| list.turn(i))
            .map(|(address, attempt)| (address.to_string(), attempt))
            .collect();
        let expected = [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
            .map(|(entry, attempt)| (list.get(entry).to_string(), attempt));
        assert_eq!(turns, expected);
        assert!(matches!(
            Addresses::parse("a:1,no-port"),
            Err(ListError::Invalid { text, source: AddressError::NoPort }) if text == "no-port"
        ));
    }
}
