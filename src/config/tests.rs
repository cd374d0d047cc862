//! Every key of SPEC §9 decodes to its typed value or default; every bad value and every
//! contradiction is refused with the exact key path and a reason naming the value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const SPEC_EXAMPLE: &str = r#"
[node]
zone = "plant-a"                  # must equal the CN of tls.cert
data_dir = "/var/lib/bsfg"

[listen]
rpc = "0.0.0.0:9443"              # QUIC/UDP
admin = "127.0.0.1:9180"          # HTTP

[tls]
ca = "pki/ca.pem"
cert = "pki/plant-a.pem"
key = "pki/plant-a.key"
crl = "pki/ca.crl"                # optional; revoked certificates fail the handshake; reloaded like the rest

[[peers]]
zone = "enterprise"
address = "10.0.1.10:9443"        # optional when dial = false
dial = true

[[clients]]
identity = "mes-line-1"
roles = ["produce", "consume"]

[store]
capacity_bytes = "10GiB"
retention = "7d"
backpressure = "reject"           # reject | drop_oldest
safety_critical = false
high_watermark_percent = 80
low_watermark_percent = 70

[forward]
capacity_bytes = "10GiB"
retention = "7d"

[replication]
batch_limit = 1000
max_wait_ms = 250

[limits]
max_fact_bytes = "1MiB"
max_frame_bytes = "16MiB"

[admin]
token_file = "/etc/bsfg/admin.token"   # optional

[log]
level = "info"
format = "json"                   # json | text
audit = true
"#;

pub(super) const MINIMAL: &str = r#"
[node]
zone = "plant-a"
data_dir = "/var/lib/bsfg"

[tls]
ca = "/pki/ca.pem"
cert = "/pki/plant-a.pem"
key = "/pki/plant-a.key"
"#;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/bsfg"))
}

fn minimal_with(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}")
}

fn node_with(zone: &str) -> String {
    MINIMAL.replace("\"plant-a\"", &format!("{zone:?}"))
}

#[track_caller]
pub(super) fn assert_invalid(text: &str, path: &str, fragment: &str) {
    match parse(text) {
        Err(ConfigError::Invalid { path: p, message }) => {
            assert_eq!(p, path, "wrong path; message was {message:?}");
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
        other => panic!("expected Invalid at {path}, got {other:?}"),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

#[test]
fn spec_example_decodes_to_typed_values() {
    let config = parse(SPEC_EXAMPLE).expect("SPEC §9 example");
    assert_eq!(config.node.zone.as_str(), "plant-a");
    assert_eq!(config.node.zone.to_string(), "plant-a");
    assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/bsfg"));
    assert_eq!(config.listen.rpc, addr("0.0.0.0:9443"));
    assert_eq!(config.listen.admin, addr("127.0.0.1:9180"));
    assert_eq!(config.tls.ca, PathBuf::from("/etc/bsfg/pki/ca.pem"));
    assert_eq!(config.tls.key, PathBuf::from("/etc/bsfg/pki/plant-a.key"));
    assert_eq!(config.tls.crl, Some(PathBuf::from("/etc/bsfg/pki/ca.crl")));
    let peer = config.peer("enterprise").expect("peer enterprise");
    assert_eq!(peer.address, Some(addr("10.0.1.10:9443").into()));
    assert!(peer.dial);
    let client = config.client("mes-line-1").expect("client mes-line-1");
    assert_eq!(client.roles, vec![Role::Produce, Role::Consume]);
    assert!(config.peer("plant-b").is_none() && config.client("enterprise").is_none());
    let token = config.admin.token_file.as_deref();
    assert_eq!(token, Some(Path::new("/etc/bsfg/admin.token")));
}

#[test]
fn spec_example_store_replication_limits_and_log() {
    let config = parse(SPEC_EXAMPLE).expect("SPEC §9 example");
    assert_eq!(config.store.capacity_bytes.bytes(), 10 * GIB);
    assert_eq!(config.store.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(config.store.backpressure, WhenFull::Reject);
    assert!(!config.store.safety_critical);
    assert_eq!(config.store.high_watermark_percent, 80);
    assert_eq!(config.store.low_watermark_percent, 70);
    assert_eq!(config.forward.capacity_bytes.bytes(), 10 * GIB);
    assert_eq!(config.replication.batch_limit, 1000);
    assert_eq!(config.replication.max_wait_ms, 250);
    assert_eq!(config.limits.max_fact_bytes.bytes(), MIB);
    assert_eq!(config.limits.max_frame_bytes.bytes(), 16 * MIB);
    assert_eq!(config.log.level, LogLevel::Info);
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(config.log.audit);
}

/// The tree is mapped once onto every component's config, each from the sections it reads.
#[test]
fn the_spec_example_maps_onto_each_component_config() {
    let settings = parse(SPEC_EXAMPLE)
        .expect("SPEC §9 example")
        .node_settings()
        .expect("settings");
    assert_eq!(
        (settings.zone.as_str(), settings.data_dir.as_path()),
        ("plant-a", Path::new("/var/lib/bsfg"))
    );
    let [link] = &settings.links[..] else {
        panic!("one link per peer: {:?}", settings.links)
    };
    assert_eq!((link.zone.as_str(), link.peer.as_str()), ("plant-a", "enterprise"));
    let dialled = link.addresses.as_ref().map(|a| a.get(0).clone());
    assert_eq!((dialled, link.dial), (Some(addr("10.0.1.10:9443").into()), true));
    assert_eq!((link.batch_limit, link.max_wait), (1000, Duration::from_millis(250)));
    assert_eq!(
        settings.certs.idle_timeout,
        Duration::from_secs(5),
        "the link timeout is QUIC's"
    );
    assert_eq!((settings.rpc.listen, settings.rpc.audit), (addr("0.0.0.0:9443"), true));
    assert_eq!(settings.rpc.max_frame_bytes as u64, 16 * MIB);
    let directory = &settings.rpc.directory;
    assert!(directory.peers.contains("enterprise") && directory.peers.len() == 1);
    let roles = directory.clients["mes-line-1"];
    assert!(roles.allows(Role::Produce) && roles.allows(Role::Consume));
    assert_eq!(settings.store.routing.next_hop("enterprise"), Some("enterprise"));
    assert_eq!(
        (
            settings.store.max_fact_bytes as u64,
            settings.forward.max_frame_bytes as u64
        ),
        (MIB, 16 * MIB)
    );
    assert_eq!(settings.objects.max_object_bytes, GIB);
    assert_eq!(settings.certs.paths.cert, PathBuf::from("/etc/bsfg/pki/plant-a.pem"));
    assert_eq!(
        settings.certs.idle_timeout,
        Duration::from_secs(5),
        "replication.link_timeout"
    );
    let buffers = &settings.buffers;
    assert_eq!(
        (buffers.store.capacity_bytes, buffers.forward.capacity_bytes),
        (10 * GIB, 10 * GIB)
    );
    assert_eq!(buffers.policy.when_full(), WhenFull::Reject);
    assert_eq!(
        buffers.disk_reserve_bytes,
        256 * MIB,
        "node.disk_reserve_bytes defaults to 256 MiB"
    );
    assert_eq!(
        buffers.journal().store_byte_limit,
        Some(10 * GIB),
        "reject bounds the journal"
    );
}

#[test]
fn minimal_config_gets_every_default() {
    let config = parse(MINIMAL).expect("minimal config");
    assert_eq!(config.listen.rpc, addr("0.0.0.0:9443"));
    assert_eq!(config.listen.admin, addr("127.0.0.1:9180"));
    assert!(config.peers.is_empty() && config.clients.is_empty());
    assert_eq!(config.store, StoreSection::default());
    assert_eq!(config.store.capacity_bytes.bytes(), 10 * GIB);
    assert_eq!(config.store.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(config.forward.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(config.replication.link_timeout, Duration::from_secs(5));
    assert_eq!(config.replication.max_wait_ms, 250);
    assert_eq!(config.limits.max_frame_bytes.bytes(), 16 * MIB);
    assert_eq!(config.limits.max_object_bytes.bytes(), GIB);
    assert_eq!(config.admin.token_file, None);
    assert_eq!(config.log, LogSection::default());
    assert!(config.log.audit);
}

#[test]
fn keys_left_out_of_a_present_section_take_defaults() {
    let config = parse(&minimal_with("[store]\nsafety_critical = true\n")).expect("config");
    assert!(config.store.safety_critical);
    assert_eq!(config.store.high_watermark_percent, 80);
    assert_eq!(config.store.backpressure, WhenFull::Reject);
}

#[test]
fn peer_dial_defaults_to_true_and_address_is_optional_without_dial() {
    let text = "[[peers]]\nzone = \"idmz\"\ndial = false\n[[peers]]\nzone = \"b\"\naddress = \"[::1]:9443\"";
    let config = parse(&minimal_with(text)).expect("config");
    assert_eq!(config.peers[0].address, None);
    assert!(!config.peers[0].dial);
    assert!(config.peers[1].dial);
}

#[test]
fn every_enum_value_decodes() {
    let text = "[store]\nbackpressure = \"drop_oldest\"\n[log]\nlevel = \"warning\"\nformat = \"text\"\naudit = false";
    let config = parse(&minimal_with(text)).expect("config");
    assert_eq!(config.store.backpressure, WhenFull::DropOldest);
    assert_eq!(config.log.level, LogLevel::Warning);
    assert_eq!(config.log.format, LogFormat::Text);
    assert!(!config.log.audit);
    let warn = parse(&minimal_with("[log]\nlevel = \"warn\"")).expect("config");
    assert_eq!(warn.log.level, LogLevel::Warning, "`warn` is the same level");
}

#[test]
fn a_peer_may_cap_its_bytes_per_second() {
    let peer = "[[peers]]\nzone = \"enterprise\"\naddress = \"10.0.1.10:9443\"\n";
    let settings = parse(&minimal_with(&format!("{peer}max_bytes_per_second = \"100KiB\"")))
        .expect("config")
        .node_settings()
        .expect("settings");
    assert_eq!(settings.links[0].max_bytes_per_second, Some(100 * 1024));
    let settings = parse(&minimal_with(peer))
        .expect("config")
        .node_settings()
        .expect("settings");
    assert_eq!(settings.links[0].max_bytes_per_second, None, "no cap by default");
    let zero = minimal_with(&format!("{peer}max_bytes_per_second = 0"));
    assert_invalid(&zero, "peers[0].max_bytes_per_second", "greater than zero");
}

#[test]
fn the_disk_reserve_is_a_size_of_the_node() {
    let text = MINIMAL.replace(
        "data_dir = \"/var/lib/bsfg\"",
        "data_dir = \"/d\"\ndisk_reserve_bytes = \"1GiB\"",
    );
    let settings = parse(&text).expect("config").node_settings().expect("settings");
    assert_eq!(settings.buffers.disk_reserve_bytes, GIB);
    let text = MINIMAL.replace(
        "data_dir = \"/var/lib/bsfg\"",
        "data_dir = \"/d\"\ndisk_reserve_bytes = \"lots\"",
    );
    assert_invalid(&text, "node.disk_reserve_bytes", "lots");
}

#[test]
fn the_write_stall_timeout_is_a_duration_of_the_node_longer_than_an_ha_commit() {
    let with = |stall: &str| MINIMAL.replace("data_dir = \"/var/lib/bsfg\"", &format!("data_dir = \"/d\"\n{stall}"));
    let settings = |text: &str| parse(text).expect("config").node_settings().expect("settings");
    assert_eq!(
        settings(MINIMAL).write_stall,
        Duration::from_secs(30),
        "30 s by default"
    );
    let text = with("write_stall_timeout = \"5s\"");
    assert_eq!(settings(&text).write_stall, Duration::from_secs(5));
    assert_invalid(
        &with("write_stall_timeout = \"soon\""),
        "node.write_stall_timeout",
        "soon",
    );
    let ha = "[storage]\nengine = \"jetstream\"\n[storage.jetstream]\nurls = [\"nats://127.0.0.1:4222\"]\n\
              instance = \"plant-a-1\"\ncommit_timeout = \"15s\"";
    assert_invalid(
        &format!("{}\n{ha}", with("write_stall_timeout = \"15s\"")),
        "node.write_stall_timeout",
        "not longer than storage.jetstream.commit_timeout (15s)",
    );
    parse(&format!("{}\n{ha}", with("write_stall_timeout = \"16s\""))).expect("longer than the commit");
    // A snapshot copies the whole replica: not every second.
    let stall = with("write_stall_timeout = \"16s\"");
    assert_invalid(
        &format!("{stall}\n{ha}\nsnapshot_every = \"1KiB\""),
        "storage.jetstream.snapshot_every",
        "below the minimum of 4.0 KiB",
    );
    parse(&format!("{stall}\n{ha}\nsnapshot_every = \"4KiB\"")).expect("the least snapshot interval");
    // One fact must fit in one record of the zone's log (4 MiB).
    let limits = "[limits]\nmax_frame_bytes = \"16MiB\"\nmax_fact_bytes = \"5MiB\"";
    let stall = with("write_stall_timeout = \"16s\"");
    let large = format!("{stall}\n{limits}\n{ha}");
    assert_invalid(
        &large,
        "limits.max_fact_bytes",
        "5.0 MiB does not fit in one record of the HA zone's log",
    );
    parse(&format!("{stall}\n{limits}")).expect("a single node's log takes a fact of 5 MiB");
}

#[test]
fn sizes_accept_units_and_bare_integers() {
    let text = "[limits]\nmax_fact_bytes = 2048\nmax_frame_bytes = \"1GiB\"\nmax_object_bytes = \"50MiB\"\n\
                [forward]\ncapacity_bytes = \"500MB\"";
    let config = parse(&minimal_with(text)).expect("config");
    assert_eq!(config.limits.max_fact_bytes.bytes(), 2048);
    assert_eq!(config.limits.max_object_bytes.bytes(), 50 * MIB);
    assert_eq!(config.limits.max_frame_bytes.bytes(), GIB);
    assert_eq!(config.forward.capacity_bytes.bytes(), 500_000_000);
}

#[test]
fn unknown_key_is_reported_at_its_path() {
    let text = minimal_with("[store]\ncolour = \"red\"");
    assert_invalid(&text, "store.colour", "unknown field `colour`");
    assert_invalid(
        &minimal_with("[stoer]\nretention = \"1d\""),
        "stoer",
        "unknown field `stoer`",
    );
    let peer = "[[peers]]\nzone = \"b\"\nadress = \"10.0.0.1:1\"";
    assert_invalid(&minimal_with(peer), "peers[0].adress", "unknown field `adress`");
}

#[test]
fn missing_required_key_is_reported_at_its_path() {
    let text = MINIMAL.replace("key = \"/pki/plant-a.key\"", "");
    assert_invalid(&text, "tls.key", "required key is missing");
    assert_invalid(
        "[node]\nzone = \"a\"\ndata_dir = \"d\"",
        "tls",
        "required key is missing",
    );
    let client = "[[clients]]\nidentity = \"mes\"";
    assert_invalid(&minimal_with(client), "clients[0].roles", "required key is missing");
}

#[test]
fn bad_duration_names_key_and_value() {
    let text = minimal_with("[store]\nretention = \"7x\"");
    assert_invalid(&text, "store.retention", "invalid duration \"7x\"");
    let zero = minimal_with("[replication]\nlink_timeout = \"0s\"");
    assert_invalid(&zero, "replication.link_timeout", "\"0s\": must be greater than zero");
    let century = "longer than the maximum of 100 years";
    let endless = minimal_with("[store]\nretention = \"18446744073709552s\"");
    assert_invalid(
        &endless,
        "store.retention",
        &format!("\"18446744073709552s\": {century}"),
    );
    let huge = minimal_with("[replication]\nlink_timeout = \"200000000y\"");
    assert_invalid(&huge, "replication.link_timeout", century);
    assert!(parse(&minimal_with("[store]\nretention = \"100y\"")).is_ok());
    let bare = minimal_with("[forward]\nretention = 7");
    let hint = "expected a duration string such as \"7d\"";
    assert_invalid(&bare, "forward.retention", hint);
}

#[test]
fn bad_size_names_key_and_value() {
    let text = minimal_with("[forward]\ncapacity_bytes = \"10XB\"");
    assert_invalid(&text, "forward.capacity_bytes", "invalid size \"10XB\"");
    let negative = minimal_with("[limits]\nmax_fact_bytes = -1");
    assert_invalid(
        &negative,
        "limits.max_fact_bytes",
        "invalid size -1: must not be negative",
    );
    let zero = minimal_with("[store]\ncapacity_bytes = \"0GiB\"");
    assert_invalid(&zero, "store.capacity_bytes", "\"0GiB\": must be greater than zero");
}

#[test]
fn bad_zone_name_names_key_and_value() {
    assert_invalid(&node_with("Plant_A"), "node.zone", "invalid zone name \"Plant_A\"");
    assert_invalid(&node_with("-a"), "node.zone", "[a-z0-9][a-z0-9-]{0,62}");
    assert_invalid(&node_with(&"a".repeat(64)), "node.zone", "invalid zone name");
    parse(&node_with(&"a".repeat(63))).expect("63 characters is the maximum");
    let peers = "[[peers]]\nzone = \"b\"\ndial = false\n[[peers]]\nzone = \"\"\ndial = false";
    assert_invalid(&minimal_with(peers), "peers[1].zone", "invalid zone name \"\"");
}

#[test]
fn bad_client_identity_and_roles_are_refused() {
    let bad = "[[clients]]\nidentity = \"MES 1\"\nroles = [\"produce\"]";
    assert_invalid(
        &minimal_with(bad),
        "clients[0].identity",
        "invalid client identity \"MES 1\"",
    );
    let empty = "[[clients]]\nidentity = \"mes\"\nroles = []";
    assert_invalid(&minimal_with(empty), "clients[0].roles", "at least one role");
    let unknown = "[[clients]]\nidentity = \"mes\"\nroles = [\"admin\"]";
    assert_invalid(&minimal_with(unknown), "clients[0].roles[0]", "unknown variant `admin`");
}

#[test]
fn bad_address_and_enum_values_name_key_and_value() {
    let rpc = minimal_with("[listen]\nrpc = \"localhost:9443\"");
    assert_invalid(&rpc, "listen.rpc", "invalid socket address \"localhost:9443\"");
    let policy = minimal_with("[store]\nbackpressure = \"drop_newest\"");
    assert_invalid(&policy, "store.backpressure", "unknown variant `drop_newest`");
    let level = minimal_with("[log]\nlevel = \"verbose\"");
    assert_invalid(&level, "log.level", "unknown variant `verbose`");
    let percent = minimal_with("[store]\nhigh_watermark_percent = \"80%\"");
    assert_invalid(&percent, "store.high_watermark_percent", "invalid type");
}

#[test]
fn toml_syntax_error_carries_line_and_column() {
    let text = "[node]\nzone = \"a\"\ndata_dir = /var\n";
    match parse(text) {
        Err(ConfigError::Syntax { line, column, .. }) => assert_eq!((line, column), (3, 12)),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn peer_zones_must_be_unique_and_not_our_own() {
    let dup = "[[peers]]\nzone = \"b\"\ndial = false\n[[peers]]\nzone = \"b\"\ndial = false";
    assert_invalid(
        &minimal_with(dup),
        "peers[1].zone",
        "duplicate peer zone \"b\" (already peers[0].zone)",
    );
    let own = "[[peers]]\nzone = \"plant-a\"\ndial = false";
    assert_invalid(
        &minimal_with(own),
        "peers[0].zone",
        "\"plant-a\" is this node's own zone",
    );
}

#[test]
fn peer_addresses_may_be_host_names_and_malformed_ones_are_refused_at_their_key() {
    let named = minimal_with("[[peers]]\nzone = \"enterprise\"\naddress = \"enterprise-gw.example:9443\"");
    let config = parse(&named).expect("a host name is an address");
    let address = config.peers[0].address.as_ref().expect("address");
    assert_eq!(address.name(), Some("enterprise-gw.example"));
    assert_eq!(address.to_string(), "enterprise-gw.example:9443");
    let refused = [
        ("enterprise-gw.example", "no port"),
        ("enterprise-gw.example:0", "invalid port \"0\""),
        ("enterprise-gw.example:99999", "invalid port \"99999\""),
        ("::1:9443", "needs brackets"),
        ("enterprise gw:9443", "invalid host \"enterprise gw\""),
    ];
    for (written, reason) in refused {
        let text = minimal_with(&format!("[[peers]]\nzone = \"enterprise\"\naddress = \"{written}\""));
        assert_invalid(
            &text,
            "peers[0].address",
            &format!("invalid peer address \"{written}\""),
        );
        assert_invalid(&text, "peers[0].address", reason);
    }
}

#[test]
fn dialled_peer_needs_an_address() {
    let text = minimal_with("[[peers]]\nzone = \"enterprise\"");
    assert_invalid(
        &text,
        "peers[0].address",
        "required for peer \"enterprise\" because dial = true",
    );
}

#[test]
fn client_identity_must_be_unique_and_not_a_peer() {
    let peer = "[[peers]]\nzone = \"b\"\ndial = false\n";
    let as_peer = format!("{peer}[[clients]]\nidentity = \"b\"\nroles = [\"consume\"]");
    assert_invalid(
        &minimal_with(&as_peer),
        "clients[0].identity",
        "\"b\" is also a peer zone (peers[0].zone)",
    );
    let one = "[[clients]]\nidentity = \"mes\"\nroles = [\"produce\"]\n";
    let dup = minimal_with(&format!("{one}{one}"));
    assert_invalid(&dup, "clients[1].identity", "duplicate client identity \"mes\"");
}

#[test]
fn safety_critical_forbids_drop_oldest() {
    let text = minimal_with("[store]\nsafety_critical = true\nbackpressure = \"drop_oldest\"");
    let fragment = "drop_oldest is not allowed with store.safety_critical = true";
    assert_invalid(&text, "store.backpressure", fragment);
}

#[test]
fn watermarks_must_be_ordered_percentages() {
    let equal = minimal_with("[store]\nhigh_watermark_percent = 70\nlow_watermark_percent = 70");
    assert_invalid(
        &equal,
        "store.low_watermark_percent",
        "70 must be below store.high_watermark_percent (70)",
    );
    let over = minimal_with("[store]\nhigh_watermark_percent = 101\nlow_watermark_percent = 70");
    assert_invalid(&over, "store.high_watermark_percent", "101 is not a percentage");
    // A buffer blocked at the high watermark would never be released.
    let zero = minimal_with("[store]\nlow_watermark_percent = 0");
    assert_invalid(&zero, "store.low_watermark_percent", "must be at least 1, got 0");
}

#[test]
fn batch_limit_is_between_one_and_a_page() {
    let text = minimal_with("[replication]\nbatch_limit = 0");
    assert_invalid(
        &text,
        "replication.batch_limit",
        "must be between 1 and 10000 (facts per page), got 0",
    );
    let text = minimal_with("[replication]\nbatch_limit = 20000");
    assert_invalid(&text, "replication.batch_limit", "got 20000");
}

#[test]
fn a_pull_waits_between_a_millisecond_and_a_minute() {
    // 0 would have a caught-up link fetch in a tight loop, each call an audit line.
    let spin = minimal_with("[replication]\nmax_wait_ms = 0");
    assert_invalid(
        &spin,
        "replication.max_wait_ms",
        "must be between 1 and 60000 (milliseconds), got 0",
    );
    let long = minimal_with("[replication]\nmax_wait_ms = 60001");
    assert_invalid(&long, "replication.max_wait_ms", "got 60001");
    assert!(parse(&minimal_with("[replication]\nmax_wait_ms = 60000")).is_ok());
}

#[test]
fn frame_and_fact_limits_are_bounded() {
    let fact = minimal_with("[limits]\nmax_fact_bytes = \"2MiB\"\nmax_frame_bytes = \"1MiB\"");
    assert_invalid(
        &fact,
        "limits.max_fact_bytes",
        "2.0 MiB exceeds limits.max_frame_bytes (1.0 MiB)",
    );
    let frame = minimal_with("[limits]\nmax_frame_bytes = \"2GiB\"");
    assert_invalid(
        &frame,
        "limits.max_frame_bytes",
        "2.0 GiB exceeds the maximum of 1.0 GiB",
    );
}

#[test]
fn exposed_admin_listener_needs_a_token() {
    let open = minimal_with("[listen]\nadmin = \"0.0.0.0:9180\"");
    assert_invalid(&open, "listen.admin", "0.0.0.0:9180 is not a loopback address");
    let guarded = minimal_with("[listen]\nadmin = \"0.0.0.0:9180\"\n[admin]\ntoken_file = \"t\"");
    parse(&guarded).expect("a token file allows a non-loopback admin address");
    parse(&minimal_with("[listen]\nadmin = \"[::1]:9180\"")).expect("IPv6 loopback");
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = r#"
[node]
zone = "plant-a"
data_dir = "data"
[tls]
ca = "pki/ca.pem"
cert = "../shared/plant-a.pem"
key = "/abs/plant-a.key"
[admin]
token_file = "admin.token"
"#;
    let config = Config::parse(text, Path::new("/etc/bsfg")).expect("config");
    assert_eq!(config.node.data_dir, PathBuf::from("/etc/bsfg/data"));
    assert_eq!(config.tls.ca, PathBuf::from("/etc/bsfg/pki/ca.pem"));
    assert_eq!(config.tls.cert, PathBuf::from("/etc/bsfg/../shared/plant-a.pem"));
    assert_eq!(config.tls.key, PathBuf::from("/abs/plant-a.key"));
    assert_eq!(config.tls.crl, None, "no revocation lists unless configured");
    let token = config.admin.token_file.as_deref();
    assert_eq!(token, Some(Path::new("/etc/bsfg/admin.token")));
}

#[test]
fn load_reads_the_file_and_resolves_against_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.toml");
    std::fs::write(&file, SPEC_EXAMPLE).expect("write config");
    let config = Config::load(&file).expect("load");
    assert_eq!(config.tls.ca, dir.path().join("pki/ca.pem"));
    let missing = Config::load(&dir.path().join("absent.toml"));
    assert!(matches!(missing, Err(ConfigError::Read { .. })), "{missing:?}");
    let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.starts_with("cannot read config file "), "{message}");
}
