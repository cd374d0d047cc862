//! What happens to facts outside the happy path: a pulled fact refused by the receipt rule
//! (wrong origin; a fact addressed elsewhere is the relay's to judge, see `relay`) or conflicting with stored content (both counted in
//! `bsfg_rejected_facts_total{reason}`, with the artifact refusals of `artifacts`), duplicates recognised, unconfirmed facts lost
//! to `drop_oldest` or to retention (ERROR, with the fact's identity), facts kept past retention
//! because the node is safety-critical, a buffer starting or stopping to block its input, a
//! deletion the journal could not apply, and a wall clock stepped forward under retention.

use std::{fmt::Display, time::Duration};

use slog::{error, info, warn};

use super::{Event, Telemetry};
use crate::{metrics::Metrics, storage::Log};

pub const FACT_REJECTED: &str = "fact_rejected";
pub const FACT_CONFLICT: &str = "fact_conflict";
pub const FACT_DROPPED: &str = "fact_dropped";
pub const FACT_EXPIRED: &str = "fact_expired";
pub const FACTS_KEPT_PAST_RETENTION: &str = "facts_kept_past_retention";
pub const APPENDS_REJECTED: &str = "appends_rejected";
pub const APPENDS_ACCEPTED: &str = "appends_accepted";
pub const PULLS_PAUSED: &str = "pulls_paused";
pub const PULLS_RESUMED: &str = "pulls_resumed";
pub const DELETION_FAILED: &str = "deletion_failed";
pub const CLOCK_STEPPED: &str = "clock_stepped";
pub const RETENTION_RESUMED: &str = "retention_resumed";

/// Why a pulled fact was refused: the bounded `reason` of `bsfg_rejected_facts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// It does not come from where it claims (SPEC §2's receipt rule): its `from_zone` is not
    /// the peer it came from, nor, for a relayed fact, routed through the peer that relayed it.
    WrongOrigin,
    /// Its id is already stored here with other content from the same zone.
    Conflict,
    /// Its artifact's key holds a referenced local object with other content.
    ArtifactConflict,
    /// Its artifact reference does not parse.
    BadArtifactReference,
}

impl Rejection {
    pub const ALL: [Self; 4] = [
        Self::WrongOrigin,
        Self::Conflict,
        Self::ArtifactConflict,
        Self::BadArtifactReference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongOrigin => "wrong_origin",
            Self::Conflict => "conflict",
            Self::ArtifactConflict => "artifact_conflict",
            Self::BadArtifactReference => "bad_artifact_reference",
        }
    }

    pub(super) fn count(self, metrics: &Metrics, facts: usize) {
        let counter = metrics.rejected_facts.with_label_values(&[self.as_str()]);
        counter.inc_by(facts as u64);
    }
}

/// A pulled fact the receipt rule refuses (`WrongOrigin`): skipped, and confirmed with its page.
/// Logged at ERROR: a peer presenting facts that are not its own is misconfigured or hostile.
pub struct FactRejected<'a> {
    pub peer: &'a str,
    pub message_id: &'a str,
    pub from_zone: &'a str,
    pub to_zone: &'a str,
    pub hops: &'a [String],
    pub rejection: Rejection,
}

impl Event for FactRejected<'_> {
    fn emit(self, t: &Telemetry) {
        self.rejection.count(&t.metrics, 1);
        let reason = match self.hops.is_empty() {
            true => "from_zone is not the zone of the peer it was pulled from",
            false => "a relayed fact must come from its last hop, on this node's route to its from_zone",
        };
        error!(t.log, "{}", FACT_REJECTED; "peer" => self.peer, "message_id" => self.message_id,
            "from_zone" => self.from_zone, "to_zone" => self.to_zone, "hops" => self.hops.join(","),
            "reason" => reason, "kind" => self.rejection.as_str());
    }
}

/// Pulled facts whose id is already stored here with other content from the same zone.
pub struct FactConflict<'a> {
    pub peer: &'a str,
    pub count: usize,
}

impl Event for FactConflict<'_> {
    fn emit(self, t: &Telemetry) {
        Rejection::Conflict.count(&t.metrics, self.count);
        warn!(t.log, "{}", FACT_CONFLICT; "peer" => self.peer, "count" => self.count,
            "reason" => "message_id already holds other content from this zone");
    }
}

/// Facts recognised as duplicates by a buffer (counted, not logged: retries are normal).
pub struct FactsDuplicated {
    pub log: Log,
    pub count: usize,
}

impl Event for FactsDuplicated {
    fn emit(self, t: &Telemetry) {
        if self.count > 0 {
            let counter = t.metrics.duplicate_facts.with_label_values(&[self.log.as_str()]);
            counter.inc_by(self.count as u64);
        }
    }
}

/// Why an unconfirmed fact was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The store buffer was full under `drop_oldest`.
    Dropped,
    /// It outlived the buffer's retention.
    Expired { retention: Duration },
}

/// An unconfirmed fact was deleted: someone waiting for it will never get it.
pub struct FactLost<'a> {
    pub log: Log,
    pub loss: Loss,
    pub offset: u64,
    pub message_id: &'a str,
    /// `to_zone` of a store fact, `from_zone` of a forward fact.
    pub zone: &'a str,
}

impl Event for FactLost<'_> {
    fn emit(self, t: &Telemetry) {
        let buffer = self.log.as_str();
        let zone_key = match self.log {
            Log::Store => "to_zone",
            Log::Forward => "from_zone",
        };
        match self.loss {
            Loss::Dropped => {
                t.metrics.dropped_facts.inc();
                error!(t.log, "{}", FACT_DROPPED; "message_id" => self.message_id, zone_key => self.zone,
                    "offset" => self.offset, "buffer" => buffer,
                    "reason" => "store buffer full and store.backpressure = \"drop_oldest\"");
            }
            Loss::Expired { retention } => {
                t.metrics.expired_facts.inc();
                error!(t.log, "{}", FACT_EXPIRED; "message_id" => self.message_id, zone_key => self.zone,
                    "offset" => self.offset, "buffer" => buffer,
                    "reason" => format!("unconfirmed after the {buffer} retention of {retention:?}"));
            }
        }
    }
}

/// The oldest unconfirmed fact of a buffer and peer outlives the retention because the node is
/// safety-critical.
pub struct FactsKeptPastRetention<'a> {
    pub log: Log,
    pub peer: &'a str,
    pub offset: u64,
    pub message_id: &'a str,
}

impl Event for FactsKeptPastRetention<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(t.log, "{}", FACTS_KEPT_PAST_RETENTION; "buffer" => self.log.as_str(), "peer" => self.peer,
            "offset" => self.offset, "message_id" => self.message_id,
            "reason" => "unconfirmed facts outlive the retention because store.safety_critical = true");
    }
}

/// A buffer started (`blocked`) or stopped blocking its input: the store buffer refuses appends,
/// the forward buffer pauses pulls.
pub struct BufferBlocked {
    pub log: Log,
    pub blocked: bool,
    /// Logged rounded to one decimal.
    pub fill_percent: f64,
    pub high_watermark_percent: u8,
    pub low_watermark_percent: u8,
    pub capacity_bytes: u64,
}

impl Event for BufferBlocked {
    fn emit(self, t: &Telemetry) {
        let (buffer, percent) = (self.log.as_str(), (self.fill_percent * 10.0).round() / 10.0);
        let (high, low, capacity) = (
            self.high_watermark_percent,
            self.low_watermark_percent,
            self.capacity_bytes,
        );
        match (self.log, self.blocked) {
            (Log::Store, true) => warn!(t.log, "{}", APPENDS_REJECTED; "buffer" => buffer,
                "buffer_fill_percent" => percent, "high_watermark_percent" => high,
                "capacity_bytes" => capacity, "reason" => "store buffer full"),
            (Log::Store, false) => info!(t.log, "{}", APPENDS_ACCEPTED; "buffer" => buffer,
                "buffer_fill_percent" => percent, "low_watermark_percent" => low),
            (Log::Forward, true) => warn!(t.log, "{}", PULLS_PAUSED; "buffer" => buffer,
                "buffer_fill_percent" => percent, "high_watermark_percent" => high,
                "capacity_bytes" => capacity, "reason" => "forward buffer full"),
            (Log::Forward, false) => info!(t.log, "{}", PULLS_RESUMED; "buffer" => buffer,
                "buffer_fill_percent" => percent, "low_watermark_percent" => low),
        }
    }
}

/// A relay's store buffer is exhausted (halfway from its high watermark to its capacity): it takes
/// no relayed fact on any link until it is below again (`pulls_paused` / `pulls_resumed` with
/// `buffer: store`).
pub struct StoreExhausted {
    pub at: bool,
    pub fill_percent: f64,
    pub capacity_bytes: u64,
}

impl Event for StoreExhausted {
    fn emit(self, t: &Telemetry) {
        let percent = (self.fill_percent * 10.0).round() / 10.0;
        match self.at {
            true => warn!(t.log, "{}", PULLS_PAUSED; "buffer" => "store", "buffer_fill_percent" => percent,
                "capacity_bytes" => self.capacity_bytes,
                "reason" => "store buffer exhausted: this relay takes no relayed fact from any peer until its next hops take what it holds"),
            false => info!(t.log, "{}", PULLS_RESUMED; "buffer" => "store", "buffer_fill_percent" => percent),
        }
    }
}

/// A deletion job (trim or retention sweep) failed in planning or in the journal; the next one
/// tries again.
pub struct DeletionFailed<'a> {
    pub reason: &'a dyn Display,
}

impl Event for DeletionFailed<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(t.log, "{}", DELETION_FAILED; "reason" => %self.reason);
    }
}

pub(super) fn init_series(metrics: &Metrics) {
    for log in [Log::Store, Log::Forward] {
        metrics.duplicate_facts.with_label_values(&[log.as_str()]);
    }
    for rejection in Rejection::ALL {
        metrics.rejected_facts.with_label_values(&[rejection.as_str()]);
    }
}

/// The wall clock jumped ahead of the time counted since the node started (see
/// `backpressure::clock`): retention does not follow it.
pub struct ClockStepped {
    pub ahead: Duration,
}

impl Event for ClockStepped {
    fn emit(self, t: &Telemetry) {
        warn!(t.log, "{}", CLOCK_STEPPED; "ahead_seconds" => self.ahead.as_secs(),
            "reason" => "the wall clock jumped ahead of the time this node has counted since it started; retention \
                keeps counting from before the jump for one retention period, so no fact expires early (facts are \
                kept longer); check NTP and the real-time clock");
    }
}

/// A start found the wall clock more than a minute past the newest fact stored before it: the
/// node was stopped that long, or the clock was set ahead meanwhile (see `clock`). Retention
/// counts from that fact for one retention period. A WARN when that is longer than the longest
/// retention (every fact would have expired at once), else an INFO.
pub struct RetentionResumed {
    pub last_stored_unix_ms: u64,
    pub ahead: Duration,
    /// The longest retention of the buffers.
    pub longest: Duration,
}

impl Event for RetentionResumed {
    fn emit(self, t: &Telemetry) {
        let reason = "the time since the newest fact stored before this start (a stop, or a clock set ahead \
            meanwhile) counts toward retention only once one retention period has passed, so no fact expires \
            early";
        let (last, ahead) = (self.last_stored_unix_ms, self.ahead.as_secs());
        if self.ahead > self.longest {
            warn!(t.log, "{}", RETENTION_RESUMED; "last_stored_unix_ms" => last, "ahead_seconds" => ahead,
                "reason" => format!("{reason}; the wall clock is further ahead than the longest retention: \
                    check NTP and the real-time clock if the node was not stopped that long"));
        } else {
            info!(t.log, "{}", RETENTION_RESUMED; "last_stored_unix_ms" => last, "ahead_seconds" => ahead,
                "reason" => reason);
        }
    }
}
