//! Figures over a sliding window of real time, as plain values fed `now` by the refresher (and by
//! tests, with made-up instants): a rate over the last [`RATE_WINDOW`] and a peak over the last
//! [`PEAK_WINDOW`]. A gauge sampled once a second and scraped every 15 s must mean something
//! whichever second the scrape lands on; these do.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// How far back `bsfg_confirm_rate_per_second` looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// How far back `bsfg_replication_lag_high_watermark` looks.
pub const PEAK_WINDOW: Duration = Duration::from_secs(600);

/// Per-second rate of a monotonic count (a cursor) over the last `window`, divided by the time
/// really elapsed between the oldest sample kept and now (never an assumed tick length).
#[derive(Debug)]
pub struct RateWindow {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records `count` at `now`; returns the rate since the oldest sample within the window (0
    /// until two samples are apart in time). A count that went down (a rewound cursor) restarts.
    pub fn observe(&mut self, now: Instant, count: u64) -> f64 {
        if self.samples.back().is_some_and(|&(_, last)| count < last) {
            self.samples.clear();
        }
        self.samples.push_back((now, count));
        // Keep the newest sample at or beyond the window's start, so the span covers the window.
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|&(t, _)| now - t >= self.window) {
            self.samples.pop_front();
        }
        let Some(&(since, first)) = self.samples.front() else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        match elapsed > 0.0 {
            true => (count - first) as f64 / elapsed,
            false => 0.0,
        }
    }
}

/// The highest value observed within the last `window` (a monotonic queue: each sample is
/// dropped once a later, larger one or its age makes it irrelevant).
#[derive(Debug)]
pub struct PeakWindow {
    window: Duration,
    candidates: VecDeque<(Instant, f64)>,
}

impl PeakWindow {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            candidates: VecDeque::new(),
        }
    }

    /// Records `value` at `now`; returns the peak of the window ending now.
    pub fn observe(&mut self, now: Instant, value: f64) -> f64 {
        while self.candidates.back().is_some_and(|&(_, v)| v <= value) {
            self.candidates.pop_back();
        }
        self.candidates.push_back((now, value));
        while self.candidates.front().is_some_and(|&(t, _)| now - t > self.window) {
            self.candidates.pop_front();
        }
        self.candidates.front().map_or(value, |&(_, peak)| peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_between_scrapes_shows_as_a_rate_over_real_time() {
        let start = Instant::now();
        let mut rate = RateWindow::new(RATE_WINDOW);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(rate.observe(at(0), 100), 0.0);
        // 600 facts confirmed at once, then nothing: a one-second sample would read 0 at every
        // later second (what a 15 s scrape mostly saw); over the minute it is 10 per second.
        assert_eq!(rate.observe(at(1), 700), 600.0);
        for s in 2..=59 {
            rate.observe(at(s), 700);
        }
        assert_eq!(rate.observe(at(60), 700), 10.0);
        // Refreshes late by seconds (a busy node) still divide by the time that passed.
        let mut late = RateWindow::new(RATE_WINDOW);
        late.observe(at(0), 0);
        assert_eq!(late.observe(at(4), 200), 50.0);
        // Once the burst is older than the window the rate falls to 0.
        for s in 61..=125 {
            rate.observe(at(s), 700);
        }
        assert_eq!(rate.observe(at(126), 700), 0.0);
    }

    #[test]
    fn a_rewound_count_starts_the_rate_over() {
        let start = Instant::now();
        let mut rate = RateWindow::new(RATE_WINDOW);
        rate.observe(start, 500);
        assert_eq!(rate.observe(start + Duration::from_secs(1), 10), 0.0);
        assert_eq!(rate.observe(start + Duration::from_secs(2), 30), 20.0);
    }

    #[test]
    fn a_peak_is_forgotten_once_it_leaves_the_window() {
        let start = Instant::now();
        let mut peak = PeakWindow::new(PEAK_WINDOW);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(peak.observe(at(0), 2.0), 2.0);
        assert_eq!(peak.observe(at(10), 45.0), 45.0, "a partition's lag");
        assert_eq!(peak.observe(at(20), 0.0), 45.0, "healed: the peak stays visible");
        assert_eq!(peak.observe(at(600), 3.0), 45.0);
        // Ten minutes after the peak a node that has been healthy since reads healthy again
        // (a high watermark since start-up never came down).
        assert_eq!(peak.observe(at(611), 1.0), 3.0);
        assert_eq!(peak.observe(at(1300), 0.5), 0.5);
    }
}
