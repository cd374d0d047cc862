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

impl RetentionClock {
    /// A clock for sweeps whose longest retention is `settle`.
    pub(crate) fn new(settle: Duration) -> Self {
        Self {
            anchor_ms: now_unix_ms(),
            anchored: Duration::ZERO,
            started: Instant::now(),
            settle,
            stepped_at: None,
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
        RetentionClock {
            anchor_ms: start_ms,
            anchored: Duration::ZERO,
            started: Instant::now(),
            settle,
            stepped_at: None,
        }
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
