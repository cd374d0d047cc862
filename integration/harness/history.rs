//! A history checker for end-to-end tests: records every acknowledged append and every fact a
//! consumer read, then judges the delivery guarantees per source zone. Whatever was acknowledged
//! must arrive (nothing lost), exactly once (no duplicate), in the order the source stored it
//! (no reorder), and — when the append named its destination — at that zone and nowhere else
//! (no misdelivery: a relay must pass facts on, never keep them).
//!
//! A consumer that did not confirm a page reads it again, at the same forward offsets, after a
//! restart or a failed confirm: that is a *redelivery* and allowed. A *duplicate* is the same
//! `(from_zone, message_id)` stored at two different forward offsets, which the forward buffer's
//! idempotency must prevent. Order is judged on each message's first delivery, by the store offset
//! its append was acknowledged with, per source and destination. A fact whose append was never
//! acknowledged (the ack was lost to a kill) is *unknown*: reported, not a failure.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use bsfg_proto::FetchedFact;

/// Ids listed per category in a report line; the count is always complete.
const LISTED_IDS: usize = 20;

/// What happened, shared by every task of a test (clones record into the same history).
#[derive(Debug, Clone, Default)]
pub struct History(Arc<Mutex<Log>>);

#[derive(Debug, Default)]
struct Log {
    /// Source zone → message id → store offset of its acknowledged append.
    acked: BTreeMap<String, HashMap<String, u64>>,
    /// (source zone, message id) → the zone it is addressed to, when the append said so.
    addressed: HashMap<(String, String), String>,
    /// Every fact read, in the order read, redeliveries included.
    consumed: Vec<Consumed>,
}

#[derive(Debug)]
struct Consumed {
    source: String,
    id: String,
    dest: String,
    forward_offset: u64,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// An append from `source_zone` was acknowledged at `store_offset`. An id acknowledged again
    /// (an idempotent retry) keeps its first offset.
    pub fn acked(&self, source_zone: &str, message_id: &str, store_offset: u64) {
        let mut log = self.lock();
        let ids = log.acked.entry(source_zone.to_owned()).or_default();
        ids.entry(message_id.to_owned()).or_insert(store_offset);
    }

    /// [`History::acked`] of a fact addressed to `dest_zone`: it must be read there and only there.
    pub fn acked_to(&self, source_zone: &str, dest_zone: &str, message_id: &str, store_offset: u64) {
        self.acked(source_zone, message_id, store_offset);
        let key = (source_zone.to_owned(), message_id.to_owned());
        self.lock().addressed.insert(key, dest_zone.to_owned());
    }

    /// A consumer of `dest_zone`'s forward buffer read `fact`.
    pub fn consumed(&self, dest_zone: &str, fact: &FetchedFact) {
        let envelope = &fact.message.envelope;
        self.lock().consumed.push(Consumed {
            source: envelope.from_zone.clone(),
            id: envelope.message_id.clone(),
            dest: dest_zone.to_owned(),
            forward_offset: fact.offset,
        });
    }

    /// Acknowledged appends from `source_zone`.
    pub fn acked_count(&self, source_zone: &str) -> usize {
        self.lock().acked.get(source_zone).map_or(0, HashMap::len)
    }

    /// Acknowledged appends from `source_zone` read at least once.
    pub fn delivered_count(&self, source_zone: &str) -> usize {
        self.report().sources.get(source_zone).map_or(0, |s| s.delivered)
    }

    /// Whether every acknowledged append, from every source, was read: a `drain` condition.
    pub fn all_delivered(&self) -> bool {
        self.report().sources.values().all(|s| s.lost.is_empty())
    }

    /// Judges the history so far.
    pub fn report(&self) -> Report {
        let log = self.lock();
        let mut judge = Judge::default();
        for consumed in &log.consumed {
            let store_offset = log.acked.get(&consumed.source).and_then(|ids| ids.get(&consumed.id));
            let key = (consumed.source.clone(), consumed.id.clone());
            let addressed = log.addressed.get(&key).filter(|dest| **dest != consumed.dest);
            if addressed.is_some() {
                let report = judge.sources.entry(consumed.source.clone()).or_default();
                report
                    .misdelivered
                    .push(format!("{} at {}", consumed.id, consumed.dest));
                continue;
            }
            judge.consumed(consumed, store_offset.copied());
        }
        for (source, ids) in &log.acked {
            judge.acked(source, ids);
        }
        Report { sources: judge.sources }
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panicking recorder leaves the log consistent: every update is a single insert or push.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The state of one pass over the consumed facts.
#[derive(Default)]
struct Judge {
    sources: BTreeMap<String, SourceReport>,
    /// (source, id) → the (dest, forward offset) positions it was read at.
    positions: HashMap<(String, String), BTreeSet<(String, u64)>>,
    /// (source, dest) → highest store offset delivered so far.
    high_store_offset: HashMap<(String, String), u64>,
}

impl Judge {
    fn consumed(&mut self, c: &Consumed, store_offset: Option<u64>) {
        let report = self.sources.entry(c.source.clone()).or_default();
        let positions = self.positions.entry((c.source.clone(), c.id.clone())).or_default();
        if !positions.insert((c.dest.clone(), c.forward_offset)) {
            report.redelivered += 1;
            return;
        }
        if positions.len() > 1 {
            // Listed once however many copies; order is judged on the first delivery only.
            if positions.len() == 2 {
                report.duplicated.push(c.id.clone());
            }
            return;
        }
        let Some(store_offset) = store_offset else {
            report.unknown.push(c.id.clone());
            return;
        };
        report.delivered += 1;
        let high = self
            .high_store_offset
            .entry((c.source.clone(), c.dest.clone()))
            .or_default();
        if store_offset < *high {
            report.reordered.push(c.id.clone());
        } else {
            *high = store_offset;
        }
    }

    fn acked(&mut self, source: &str, ids: &HashMap<String, u64>) {
        let report = self.sources.entry(source.to_owned()).or_default();
        report.acked = ids.len();
        let mut lost: Vec<(u64, &String)> = ids
            .iter()
            .filter(|(id, _)| !self.positions.contains_key(&(source.to_owned(), (*id).clone())))
            .map(|(id, offset)| (*offset, id))
            .collect();
        lost.sort();
        report.lost = lost.into_iter().map(|(_, id)| id.clone()).collect();
    }
}

/// The verdict on a history, per source zone.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sources: BTreeMap<String, SourceReport>,
}

/// The verdict on the messages of one source zone. Id lists are in the order found (lost ones
/// by store offset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceReport {
    /// Distinct acknowledged appends.
    pub acked: usize,
    /// Distinct acknowledged appends read at least once.
    pub delivered: usize,
    /// Acknowledged, never read.
    pub lost: Vec<String>,
    /// Read at two or more different forward offsets.
    pub duplicated: Vec<String>,
    /// First read after a message of the same source stored later (per destination).
    pub reordered: Vec<String>,
    /// Read, but never acknowledged: allowed (an ack lost to a kill), not a failure.
    pub unknown: Vec<String>,
    /// Read at a zone other than the one its append addressed (`id at zone`).
    pub misdelivered: Vec<String>,
    /// Reads of a message again at the same forward offset: allowed (an unconfirmed page).
    pub redelivered: usize,
}

impl SourceReport {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.reordered.is_empty() && self.misdelivered.is_empty()
    }
}

impl Report {
    /// Nothing lost, duplicated or reordered from any source.
    pub fn is_clean(&self) -> bool {
        self.sources.values().all(SourceReport::is_clean)
    }

    /// Panics with the whole report unless it is clean.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "delivery guarantees violated:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (source, report) in &self.sources {
            writeln!(f, "{source}: {report}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SourceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acked {}, delivered {}", self.acked, self.delivered)?;
        for (name, ids) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("reordered", &self.reordered),
            ("unknown", &self.unknown),
            ("misdelivered", &self.misdelivered),
        ] {
            write!(f, ", {name} {}", ids.len())?;
            if !ids.is_empty() {
                let shown = ids[..ids.len().min(LISTED_IDS)].join(", ");
                let more = ids.len().saturating_sub(LISTED_IDS);
                let more = if more > 0 {
                    format!(", … {more} more")
                } else {
                    String::new()
                };
                write!(f, " [{shown}{more}]")?;
            }
        }
        write!(f, ", redelivered {}", self.redelivered)
    }
}
