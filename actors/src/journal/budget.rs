//! The disk budget: how many more bytes the journal may write for new facts before the data
//! directory's file system reaches what the node must keep free. The `Backpressure` actor sets it
//! from every measurement of the disk; the writer spends it on every new fact, appended or
//! inserted, at [`COST`] times its size (the log takes it now, a table file at the next flush),
//! and refuses facts once it is spent. So a burst of appends between two measurements cannot run
//! the disk into what RocksDB itself needs; confirms, cursors and deletions never spend it.
//!
//! What it refused is kept for the next measurement ([`DiskBudget::take_refused`]): a page that
//! does not fit above the need is as good as a low disk (its pull waits, confirmed facts are
//! reclaimed to make room), and is said so, rather than pulled again and refused for ever.

use std::sync::atomic::{AtomicU64, Ordering};

/// Disk bytes written per byte of a new fact, until it is compacted.
pub(super) const COST: u64 = 2;
/// No measurement yet: nothing is refused.
const UNMEASURED: u64 = u64::MAX;

#[derive(Debug)]
pub(super) struct DiskBudget {
    left: AtomicU64,
    /// The largest cost refused since the last [`DiskBudget::take_refused`].
    refused: AtomicU64,
}

impl Default for DiskBudget {
    fn default() -> Self {
        Self {
            left: AtomicU64::new(UNMEASURED),
            refused: AtomicU64::new(0),
        }
    }
}

impl DiskBudget {
    /// A fresh measurement: `bytes` may be written.
    pub(super) fn set(&self, bytes: u64) {
        self.left.store(bytes.min(UNMEASURED - 1), Ordering::Release);
    }

    /// Spends the cost of a fact of `bytes`; `false`, spending nothing, when it does not fit.
    pub(super) fn spend(&self, bytes: u64) -> bool {
        let cost = bytes.saturating_mul(COST);
        let spent = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| match left {
                UNMEASURED => Some(left),
                left => left.checked_sub(cost),
            });
        if spent.is_err() {
            self.refused.fetch_max(cost, Ordering::AcqRel);
        }
        spent.is_ok()
    }

    /// The largest cost refused since the last call (0 when none), in disk bytes.
    pub(super) fn take_refused(&self) -> u64 {
        self.refused.swap(0, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_spend_twice_their_size_until_the_budget_is_gone() {
        let budget = DiskBudget::default();
        assert!(budget.spend(u64::MAX / 4), "nothing measured yet: nothing refused");
        budget.set(1000);
        assert!(
            budget.spend(300) && !budget.spend(300),
            "600, then 600 more does not fit"
        );
        assert!(budget.spend(200) && !budget.spend(1), "400 left, then nothing");
        assert_eq!(budget.take_refused(), 600, "the largest cost refused");
        assert_eq!(budget.take_refused(), 0, "taken");
        budget.set(10);
        assert!(budget.spend(5), "a new measurement replaces what was left");
    }
}
