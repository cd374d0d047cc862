//! What a tour shows: its flows, the links (gates) each flow crosses, what the partition cuts, and
//! — for the estate — the status per hop, read from each node's `/v1/status`.
//!
//! - The pair: enterprise ↔ plant-a directly; the partition cuts the one link.
//! - The estate: enterprise → each plant and each plant → enterprise, every fact through idmz; the
//!   partition cuts the plant-a leg only, so plant-b's flows keep going while plant-a's wait, on
//!   the plant and at the DMZ.
//! - The HA zone: enterprise ↔ plant-a, where plant-a runs as two instances; nothing is cut, the
//!   active instance is killed. Both flows are watched through enterprise's gate toward plant-a
//!   (plant-a's own gates live in whichever instance is active).

use std::{sync::Arc, time::Duration};

use anyhow::Context;

use super::{lab::ZONES, traffic::Flow};
use crate::{
    admin::{client::AdminClient, status::Status},
    devnet::{
        estate::{ENTERPRISE, IDMZ, LEGS, PLANTS, PLANT_A},
        Devnet,
    },
};

/// A link as one node sees it: (zone, peer).
pub type Link = (&'static str, &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pair,
    Estate,
    Ha,
}

pub struct Scenario {
    pub kind: Kind,
    pub flows: Vec<Arc<Flow>>,
    /// For each flow, the links it crosses, in order.
    pub paths: Vec<Vec<Link>>,
    /// The proxies the partition cuts, and the links whose gates it takes down (both sides).
    pub cut: Vec<&'static str>,
    pub cut_links: Vec<Link>,
}

impl Scenario {
    pub fn pair() -> Self {
        let (a, b) = (ZONES[0], ZONES[1]);
        Self {
            kind: Kind::Pair,
            flows: vec![Arc::new(Flow::new(a, b)), Arc::new(Flow::new(b, a))],
            paths: vec![vec![(a, b)], vec![(b, a)]],
            cut: vec![a, b],
            cut_links: vec![(a, b), (b, a)],
        }
    }

    pub fn estate() -> Self {
        let mut flows = Vec::new();
        let mut paths = Vec::new();
        for plant in PLANTS {
            flows.push(Arc::new(Flow::new(ENTERPRISE, plant)));
            paths.push(vec![(ENTERPRISE, IDMZ), (IDMZ, plant)]);
            flows.push(Arc::new(Flow::new(plant, ENTERPRISE)));
            paths.push(vec![(plant, IDMZ), (IDMZ, ENTERPRISE)]);
        }
        Self {
            kind: Kind::Estate,
            flows,
            paths,
            cut: vec![PLANT_A],
            cut_links: vec![(PLANT_A, IDMZ), (IDMZ, PLANT_A)],
        }
    }

    pub fn ha() -> Self {
        let (a, b) = (ZONES[0], ZONES[1]);
        Self {
            kind: Kind::Ha,
            flows: vec![Arc::new(Flow::new(a, b)), Arc::new(Flow::new(b, a))],
            paths: vec![vec![(a, b)], vec![(a, b)]],
            cut: Vec::new(),
            cut_links: Vec::new(),
        }
    }

    /// Every link some flow crosses, once.
    pub fn links(&self) -> Vec<Link> {
        let mut links: Vec<Link> = self.paths.iter().flatten().copied().collect();
        links.sort_unstable();
        links.dedup();
        links
    }
}

/// The status per hop of the estate: for each leg, each side's gate toward the other and the
/// facts waiting there for it, from the nodes' `/v1/status`.
pub async fn hop_lines(net: &Devnet) -> anyhow::Result<Vec<String>> {
    let admins = std::iter::once(IDMZ)
        .chain(LEGS)
        .map(|zone| Ok((zone, net.node(zone)?.admin)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let statuses = tokio::task::spawn_blocking(move || {
        admins
            .into_iter()
            .map(|(zone, admin)| Ok((zone, status(admin)?)))
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    let of = |zone: &str| statuses.iter().find(|(z, _)| *z == zone).map(|(_, s)| s);
    let side = |zone: &str, peer: &str| {
        of(zone).and_then(|s| s.peers.get(peer)).map_or_else(
            || format!("{zone} → {peer}: unknown"),
            |p| format!("{zone} → {peer}: {}, {} waiting", p.state, p.backlog),
        )
    };
    Ok(LEGS
        .iter()
        .map(|leg| format!("    {:<38} {}", side(leg, IDMZ), side(IDMZ, leg)))
        .collect())
}

pub(super) fn status(admin: std::net::SocketAddr) -> anyhow::Result<Status> {
    let answer = AdminClient::at(admin, None)
        .timeout(Duration::from_secs(2))
        .get("/v1/status")
        .with_context(|| format!("asking {admin} for /v1/status"))?;
    serde_json::from_str(&answer.body).with_context(|| format!("reading the status of {admin}"))
}
