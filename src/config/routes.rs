//! `[[routes]]` and `[[relay]]` (SPEC §4a): which zones this node reaches through which peer, and
//! which flows it relays. Their rules, each naming the key at fault:
//! - a route's `via` is a configured peer, and its `zones` are neither this node's zone nor a
//!   peer (a zone is reached directly or through a route, never both), each routed once;
//! - every zone of a `[[relay]]` entry is reachable (a peer or routed), and not this node's zone;
//! - a node that relays keeps `store.backpressure = "reject"`: a full relay stops pulling, so the
//!   pressure travels back to the origin, instead of dropping facts the origin counts delivered.
//!
//! [`Config::routing`] maps them, with the peers, onto the node's plain [`Routing`].

use std::collections::{BTreeMap, BTreeSet};

use bsfg_actors::{
    backpressure::WhenFull,
    relay::{RelayRule, Routing},
};
use serde::Deserialize;

use super::{validate::invalid, Config, ConfigError, Zone};

/// `[[routes]]`: final destinations (and origins) reached through one peer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub zones: Vec<Zone>,
    /// A configured peer.
    pub via: Zone,
}

/// `[[relay]]`: facts from any zone of `from` to any zone of `to` are relayed by this node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    pub from: Vec<Zone>,
    pub to: Vec<Zone>,
}

pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    for (index, route) in config.routes.iter().enumerate() {
        check_route(config, index, route)?;
    }
    for (index, relay) in config.relay.iter().enumerate() {
        for (key, zones) in [("from", &relay.from), ("to", &relay.to)] {
            check_reachable(config, &format!("relay[{index}].{key}"), zones)?;
        }
    }
    if !config.relay.is_empty() && config.store.backpressure == WhenFull::DropOldest {
        return Err(invalid(
            "store.backpressure",
            "\"drop_oldest\" on a node that relays ([[relay]]): relayed facts are already counted \
             delivered by their origin, so a full relay must stop pulling (\"reject\"), never drop them",
        ));
    }
    Ok(())
}

fn check_route(config: &Config, index: usize, route: &RouteSection) -> Result<(), ConfigError> {
    let via = route.via.as_str();
    if config.peer(via).is_none() {
        let reason = format!("{via:?} is not a configured peer ([[peers]] zone); a route goes through a peer");
        return Err(invalid(format!("routes[{index}].via"), reason));
    }
    if route.zones.is_empty() {
        return Err(invalid(format!("routes[{index}].zones"), "lists no zone"));
    }
    for (i, zone) in route.zones.iter().enumerate() {
        let path = format!("routes[{index}].zones[{i}]");
        let name = zone.as_str();
        if *zone == config.node.zone {
            return Err(invalid(path, format!("{name:?} is this node's own zone (node.zone)")));
        }
        if config.peer(name).is_some() {
            let reason = format!("{name:?} is a peer; a zone is reached directly or through a route, not both");
            return Err(invalid(path, reason));
        }
        if let Some(first) = first_route(config, name).filter(|first| *first != (index, i)) {
            let reason = format!("{name:?} is already routed (routes[{}].zones[{}])", first.0, first.1);
            return Err(invalid(path, reason));
        }
    }
    Ok(())
}

/// Where `zone` is first routed, as (route, position).
fn first_route(config: &Config, zone: &str) -> Option<(usize, usize)> {
    config.routes.iter().enumerate().find_map(|(r, route)| {
        let position = route.zones.iter().position(|z| z.as_str() == zone)?;
        Some((r, position))
    })
}

fn check_reachable(config: &Config, key: &str, zones: &[Zone]) -> Result<(), ConfigError> {
    if zones.is_empty() {
        return Err(invalid(key, "lists no zone"));
    }
    for (i, zone) in zones.iter().enumerate() {
        let name = zone.as_str();
        let reason = if *zone == config.node.zone {
            format!("{name:?} is this node's own zone (node.zone); a relay passes facts between other zones")
        } else if config.peer(name).is_none() && first_route(config, name).is_none() {
            format!("{name:?} is not reachable: it is neither a peer ([[peers]]) nor in [[routes]]")
        } else {
            continue;
        };
        return Err(invalid(format!("{key}[{i}]"), reason));
    }
    Ok(())
}

impl Config {
    /// Peers, routes and relay rules, as the node's plain routing decisions use them.
    pub fn routing(&self) -> Routing {
        let names = |zones: &[Zone]| zones.iter().map(|z| z.as_str().to_owned()).collect::<BTreeSet<_>>();
        let routes: BTreeMap<String, String> = self
            .routes
            .iter()
            .flat_map(|r| {
                r.zones
                    .iter()
                    .map(|z| (z.as_str().to_owned(), r.via.as_str().to_owned()))
            })
            .collect();
        Routing {
            zone: self.node.zone.as_str().to_owned(),
            peers: self.peers.iter().map(|p| p.zone.as_str().to_owned()).collect(),
            routes,
            relay: self
                .relay
                .iter()
                .map(|r| RelayRule {
                    from: names(&r.from),
                    to: names(&r.to),
                })
                .collect(),
        }
    }
}
