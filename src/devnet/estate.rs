//! The reference estate on loopback (SPEC §4a): enterprise ↔ idmz ↔ plant-a, plant-b, configured
//! as `config-samples/` describes it. The end zones dial the DMZ and route each other's zones
//! through it; the DMZ dials nobody and relays enterprise → plants and plants → enterprise,
//! nothing else. [`Legs`] puts one fault proxy on each leg, so one leg can be cut while the
//! others stay up. `bsfg demo --estate`, `bsfg bench --mode relay` and the end-to-end tests use it.

use std::collections::BTreeMap;

use anyhow::Context;

use super::{proxy::FaultProxy, Devnet};

pub const ENTERPRISE: &str = "enterprise";
pub const IDMZ: &str = "idmz";
pub const PLANT_A: &str = "plant-a";
pub const PLANT_B: &str = "plant-b";
pub const ZONES: [&str; 4] = [ENTERPRISE, IDMZ, PLANT_A, PLANT_B];
pub const PLANTS: [&str; 2] = [PLANT_A, PLANT_B];
/// Each leg is named by its end zone, the zone that dials the DMZ over it.
pub const LEGS: [&str; 3] = [ENTERPRISE, PLANT_A, PLANT_B];

impl Devnet {
    /// The estate's four zones under `dir` with their PKI, peers, routes and relay rules; every
    /// client of `clients` may produce and consume on every node.
    pub fn estate(dir: &std::path::Path, clients: &[&str]) -> anyhow::Result<Self> {
        let links = LEGS.map(|leg| (leg, IDMZ));
        let mut net = Devnet::new(dir, &ZONES, &links, clients)?;
        for leg in LEGS {
            net.set_dial(IDMZ, leg, false)?;
        }
        net.add_toml(ENTERPRISE, &routes(&PLANTS))?;
        for plant in PLANTS {
            net.add_toml(plant, &routes(&[ENTERPRISE]))?;
        }
        let relay = relay(&[ENTERPRISE], &PLANTS) + &relay(&PLANTS, &[ENTERPRISE]);
        net.add_toml(IDMZ, &relay)?;
        net.write_configs()?;
        Ok(net)
    }

    /// Appends TOML to `zone`'s config from the next [`Devnet::write_configs`] on.
    pub fn add_toml(&mut self, zone: &str, toml: &str) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(zone).with_context(|| format!("no zone {zone}"))?;
        node.extra.push('\n');
        node.extra.push_str(toml);
        Ok(())
    }
}

/// A `[[routes]]` entry: `zones` through the DMZ.
pub fn routes(zones: &[&str]) -> String {
    format!("[[routes]]\nzones = {zones:?}\nvia = \"{IDMZ}\"\n")
}

/// A `[[relay]]` entry.
pub fn relay(from: &[&str], to: &[&str]) -> String {
    format!("[[relay]]\nfrom = {from:?}\nto = {to:?}\n")
}

/// One fault proxy in front of the DMZ node per leg: the leg's end zone dials its own proxy, so
/// cutting it partitions that leg alone.
pub struct Legs(BTreeMap<String, FaultProxy>);

impl Legs {
    /// Starts the proxies and points each end zone at its own; rewrites the configs (a running
    /// node sees it when restarted). Call inside a tokio runtime: the proxies' tasks run on it.
    pub fn start(net: &mut Devnet) -> anyhow::Result<Self> {
        let dmz = net.node(IDMZ)?.rpc;
        let mut legs = BTreeMap::new();
        for leg in LEGS {
            let proxy = FaultProxy::start(dmz).context("starting a fault proxy")?;
            net.set_peer_address(leg, IDMZ, proxy.addr())?;
            legs.insert(leg.to_owned(), proxy);
        }
        net.write_configs()?;
        Ok(Self(legs))
    }

    /// The proxy of the leg between `end_zone` and the DMZ; panics for a zone of no leg.
    pub fn leg(&self, end_zone: &str) -> &FaultProxy {
        &self.0[end_zone]
    }

    /// The proxies, by the end zone of their leg.
    pub fn into_proxies(self) -> BTreeMap<String, FaultProxy> {
        self.0
    }
}
