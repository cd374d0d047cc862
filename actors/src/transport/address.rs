//! Where a peer is dialled (`[[peers]] address`): an IP literal or a host name, with a port.
//!
//! A host name is resolved at every dial, never once at start-up: a DNS change (a gateway
//! replaced, an address renumbered) is picked up by the next dial without a restart, and a node
//! whose peer's name does not resolve yet still starts; that dial fails like one to a peer that
//! does not answer. An IP literal is never looked up.

use std::{
    fmt, io,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

/// The longest host name DNS can carry (RFC 1035: 255 octets on the wire, 253 as text).
const MAX_NAME: usize = 253;
/// The longest label of a host name.
const MAX_LABEL: usize = 63;

/// `host:port`, `IPv4:port` or `[IPv6]:port`, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Why a written address is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("no port (expected HOST:PORT, e.g. \"gw.example:9443\" or \"10.0.1.10:9443\")")]
    NoPort,
    #[error("invalid port {0:?} (expected 1 to 65535)")]
    BadPort(String),
    #[error("an IPv6 address needs brackets and a port: [{0}]:PORT")]
    UnbracketedIpv6(String),
    #[error("invalid host {host:?}: {reason}")]
    BadHost { host: String, reason: &'static str },
}

/// Why a dial found no address to dial.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {name}: {source}")]
    Lookup { name: String, source: io::Error },
    #[error("{name} resolves to no {family} address ({found})")]
    NoUsable {
        name: String,
        family: &'static str,
        found: String,
    },
}

impl PeerAddress {
    /// The address to dial now: the IP literal, or the host name looked up again. Only
    /// addresses of `family_of`'s family are taken (a socket bound to IPv4 cannot reach an IPv6
    /// peer); an IPv6 socket takes either. Of those, the `attempt`-th is dialled (wrapping
    /// around), so dials that keep failing try every address the name has in turn: a gateway
    /// with two addresses, one of them dead, is reached at the next dial.
    pub async fn resolve(&self, family_of: SocketAddr, attempt: usize) -> Result<SocketAddr, ResolveError> {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(SocketAddr::new(*ip, self.port)),
            Host::Name(name) => name,
        };
        let lookup_error = |source| ResolveError::Lookup {
            name: name.clone(),
            source,
        };
        let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), self.port))
            .await
            .map_err(lookup_error)?
            .collect();
        pick(&found, family_of, attempt).ok_or_else(|| ResolveError::NoUsable {
            name: name.clone(),
            family: if family_of.is_ipv6() { "IPv6" } else { "IPv4" },
            found: found.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host name, if the address is not an IP literal.
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(name) => Some(name),
            Host::Ip(_) => None,
        }
    }
}

/// The `attempt`-th of the addresses in `found` that a socket like `family_of` can reach
/// (wrapping around), in the resolver's order.
fn pick(found: &[SocketAddr], family_of: SocketAddr, attempt: usize) -> Option<SocketAddr> {
    let usable: Vec<SocketAddr> = found
        .iter()
        .filter(|candidate| family_of.is_ipv6() || candidate.is_ipv4())
        .copied()
        .collect();
    usable.get(attempt.checked_rem(usable.len())?).copied()
}

impl From<SocketAddr> for PeerAddress {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl FromStr for PeerAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return match addr.port() {
                0 => Err(AddressError::BadPort("0".into())),
                _ => Ok(addr.into()),
            };
        }
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => return Err(AddressError::NoPort),
            Ok(IpAddr::V6(_)) => return Err(AddressError::UnbracketedIpv6(text.to_owned())),
            Err(_) => {}
        }
        let (host, port_text) = text.rsplit_once(':').ok_or(AddressError::NoPort)?;
        if host.parse::<Ipv6Addr>().is_ok() {
            return Err(AddressError::UnbracketedIpv6(host.to_owned()));
        }
        let port = port(port_text)?;
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host_name(host)?),
        };
        Ok(Self { host, port })
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// A dialable port: 0 would mean "any" and is never where a peer listens.
fn port(text: &str) -> Result<u16, AddressError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(AddressError::BadPort(text.to_owned())),
    }
}

/// A DNS host name: dot-separated labels of letters, digits, `-` and `_` (found in internal
/// names), none empty or starting or ending with `-`. A trailing dot (fully qualified) is kept.
fn host_name(host: &str) -> Result<String, AddressError> {
    let bad = |reason| AddressError::BadHost {
        host: host.to_owned(),
        reason,
    };
    if host.is_empty() {
        return Err(bad("empty"));
    }
    if host.len() > MAX_NAME {
        return Err(bad("longer than 253 characters"));
    }
    for label in host.strip_suffix('.').unwrap_or(host).split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(bad("each dot-separated label must have 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with '-'"));
        }
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PeerAddress, AddressError> {
        text.parse()
    }

    #[test]
    fn ip_literals_and_names_parse_and_print_as_written() {
        for text in [
            "10.0.1.10:9443",
            "[::1]:9443",
            "enterprise-gw.example:9443",
            "localhost:1",
            "gw.example.:9443",
        ] {
            let address = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(address.to_string(), text);
        }
        assert_eq!(parse("10.0.1.10:9443").map(|a| a.name().is_none()), Ok(true));
        assert_eq!(
            parse("gw_1.plant:9443").map(|a| a.name().map(str::to_owned)),
            Ok(Some("gw_1.plant".into()))
        );
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        assert_eq!(parse("enterprise-gw.example"), Err(AddressError::NoPort));
        assert_eq!(parse("gw.example:0"), Err(AddressError::BadPort("0".into())));
        assert_eq!(parse("10.0.1.10:0"), Err(AddressError::BadPort("0".into())));
        assert_eq!(parse("gw.example:65536"), Err(AddressError::BadPort("65536".into())));
        assert_eq!(parse("gw.example:"), Err(AddressError::BadPort(String::new())));
        // `::1:9443` is itself an IPv6 address: brackets say which part is the port.
        assert_eq!(parse("::1:9443"), Err(AddressError::UnbracketedIpv6("::1:9443".into())));
        assert_eq!(
            parse("2001:db8::1:99999"),
            Err(AddressError::UnbracketedIpv6("2001:db8::1".into()))
        );
        assert_eq!(parse("10.0.1.10"), Err(AddressError::NoPort));
        for bad in [
            ":9443",
            "gw..example:9443",
            "-gw.example:9443",
            "gw example:9443",
            "https://gw:9443",
        ] {
            assert!(
                matches!(parse(bad), Err(AddressError::BadHost { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        let long = format!("{}.example:9443", "a".repeat(64));
        assert!(matches!(parse(&long), Err(AddressError::BadHost { .. })));
    }

    #[tokio::test]
    async fn literals_are_not_looked_up_and_names_resolve_at_each_call() {
        let v4: SocketAddr = "127.0.0.1:5".parse().expect("addr");
        let literal = parse("192.0.2.7:9443").expect("literal");
        assert_eq!(
            literal.resolve(v4, 0).await.expect("literal").to_string(),
            "192.0.2.7:9443"
        );
        let name = parse("localhost:9443").expect("name");
        let resolved = name.resolve(v4, 0).await.expect("localhost resolves");
        assert_eq!(
            resolved,
            "127.0.0.1:9443".parse().expect("addr"),
            "an IPv4 socket gets an IPv4 address"
        );
    }

    #[test]
    fn dials_that_keep_failing_take_each_address_of_the_family_in_turn() {
        let addr = |text: &str| text.parse::<SocketAddr>().expect("addr");
        let found = [
            addr("10.0.1.10:9443"),
            addr("[2001:db8::10]:9443"),
            addr("10.0.2.10:9443"),
        ];
        let (v4, v6) = (addr("0.0.0.0:0"), addr("[::]:0"));
        let picked = |family_of, attempts: usize| -> Vec<String> {
            (0..attempts)
                .filter_map(|attempt| pick(&found, family_of, attempt))
                .map(|a| a.to_string())
                .collect()
        };
        assert_eq!(
            picked(v4, 3),
            ["10.0.1.10:9443", "10.0.2.10:9443", "10.0.1.10:9443"],
            "an IPv4 socket skips the IPv6 address"
        );
        assert_eq!(
            picked(v6, 4),
            [
                "10.0.1.10:9443",
                "[2001:db8::10]:9443",
                "10.0.2.10:9443",
                "10.0.1.10:9443"
            ]
        );
        assert_eq!(pick(&found[1..2], v4, 0), None, "nothing of the family");
        assert_eq!(pick(&[], v6, 5), None);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error_naming_it() {
        let v4: SocketAddr = "127.0.0.1:5".parse().expect("addr");
        // `.invalid` never resolves (RFC 6761).
        let address = parse("no-such-gateway.invalid:9443").expect("well-formed");
        let error = address.resolve(v4, 0).await.expect_err("must not resolve");
        assert!(error.to_string().contains("no-such-gateway.invalid"), "{error}");
    }
}
