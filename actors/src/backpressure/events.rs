//! What the `Backpressure` actor tells operators, as typed events (`crate::events`): a fact lost
//! to `drop_oldest` or to retention, facts kept past their retention because the node is
//! safety-critical (each oldest kept fact once, not at every sweep), and a buffer starting or
//! stopping to block its input.

use std::collections::HashMap;

use super::{planner::Kept, planner::Outcome, BackpressureConfig, UsageReport};
use crate::{
    events::{BufferBlocked, FactLost, FactsKeptPastRetention, Loss, StoreExhausted, Telemetry},
    storage::{DeleteReason, Log, Usage},
};

pub(super) struct Reporter {
    telemetry: Telemetry,
    config: BackpressureConfig,
    /// This node relays: its store exhausted stops its pulls.
    relays: bool,
    /// The oldest kept fact last reported per buffer and peer: each is reported once, not at
    /// every sweep.
    reported_kept: HashMap<(Log, String), u64>,
}

impl Reporter {
    pub(super) fn new(telemetry: Telemetry, config: &BackpressureConfig, relays: bool) -> Self {
        Self {
            telemetry,
            config: config.clone(),
            relays,
            reported_kept: HashMap::new(),
        }
    }

    /// Reports every loss in what a job deleted, and what it kept past retention.
    pub(super) fn outcome(&mut self, outcome: &Outcome) {
        for fact in &outcome.applied.store {
            self.lost(Log::Store, fact.reason, fact.offset, &fact.message_id, &fact.to_zone);
        }
        for fact in outcome.applied.forward.iter().filter(|f| f.log) {
            self.lost(
                Log::Forward,
                fact.reason,
                fact.offset,
                &fact.message_id,
                &fact.from_zone,
            );
        }
        for kept in &outcome.kept {
            self.kept(kept);
        }
    }

    fn lost(&self, log: Log, reason: DeleteReason, offset: u64, message_id: &str, zone: &str) {
        let loss = match reason {
            DeleteReason::Confirmed | DeleteReason::Reclaimed | DeleteReason::Forgotten => return,
            DeleteReason::Dropped => Loss::Dropped,
            DeleteReason::Expired => Loss::Expired {
                retention: self.config.limits(log).retention,
            },
        };
        self.telemetry.emit(FactLost {
            log,
            loss,
            offset,
            message_id,
            zone,
        });
    }

    fn kept(&mut self, kept: &Kept) {
        if self.reported_kept.insert((kept.log, kept.zone.clone()), kept.offset) == Some(kept.offset) {
            return;
        }
        self.telemetry.emit(FactsKeptPastRetention {
            log: kept.log,
            peer: &kept.zone,
            offset: kept.offset,
            message_id: &kept.message_id,
        });
    }

    /// A buffer started or stopped blocking its input.
    pub(super) fn blocked(&self, log: Log, blocked: bool, usage: &Usage) {
        let report = UsageReport::new(usage, &self.config);
        let fill = match log {
            Log::Store => report.store,
            Log::Forward => report.forward,
        };
        self.telemetry.emit(BufferBlocked {
            log,
            blocked,
            fill_percent: fill.fill_percent,
            high_watermark_percent: self.config.policy.high_watermark_percent(),
            low_watermark_percent: self.config.policy.low_watermark_percent(),
            capacity_bytes: fill.capacity_bytes,
        });
    }

    /// A relay's store became exhausted (it takes no relayed fact) or stopped being so.
    pub(super) fn exhausted(&self, at: bool, usage: &Usage) {
        if !self.relays {
            return;
        }
        let fill = UsageReport::new(usage, &self.config).store;
        self.telemetry.emit(StoreExhausted {
            at,
            fill_percent: fill.fill_percent,
            capacity_bytes: fill.capacity_bytes,
        });
    }
}
