//! Actor `ZoneGate`: the gate state of every peer link (SPEC §4), decided from what the links
//! and the RPC server observe, and the only place that state changes.
//!
//! - `autonomous`: no live link (never connected, partition, peer down, certificate failure), or
//!   the gate is closed by an operator.
//! - `reconciliation`: link up and a backlog of at least `batch_limit` facts in either direction:
//!   a full page we pulled from the peer (inbound), or a page the peer pulled from us that left
//!   more facts behind (outbound: full, or cut by its byte budget, as the serving side knows),
//!   or more than `batch_limit` facts waiting here for the peer, unconfirmed, as the status
//!   refresher counts them every second ([`follow_backlogs`]): a peer that stopped fetching (its
//!   store full, an artifact it waits for) tells nothing by pages, and its gate here must not
//!   stay `normal` over a growing backlog. A page cut by its bytes is not seen as such inbound;
//!   the peer's own gate sees it outbound. A link open for a second while this node holds its
//!   pulls back for room ([`PullsHeld`]) is up, though no page tells so then.
//! - `normal`: link up and the last page each way left nothing behind. A link that goes down
//!   forgets what was behind; the next link's pages tell again. A transition into
//!   `reconciliation` names the direction of the backlog, whichever report caused it.
//!
//! Every change is logged once as `gate_transition` with `peer`, `previous`, `new` and `reason`.
//! Reports that change nothing are absorbed, so reporters may send one per page.
//!
//! The actor is a thin shell: the decisions are the plain value in `gates`, and the operator's
//! switches ([`GateSwitches`]) are flipped here, with the state, and followed by the peer's link
//! and the RPC server (a closed gate has no link in either direction). With a journal, a switch
//! is made durable (`Journal::switch_gate`, in a group commit, so through an HA zone's log too)
//! before it flips: a node keeps a closed gate closed across restarts and failovers.
//!
//! The actor itself does no I/O: switches are stored one at a time, in the order asked, by a task
//! of their own (`store_switches`), which hands each back to the actor to flip once it is durable.
//! A commit that hangs (a stalled disk, an HA engine's election) holds up the switch, never the
//! actor: `/v1/status` and the watchdog's pings, which ask it for a [`Snapshot`], are answered.

mod gates;
mod switches;

use std::collections::{BTreeMap, BTreeSet};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot, watch};

use self::gates::{Gates, Report};
pub use self::switches::{GateSwitches, UnknownPeer};
pub use crate::events::{GateState, CLOSED_BY_OPERATOR};
use crate::{
    events::{GateSwitched, GateTransition, Telemetry},
    journal::Journal,
    status::Progress,
};

pub struct ZoneGate {
    gates: Gates,
    switches: GateSwitches,
    telemetry: Telemetry,
    /// Where switches are persisted (none: in memory only).
    journal: Option<Journal>,
    /// The switches asked for, to the task that stores them (set once the actor runs).
    switching: Option<mpsc::UnboundedSender<Switching>>,
    /// The peers whose gate is not `autonomous` (their link is up), for a relay's pulls.
    linked: watch::Sender<BTreeSet<String>>,
}

/// A switch on its way to storage, and where its outcome goes.
struct Switching {
    peer: String,
    closed: bool,
    answer: oneshot::Sender<Result<(), SwitchError>>,
}

/// Why an operator's switch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    UnknownPeer(#[from] UnknownPeer),
    /// The switch could not be made durable; nothing changed.
    #[error("the gate switch could not be stored: {0}")]
    NotStored(String),
}

impl ZoneGate {
    /// Every configured peer starts `autonomous`: nothing is known about its link yet.
    pub fn new(peers: impl IntoIterator<Item = String>, switches: GateSwitches, telemetry: Telemetry) -> Self {
        Self {
            gates: Gates::new(peers),
            switches,
            telemetry,
            journal: None,
            switching: None,
            linked: watch::Sender::new(BTreeSet::new()),
        }
    }

    /// The peers whose gate is not `autonomous`, as it changes: a relay with a full store takes
    /// no fact for a next hop outside it.
    pub fn linked(&self) -> watch::Receiver<BTreeSet<String>> {
        self.linked.subscribe()
    }

    /// Persists every switch through `journal` before it flips.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Flips `peer`'s switch (a known peer), logged before it flips.
    fn switch(&mut self, peer: &str, closed: bool) {
        self.telemetry.emit(GateSwitched { peer, closed });
        if self.switches.set(peer, closed).is_ok() {
            self.report(peer, Report::Switched { closed });
        }
    }

    fn report(&mut self, peer: &str, report: Report) {
        if let Some(transition) = self.gates.on(peer, report) {
            let up = transition.new != GateState::Autonomous;
            self.linked.send_if_modified(|linked| match up {
                true => linked.insert(peer.to_owned()),
                false => linked.remove(peer),
            });
            self.telemetry.emit(GateTransition {
                peer,
                previous: transition.previous,
                new: transition.new,
                reason: &transition.reason,
            });
        }
    }
}

impl Actor for ZoneGate {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (switching, asked) = mpsc::unbounded_channel();
        self.switching = Some(switching);
        // Weak: the task must not keep the actor alive; it ends when the actor (and its sender) go.
        actix::spawn(store_switches(asked, self.journal.clone(), ctx.address().downgrade()));
    }
}

/// Stores each switch asked for, in order, then has the gate flip it; answers the operator once
/// it has flipped (or could not be stored: nothing changed). Ends with the actor.
async fn store_switches(
    mut asked: mpsc::UnboundedReceiver<Switching>,
    journal: Option<Journal>,
    gate: actix::WeakAddr<ZoneGate>,
) {
    while let Some(Switching { peer, closed, answer }) = asked.recv().await {
        let stored = match &journal {
            Some(journal) => journal.switch_gate(peer.clone(), closed).await,
            None => Ok(()),
        };
        let outcome = match (stored, gate.upgrade()) {
            (Ok(()), Some(gate)) => gate
                .send(Flip { peer, closed })
                .await
                .map_err(|e| SwitchError::NotStored(format!("stored, but the gate did not flip: {e}"))),
            (Ok(()), None) => Err(SwitchError::NotStored("stored, but the gate stopped".into())),
            (Err(e), _) => Err(SwitchError::NotStored(e.to_string())),
        };
        let _ = answer.send(outcome);
    }
}

impl Supervised for ZoneGate {}

/// The pull loop received a page from the peer: the link is up; `behind` when the page was full.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pulled {
    pub peer: String,
    pub behind: bool,
}

/// Our link to the peer is open and its pulls wait for room here: the link is up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PullsHeld {
    pub peer: String,
}

impl Handler<PullsHeld> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: PullsHeld, _: &mut Self::Context) {
        self.report(&msg.peer, Report::Paused);
    }
}

/// The peer pulled a page from us; `behind` when the page was full.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Served {
    pub peer: String,
    pub behind: bool,
}

/// The facts waiting here for the peer, unconfirmed, counted: `behind` when past `batch_limit`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Waiting {
    pub peer: String,
    pub behind: bool,
}

/// Tells the gate, at every status refresh, which peers have more than their `batch_limit`
/// facts waiting here (the gate absorbs what changes nothing). Ends with the refresher.
pub async fn follow_backlogs(
    mut progress: watch::Receiver<Progress>,
    gate: Addr<ZoneGate>,
    batch_limits: BTreeMap<String, u64>,
) {
    while progress.changed().await.is_ok() {
        let waiting: Vec<Waiting> = progress
            .borrow_and_update()
            .peers
            .iter()
            .map(|(peer, seen)| Waiting {
                peer: peer.clone(),
                behind: batch_limits.get(peer).is_some_and(|limit| seen.backlog > *limit),
            })
            .collect();
        for report in waiting {
            gate.do_send(report);
        }
    }
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
#[rtype(result = "Result<(), SwitchError>")]
pub struct SwitchGate {
    pub peer: String,
    pub closed: bool,
}

/// Sets every switch as stored (an HA instance's promotion): the peers in the set closed, the
/// others open.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreSwitches(pub BTreeSet<String>);

impl Handler<Pulled> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: Pulled, _: &mut Self::Context) {
        self.report(&msg.peer, Report::Pulled { behind: msg.behind });
    }
}

impl Handler<Served> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: Served, _: &mut Self::Context) {
        self.report(&msg.peer, Report::Served { behind: msg.behind });
    }
}

impl Handler<Waiting> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: Waiting, _: &mut Self::Context) {
        self.report(&msg.peer, Report::Waiting { behind: msg.behind });
    }
}

impl Handler<LinkDown> for ZoneGate {
    type Result = ();

    fn handle(&mut self, msg: LinkDown, _: &mut Self::Context) {
        self.report(&msg.peer, Report::LinkDown { reason: &msg.reason });
    }
}

impl Handler<SwitchGate> for ZoneGate {
    type Result = ResponseFuture<Result<(), SwitchError>>;

    /// Closing drops the link at once (the gate goes `autonomous`); opening lets the link come
    /// back, and the gate follows the reports from then on. Answered once stored and flipped.
    fn handle(&mut self, SwitchGate { peer, closed }: SwitchGate, _: &mut Self::Context) -> Self::Result {
        if !self.gates.contains(&peer) {
            return Box::pin(std::future::ready(Err(SwitchError::UnknownPeer(UnknownPeer(peer)))));
        }
        let (answer, answered) = oneshot::channel();
        if let Some(switching) = &self.switching {
            let _ = switching.send(Switching { peer, closed, answer });
        }
        Box::pin(async move {
            let stopped = || SwitchError::NotStored("the gate stopped before the switch was stored".into());
            answered.await.unwrap_or_else(|_| Err(stopped()))
        })
    }
}

/// A switch is durable: flip it.
#[derive(Message)]
#[rtype(result = "()")]
struct Flip {
    peer: String,
    closed: bool,
}

impl Handler<Flip> for ZoneGate {
    type Result = ();

    fn handle(&mut self, Flip { peer, closed }: Flip, _: &mut Self::Context) {
        self.switch(&peer, closed);
    }
}

impl Handler<RestoreSwitches> for ZoneGate {
    type Result = ();

    fn handle(&mut self, RestoreSwitches(closed): RestoreSwitches, _: &mut Self::Context) {
        for peer in self.gates.states().into_keys() {
            let stored = closed.contains(&peer);
            if self.switches.is_closed(&peer) != stored {
                self.switch(&peer, stored);
            }
        }
    }
}

impl Handler<Snapshot> for ZoneGate {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.gates.states())
    }
}

/// The wiring of the actor: reports and switches reach the decisions, transitions reach the log
/// and the metrics, switches reach their followers. The decisions are tested in `gates`.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        metrics::Metrics,
        testkit::logs::{field, Capture},
    };

    const PEER: &str = "plant-a";

    struct Fixture {
        gate: Addr<ZoneGate>,
        switches: GateSwitches,
        metrics: Arc<Metrics>,
        log: Capture,
    }

    fn start() -> Fixture {
        let peers = [PEER.to_owned()];
        let metrics = Arc::new(Metrics::new("enterprise", "test").expect("metrics"));
        let switches = GateSwitches::new(peers.clone());
        let log = Capture::default();
        let telemetry = Telemetry::new(log.logger(), metrics.clone(), &peers);
        let gate = ZoneGate::new(peers, switches.clone(), telemetry).start();
        Fixture {
            gate,
            switches,
            metrics,
            log,
        }
    }

    async fn state(gate: &Addr<ZoneGate>) -> GateState {
        gate.send(Snapshot).await.expect("gate alive")[PEER]
    }

    fn one_hot(metrics: &Metrics, state: GateState) -> i64 {
        metrics.gate_state.with_label_values(&[PEER, state.as_str()]).get()
    }

    #[actix_rt::test]
    async fn a_transition_is_logged_counted_and_shown_once() {
        let f = start();
        assert_eq!(
            one_hot(&f.metrics, GateState::Autonomous),
            1,
            "every peer starts autonomous"
        );
        for _ in 0..2 {
            f.gate.do_send(Pulled {
                peer: PEER.into(),
                behind: false,
            });
        }
        assert_eq!(state(&f.gate).await, GateState::Normal);
        let transitions: Vec<_> = f
            .log
            .lines()
            .into_iter()
            .filter(|line| field(line, "msg") == Some("gate_transition"))
            .collect();
        assert_eq!(
            transitions.len(),
            1,
            "the second report changed nothing: {transitions:?}"
        );
        let line = &transitions[0];
        for (key, value) in [
            ("peer", PEER),
            ("previous", "autonomous"),
            ("new", "normal"),
            ("reason", "link up, caught up"),
        ] {
            assert_eq!(field(line, key), Some(value), "{key}: {line:?}");
        }
        let counted = f.metrics.gate_transitions.with_label_values(&[PEER, "normal"]).get();
        assert_eq!(counted, 1);
        assert_eq!(
            (
                one_hot(&f.metrics, GateState::Normal),
                one_hot(&f.metrics, GateState::Autonomous)
            ),
            (1, 0)
        );
    }

    #[actix_rt::test]
    async fn an_operator_switch_flips_the_switch_and_the_state_together() {
        let f = start();
        let mut switch = f.switches.subscribe(PEER).expect("configured peer");
        f.gate.do_send(Pulled {
            peer: PEER.into(),
            behind: false,
        });
        let close = SwitchGate {
            peer: PEER.into(),
            closed: true,
        };
        assert_eq!(f.gate.send(close).await.expect("gate alive"), Ok(()));
        assert_eq!(state(&f.gate).await, GateState::Autonomous);
        assert!(f.switches.is_closed(PEER) && *switch.borrow_and_update());
        let open = SwitchGate {
            peer: PEER.into(),
            closed: false,
        };
        assert_eq!(f.gate.send(open).await.expect("gate alive"), Ok(()));
        assert!(!f.switches.is_closed(PEER) && switch.has_changed().unwrap_or(false));
        let logged: Vec<_> = f
            .log
            .lines()
            .into_iter()
            .filter_map(|l| field(&l, "msg").map(str::to_owned))
            .collect();
        assert_eq!(
            logged,
            ["gate_transition", "gate_closed", "gate_transition", "gate_opened"]
        );
    }

    /// A switch whose commit hangs holds up the switch, not the actor: its snapshot (what the
    /// status and the watchdog ask for) is answered meanwhile; once stored, it flips. Switches
    /// asked back to back are stored and flipped in that order.
    #[actix_rt::test]
    async fn a_switch_stored_slowly_does_not_hold_up_the_gate() {
        let f = start();
        let fixture = crate::testkit::Fixture::open(crate::journal::JournalConfig::default());
        let peers = [PEER.to_owned()];
        let telemetry = Telemetry::new(f.log.logger(), f.metrics.clone(), &peers);
        let gate = ZoneGate::new(peers, f.switches.clone(), telemetry)
            .with_journal(fixture.journal.clone())
            .start();
        let mut held = fixture.faults.hold(crate::testkit::faults::Op::Commit);
        let closing = gate.send(SwitchGate {
            peer: PEER.into(),
            closed: true,
        });
        let opening = gate.send(SwitchGate {
            peer: PEER.into(),
            closed: false,
        });
        let switched = tokio::spawn(async move { (closing.await, opening.await) });
        held.reached().await;
        let seen = tokio::time::timeout(std::time::Duration::from_secs(2), gate.send(Snapshot)).await;
        assert_eq!(
            seen.expect("answered while the commit hangs").expect("gate alive")[PEER],
            GateState::Autonomous
        );
        assert!(!f.switches.is_closed(PEER), "not flipped before it is stored");
        held.release();
        let (closed, opened) = switched.await.expect("switch task");
        assert_eq!(closed.expect("gate alive"), Ok(()));
        assert_eq!(opened.expect("gate alive"), Ok(()));
        assert!(
            !f.switches.is_closed(PEER),
            "the last switch asked for is the one in force"
        );
        let logged: Vec<_> = f
            .log
            .lines()
            .into_iter()
            .filter_map(|l| field(&l, "msg").map(str::to_owned))
            .filter(|msg| msg.starts_with("gate_"))
            .collect();
        assert_eq!(logged, ["gate_closed", "gate_opened"], "flipped in the order asked");
        // Cleanup: the actor stops once no address is left, and the task storing its switches
        // with it; then the journal's last handles are gone and the fixture closes at once.
        drop(gate);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    #[actix_rt::test]
    async fn switching_an_unknown_peer_is_refused() {
        let f = start();
        let close = SwitchGate {
            peer: "plant-z".into(),
            closed: true,
        };
        let refused = f.gate.send(close).await.expect("gate alive");
        assert_eq!(refused, Err(SwitchError::UnknownPeer(UnknownPeer("plant-z".into()))));
        assert!(f.switches.subscribe("plant-z").is_none() && !f.switches.is_closed("plant-z"));
    }
}
