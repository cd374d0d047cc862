//! The routing decisions of one node as a plain value (SPEC §2, §4a), tested without a runtime:
//! which peer pulls a fact addressed to a zone (its next hop), and what becomes of a fact pulled
//! from a peer — delivered here, relayed toward its destination, rejected by the receipt rule, or
//! refused by the relay rules.

use std::collections::{BTreeMap, BTreeSet};

use bsfg_proto::{Envelope, MAX_HOPS};

use crate::events::{Rejection, RelayRefusal};

/// One `[[relay]]` entry: facts from any zone of `from` to any zone of `to` are relayed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayRule {
    pub from: BTreeSet<String>,
    pub to: BTreeSet<String>,
}

/// Plain configuration: the node's zone, its peers, its `[[routes]]` and its `[[relay]]` rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub zone: String,
    pub peers: BTreeSet<String>,
    /// Final destination (and origin) zone → the peer it is reached through.
    pub routes: BTreeMap<String, String>,
    /// The flows this node relays; none by default (the DMZ is a security boundary).
    pub relay: Vec<RelayRule>,
}

/// What becomes of a fact pulled from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Addressed to this zone: into the forward buffer.
    Deliver,
    /// Addressed beyond this zone and allowed: into the store buffer for `next_hop`.
    Relay { next_hop: &'a str },
    /// The receipt rule refuses it: it does not come from where it claims.
    Reject(Rejection),
    /// Not relayed (no rule allows its flow, a loop, too many hops).
    Refuse(RelayRefusal),
}

impl Routing {
    /// The peer that pulls a fact addressed to `to_zone` from this node: the zone itself when it
    /// is a peer, else the `via` of its route; `None` when there is no way there.
    pub fn next_hop(&self, to_zone: &str) -> Option<&str> {
        match self.peers.get(to_zone) {
            Some(peer) => Some(peer),
            None => self.routes.get(to_zone).map(String::as_str),
        }
    }

    /// The destination zones whose facts go through next hop `hop`: the hop itself when it is a
    /// peer, and the zones routed through it (those not peers themselves).
    pub fn zones_via(&self, hop: &str) -> Vec<String> {
        let peer = self.peers.get(hop).into_iter();
        let routed = self
            .routes
            .iter()
            .filter(|(zone, via)| *via == hop && !self.peers.contains(*zone));
        peer.chain(routed.map(|(zone, _)| zone)).cloned().collect()
    }

    /// Whether this node relays anything at all.
    pub fn relays(&self) -> bool {
        !self.relay.is_empty()
    }

    /// The zones `[[relay]]` rules deliver to, for the series created at start.
    pub fn relay_destinations(&self) -> BTreeSet<&str> {
        self.relay.iter().flat_map(|r| &r.to).map(String::as_str).collect()
    }

    /// What to do with a fact pulled from `peer`.
    pub fn judge(&self, peer: &str, envelope: &Envelope) -> Verdict<'_> {
        if !self.comes_from(peer, envelope) {
            return Verdict::Reject(Rejection::WrongOrigin);
        }
        if envelope.to_zone == self.zone {
            return Verdict::Deliver;
        }
        let next_hop = self.next_hop(&envelope.to_zone);
        let hops = &envelope.hops;
        let looping = |zone: &str| zone == envelope.from_zone || hops.iter().any(|h| h == zone);
        if looping(&self.zone) || next_hop.is_some_and(looping) {
            return Verdict::Refuse(RelayRefusal::Loop);
        }
        if hops.len() >= MAX_HOPS {
            return Verdict::Refuse(RelayRefusal::HopLimit);
        }
        match next_hop {
            Some(next_hop) if self.allows(&envelope.from_zone, &envelope.to_zone) => Verdict::Relay { next_hop },
            _ => Verdict::Refuse(RelayRefusal::NotAllowed),
        }
    }

    /// The receipt rule: a fact pulled from `peer` comes from `peer` itself, or was relayed by
    /// `peer` last and its origin is routed through `peer` here.
    fn comes_from(&self, peer: &str, envelope: &Envelope) -> bool {
        match envelope.hops.last() {
            None => envelope.from_zone == peer,
            Some(last) => last == peer && self.routes.get(&envelope.from_zone).is_some_and(|via| via == peer),
        }
    }

    fn allows(&self, from_zone: &str, to_zone: &str) -> bool {
        self.relay
            .iter()
            .any(|r| r.from.contains(from_zone) && r.to.contains(to_zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|z| z.to_string()).collect()
    }

    /// The reference estate as seen from the DMZ.
    fn idmz() -> Routing {
        Routing {
            zone: "idmz".into(),
            peers: zones(&["enterprise", "plant-a", "plant-b"]),
            routes: BTreeMap::new(),
            relay: vec![
                RelayRule {
                    from: zones(&["enterprise"]),
                    to: zones(&["plant-a", "plant-b"]),
                },
                RelayRule {
                    from: zones(&["plant-a", "plant-b"]),
                    to: zones(&["enterprise"]),
                },
            ],
        }
    }

    /// A plant, which reaches enterprise (and plant-b) through the DMZ and relays nothing.
    fn plant_a() -> Routing {
        Routing {
            zone: "plant-a".into(),
            peers: zones(&["idmz"]),
            routes: [("enterprise", "idmz"), ("plant-b", "idmz")]
                .into_iter()
                .map(|(z, via)| (z.to_owned(), via.to_owned()))
                .collect(),
            relay: Vec::new(),
        }
    }

    fn envelope(from: &str, to: &str, hops: &[&str]) -> Envelope {
        Envelope {
            message_id: "m".into(),
            from_zone: from.into(),
            to_zone: to.into(),
            hops: hops.iter().map(|h| h.to_string()).collect(),
            ..Envelope::default()
        }
    }

    #[test]
    fn the_next_hop_is_the_peer_or_the_route() {
        let plant = plant_a();
        assert_eq!(plant.next_hop("idmz"), Some("idmz"));
        assert_eq!(plant.next_hop("enterprise"), Some("idmz"));
        assert_eq!(plant.next_hop("plant-c"), None);
        assert_eq!(plant.next_hop("plant-a"), None, "a node has no route to itself");
    }

    #[test]
    fn the_zones_through_a_next_hop_are_the_hop_and_those_routed_through_it() {
        let plant = plant_a();
        assert_eq!(plant.zones_via("idmz"), ["idmz", "enterprise", "plant-b"]);
        assert!(
            plant.zones_via("plant-c").is_empty(),
            "not a peer, nothing routed through it"
        );
        let mut dmz = idmz();
        dmz.routes.insert("line-7".into(), "plant-a".into());
        dmz.routes.insert("plant-b".into(), "plant-a".into());
        assert_eq!(
            dmz.zones_via("plant-a"),
            ["plant-a", "line-7"],
            "a peer is reached directly"
        );
        assert_eq!(dmz.zones_via("plant-b"), ["plant-b"]);
    }

    #[test]
    fn the_dmz_relays_allowed_flows_toward_the_next_hop() {
        let dmz = idmz();
        let down = envelope("enterprise", "plant-b", &[]);
        assert_eq!(dmz.judge("enterprise", &down), Verdict::Relay { next_hop: "plant-b" });
        let up = envelope("plant-a", "enterprise", &[]);
        assert_eq!(dmz.judge("plant-a", &up), Verdict::Relay { next_hop: "enterprise" });
        assert_eq!(
            dmz.judge("plant-a", &envelope("plant-a", "idmz", &[])),
            Verdict::Deliver
        );
    }

    #[test]
    fn a_flow_no_rule_allows_is_refused() {
        let sideways = envelope("plant-a", "plant-b", &[]);
        assert_eq!(
            idmz().judge("plant-a", &sideways),
            Verdict::Refuse(RelayRefusal::NotAllowed)
        );
        let nowhere = envelope("enterprise", "plant-c", &[]);
        assert_eq!(
            idmz().judge("enterprise", &nowhere),
            Verdict::Refuse(RelayRefusal::NotAllowed)
        );
        let mut plant = plant_a();
        plant.peers.insert("line-2".into());
        let relays_nothing = envelope("idmz", "line-2", &[]);
        assert_eq!(
            plant.judge("idmz", &relays_nothing),
            Verdict::Refuse(RelayRefusal::NotAllowed)
        );
        let back = envelope("idmz", "enterprise", &[]);
        assert_eq!(
            plant.judge("idmz", &back),
            Verdict::Refuse(RelayRefusal::Loop),
            "back where it came from"
        );
    }

    #[test]
    fn the_receipt_rule_holds_a_plant_to_its_own_facts() {
        let dmz = idmz();
        let forged = envelope("enterprise", "plant-b", &[]);
        assert_eq!(dmz.judge("plant-a", &forged), Verdict::Reject(Rejection::WrongOrigin));
        // Claiming to relay for enterprise: enterprise is a peer of the DMZ, not routed via plant-a.
        let relayed = envelope("enterprise", "plant-b", &["plant-a"]);
        assert_eq!(dmz.judge("plant-a", &relayed), Verdict::Reject(Rejection::WrongOrigin));
    }

    #[test]
    fn a_relayed_fact_is_accepted_only_from_its_last_hop_on_the_route_of_its_origin() {
        let plant = plant_a();
        let down = envelope("enterprise", "plant-a", &["idmz"]);
        assert_eq!(plant.judge("idmz", &down), Verdict::Deliver);
        let wrong_last_hop = envelope("enterprise", "plant-a", &["idmz", "dmz-2"]);
        assert_eq!(
            plant.judge("idmz", &wrong_last_hop),
            Verdict::Reject(Rejection::WrongOrigin)
        );
        let unrouted_origin = envelope("plant-c", "plant-a", &["idmz"]);
        assert_eq!(
            plant.judge("idmz", &unrouted_origin),
            Verdict::Reject(Rejection::WrongOrigin)
        );
        let unrelayed = envelope("enterprise", "plant-a", &[]);
        assert_eq!(plant.judge("idmz", &unrelayed), Verdict::Reject(Rejection::WrongOrigin));
    }

    #[test]
    fn loops_and_long_paths_are_refused() {
        let mut dmz = idmz();
        dmz.routes.insert("plant-c".into(), "enterprise".into());
        dmz.peers.remove("enterprise");
        dmz.peers.insert("dmz-2".into());
        dmz.routes.insert("enterprise".into(), "dmz-2".into());
        dmz.relay[0].to.insert("plant-c".into());
        // Back through the zone it came from.
        let back = envelope("enterprise", "plant-c", &["dmz-2"]);
        assert_eq!(dmz.judge("dmz-2", &back), Verdict::Refuse(RelayRefusal::Loop));
        // Through this zone a second time.
        let again = envelope("enterprise", "plant-a", &["idmz", "dmz-2"]);
        assert_eq!(dmz.judge("dmz-2", &again), Verdict::Refuse(RelayRefusal::Loop));
        let far: Vec<String> = (0..MAX_HOPS).map(|i| format!("dmz-{}", i + 2)).collect();
        let far: Vec<&str> = far.iter().map(String::as_str).rev().collect();
        let long = envelope("enterprise", "plant-a", &far);
        assert_eq!(dmz.judge("dmz-2", &long), Verdict::Refuse(RelayRefusal::HopLimit));
        assert_eq!(
            dmz.judge("dmz-2", &envelope("enterprise", "plant-a", &far[1..])),
            Verdict::Relay { next_hop: "plant-a" }
        );
    }
}
