//! What the `Backpressure` actor tells operators, each event writing its log record and its
//! metric in one place: a fact lost to `drop_oldest` (`fact_dropped`) or to retention
//! (`fact_expired`), both at ERROR with the fact's identity; facts kept past their retention
//! because the node is safety-critical; and a buffer starting or stopping to block its input.

use std::{collections::HashMap, sync::Arc};

use slog::{error, info, warn, Logger};

use super::{planner::Kept, planner::Outcome, BackpressureConfig, UsageReport};
use crate::{
    metrics::Metrics,
    storage::{DeleteReason, Log, Usage},
};

pub(super) struct Reporter {
    metrics: Arc<Metrics>,
    log: Logger,
    config: BackpressureConfig,
    /// The oldest kept fact last reported per buffer and peer: each is reported once, not at
    /// every sweep.
    reported_kept: HashMap<(Log, String), u64>,
}

impl Reporter {
    pub(super) fn new(metrics: Arc<Metrics>, log: Logger, config: &BackpressureConfig) -> Self {
        Self {
            metrics,
            log,
            config: config.clone(),
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
        let (buffer, zone_key) = match log {
            Log::Store => ("store", "to_zone"),
            Log::Forward => ("forward", "from_zone"),
        };
        match reason {
            DeleteReason::Confirmed => {}
            DeleteReason::Dropped => {
                self.metrics.dropped_facts.inc();
                error!(self.log, "fact_dropped"; "message_id" => message_id, zone_key => zone, "offset" => offset,
                    "buffer" => buffer, "reason" => "store buffer full and store.backpressure = \"drop_oldest\"");
            }
            DeleteReason::Expired => {
                self.metrics.expired_facts.inc();
                let retention = self.config.limits(log).retention;
                error!(self.log, "fact_expired"; "message_id" => message_id, zone_key => zone, "offset" => offset,
                    "buffer" => buffer, "reason" => format!("unconfirmed after the {buffer} retention of {retention:?}"));
            }
        }
    }

    fn kept(&mut self, kept: &Kept) {
        if self.reported_kept.insert((kept.log, kept.zone.clone()), kept.offset) == Some(kept.offset) {
            return;
        }
        let buffer = match kept.log {
            Log::Store => "store",
            Log::Forward => "forward",
        };
        warn!(self.log, "facts_kept_past_retention"; "buffer" => buffer, "peer" => &kept.zone,
            "offset" => kept.offset, "message_id" => &kept.message_id,
            "reason" => "unconfirmed facts outlive the retention because store.safety_critical = true");
    }

    /// A buffer started or stopped blocking its input.
    pub(super) fn blocked(&self, log: Log, blocked: bool, usage: &Usage) {
        let report = UsageReport::new(usage, &self.config);
        let fill = match log {
            Log::Store => report.store,
            Log::Forward => report.forward,
        };
        let percent = (fill.fill_percent * 10.0).round() / 10.0;
        let (high, low, capacity) = (
            self.config.high_watermark_percent,
            self.config.low_watermark_percent,
            fill.capacity_bytes,
        );
        match (log, blocked) {
            (Log::Store, true) => {
                warn!(self.log, "appends_rejected"; "buffer" => "store", "buffer_fill_percent" => percent,
                "high_watermark_percent" => high, "capacity_bytes" => capacity, "reason" => "store buffer full")
            }
            (Log::Store, false) => {
                info!(self.log, "appends_accepted"; "buffer" => "store", "buffer_fill_percent" => percent,
                "low_watermark_percent" => low)
            }
            (Log::Forward, true) => {
                warn!(self.log, "pulls_paused"; "buffer" => "forward", "buffer_fill_percent" => percent,
                "high_watermark_percent" => high, "capacity_bytes" => capacity, "reason" => "forward buffer full")
            }
            (Log::Forward, false) => {
                info!(self.log, "pulls_resumed"; "buffer" => "forward", "buffer_fill_percent" => percent,
                "low_watermark_percent" => low)
            }
        }
    }
}
