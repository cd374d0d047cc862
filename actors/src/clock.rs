//! The clock retention reads: the wall clock, but never ahead of the wall time at start plus
//! what the monotonic clock has counted since. A gateway that booted with a wrong clock (no RTC
//! battery) and is then stepped forward by NTP, or a clock set wrong by hand, would otherwise
//! make every stored fact and artifact look as old as the step and expire unconfirmed facts,
//! dedupe entries and artifacts whose facts have not come yet at once. Backpressure's sweeps and
//! the artifact sweep each keep one. After a forward step retention follows the monotonic clock, so facts are
//! kept longer, never shorter, until the next start; a step backward makes facts look younger,
//! which keeps them longer too. The first forward step past [`STEP`] is logged once
//! (`clock_stepped`).

use std::time::{Duration, Instant};

use bsfg_proto::model::now_unix_ms;

/// How far the wall clock may run ahead of the monotonic one before it counts as stepped:
/// far above what NTP slews.
pub(crate) const STEP: Duration = Duration::from_secs(60);

pub(crate) struct RetentionClock {
    /// The wall clock at start, in Unix milliseconds.
    anchor_ms: u64,
    started: Instant,
    reported: bool,
}

/// One reading: the time retention uses, and by how much the wall clock was ahead of it when
/// that is first seen past [`STEP`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    pub now_ms: u64,
    pub stepped: Option<Duration>,
}

impl RetentionClock {
    pub(crate) fn new() -> Self {
        Self {
            anchor_ms: now_unix_ms(),
            started: Instant::now(),
            reported: false,
        }
    }

    pub(crate) fn read(&mut self) -> Reading {
        self.at(now_unix_ms(), self.started.elapsed())
    }

    fn at(&mut self, wall_ms: u64, elapsed: Duration) -> Reading {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let steady_ms = self.anchor_ms.saturating_add(elapsed_ms);
        let ahead = Duration::from_millis(wall_ms.saturating_sub(steady_ms));
        let stepped = (ahead > STEP && !self.reported).then_some(ahead);
        self.reported |= stepped.is_some();
        Reading {
            now_ms: wall_ms.min(steady_ms),
            stepped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

    #[test]
    fn a_forward_step_is_not_followed_and_is_reported_once() {
        let start = 1_000 * YEAR_MS / 1_000;
        let mut clock = RetentionClock {
            anchor_ms: start,
            started: Instant::now(),
            reported: false,
        };
        let second = Duration::from_secs(1);
        let quiet = clock.at(start + 1_000, second);
        assert_eq!(
            quiet,
            Reading {
                now_ms: start + 1_000,
                stepped: None
            },
            "in step: the wall clock"
        );
        let slewed = clock.at(start + 1_500, second);
        assert_eq!(
            (slewed.now_ms, slewed.stepped),
            (start + 1_000, None),
            "ahead a little: not a step"
        );

        let stepped = clock.at(start + 26 * YEAR_MS, 2 * second);
        assert_eq!(
            stepped.now_ms,
            start + 2_000,
            "26 years ahead: retention keeps counting seconds"
        );
        assert!(stepped
            .stepped
            .is_some_and(|ahead| ahead.as_millis() > u128::from(25 * YEAR_MS)));
        let later = clock.at(start + 26 * YEAR_MS + 1_000, 3 * second);
        assert_eq!(
            later,
            Reading {
                now_ms: start + 3_000,
                stepped: None
            },
            "reported once"
        );
    }

    #[test]
    fn a_backward_step_is_followed() {
        let start = 50 * YEAR_MS;
        let mut clock = RetentionClock {
            anchor_ms: start,
            started: Instant::now(),
            reported: false,
        };
        let back = clock.at(start - YEAR_MS, Duration::from_secs(5));
        assert_eq!(
            back,
            Reading {
                now_ms: start - YEAR_MS,
                stepped: None
            },
            "facts look younger: kept longer"
        );
    }
}
