//! The gate of each peer link (SPEC §4): its states, every transition (logged once and counted,
//! with the one-hot `bsfg_gate_state` following it), and the operator's switch.
//!
//! [`GateState`] is defined here, with the line and the metrics that report it, rather than in
//! `zone_gate`, which decides it: `zone_gate` emits these events, so the states must sit below
//! both.

use slog::info;

use super::{Event, Telemetry};
use crate::metrics::Metrics;

pub const GATE_TRANSITION: &str = "gate_transition";
pub const GATE_CLOSED: &str = "gate_closed";
pub const GATE_OPENED: &str = "gate_opened";

/// The `reason` of the transition a closed gate causes, and of the calls it refuses.
pub const CLOSED_BY_OPERATOR: &str = "closed by operator";

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

/// `peer`'s gate changed state.
pub struct GateTransition<'a> {
    pub peer: &'a str,
    pub previous: GateState,
    pub new: GateState,
    pub reason: &'a str,
}

impl Event for GateTransition<'_> {
    fn emit(self, t: &Telemetry) {
        set_state(&t.metrics, self.peer, self.new);
        t.metrics
            .gate_transitions
            .with_label_values(&[self.peer, self.new.as_str()])
            .inc();
        info!(t.log, "{}", GATE_TRANSITION; "peer" => self.peer, "previous" => self.previous.as_str(),
            "new" => self.new.as_str(), "reason" => self.reason);
    }
}

/// An operator closed or opened `peer`'s gate (logged before the switch flips, so the log reads
/// in causal order).
pub struct GateSwitched<'a> {
    pub peer: &'a str,
    pub closed: bool,
}

impl Event for GateSwitched<'_> {
    fn emit(self, t: &Telemetry) {
        match self.closed {
            true => info!(t.log, "{}", GATE_CLOSED; "peer" => self.peer, "reason" => CLOSED_BY_OPERATOR),
            false => info!(t.log, "{}", GATE_OPENED; "peer" => self.peer, "reason" => "opened by operator"),
        }
    }
}

/// One-hot gate state of `peer`.
fn set_state(metrics: &Metrics, peer: &str, state: GateState) {
    for s in GateState::ALL {
        metrics
            .gate_state
            .with_label_values(&[peer, s.as_str()])
            .set(i64::from(s == state));
    }
}

/// Every configured peer starts `autonomous`, with a transition counter at 0 for each state.
pub(super) fn start_autonomous(metrics: &Metrics, peer: &str) {
    set_state(metrics, peer, GateState::Autonomous);
    for state in GateState::ALL {
        metrics.gate_transitions.with_label_values(&[peer, state.as_str()]);
    }
}
