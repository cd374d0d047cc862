//! The shipped samples in `config-samples/` are what operators copy: each one must load with the
//! real loader, and together they must describe one consistent four-zone estate
//! (enterprise ↔ idmz ↔ plant-a, plant-b) in which every link has exactly one dialling side, aimed
//! at the other side's RPC port, the end zones reach each other through the DMZ's routes and
//! relay rules (SPEC §4a) and nothing relays but the DMZ. The alert rules' runbook links must
//! land on a heading of `docs/operations.md`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Config, Role};

const ZONES: [&str; 4] = ["enterprise", "idmz", "plant-a", "plant-b"];
const PLANTS: [&str; 2] = ["plant-a", "plant-b"];

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[track_caller]
fn sample(zone: &str) -> Config {
    let path = repo_file(&format!("config-samples/{zone}.toml"));
    Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn peer_zones(config: &Config) -> Vec<&str> {
    config.peers.iter().map(|p| p.zone.as_str()).collect()
}

fn roles(config: &Config, identity: &str) -> Vec<Role> {
    let client = config.client(identity);
    client
        .unwrap_or_else(|| panic!("client {identity} missing"))
        .roles
        .clone()
}

#[test]
fn every_sample_loads_as_its_zone_with_installed_paths() {
    for zone in ZONES {
        let config = sample(zone);
        assert_eq!(config.node.zone.as_str(), zone);
        assert_eq!(config.node.data_dir, Path::new("/var/lib/bsfg"));
        assert_eq!(config.tls.ca, Path::new("/etc/bsfg/pki/ca.pem"));
        assert_eq!(config.tls.cert, PathBuf::from(format!("/etc/bsfg/pki/{zone}.pem")));
        assert_eq!(config.tls.key, PathBuf::from(format!("/etc/bsfg/pki/{zone}.key")));
        let token = config.admin.token_file.as_deref();
        assert_eq!(token, Some(Path::new("/etc/bsfg/admin.token")), "{zone}");
    }
}

#[test]
fn samples_form_the_four_zone_estate() {
    assert_eq!(peer_zones(&sample("enterprise")), ["idmz"]);
    assert_eq!(peer_zones(&sample("idmz")), ["enterprise", "plant-a", "plant-b"]);
    for plant in PLANTS {
        assert_eq!(peer_zones(&sample(plant)), ["idmz"]);
    }
}

/// The end zones reach each other only through the DMZ, which relays enterprise ↔ plants and
/// nothing else; no other node relays.
#[test]
fn the_end_zones_route_through_the_dmz_which_relays_only_enterprise_and_plants() {
    let enterprise = sample("enterprise").routing();
    for plant in PLANTS {
        assert_eq!(enterprise.next_hop(plant), Some("idmz"), "enterprise → {plant}");
        let routing = sample(plant).routing();
        assert_eq!(routing.next_hop("enterprise"), Some("idmz"), "{plant} → enterprise");
        let other = PLANTS.iter().find(|p| **p != plant).expect("the other plant");
        assert_eq!(routing.next_hop(other), None, "{plant} has no route to {other}");
        assert!(!routing.relays(), "{plant} relays nothing");
    }
    assert!(!enterprise.relays(), "enterprise relays nothing");
    let dmz = sample("idmz");
    let allowed = |from: &str, to: &str| {
        dmz.relay
            .iter()
            .any(|r| r.from.iter().any(|z| z.as_str() == from) && r.to.iter().any(|z| z.as_str() == to))
    };
    for plant in PLANTS {
        assert!(allowed("enterprise", plant) && allowed(plant, "enterprise"), "{plant}");
    }
    assert!(!allowed("plant-a", "plant-b") && !allowed("plant-b", "plant-a"));
    assert!(dmz.routes.is_empty(), "every zone is a peer of the DMZ");
}

/// Connections are opened toward the DMZ only: nothing dials into the plant, the DMZ dials out
/// to nobody, and the dialled address is on the DMZ node's RPC port.
#[test]
fn every_link_is_dialled_by_one_side_toward_the_dmz() {
    let idmz = sample("idmz");
    assert!(idmz.peers.iter().all(|p| !p.dial && p.address.is_none()));
    for zone in ["enterprise", "plant-a", "plant-b"] {
        let config = sample(zone);
        let peer = config.peer("idmz").expect("idmz peer");
        assert!(peer.dial, "{zone} must dial idmz");
        let address = peer.address.as_ref().expect("dialled peer has an address");
        assert_eq!(address.port(), idmz.listen.rpc.port(), "{zone}");
        assert!(idmz.peer(zone).is_some(), "idmz must know {zone}");
    }
}

#[test]
fn clients_have_the_documented_roles() {
    let (enterprise, idmz, plant) = (sample("enterprise"), sample("idmz"), sample("plant-a"));
    assert_eq!(roles(&enterprise, "erp-orders"), [Role::Produce]);
    assert_eq!(roles(&enterprise, "mes-reporting"), [Role::Consume]);
    assert!(idmz.clients.is_empty(), "no relay application runs on the DMZ");
    assert_eq!(roles(&plant, "mes-line-1"), [Role::Produce, Role::Consume]);
    assert_eq!(roles(&plant, "historian-a"), [Role::Produce]);
    assert_eq!(roles(&sample("plant-b"), "historian-b"), [Role::Produce]);
}

/// Exposed admin listeners carry a token (the loader enforces it); the DMZ keeps its admin API
/// on loopback, and facts relayed through it are never dropped nor expired unconfirmed.
#[test]
fn dmz_is_closed_and_safety_critical() {
    let idmz = sample("idmz");
    assert!(idmz.listen.admin.ip().is_loopback());
    assert!(idmz.store.safety_critical);
    for plant in PLANTS {
        assert!(sample(plant).store.safety_critical, "{plant}");
    }
}

/// The anchors GitHub gives the headings of `markdown` (fenced code is not a heading).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.insert(slug(line.trim_start_matches('#').trim()));
        }
    }
    anchors
}

/// Lower case; punctuation other than `-` and `_` removed; spaces become `-`.
fn slug(heading: &str) -> String {
    let kept = heading.to_lowercase();
    let kept = kept
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'));
    kept.map(|c| if c == ' ' { '-' } else { c }).collect()
}

#[test]
fn every_runbook_url_names_a_heading_of_the_operations_guide() {
    let guide = std::fs::read_to_string(repo_file("docs/operations.md")).expect("docs/operations.md");
    let rules = std::fs::read_to_string(repo_file("config-samples/prometheus/alerts.yml")).expect("alerts.yml");
    let anchors = anchors(&guide);
    let links: Vec<&str> = rules
        .split("docs/operations.md#")
        .skip(1)
        .map(|rest| rest.split(|c: char| c == '"' || c.is_whitespace()).next().unwrap_or(""))
        .collect();
    assert!(
        links.len() >= 10,
        "expected a runbook_url per alert, found {}",
        links.len()
    );
    for link in links {
        assert!(
            anchors.contains(link),
            "runbook anchor #{link} is not a heading of docs/operations.md"
        );
    }
}
