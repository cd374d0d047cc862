//! Actor `ZoneGate`: the gate state of every peer link (SPEC §4), decided from what the links
//! and the RPC server observe, and the only place that state changes.
//!
//! - `autonomous`: no live link (never connected, partition, peer down, certificate failure).
//! - `reconciliation`: link up and a backlog of at least `batch_limit` facts in either direction,
//!   seen as a full page: one we pulled from the peer (inbound) or one the peer pulled from us
//!   (outbound).
//! - `normal`: link up and the last page each way was not full.
//!
//! Every change is logged once as `gate_transition` with `peer`, `previous`, `new` and `reason`.
//! Reports that change nothing are absorbed here, so reporters may send one per page.

use std::{collections::BTreeMap, sync::Arc};

use actix::prelude::*;
use slog::{info, Logger};

use crate::metrics::Metrics;

/// The state of one peer's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateState {
    Normal,
    Autonomous,
    Reconciliation,
}

impl GateState {
    /// Every state, in the order metrics list them.
    pub const ALL: [GateState; 3] = [Self::Normal, Self::Autonomous, Self::Reconciliation];

    /// The fixed name used in logs, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Autonomous => "autonomous",
            Self::Reconciliation => "reconciliation",
        }
    }
}

impl std::fmt::Display for GateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about one peer link.
#[derive(Debug, Clone, Copy)]
struct Observed {
    state: GateState,
    link_up: bool,
    inbound_behind: bool,
    outbound_behind: bool,
}

impl Observed {
    fn decide(&self) -> GateState {
        match (self.link_up, self.inbound_behind || self.outbound_behind) {
            (false, _) => GateState::Autonomous,
            (true, true) => GateState::Reconciliation,
            (true, false) => GateState::Normal,
        }
    }
}

pub struct ZoneGate {
    peers: BTreeMap<String, Observed>,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl ZoneGate {
    /// Every configured peer starts `autonomous`: nothing is known about its link yet.
    pub fn new(peers: impl IntoIterator<Item = String>, metrics: Arc<Metrics>, log: Logger) -> Self {
        let start = Observed {
            state: GateState::Autonomous,
            link_up: false,
            inbound_behind: false,
            outbound_behind: false,
        };
        Self {
            peers: peers.into_iter().map(|p| (p, start)).collect(),
            metrics,
            log,
        }
    }

    fn observe(&mut self, peer: &str, reason: &str, update: impl FnOnce(&mut Observed)) {
        let Some(observed) = self.peers.get_mut(peer) else {
            return;
        };
        update(observed);
        let new = observed.decide();
        let previous = std::mem::replace(&mut observed.state, new);
        if previous != new {
            self.metrics.set_gate(peer, new);
            self.metrics
                .gate_transitions
                .with_label_values(&[peer, new.as_str()])
                .inc();
            info!(self.log, "gate_transition"; "peer" => peer, "previous" => previous.as_str(), "new" => new.as_str(), "reason" => reason);
        }
    }
}

impl Actor for ZoneGate {
    type Context = Context<Self>;
}

impl Supervised for ZoneGate {}

/// The pull loop received a page from the peer: the link is up; `behind` when the page was full.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pulled {
    pub peer: String,
    pub behind: bool,
}

/// The peer pulled a page from us; `behind` when the page was full.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Served {
    pub peer: String,
    pub behind: bool,
}

/// The link to the peer is gone (or could not be established), with the reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkDown {
    pub peer: String,
    pub reason: String,
}

/// The current state of every peer's gate.
#[derive(Message)]
#[rtype(result = "BTreeMap<String, GateState>")]
pub struct Snapshot;

impl Handler<Pulled> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: Pulled, _: &mut Self::Context) {
        let reason = if msg.behind {
            "link up, inbound backlog of at least batch_limit"
        } else {
            "link up, caught up"
        };
        self.observe(&msg.peer, reason, |o| {
            o.link_up = true;
            o.inbound_behind = msg.behind;
        });
    }
}

impl Handler<Served> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: Served, _: &mut Self::Context) {
        let reason = if msg.behind {
            "outbound backlog of at least batch_limit"
        } else {
            "peer caught up"
        };
        self.observe(&msg.peer, reason, |o| o.outbound_behind = msg.behind);
    }
}

impl Handler<LinkDown> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: LinkDown, _: &mut Self::Context) {
        let reason = format!("link down: {}", msg.reason);
        self.observe(&msg.peer, &reason, |o| o.link_up = false);
    }
}

impl Handler<Snapshot> for ZoneGate {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.peers.iter().map(|(peer, o)| (peer.clone(), o.state)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Addr<ZoneGate> {
        let peers = ["plant-a".to_owned()];
        let metrics = Arc::new(Metrics::new("enterprise", "test", &peers).expect("metrics"));
        ZoneGate::new(peers, metrics, Logger::root(slog::Discard, slog::o!())).start()
    }

    async fn state(gate: &Addr<ZoneGate>) -> GateState {
        gate.send(Snapshot).await.expect("gate alive")["plant-a"]
    }

    fn pulled(behind: bool) -> Pulled {
        Pulled {
            peer: "plant-a".into(),
            behind,
        }
    }

    #[actix_rt::test]
    async fn a_peer_starts_autonomous_and_follows_its_link_and_backlog() {
        let gate = gate();
        assert_eq!(state(&gate).await, GateState::Autonomous);
        gate.do_send(pulled(true));
        assert_eq!(state(&gate).await, GateState::Reconciliation);
        gate.do_send(pulled(false));
        assert_eq!(state(&gate).await, GateState::Normal);
        gate.do_send(LinkDown {
            peer: "plant-a".into(),
            reason: "timed out".into(),
        });
        assert_eq!(state(&gate).await, GateState::Autonomous);
        gate.do_send(pulled(false));
        assert_eq!(state(&gate).await, GateState::Normal);
    }

    #[actix_rt::test]
    async fn an_outbound_backlog_holds_reconciliation_until_the_peer_caught_up() {
        let gate = gate();
        let served = |behind| Served {
            peer: "plant-a".into(),
            behind,
        };
        gate.do_send(served(true));
        assert_eq!(
            state(&gate).await,
            GateState::Autonomous,
            "serving is not a live link of ours"
        );
        gate.do_send(pulled(false));
        assert_eq!(state(&gate).await, GateState::Reconciliation);
        gate.do_send(served(false));
        assert_eq!(state(&gate).await, GateState::Normal);
    }

    #[actix_rt::test]
    async fn reports_about_unknown_peers_are_ignored() {
        let gate = gate();
        gate.do_send(Pulled {
            peer: "plant-z".into(),
            behind: false,
        });
        let all = gate.send(Snapshot).await.expect("gate alive");
        assert_eq!(all.len(), 1);
        assert_eq!(all["plant-a"], GateState::Autonomous);
    }
}
