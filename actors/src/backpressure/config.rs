//! The configuration of both buffers' limits (`[store]` and `[forward]`, SPEC §5), as plain data
//! whose rules are checked once, when a [`Policy`] is made: a policy that breaks them cannot
//! exist, so neither the node nor the decision core checks it again.

use std::time::Duration;

use serde::Deserialize;

use super::core::Watermarks;
use crate::{journal::JournalConfig, storage::Log};

/// The store buffer's when-full policy (SPEC §5), applied once fill reaches the high watermark
/// and confirmed facts have already been reclaimed. Written `"reject"` or `"drop_oldest"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// AppendFact fails with the retryable `RESOURCE_EXHAUSTED` until fill falls below the low
    /// watermark; nothing already acknowledged is lost.
    #[default]
    Reject,
    /// The oldest unconfirmed facts are deleted until fill is at or below the low watermark; each
    /// loss is counted in `bsfg_dropped_facts_total` and logged. Not allowed on a safety-critical
    /// node.
    DropOldest,
}

/// Capacity and retention of one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    pub capacity_bytes: u64,
    pub retention: Duration,
}

/// How a full buffer behaves: the when-full policy, safety-criticality and watermarks of
/// `[store]`, which apply to the forward buffer too. Made only by [`Policy::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    when_full: WhenFull,
    safety_critical: bool,
    high_watermark_percent: u8,
    low_watermark_percent: u8,
}

/// A rule a [`Policy`] must obey. Each names what to change; the configuration loader adds the
/// key path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{high} is not a percentage (must be at most 100)")]
    HighNotAPercentage { high: u8 },
    #[error("{low} must be below store.high_watermark_percent ({high})")]
    LowNotBelowHigh { low: u8, high: u8 },
    #[error(
        "must be at least 1, got 0: a buffer held at the high watermark is released when its fill falls below the \
         low one, and no fill is below 0"
    )]
    LowZero,
    #[error(
        "drop_oldest is not allowed with store.safety_critical = true (it would delete unconfirmed facts); use \"reject\""
    )]
    DropsSafetyCritical,
}

impl Policy {
    /// Checks, in this order: the high watermark is a percentage, the low one is below it and
    /// above 0, and a safety-critical node (one that never loses an unconfirmed fact) does not drop.
    pub fn new(
        when_full: WhenFull,
        safety_critical: bool,
        high_watermark_percent: u8,
        low_watermark_percent: u8,
    ) -> Result<Self, PolicyError> {
        let (high, low) = (high_watermark_percent, low_watermark_percent);
        if high > 100 {
            return Err(PolicyError::HighNotAPercentage { high });
        }
        if low >= high {
            return Err(PolicyError::LowNotBelowHigh { low, high });
        }
        if low == 0 {
            return Err(PolicyError::LowZero);
        }
        if safety_critical && when_full == WhenFull::DropOldest {
            return Err(PolicyError::DropsSafetyCritical);
        }
        Ok(Self {
            when_full,
            safety_critical,
            high_watermark_percent,
            low_watermark_percent,
        })
    }

    pub fn when_full(&self) -> WhenFull {
        self.when_full
    }

    /// Never drop or expire an unconfirmed fact.
    pub fn safety_critical(&self) -> bool {
        self.safety_critical
    }

    pub fn high_watermark_percent(&self) -> u8 {
        self.high_watermark_percent
    }

    /// Always below the high watermark.
    pub fn low_watermark_percent(&self) -> u8 {
        self.low_watermark_percent
    }
}

/// Plain configuration of the `Backpressure` actor: both buffers' limits, the policy, and the
/// free space kept on the data directory's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackpressureConfig {
    pub store: BufferLimits,
    pub forward: BufferLimits,
    pub policy: Policy,
    /// `node.disk_reserve_bytes`: below this much free space (plus what RocksDB will still
    /// write by itself) appends are refused and pulls pause (see `disk`).
    pub disk_reserve_bytes: u64,
}

impl BackpressureConfig {
    pub fn limits(&self, log: Log) -> BufferLimits {
        match log {
            Log::Store => self.store,
            Log::Forward => self.forward,
        }
    }

    pub fn watermarks(&self, log: Log) -> Watermarks {
        let capacity = u128::from(self.limits(log).capacity_bytes);
        let of = |percent: u8| (capacity * u128::from(percent) / 100) as u64;
        Watermarks {
            high: of(self.policy.high_watermark_percent),
            low: of(self.policy.low_watermark_percent),
        }
    }

    /// The journal's part of the policy: under `reject` the store buffer never grows past its
    /// capacity, whatever the timing (the actor's admission flag may lag by one commit).
    pub fn journal(&self) -> JournalConfig {
        JournalConfig {
            store_byte_limit: (self.policy.when_full == WhenFull::Reject).then_some(self.store.capacity_bytes),
            ..JournalConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_that_breaks_a_rule_cannot_be_made() {
        use WhenFull::{DropOldest, Reject};
        assert!(Policy::new(DropOldest, false, 80, 70).is_ok());
        assert!(Policy::new(Reject, true, 100, 1).is_ok());
        let refused = [
            (
                Policy::new(Reject, false, 101, 70),
                PolicyError::HighNotAPercentage { high: 101 },
            ),
            (
                Policy::new(Reject, false, 70, 70),
                PolicyError::LowNotBelowHigh { low: 70, high: 70 },
            ),
            (Policy::new(DropOldest, true, 80, 70), PolicyError::DropsSafetyCritical),
            // A buffer blocked at the high watermark is released below the low one: never below 0.
            (Policy::new(Reject, false, 80, 0), PolicyError::LowZero),
            // The first broken rule is the one reported.
            (
                Policy::new(DropOldest, true, 101, 70),
                PolicyError::HighNotAPercentage { high: 101 },
            ),
        ];
        for (made, error) in refused {
            assert_eq!(made, Err(error));
        }
        let text = PolicyError::DropsSafetyCritical.to_string();
        assert!(
            text.contains("drop_oldest") && text.contains("safety_critical"),
            "{text}"
        );
    }

    #[test]
    fn only_reject_bounds_the_journal_by_the_store_capacity() {
        let limits = BufferLimits {
            capacity_bytes: 1000,
            retention: Duration::from_secs(60),
        };
        let config = |when_full| BackpressureConfig {
            store: limits,
            forward: limits,
            policy: Policy::new(when_full, false, 80, 70).expect("valid"),
            disk_reserve_bytes: 0,
        };
        assert_eq!(config(WhenFull::Reject).journal().store_byte_limit, Some(1000));
        assert_eq!(config(WhenFull::DropOldest).journal().store_byte_limit, None);
    }
}
