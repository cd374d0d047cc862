//! The gate decisions as a plain value: what is known of each peer's link, the state that
//! follows from it, and the transition a report causes. No actor, no runtime, no I/O; `ZoneGate`
//! feeds reports in and reports the transitions out.

use std::collections::BTreeMap;

use crate::events::{GateState, CLOSED_BY_OPERATOR};

/// What the links, the RPC server and the operator report about one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Report<'a> {
    /// We received a page from the peer (the link is up); `behind` when it was full.
    Pulled { behind: bool },
    /// The link is open and this node holds its pulls back (no room here): up, though no page
    /// says so; what the peer has for us is not known here (its own gate counts it).
    Paused,
    /// The peer received a page from us; `behind` when it was full.
    Served { behind: bool },
    /// The facts waiting here for the peer, unconfirmed, counted: `behind` when more than
    /// `batch_limit`, whether the peer fetches or not.
    Waiting { behind: bool },
    /// The link is gone or could not be established.
    LinkDown { reason: &'a str },
    /// An operator closed or opened the gate.
    Switched { closed: bool },
}

impl Report<'_> {
    /// The `reason` of the transition this report causes.
    fn reason(self) -> String {
        match self {
            Self::Pulled { behind: true } => "link up, inbound backlog of at least batch_limit".into(),
            Self::Pulled { behind: false } => "link up, caught up".into(),
            Self::Paused => "link up, pulls paused: no room here for what the peer sends".into(),
            Self::Served { behind: true } | Self::Waiting { behind: true } => {
                "outbound backlog of at least batch_limit".into()
            }
            Self::Served { behind: false } | Self::Waiting { behind: false } => "peer caught up".into(),
            Self::LinkDown { reason } => format!("link down: {reason}"),
            Self::Switched { .. } => CLOSED_BY_OPERATOR.into(),
        }
    }
}

/// A change of one peer's gate state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transition {
    pub previous: GateState,
    pub new: GateState,
    pub reason: String,
}

/// What is known about one peer link.
#[derive(Debug, Clone, Copy)]
struct Observed {
    state: GateState,
    /// Closed by an operator: no link, whatever the reports say.
    closed: bool,
    link_up: bool,
    inbound_behind: bool,
    outbound_behind: bool,
    /// More than `batch_limit` facts wait here for the peer (counted, not told by pages: a peer
    /// that stopped fetching tells nothing).
    outbound_waiting: bool,
}

impl Observed {
    /// Nothing known yet: `autonomous`.
    const START: Self = Self {
        state: GateState::Autonomous,
        closed: false,
        link_up: false,
        inbound_behind: false,
        outbound_behind: false,
        outbound_waiting: false,
    };

    fn decide(&self) -> GateState {
        match (self.link_up && !self.closed, self.inbound_behind || self.outbound()) {
            (false, _) => GateState::Autonomous,
            (true, true) => GateState::Reconciliation,
            (true, false) => GateState::Normal,
        }
    }

    fn outbound(&self) -> bool {
        self.outbound_behind || self.outbound_waiting
    }

    /// Why the state is what it is after `report`: a backlog is named by its direction (the
    /// report may be about the other one, caught up), anything else by the report.
    fn reason(&self, report: Report) -> String {
        match (self.state, self.inbound_behind, self.outbound()) {
            (GateState::Reconciliation, true, true) => "link up, backlog of at least batch_limit both ways".into(),
            (GateState::Reconciliation, true, false) => Report::Pulled { behind: true }.reason(),
            (GateState::Reconciliation, false, _) => Report::Served { behind: true }.reason(),
            _ => report.reason(),
        }
    }

    fn apply(&mut self, report: Report) {
        match report {
            Report::Pulled { behind } => {
                self.link_up = true;
                self.inbound_behind = behind;
            }
            Report::Paused => self.link_up = true,
            Report::Served { behind } => self.outbound_behind = behind,
            Report::Waiting { behind } => self.outbound_waiting = behind,
            // What was behind is known again from the pages of the next link (what waits here
            // is counted whatever the link).
            Report::LinkDown { .. } => {
                self.link_up = false;
                self.inbound_behind = false;
                self.outbound_behind = false;
            }
            Report::Switched { closed } => self.closed = closed,
        }
        // A report about a page fetched before the close must not revive the link.
        self.link_up &= !self.closed;
    }
}

/// The gate of every configured peer.
pub(super) struct Gates(BTreeMap<String, Observed>);

impl Gates {
    /// Every configured peer starts `autonomous`: nothing is known about its link yet.
    pub(super) fn new(peers: impl IntoIterator<Item = String>) -> Self {
        Self(peers.into_iter().map(|peer| (peer, Observed::START)).collect())
    }

    pub(super) fn contains(&self, peer: &str) -> bool {
        self.0.contains_key(peer)
    }

    /// Takes in what `report` says of `peer`'s link; the transition it causes, if any. Reports
    /// about unknown peers and reports that change nothing are absorbed.
    pub(super) fn on(&mut self, peer: &str, report: Report) -> Option<Transition> {
        let observed = self.0.get_mut(peer)?;
        observed.apply(report);
        let new = observed.decide();
        let previous = std::mem::replace(&mut observed.state, new);
        (previous != new).then(|| Transition {
            previous,
            new,
            reason: observed.reason(report),
        })
    }

    /// The state of every peer's gate.
    pub(super) fn states(&self) -> BTreeMap<String, GateState> {
        self.0
            .iter()
            .map(|(peer, observed)| (peer.clone(), observed.state))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GateState::{Autonomous, Normal, Reconciliation};

    const PEER: &str = "plant-a";

    fn gates() -> Gates {
        Gates::new([PEER.to_owned()])
    }

    /// The state after each report, in order.
    fn states(gates: &mut Gates, reports: &[Report]) -> Vec<GateState> {
        reports
            .iter()
            .map(|report| {
                gates.on(PEER, *report);
                gates.states()[PEER]
            })
            .collect()
    }

    fn pulled(behind: bool) -> Report<'static> {
        Report::Pulled { behind }
    }

    fn served(behind: bool) -> Report<'static> {
        Report::Served { behind }
    }

    #[test]
    fn a_peer_starts_autonomous_and_follows_its_link_and_backlog() {
        let mut gates = gates();
        assert_eq!(gates.states()[PEER], Autonomous);
        let down = Report::LinkDown { reason: "timed out" };
        let seen = states(&mut gates, &[pulled(true), pulled(false), down, pulled(false)]);
        assert_eq!(seen, [Reconciliation, Normal, Autonomous, Normal]);
    }

    #[test]
    fn an_outbound_backlog_holds_reconciliation_until_the_peer_caught_up() {
        let mut gates = gates();
        let seen = states(&mut gates, &[served(true), pulled(false), served(false)]);
        // Serving a peer is not a live link of ours; once it is, the outbound backlog counts.
        assert_eq!(seen, [Autonomous, Reconciliation, Normal]);
    }

    /// A peer that stops fetching tells nothing by pages: the count of what waits for it holds
    /// the gate in reconciliation, across a lost link too (the facts still wait), until it is
    /// down to `batch_limit`; a page that left nothing behind does not end it before.
    #[test]
    fn facts_counted_waiting_for_the_peer_hold_reconciliation_whatever_the_pages_say() {
        let mut gates = gates();
        let waiting = |behind| Report::Waiting { behind };
        let down = Report::LinkDown { reason: "timed out" };
        let seen = states(
            &mut gates,
            &[
                pulled(false),
                waiting(true),
                served(false),
                down,
                pulled(false),
                waiting(false),
            ],
        );
        assert_eq!(
            seen,
            [
                Normal,
                Reconciliation,
                Reconciliation,
                Autonomous,
                Reconciliation,
                Normal
            ]
        );
        let transition = gates.on(PEER, waiting(true)).expect("a transition");
        assert_eq!(transition.reason, "outbound backlog of at least batch_limit");
    }

    #[test]
    fn a_backlog_seen_before_the_link_went_down_is_forgotten_with_it() {
        let mut gates = gates();
        let down = Report::LinkDown { reason: "timed out" };
        let seen = states(&mut gates, &[pulled(false), served(true), down, pulled(false)]);
        assert_eq!(seen, [Normal, Reconciliation, Autonomous, Normal]);
    }

    #[test]
    fn a_backlog_is_named_by_its_direction_whichever_report_came() {
        let mut gates = gates();
        gates.on(PEER, served(true));
        let up = gates.on(PEER, pulled(false)).expect("the link is up");
        assert_eq!(up.new, Reconciliation);
        assert_eq!(up.reason, "outbound backlog of at least batch_limit", "not 'caught up'");
        gates.on(PEER, pulled(true));
        gates.on(PEER, Report::LinkDown { reason: "timed out" });
        gates.on(PEER, served(true));
        let both = gates.on(PEER, pulled(true)).expect("the link is up");
        assert_eq!(both.reason, "link up, backlog of at least batch_limit both ways");
    }

    /// A node that holds its pulls back for room gets no page, and before it had none since the
    /// link came back: its gate stayed `autonomous` ("link is down") over a live link. An open
    /// link with pulls paused is up; a backlog a full page showed before still counts.
    #[test]
    fn a_link_whose_pulls_are_paused_is_up() {
        let mut gates = gates();
        let down = Report::LinkDown {
            reason: "closed by peer",
        };
        let paused = Report::Paused;
        let seen = states(&mut gates, &[paused, down, paused, pulled(true), paused]);
        assert_eq!(seen, [Normal, Autonomous, Normal, Reconciliation, Reconciliation]);
        gates.on(PEER, down);
        let paused = gates.on(PEER, Report::Paused).expect("a transition");
        assert_eq!(
            paused.reason,
            "link up, pulls paused: no room here for what the peer sends"
        );
        let close = Report::Switched { closed: true };
        let seen = states(&mut gates, &[close, Report::Paused]);
        assert_eq!(seen, [Autonomous, Autonomous], "a closed gate has no link");
    }

    #[test]
    fn a_closed_gate_stays_autonomous_until_opened_and_the_link_is_back() {
        let mut gates = gates();
        let (close, open) = (Report::Switched { closed: true }, Report::Switched { closed: false });
        let seen = states(&mut gates, &[pulled(false), close, pulled(false), open, pulled(false)]);
        assert_eq!(seen, [Normal, Autonomous, Autonomous, Autonomous, Normal]);
    }

    #[test]
    fn only_changes_are_transitions_and_each_says_why() {
        let mut gates = gates();
        let first = gates.on(PEER, pulled(true));
        assert_eq!(
            first,
            Some(Transition {
                previous: Autonomous,
                new: Reconciliation,
                reason: "link up, inbound backlog of at least batch_limit".into()
            })
        );
        assert_eq!(gates.on(PEER, pulled(true)), None, "a report that changes nothing");
        let down = gates.on(PEER, Report::LinkDown { reason: "timed out" });
        assert_eq!(down.map(|t| t.reason), Some("link down: timed out".into()));
        let closed = gates.on(PEER, Report::Switched { closed: true });
        assert_eq!(closed, None, "already autonomous");
    }

    #[test]
    fn reports_about_unknown_peers_are_ignored() {
        let mut gates = gates();
        assert_eq!(gates.on("plant-z", pulled(false)), None);
        assert!(!gates.contains("plant-z"));
        assert_eq!(gates.states().len(), 1);
    }
}
