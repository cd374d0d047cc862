//! How many facts the next pull asks for, as a plain value: pages are sized by what the link
//! carries — bytes per second and bytes per fact, measured on the pages that came back full —
//! so that a page takes about [`TARGET`] to cross, whatever the link. `replication.batch_limit`
//! is the most a page may hold, never the size a slow link must swallow whole.
//!
//! Only full pages measure the link: a page cut short by the backlog (or that waited on the
//! long-poll) says how much there was, not how fast the link is. The throughput is a moving
//! average, so one slow page (a retransmission burst) halves the next page at most; a fast page
//! lets the next one grow by at most [`GROWTH`].

use std::time::Duration;

/// How long a page should take to cross: short enough that the peer's frontier moves (and the
/// gate hears from the link) every second or so, long enough that round trips stay a small part
/// of a page on a slow link.
pub(super) const TARGET: Duration = Duration::from_secs(1);
/// The fewest facts a page asks for, whatever the link: a round trip per handful of facts would
/// be all overhead.
pub(super) const MIN_FACTS: u32 = 16;
/// The most a page may grow from one full page to the next.
const GROWTH: u32 = 4;
/// Weight of the newest measurement in the moving averages.
const WEIGHT: f64 = 0.5;

/// The size of the next page for one link.
#[derive(Debug, Clone)]
pub(super) struct PageSize {
    batch_limit: u32,
    limit: u32,
    /// Bytes per second the link carried (moving average of full pages); `None` before the first.
    rate: Option<f64>,
    /// Bytes per fact (moving average).
    fact_bytes: Option<f64>,
}

impl PageSize {
    /// Starts at `batch_limit` (at least [`MIN_FACTS`], at most `batch_limit`): the first full
    /// page measures the link.
    pub(super) fn new(batch_limit: u32) -> Self {
        Self {
            batch_limit: batch_limit.max(1),
            limit: batch_limit.max(1),
            rate: None,
            fact_bytes: None,
        }
    }

    /// Facts to ask for in the next page.
    pub(super) fn limit(&self) -> u32 {
        self.limit
    }

    /// A page of `facts` facts and `bytes` bytes came back `took` after it was asked for with
    /// limit `asked`.
    pub(super) fn on_page(&mut self, asked: u32, facts: usize, bytes: usize, took: Duration) {
        if facts == 0 {
            return;
        }
        let fact_bytes = bytes as f64 / facts as f64;
        self.fact_bytes = Some(average(self.fact_bytes, fact_bytes));
        if facts < asked as usize || took.is_zero() {
            return;
        }
        let rate = average(self.rate, bytes as f64 / took.as_secs_f64());
        self.rate = Some(rate);
        let fitting = rate * TARGET.as_secs_f64() / self.fact_bytes.unwrap_or(fact_bytes).max(1.0);
        let grown = asked.saturating_mul(GROWTH);
        let next = (fitting.min(f64::from(u32::MAX)) as u32).min(grown);
        self.limit = next.clamp(MIN_FACTS.min(self.batch_limit), self.batch_limit);
    }

    /// The next page's limit when a page may hold at most `bytes` (a bandwidth cap's budget for
    /// [`TARGET`]), by the facts' size seen so far; never below [`MIN_FACTS`].
    pub(super) fn capped(&self, bytes: u64) -> u32 {
        let Some(fact_bytes) = self.fact_bytes else {
            return self.limit.min(MIN_FACTS);
        };
        let fitting = (bytes as f64 / fact_bytes.max(1.0)).min(f64::from(u32::MAX)) as u32;
        self.limit.min(fitting.max(MIN_FACTS.min(self.batch_limit)))
    }
}

impl PageSize {
    /// A page asked with limit `asked` came as a frame of `frame_len` bytes, over the `max_frame`
    /// this node reads (the peer's own limit is larger): from now on the pages ask for what fits,
    /// with a tenth to spare, and at most half as many. `false` when a single fact did not fit:
    /// no smaller page can help.
    pub(super) fn refused(&mut self, asked: u32, frame_len: usize, max_frame: usize) -> bool {
        if asked <= 1 {
            return false;
        }
        let fitting = f64::from(asked) * max_frame as f64 / frame_len.max(1) as f64 * 0.9;
        let ceiling = (fitting as u32).min(asked / 2).max(1);
        self.batch_limit = self.batch_limit.min(ceiling);
        self.limit = self.limit.min(ceiling);
        true
    }
}

fn average(previous: Option<f64>, newest: f64) -> f64 {
    match previous {
        Some(previous) => previous * (1.0 - WEIGHT) + newest * WEIGHT,
        None => newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACT: usize = 250;

    /// Feeds full pages over a link of `rate` bytes per second until the size settles.
    fn settle(size: &mut PageSize, rate: f64) {
        for _ in 0..20 {
            let asked = size.limit();
            let bytes = asked as usize * FACT;
            size.on_page(
                asked,
                asked as usize,
                bytes,
                Duration::from_secs_f64(bytes as f64 / rate),
            );
        }
    }

    #[test]
    fn full_pages_size_the_next_one_to_cross_in_about_a_second() {
        let mut size = PageSize::new(1000);
        assert_eq!(size.limit(), 1000, "the first page measures the link");
        settle(&mut size, 40_000.0);
        assert_eq!(size.limit(), 160, "40 kB/s carries 160 facts of 250 bytes a second");
        settle(&mut size, 10_000_000.0);
        assert_eq!(size.limit(), 1000, "a fast link gets batch_limit, never more");
        settle(&mut size, 100.0);
        assert_eq!(size.limit(), MIN_FACTS, "never below the minimum");
    }

    #[test]
    fn growth_is_bounded_and_one_slow_page_only_halves_the_next() {
        let mut size = PageSize::new(10_000);
        settle(&mut size, 25_000.0);
        assert_eq!(size.limit(), 100);
        size.on_page(100, 100, 100 * FACT, Duration::from_millis(10));
        assert_eq!(size.limit(), 400, "at most four times larger after one fast page");
        let mut size = PageSize::new(10_000);
        settle(&mut size, 25_000.0);
        size.on_page(100, 100, 100 * FACT, Duration::from_secs(100));
        assert!((50..=51).contains(&size.limit()), "{}", size.limit());
    }

    #[test]
    fn pages_that_are_not_full_measure_the_facts_but_not_the_link() {
        let mut size = PageSize::new(1000);
        size.on_page(1000, 3, 3 * 400, Duration::from_secs(30));
        assert_eq!(
            size.limit(),
            1000,
            "a long-poll that found three facts is no measure of the link"
        );
        assert_eq!(size.fact_bytes, Some(400.0), "but the facts' size is known");
        size.on_page(1000, 0, 0, Duration::from_secs(1));
        assert_eq!(size.limit(), 1000);
    }

    #[test]
    fn a_page_over_the_frame_limit_lowers_the_ceiling_for_good() {
        let mut size = PageSize::new(1000);
        // 1000 facts came as 8 MB; this node reads at most 1 MB.
        assert!(size.refused(1000, 8_000_000, 1_000_000));
        assert_eq!(size.limit(), 112, "what fits, with a tenth to spare");
        settle(&mut size, 100_000_000.0);
        assert_eq!(size.limit(), 112, "a fast link no longer grows it past the ceiling");
        assert!(size.refused(112, 1_200_000, 1_000_000), "still too large: fewer again");
        assert_eq!(size.limit(), 56, "at most half as many each time");
        assert!(size.refused(2, 1_100_000, 1_000_000));
        assert_eq!(size.limit(), 1);
        assert!(
            !size.refused(1, 2_000_000, 1_000_000),
            "one fact over the limit: nothing helps"
        );
    }

    #[test]
    fn a_byte_budget_caps_the_page_but_not_below_the_minimum() {
        let mut size = PageSize::new(1000);
        assert_eq!(
            size.capped(1 << 20),
            MIN_FACTS,
            "nothing known about the facts: a small page first"
        );
        size.on_page(1000, 10, 10 * FACT, Duration::from_millis(1));
        assert_eq!(size.capped(25_000), 100);
        assert_eq!(size.capped(10), MIN_FACTS);
        let mut small = PageSize::new(5);
        small.on_page(5, 1, FACT, Duration::from_millis(1));
        assert_eq!(small.capped(10), 5, "a batch_limit below the minimum still holds");
    }
}
