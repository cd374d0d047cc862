//! Routes through intermediary zones (SPEC §4a): the node's routing decisions as a plain value
//! ([`Routing`], in `routing`), and the sorting of a pulled page by them.
//!
//! A producer's fact waits in the store buffer for its *next hop*: its `to_zone` when that is a
//! peer, else the `via` of its route. A page pulled from a peer is sorted fact by fact: facts
//! addressed here are delivered (forward buffer); facts addressed beyond, on a flow a `[[relay]]`
//! rule allows, are relayed — stored in this node's store buffer for their next hop with this
//! zone appended to `hops`, in the same commit as the page's deliveries (`journal`); the others
//! are rejected (the receipt rule) or refused (flow, loop, hop limit), logged, counted and
//! confirmed with their page so the link never stalls on them.

mod routing;

pub use routing::{RelayRule, Routing, Verdict};

use bsfg_proto::{FetchedFact, Message};

use crate::events::{Rejection, RelayRefusal};

/// A pulled fact to relay: the message as this node stores it (its zone appended to `hops`) and
/// the peer that pulls it next.
#[derive(Debug, Clone, PartialEq)]
pub struct Relayed {
    /// Its offset in the page it came in.
    pub offset: u64,
    pub message: Message,
    pub next_hop: String,
}

/// A pulled page sorted by [`Routing::judge`], each part in the page's order.
#[derive(Debug, Default)]
pub struct Sorted {
    pub deliver: Vec<FetchedFact>,
    pub relay: Vec<Relayed>,
    pub rejected: Vec<(Message, Rejection)>,
    pub refused: Vec<(Message, RelayRefusal)>,
}

impl Routing {
    /// Sorts the facts of a page pulled from `peer`.
    pub fn sort(&self, peer: &str, facts: Vec<FetchedFact>) -> Sorted {
        let mut sorted = Sorted::default();
        for fact in facts {
            match self.judge(peer, &fact.message.envelope) {
                Verdict::Deliver => sorted.deliver.push(fact),
                Verdict::Relay { next_hop } => {
                    let next_hop = next_hop.to_owned();
                    let (offset, mut message) = (fact.offset, fact.message);
                    message.envelope.hops.push(self.zone.clone());
                    sorted.relay.push(Relayed {
                        offset,
                        message,
                        next_hop,
                    });
                }
                Verdict::Reject(rejection) => sorted.rejected.push((fact.message, rejection)),
                Verdict::Refuse(refusal) => sorted.refused.push((fact.message, refusal)),
            }
        }
        sorted
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_page_is_sorted_and_relayed_facts_carry_this_zone_in_their_hops() {
        let routing = Routing {
            zone: "idmz".into(),
            peers: ["enterprise", "plant-a"].map(String::from).into(),
            routes: BTreeMap::new(),
            relay: vec![RelayRule {
                from: ["enterprise".to_owned()].into(),
                to: ["plant-a".to_owned()].into(),
            }],
        };
        let fact = |id: &str, from: &str, to: &str| FetchedFact {
            offset: 1,
            message: crate::testkit::message(from, to, id),
        };
        let page = vec![
            fact("here", "enterprise", "idmz"),
            fact("on", "enterprise", "plant-a"),
            fact("forged", "plant-a", "idmz"),
            fact("nowhere", "enterprise", "plant-b"),
        ];
        let sorted = routing.sort("enterprise", page);
        assert_eq!(sorted.deliver[0].message.envelope.message_id, "here");
        assert_eq!(sorted.deliver.len(), 1);
        assert_eq!(sorted.relay.len(), 1);
        assert_eq!(sorted.relay[0].next_hop, "plant-a");
        assert_eq!(sorted.relay[0].message.envelope.hops, ["idmz"]);
        assert_eq!(sorted.relay[0].message.envelope.message_id, "on");
        assert_eq!(sorted.rejected[0].1, Rejection::WrongOrigin);
        assert_eq!(sorted.refused[0].1, RelayRefusal::NotAllowed);
    }
}
