//! Typed leaf values of the configuration: zone names, sizes, durations, addresses and the
//! small enums of the log. Each one is checked while it is deserialized, so an error carries the
//! key path that serde_path_to_error tracked and the offending value. The enums a component
//! owns (`WhenFull`, `Role`) are defined, documented and deserialized by that component.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bsfg_actors::{rpc::Role, transport::address::PeerAddress};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A zone name: `[a-z0-9][a-z0-9-]{0,62}`. Nodes are named by zone (certificate CN = zone).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone(String);

impl Zone {
    /// The name as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = string(d, "a zone name string")?;
        check_name("zone name", &name).map_err(de::Error::custom)?;
        Ok(Zone(name))
    }
}

/// Zone names and client identities share one syntax (both end up as a certificate CN).
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if first_ok && rest_ok && name.len() <= 63 {
        return Ok(());
    }
    Err(format!("invalid {what} {name:?}: must match [a-z0-9][a-z0-9-]{{0,62}}"))
}

/// `deserialize_with` for `clients[].identity`.
pub(super) fn identity<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = string(d, "a client identity string")?;
    check_name("client identity", &name).map_err(de::Error::custom)?;
    Ok(name)
}

/// A size in bytes, written `"10GiB"`, `"1MiB"`, `"500MB"` or as a bare integer of bytes.
/// Never zero: every size in the configuration bounds something that must hold data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    pub(super) const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    pub(super) const fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }

    fn checked(bytes: u64, written: &dyn fmt::Display) -> Result<Self, String> {
        match bytes {
            0 => Err(format!("invalid size {written}: must be greater than zero")),
            u64::MAX => Err(format!("invalid size {written}: too large")),
            n => Ok(ByteSize(n)),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"10GiB\" or an integer number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        ByteSize::checked(v, &v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        let bytes = u64::try_from(v).map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))?;
        self.visit_u64(bytes)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        let parsed = v
            .parse::<bytesize::ByteSize>()
            .map_err(|e| E::custom(format!("invalid size {v:?}: {e}")))?;
        ByteSize::checked(parsed.as_u64(), &format_args!("{v:?}")).map_err(E::custom)
    }
}

/// Reads a TOML string; a value of another type is refused with `expecting` as the hint.
fn string<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<String, D::Error> {
    d.deserialize_str(StringVisitor(expecting))
}

struct StringVisitor(&'static str);

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

/// The longest duration a key takes: a century (`"100y"`, in years of 365.25 days). Longer
/// values are refused rather than left to overflow a deadline (`now + lease_ttl`) or a protocol
/// field (QUIC's idle timeout).
const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// `deserialize_with` for durations written with humantime units (`"7d"`, `"250ms"`).
/// Zero is rejected: a zero retention or timeout is never what an operator means; so is anything
/// over [`MAX_DURATION`].
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = string(d, "a duration string such as \"7d\" or \"250ms\"")?;
    match humantime::parse_duration(&text) {
        Ok(value) if value.is_zero() => Err(de::Error::custom(format!(
            "invalid duration {text:?}: must be greater than zero"
        ))),
        Ok(value) if value > MAX_DURATION => Err(de::Error::custom(format!(
            "invalid duration {text:?}: longer than the maximum of 100 years"
        ))),
        Ok(value) => Ok(value),
        Err(e) => Err(de::Error::custom(format!("invalid duration {text:?}: {e}"))),
    }
}

/// `deserialize_with` for `IP:PORT` addresses; the error repeats what was written.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = string(d, "an address string such as \"10.0.1.10:9443\"")?;
    text.parse()
        .map_err(|e| de::Error::custom(format!("invalid socket address {text:?}: {e} (expected IP:PORT)")))
}

/// `deserialize_with` for `[[peers]] address`: `HOST:PORT` with a host name or an IP (resolved
/// at each dial, not here); present key = `Some`.
pub(super) fn opt_peer_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PeerAddress>, D::Error> {
    let text = string(d, "an address string such as \"gw.example:9443\" or \"10.0.1.10:9443\"")?;
    text.parse()
        .map(Some)
        .map_err(|e| de::Error::custom(format!("invalid peer address {text:?}: {e}")))
}

/// `deserialize_with` for a list of peer addresses (as [`opt_peer_address`]).
pub(super) fn peer_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerAddress>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|e| de::Error::custom(format!("invalid peer address {text:?}: {e}")))
        })
        .collect()
}

/// `deserialize_with` for file paths: an empty string would silently mean "the config's
/// directory" after resolution, so it is refused.
pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let text = string(d, "a file path string")?;
    if text.is_empty() {
        return Err(de::Error::custom("path must not be empty"));
    }
    Ok(PathBuf::from(text))
}

/// `deserialize_with` for an optional file path (present key = `Some`).
pub(super) fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    path(d).map(Some)
}

/// `deserialize_with` for `clients[].roles`: at least one role; duplicates are collapsed.
pub(super) fn roles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Role>, D::Error> {
    let mut roles = Vec::<Role>::deserialize(d)?;
    if roles.is_empty() {
        return Err(de::Error::custom(
            "at least one role is required (\"produce\", \"consume\")",
        ));
    }
    roles.sort_unstable();
    roles.dedup();
    Ok(roles)
}

/// Minimum severity written to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    /// Also spelt `warn`, as most logging libraries and `RUST_LOG` spell it.
    #[serde(alias = "warn")]
    Warning,
    Error,
    Critical,
}

/// Log line encoding: one JSON object per line, or text for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}
