//! The link's connection policy as a plain value (quinn-proto's shape): whether a connection the
//! peer offers during a session replaces ours, and how long to wait before connecting again. No
//! I/O and no clock: the pull loop carries the answers out (keeps or closes connections, sleeps),
//! and the decisions are tested here in milliseconds instead of by multi-second runs of nodes.

use std::time::Duration;

use rand::rngs::StdRng;

use super::backoff::Backoff;

/// First reconnect backoff.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest reconnect backoff (SPEC §4).
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// What to do when the peer offers a live connection other than the one a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnOffer {
    /// Both sides dialled and ours wins: the peer moves over to it. (An extra connection that is
    /// not the peer's link, such as a tool using the node's certificate, is served, never pulled on.)
    KeepOurs,
    /// Close ours and move over: the peer's dialled connection wins, or the peer dialled again.
    MoveOver,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The connection or a call failed: a link failure.
    Failed,
    /// An operator closed the gate.
    GateClosed,
    /// We gave the connection up for the pair's other one.
    Switched,
}

/// One link's connection policy.
pub(super) struct LinkState {
    /// When both sides dialled, the connection dialled by the zone whose name sorts first is kept.
    ours_sorts_first: bool,
    backoff: Backoff,
    rng: StdRng,
}

impl LinkState {
    /// The policy of the link from `zone` to `peer`; `rng` draws the backoff's jitter.
    pub(super) fn new(zone: &str, peer: &str, rng: StdRng) -> Self {
        Self {
            ours_sorts_first: zone < peer,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
            rng,
        }
    }

    /// The peer offered another live connection while a session runs on one we `dialled` (or on
    /// one it offered before).
    pub(super) fn on_offer(&self, dialled: bool) -> OnOffer {
        match dialled && self.ours_sorts_first {
            true => OnOffer::KeepOurs,
            false => OnOffer::MoveOver,
        }
    }

    /// A session ended, having `progressed` (pulled at least one page) or not; the wait before
    /// connecting again, if any. Progress restarts the backoff; only a failure waits.
    pub(super) fn on_session_end(&mut self, ended: Ended, progressed: bool) -> Option<Duration> {
        if progressed {
            self.backoff.reset();
        }
        (ended == Ended::Failed).then(|| self.backoff.next_delay(&mut self.rng))
    }

    /// No connection came of an attempt (a failed dial, or none to make): the wait before the
    /// next one.
    pub(super) fn on_no_connection(&mut self) -> Duration {
        self.backoff.next_delay(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn link(zone: &str, peer: &str) -> LinkState {
        LinkState::new(zone, peer, StdRng::seed_from_u64(7))
    }

    #[test]
    fn when_both_sides_dialled_the_zone_that_sorts_first_keeps_its_connection() {
        let (enterprise, plant) = (link("enterprise", "plant-a"), link("plant-a", "enterprise"));
        assert_eq!(enterprise.on_offer(true), OnOffer::KeepOurs);
        assert_eq!(plant.on_offer(true), OnOffer::MoveOver, "the other side moves over");
        // A session on a connection the peer offered moves to the peer's newer one, either side.
        assert_eq!(enterprise.on_offer(false), OnOffer::MoveOver);
        assert_eq!(plant.on_offer(false), OnOffer::MoveOver);
    }

    #[test]
    fn failures_back_off_longer_and_progress_starts_over() {
        let mut link = link("enterprise", "plant-a");
        let first = link.on_session_end(Ended::Failed, false).expect("a failure waits");
        assert!(first <= BACKOFF_BASE, "{first:?}");
        let mut ceilings = Vec::new();
        for _ in 0..4 {
            ceilings.push(link.on_no_connection());
        }
        assert!(ceilings[3] > BACKOFF_BASE * 4, "grows: {ceilings:?}");
        let after_progress = link.on_session_end(Ended::Failed, true).expect("a failure waits");
        assert!(after_progress <= BACKOFF_BASE, "restarted: {after_progress:?}");
    }

    #[test]
    fn a_closed_gate_or_a_switch_does_not_wait() {
        let mut link = link("plant-a", "enterprise");
        assert_eq!(link.on_session_end(Ended::GateClosed, false), None);
        assert_eq!(link.on_session_end(Ended::Switched, true), None);
        let mut cap = Duration::ZERO;
        for _ in 0..30 {
            cap = link.on_no_connection();
        }
        assert!(cap <= BACKOFF_CAP && cap >= BACKOFF_CAP / 2, "capped at 30 s: {cap:?}");
    }
}
