//! Actor `ZoneGate`: the gate state of every peer link (SPEC §4), decided from what the links
//! and the RPC server observe, and the only place that state changes.
//!
//! - `autonomous`: no live link (never connected, partition, peer down, certificate failure), or
//!   the gate is closed by an operator.
//! - `reconciliation`: link up and a backlog of at least `batch_limit` facts in either direction,
//!   seen as a full page: one we pulled from the peer (inbound) or one the peer pulled from us
//!   (outbound).
//! - `normal`: link up and the last page each way was not full.
//!
//! Every change is logged once as `gate_transition` with `peer`, `previous`, `new` and `reason`.
//! Reports that change nothing are absorbed here, so reporters may send one per page.
//!
//! The operator's switches ([`GateSwitches`], `POST /v1/admin/gates/{peer}/close|open`) are
//! flipped here too; the peer's link and the RPC server follow them (a closed gate has no link in
//! either direction). They live in memory only: a restarted node starts with every gate open.

use std::{collections::BTreeMap, sync::Arc};

use actix::prelude::*;
use tokio::sync::watch;

pub use crate::events::{GateState, CLOSED_BY_OPERATOR};
use crate::events::{GateSwitched, GateTransition, Telemetry};

/// The operator's open/closed switch of every configured peer's gate; cheap to clone. The RPC
/// server reads it on every peer call, the peer's link waits on it.
#[derive(Clone)]
pub struct GateSwitches(Arc<BTreeMap<String, watch::Sender<bool>>>);

impl GateSwitches {
    /// Every gate open.
    pub fn new(peers: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(
            peers.into_iter().map(|p| (p, watch::Sender::new(false))).collect(),
        ))
    }

    /// Whether an operator closed `peer`'s gate (never true for an unknown peer).
    pub fn is_closed(&self, peer: &str) -> bool {
        self.0.get(peer).is_some_and(|switch| *switch.borrow())
    }

    /// Follows `peer`'s switch (`true` while closed); `None` for an unknown peer.
    pub fn subscribe(&self, peer: &str) -> Option<watch::Receiver<bool>> {
        self.0.get(peer).map(watch::Sender::subscribe)
    }

    /// Only [`ZoneGate`] flips switches, so state and switch change together.
    fn set(&self, peer: &str, closed: bool) -> Result<(), UnknownPeer> {
        let switch = self.0.get(peer).ok_or_else(|| UnknownPeer(peer.to_owned()))?;
        switch.send_replace(closed);
        Ok(())
    }
}

/// A gate was addressed by a zone that is not a configured peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a configured peer")]
pub struct UnknownPeer(pub String);

/// What is known about one peer link.
#[derive(Debug, Clone, Copy)]
struct Observed {
    state: GateState,
    /// Closed by an operator: no link, whatever the reports say.
    closed: bool,
    link_up: bool,
    inbound_behind: bool,
    outbound_behind: bool,
}

impl Observed {
    fn decide(&self) -> GateState {
        match (
            self.link_up && !self.closed,
            self.inbound_behind || self.outbound_behind,
        ) {
            (false, _) => GateState::Autonomous,
            (true, true) => GateState::Reconciliation,
            (true, false) => GateState::Normal,
        }
    }
}

pub struct ZoneGate {
    peers: BTreeMap<String, Observed>,
    switches: GateSwitches,
    telemetry: Telemetry,
}

impl ZoneGate {
    /// Every configured peer starts `autonomous`: nothing is known about its link yet.
    pub fn new(peers: impl IntoIterator<Item = String>, switches: GateSwitches, telemetry: Telemetry) -> Self {
        let start = Observed {
            state: GateState::Autonomous,
            closed: false,
            link_up: false,
            inbound_behind: false,
            outbound_behind: false,
        };
        Self {
            peers: peers.into_iter().map(|p| (p, start)).collect(),
            switches,
            telemetry,
        }
    }

    fn observe(&mut self, peer: &str, reason: &str, update: impl FnOnce(&mut Observed)) {
        let Some(observed) = self.peers.get_mut(peer) else {
            return;
        };
        update(observed);
        // A report about a page fetched before the close must not revive the link.
        observed.link_up &= !observed.closed;
        let new = observed.decide();
        let previous = std::mem::replace(&mut observed.state, new);
        if previous != new {
            self.telemetry.emit(GateTransition {
                peer,
                previous,
                new,
                reason,
            });
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

/// An operator closes (`closed = true`) or opens `peer`'s gate.
#[derive(Message)]
#[rtype(result = "Result<(), UnknownPeer>")]
pub struct SwitchGate {
    pub peer: String,
    pub closed: bool,
}

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

impl Handler<SwitchGate> for ZoneGate {
    type Result = Result<(), UnknownPeer>;

    /// Closing drops the link at once (the gate goes `autonomous`); opening lets the link come
    /// back, and the gate follows the reports from then on.
    fn handle(&mut self, msg: SwitchGate, _: &mut Self::Context) -> Self::Result {
        if !self.peers.contains_key(&msg.peer) {
            return Err(UnknownPeer(msg.peer));
        }
        // Logged before the switch flips, so the log reads in causal order.
        self.telemetry.emit(GateSwitched {
            peer: &msg.peer,
            closed: msg.closed,
        });
        self.switches.set(&msg.peer, msg.closed)?;
        self.observe(&msg.peer, CLOSED_BY_OPERATOR, |o| o.closed = msg.closed);
        Ok(())
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
    use slog::Logger;

    use super::*;
    use crate::metrics::Metrics;

    fn gate_with_switches() -> (Addr<ZoneGate>, GateSwitches) {
        let peers = ["plant-a".to_owned()];
        let metrics = Arc::new(Metrics::new("enterprise", "test").expect("metrics"));
        let switches = GateSwitches::new(peers.clone());
        let log = Logger::root(slog::Discard, slog::o!());
        let telemetry = Telemetry::new(log, metrics, &peers);
        (ZoneGate::new(peers, switches.clone(), telemetry).start(), switches)
    }

    fn gate() -> Addr<ZoneGate> {
        gate_with_switches().0
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

    #[actix_rt::test]
    async fn a_closed_gate_stays_autonomous_until_opened_and_the_link_is_back() {
        let (gate, switches) = gate_with_switches();
        let mut switch = switches.subscribe("plant-a").expect("configured peer");
        gate.do_send(pulled(false));
        assert_eq!(state(&gate).await, GateState::Normal);

        let close = SwitchGate {
            peer: "plant-a".into(),
            closed: true,
        };
        assert_eq!(gate.send(close).await.expect("gate alive"), Ok(()));
        assert_eq!(state(&gate).await, GateState::Autonomous);
        assert!(switches.is_closed("plant-a") && *switch.borrow_and_update());
        gate.do_send(pulled(false));
        assert_eq!(state(&gate).await, GateState::Autonomous, "reports do not reopen it");

        let open = SwitchGate {
            peer: "plant-a".into(),
            closed: false,
        };
        assert_eq!(gate.send(open).await.expect("gate alive"), Ok(()));
        assert!(!switches.is_closed("plant-a") && switch.has_changed().unwrap_or(false));
        assert_eq!(state(&gate).await, GateState::Autonomous, "no link yet");
        gate.do_send(pulled(false));
        assert_eq!(state(&gate).await, GateState::Normal);
    }

    #[actix_rt::test]
    async fn switching_an_unknown_peer_is_refused() {
        let (gate, switches) = gate_with_switches();
        let close = SwitchGate {
            peer: "plant-z".into(),
            closed: true,
        };
        let refused = gate.send(close).await.expect("gate alive");
        assert_eq!(refused, Err(UnknownPeer("plant-z".into())));
        assert!(switches.subscribe("plant-z").is_none() && !switches.is_closed("plant-z"));
    }
}
