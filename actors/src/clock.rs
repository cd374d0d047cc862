//! The clock retention reads: the wall clock, but never ahead of the wall time at the last
//! anchor (the start) plus what the monotonic clock has counted since. A gateway that booted
//! with a wrong clock (no RTC battery) and is then stepped forward by NTP, or a clock set wrong
//! by hand, would otherwise make every stored fact and artifact look as old as the step and
//! expire unconfirmed facts, dedupe entries and artifacts whose facts have not come yet at once.
//! Backpressure's sweeps and the artifact sweep each keep one. After a forward step retention
//! follows the monotonic clock, so facts are kept longer, never shorter; a step backward makes
//! facts look younger, which keeps them longer too. Each forward step past [`STEP`] is logged
//! once (`clock_stepped`).
//!
//! Held back for good, the clock would make everything stamped after the step look as much too
//! young until the next start (a gateway that booted in 1970 would keep its artifacts for
//! decades). So once the longest retention the clock serves has passed on the monotonic clock
//! since the step was seen, it takes the wall clock again (a new anchor): by then everything
//! stamped before the step is at least that old anyway.
//!
//! The time a node was stopped cannot be counted, and a clock set ahead meanwhile (or a gateway
//! that boots with its clock wrong) looks the same as a long stop. So a clock starts from when
//! the node last stored a fact, when the wall clock is more than [`STEP`] past it: the stop is
//! taken as a step, held back until `settle` has passed. Facts are kept longer by the time the
//! node was stopped, never shorter; the start logs it (`retention_resumed`).

use std::time::{Duration, Instant};

use bsfg_proto::model::now_unix_ms;

/// How far the wall clock may run ahead of the monotonic one before it counts as stepped:
/// far above what NTP slews.
pub(crate) const STEP: Duration = Duration::from_secs(60);

pub(crate) struct RetentionClock {
    /// The wall clock when the clock was last anchored (at start, then after each step has
    /// settled), in Unix milliseconds.
    anchor_ms: u64,
    /// The monotonic time of that anchor, counted from `started`.
    anchored: Duration,
    started: Instant,
    /// How long the clock holds back after a forward step before it takes the wall clock again:
    /// the longest retention it serves.
    settle: Duration,
    /// When the current forward step was first seen (monotonic, from `started`).
    stepped_at: Option<Duration>,
}

/// One reading: the time retention uses, and by how much the wall clock was ahead of it when
/// a step is first seen past [`STEP`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    pub now_ms: u64,
    pub stepped: Option<Duration>,
}

/// How far the wall clock is past `last_stored` (when this node last stored a fact, Unix ms by
/// its clock then) at `wall_ms`, if by more than [`STEP`]: a start then counts retention from
/// `last_stored`.
pub(crate) fn resumed_behind(last_stored: Option<u64>, wall_ms: u64) -> Option<Duration> {
    let ahead = Duration::from_millis(wall_ms.saturating_sub(last_stored?));
    (ahead > STEP).then_some(ahead)
}

impl RetentionClock {
    /// A clock for sweeps whose longest retention is `settle`, in a node that last stored a fact
    /// at `last_stored` (see the module's docs).
    pub(crate) fn new(settle: Duration, last_stored: Option<u64>) -> Self {
        Self::starting_at(now_unix_ms(), settle, last_stored)
    }

    fn starting_at(wall_ms: u64, settle: Duration, last_stored: Option<u64>) -> Self {
        let resumed = resumed_behind(last_stored, wall_ms).and(last_stored);
        Self {
            anchor_ms: resumed.unwrap_or(wall_ms),
            anchored: Duration::ZERO,
            started: Instant::now(),
            settle,
            // A step already, known at the start (and logged there), not reported again.
            stepped_at: resumed.map(|_| Duration::ZERO),
        }
    }

    pub(crate) fn read(&mut self) -> Reading {
        self.at(now_unix_ms(), self.started.elapsed())
    }

    fn at(&mut self, wall_ms: u64, elapsed: Duration) -> Reading {
        let since_anchor = elapsed.saturating_sub(self.anchored);
        let steady_ms = self
            .anchor_ms
            .saturating_add(u64::try_from(since_anchor.as_millis()).unwrap_or(u64::MAX));
        let ahead = Duration::from_millis(wall_ms.saturating_sub(steady_ms));
        let held = Reading {
            now_ms: wall_ms.min(steady_ms),
            stepped: None,
        };
        if ahead <= STEP {
            self.stepped_at = None;
            return held;
        }
        match self.stepped_at {
            None => {
                self.stepped_at = Some(elapsed);
                Reading {
                    stepped: Some(ahead),
                    ..held
                }
            }
            // Whatever was stamped before the step is at least `settle` old by now on the
            // monotonic clock, so older still by the wall clock: taking the wall clock again
            // expires nothing early, and what is stamped from now on ages as it should.
            Some(at) if elapsed.saturating_sub(at) >= self.settle => {
                (self.anchor_ms, self.anchored, self.stepped_at) = (wall_ms, elapsed, None);
                Reading {
                    now_ms: wall_ms,
                    stepped: None,
                }
            }
            Some(_) => held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    const SECOND: Duration = Duration::from_secs(1);
    const HOUR: Duration = Duration::from_secs(3600);

    fn clock(start_ms: u64, settle: Duration) -> RetentionClock {
        RetentionClock::starting_at(start_ms, settle, None)
    }

    fn reading(now_ms: u64) -> Reading {
        Reading { now_ms, stepped: None }
    }

    #[test]
    fn a_forward_step_is_held_back_and_reported_once() {
        let start = 30 * YEAR_MS;
        let mut clock = clock(start, HOUR);
        assert_eq!(clock.at(start + 1_000, SECOND), reading(start + 1_000), "in step");
        assert_eq!(
            clock.at(start + 1_500, SECOND),
            reading(start + 1_000),
            "ahead a little: not a step, never ahead of the monotonic count"
        );

        let stepped = clock.at(start + 26 * YEAR_MS, 2 * SECOND);
        assert_eq!(
            stepped.now_ms,
            start + 2_000,
            "26 years ahead: retention keeps counting seconds"
        );
        assert!(stepped
            .stepped
            .is_some_and(|ahead| ahead.as_millis() > u128::from(25 * YEAR_MS)));
        assert_eq!(
            clock.at(start + 26 * YEAR_MS + 1_000, 3 * SECOND),
            reading(start + 3_000),
            "reported once"
        );
    }

    #[test]
    fn once_the_longest_retention_has_passed_since_a_step_the_wall_clock_counts_again() {
        let start = 30 * YEAR_MS;
        let step = 26 * YEAR_MS;
        let mut clock = clock(start, HOUR);
        assert!(clock.at(start + step, SECOND).stepped.is_some());
        let hour_ms = 3_600_000;
        // Just short of the settle time: still held back.
        let almost = clock.at(start + step + hour_ms - 1_000, HOUR);
        assert_eq!(almost, reading(start + hour_ms));
        // A retention after the step, whatever was stamped before it is a retention old by the
        // monotonic clock: the wall clock is taken again, so new stamps age as they should.
        let settled = clock.at(start + step + hour_ms, HOUR + SECOND);
        assert_eq!(settled, reading(start + step + hour_ms));
        assert_eq!(
            clock.at(start + step + hour_ms + 5_000, HOUR + 6 * SECOND),
            reading(start + step + hour_ms + 5_000),
            "in step with the wall clock from then on"
        );
        // A later step is held back and reported again.
        let again = clock.at(start + 2 * step, HOUR + 7 * SECOND);
        assert_eq!(again.now_ms, start + step + hour_ms + 6_000);
        assert!(again.stepped.is_some());
    }

    #[test]
    fn a_start_long_after_the_last_fact_counts_from_that_fact_until_settled() {
        let stored = 30 * YEAR_MS;
        let hour_ms = 3_600_000;
        // Stopped for a day (or the clock set a day ahead meanwhile): the day is not counted.
        let wall = stored + 24 * hour_ms;
        let mut clock = RetentionClock::starting_at(wall, HOUR, Some(stored));
        assert_eq!(
            resumed_behind(Some(stored), wall),
            Some(Duration::from_millis(24 * hour_ms))
        );
        assert_eq!(
            clock.at(wall + 1_000, SECOND),
            reading(stored + 1_000),
            "not reported as a step"
        );
        assert_eq!(
            clock.at(wall + hour_ms - 1_000, HOUR - SECOND),
            reading(stored + hour_ms - 1_000)
        );
        assert_eq!(
            clock.at(wall + hour_ms, HOUR),
            reading(wall + hour_ms),
            "the wall clock again once the longest retention has passed"
        );

        // A restart within a minute of the last fact, or a node with no fact: the wall clock.
        let soon = stored + 30_000;
        assert_eq!(resumed_behind(Some(stored), soon), None);
        let mut clock = RetentionClock::starting_at(soon, HOUR, Some(stored));
        assert_eq!(clock.at(soon + 1_000, SECOND), reading(soon + 1_000));
        let mut clock = RetentionClock::starting_at(wall, HOUR, None);
        assert_eq!(clock.at(wall + 1_000, SECOND), reading(wall + 1_000));
        // A clock behind the last fact (set back while stopped): followed, facts look younger.
        assert_eq!(resumed_behind(Some(stored), stored - hour_ms), None);
    }

    #[test]
    fn a_backward_step_is_followed() {
        let start = 50 * YEAR_MS;
        let mut clock = clock(start, HOUR);
        assert_eq!(
            clock.at(start - YEAR_MS, 5 * SECOND),
            reading(start - YEAR_MS),
            "facts look younger: kept longer"
        );
    }
}
