//! One struct per TOML section of SPEC §9, with the documented defaults. Sections other than
//! `[node]` and `[tls]` may be omitted; any key left out of a present section takes its default.
//! Each actor receives the section it needs and nothing else.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use bsfg_actors::{backpressure::WhenFull, rpc::Role, transport::address::PeerAddress};

use super::values::{self, ByteSize, LogFormat, LogLevel, Zone};

/// `[node]`: who this node is and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Must equal the CN of `tls.cert`.
    pub zone: Zone,
    /// Resolved against the config file's directory when relative.
    #[serde(deserialize_with = "values::path")]
    pub data_dir: PathBuf,
    /// Free space kept on `data_dir`'s file system, on top of what RocksDB itself will still
    /// write there: below it, appends are refused (`RESOURCE_EXHAUSTED`), pulls pause and
    /// confirmed facts are reclaimed, so confirms and deletions always find room.
    #[serde(default = "default_disk_reserve")]
    pub disk_reserve_bytes: ByteSize,
    /// How long a write to `data_dir` may hang (a disk, controller or network file system that
    /// stopped completing writes) before the node reports its storage failing, is not ready,
    /// and answers the calls waiting on that write, and new ones until it completes,
    /// `UNAVAILABLE`. Longer than `storage.jetstream.commit_timeout` in an HA zone.
    #[serde(default = "default_write_stall", deserialize_with = "values::duration")]
    pub write_stall_timeout: Duration,
}

fn default_disk_reserve() -> ByteSize {
    ByteSize::mib(256)
}

fn default_write_stall() -> Duration {
    bsfg_actors::DEFAULT_WRITE_STALL
}

/// `[listen]`: the QUIC (UDP) RPC listener and the admin HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenSection {
    #[serde(deserialize_with = "values::socket_addr")]
    pub rpc: SocketAddr,
    /// Loopback unless `admin.token_file` is set (SPEC §6).
    #[serde(deserialize_with = "values::socket_addr")]
    pub admin: SocketAddr,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            rpc: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9443)),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 9180)),
        }
    }
}

/// `[tls]`: PEM files, resolved against the config file's directory when relative.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(deserialize_with = "values::path")]
    pub ca: PathBuf,
    #[serde(deserialize_with = "values::path")]
    pub cert: PathBuf,
    #[serde(deserialize_with = "values::path")]
    pub key: PathBuf,
    /// Certificate revocation lists (PEM or DER), reloaded with the rest; optional.
    #[serde(default, deserialize_with = "values::opt_path")]
    pub crl: Option<PathBuf>,
}

/// `[[peers]]`: a node in another zone this node exchanges facts with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The peer's certificate CN.
    pub zone: Zone,
    /// Where to dial (a one-element `addresses`), a host name or an IP with a port; `address` or
    /// `addresses` is present when `dial` is true.
    #[serde(default, deserialize_with = "values::opt_peer_address")]
    pub address: Option<PeerAddress>,
    /// The instances of an HA peer zone, tried in order (moving on after a failed dial or a
    /// standby's refusal).
    #[serde(default, deserialize_with = "values::peer_addresses")]
    pub addresses: Vec<PeerAddress>,
    /// With `false` this node only accepts the peer's connection (one-way firewalls).
    #[serde(default = "yes")]
    pub dial: bool,
    /// Replication bytes per second toward and from this peer, each way (pages and artifacts;
    /// QUIC's headers and acknowledgements add about 5 %): so replication cannot starve a
    /// plant's other traffic. Unlimited when absent.
    #[serde(default)]
    pub max_bytes_per_second: Option<ByteSize>,
}

impl PeerSection {
    /// Every address to dial, in order (`address` alone, or `addresses`).
    pub fn dial_addresses(&self) -> Vec<PeerAddress> {
        self.address.iter().chain(&self.addresses).cloned().collect()
    }
}

/// `[[clients]]`: a local producer or consumer allowed to call this node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// The client's certificate CN; same syntax as a zone name.
    #[serde(deserialize_with = "values::identity")]
    pub identity: String,
    /// Never empty, sorted, without duplicates.
    #[serde(deserialize_with = "values::roles")]
    pub roles: Vec<Role>,
}

/// `[store]`: the outbound store buffer (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    pub capacity_bytes: ByteSize,
    #[serde(deserialize_with = "values::duration")]
    pub retention: Duration,
    pub backpressure: WhenFull,
    /// Keep unconfirmed facts past retention and forbid `drop_oldest`.
    pub safety_critical: bool,
    pub high_watermark_percent: u8,
    /// Always below `high_watermark_percent`.
    pub low_watermark_percent: u8,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            capacity_bytes: ByteSize::gib(10),
            retention: SEVEN_DAYS,
            backpressure: WhenFull::Reject,
            safety_critical: false,
            high_watermark_percent: 80,
            low_watermark_percent: 70,
        }
    }
}

/// `[forward]`: the inbound forward buffer; its retention is also the dedupe window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardSection {
    pub capacity_bytes: ByteSize,
    #[serde(deserialize_with = "values::duration")]
    pub retention: Duration,
}

impl Default for ForwardSection {
    fn default() -> Self {
        ForwardSection {
            capacity_bytes: ByteSize::gib(10),
            retention: SEVEN_DAYS,
        }
    }
}

/// `[objects]`: the artifact store's bounds (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectsSection {
    /// Bytes of distinct artifact content the node keeps; `PutObject` beyond it is refused with
    /// `RESOURCE_EXHAUSTED`.
    pub capacity_bytes: ByteSize,
    /// Artifacts no retained fact references are deleted this long after they were stored.
    #[serde(deserialize_with = "values::duration")]
    pub retention: Duration,
}

impl Default for ObjectsSection {
    fn default() -> Self {
        ObjectsSection {
            capacity_bytes: ByteSize::gib(50),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `[replication]`: how peers pull from each other.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSection {
    /// Facts per pull page; a backlog above it puts the gate in `reconciliation`. Never zero.
    pub batch_limit: u32,
    /// Long-poll wait of a pull, in milliseconds (the wire's `max_wait_ms`).
    pub max_wait_ms: u64,
    /// A link silent for this long is declared dead and the gate goes `autonomous`.
    #[serde(deserialize_with = "values::duration")]
    pub link_timeout: Duration,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            batch_limit: 1000,
            max_wait_ms: 250,
            link_timeout: Duration::from_secs(5),
        }
    }
}

/// `[limits]`: bounds on decoded input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Whole message (envelope + fact); at most `max_frame_bytes`.
    pub max_fact_bytes: ByteSize,
    /// One wire frame; at most 1 GiB.
    pub max_frame_bytes: ByteSize,
    /// One artifact (`PutObject`, and pulls from peers). Artifacts stream in chunks, so this
    /// bounds disk use per object, not memory. Default 1 GiB.
    pub max_object_bytes: ByteSize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_fact_bytes: ByteSize::mib(1),
            max_frame_bytes: ByteSize::mib(16),
            max_object_bytes: ByteSize::gib(1),
        }
    }
}

/// `[admin]`: when `token_file` is set, mutating admin endpoints require its bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Resolved against the config file's directory when relative. Read at start-up, not here.
    #[serde(deserialize_with = "values::opt_path")]
    pub token_file: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    pub level: LogLevel,
    pub format: LogFormat,
    /// Log every RPC call once with its caller and outcome.
    pub audit: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: LogLevel::Info,
            format: LogFormat::Json,
            audit: true,
        }
    }
}

const SEVEN_DAYS: Duration = Duration::from_secs(7 * 24 * 3600);

fn yes() -> bool {
    true
}
