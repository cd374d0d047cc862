//! Read-only planning of deletion jobs, run on the blocking pool and never on the writer. Plans
//! are bounded ([`BATCH`] entries) and read in pages, so a large sweep becomes many short plans
//! and never holds up appends. "Confirmed" comes from a snapshot of the journal's cursors; cursors
//! move forward, so a stale snapshot is merely conservative, except across an operator's rewind
//! of a consumer: the journal checks forward facts planned as confirmed against the cursors of
//! the moment it applies the plan (`journal::delete`).
//!
//! - Store buffer: a fact is confirmed when its offset is at or below the frontier of its peer
//!   (the peer that pulls it). Each peer's facts are a prefix of the per-peer route index in
//!   offset (= age) order, so trims and sweeps read each peer from its oldest entry and stop early.
//!   A trim reclaims confirmed facts but keeps their ids in the store's dedupe window
//!   (`store_age`) for the retention, so a producer's retry after it is still a duplicate; sweeps
//!   walk that window too, after the logs.
//! - Forward buffer: a fact is confirmed when its offset is at or below every known consumer's
//!   cursor (no consumer known: nothing is confirmed). Trims delete log entries only; sweeps walk
//!   the dedupe window (`fwd_age`) and take the log entry along when it is still there.

use std::collections::HashMap;

use super::core::Job;
use crate::{
    journal::DeletePlan,
    storage::{CursorKey, DeleteReason, ForwardDelete, Log, LogRecord, Storage, StorageError, StoreDelete},
};

/// Most entries in one plan.
pub const BATCH: usize = 5_000;
/// Entries per read while planning.
const PAGE: usize = 256;

/// An unconfirmed fact past its retention that a safety-critical node keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub log: Log,
    /// The peer that pulls it (store) or its `from_zone` (forward).
    pub zone: String,
    pub offset: u64,
    pub message_id: String,
}

/// A plan and what planning noticed.
#[derive(Debug, Default)]
pub struct Planned {
    pub plan: DeletePlan,
    /// The plan reached [`BATCH`]: more may be due at once.
    pub full_batch: bool,
    pub kept: Vec<Kept>,
}

/// A job's result: the deletions the journal applied.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: DeletePlan,
    pub full_batch: bool,
    pub kept: Vec<Kept>,
}

pub fn plan(storage: &dyn Storage, job: &Job, cursors: &HashMap<CursorKey, u64>) -> Result<Planned, StorageError> {
    let confirmed = Confirmed(cursors);
    match *job {
        Job::Trim {
            log: Log::Store,
            bytes,
            drop_unconfirmed,
        } => trim_store(storage, &confirmed, bytes, drop_unconfirmed),
        Job::Trim {
            log: Log::Forward,
            bytes,
            ..
        } => trim_forward(storage, confirmed.by_consumers(), bytes),
        Job::Sweep {
            log: Log::Store,
            cutoff_unix_ms,
            expire_unconfirmed,
        } => sweep_store(storage, &confirmed, cutoff_unix_ms, expire_unconfirmed),
        Job::Sweep {
            log: Log::Forward,
            cutoff_unix_ms,
            expire_unconfirmed,
        } => sweep_forward(storage, confirmed.by_consumers(), cutoff_unix_ms, expire_unconfirmed),
    }
}

struct Confirmed<'a>(&'a HashMap<CursorKey, u64>);

impl Confirmed<'_> {
    fn frontier(&self, zone: &str) -> u64 {
        self.0.get(&CursorKey::Peer(zone.to_owned())).copied().unwrap_or(0)
    }

    /// The forward offset every known consumer has confirmed (0 when none is known).
    fn by_consumers(&self) -> u64 {
        CursorKey::consumed(self.0)
    }
}

/// Entries from `read(after, limit)`, oldest first, while `more` holds, at most `budget`.
fn prefix(
    read: impl Fn(u64, usize) -> Result<Vec<LogRecord>, StorageError>,
    budget: usize,
    mut more: impl FnMut(&LogRecord) -> bool,
) -> Result<Vec<LogRecord>, StorageError> {
    let mut taken = Vec::new();
    let mut after = 0;
    while taken.len() < budget {
        let page = read(after, PAGE.min(budget - taken.len()))?;
        let Some(last) = page.last().map(|r| r.offset) else {
            break;
        };
        for record in page {
            if !more(&record) {
                return Ok(taken);
            }
            taken.push(record);
        }
        after = last;
    }
    Ok(taken)
}

/// A `more` for [`prefix`]: true until `bytes` have been taken.
fn until_freed(bytes: u64) -> impl FnMut(&LogRecord) -> bool {
    let mut freed = 0;
    move |record| {
        let more = freed < bytes;
        freed += record.stored_bytes;
        more
    }
}

/// The deletion of `record`, read from `peer`'s route index.
fn store_delete(peer: &str, record: LogRecord, reason: DeleteReason) -> Result<StoreDelete, StorageError> {
    let envelope = record.message()?.envelope;
    // A relayed fact carries this zone in its hops; one produced here has none.
    let relayed = !envelope.hops.is_empty();
    Ok(StoreDelete {
        offset: record.offset,
        peer: peer.to_owned(),
        origin: relayed.then_some(envelope.from_zone),
        to_zone: envelope.to_zone,
        message_id: envelope.message_id,
        reason,
    })
}

fn trim_store(
    storage: &dyn Storage,
    confirmed: &Confirmed,
    bytes: u64,
    drop_unconfirmed: bool,
) -> Result<Planned, StorageError> {
    let zones = storage.store_zones()?;
    let (reclaimed, freed) = oldest_first(storage, &zones, |zone| (0, confirmed.frontier(zone)), bytes, BATCH)?;
    let mut plan = reclaimed
        .into_iter()
        .map(|(peer, r)| store_delete(peer, r, DeleteReason::Reclaimed))
        .collect::<Result<Vec<_>, _>>()?;
    if drop_unconfirmed && freed < bytes {
        let range = |zone: &str| (confirmed.frontier(zone), u64::MAX);
        let (dropped, _) = oldest_first(storage, &zones, range, bytes - freed, BATCH - plan.len())?;
        for (peer, record) in dropped {
            plan.push(store_delete(peer, record, DeleteReason::Dropped)?);
        }
    }
    Ok(Planned {
        full_batch: plan.len() >= BATCH,
        plan: DeletePlan {
            store: plan,
            forward: Vec::new(),
        },
        kept: Vec::new(),
    })
}

/// Store entries, each with the peer whose route index holds it.
type PeerRecords<'z> = Vec<(&'z str, LogRecord)>;

/// The oldest store entries across the peers of `zones` (each read within `range(zone)`) until
/// `bytes` are freed, at most `budget`; returns them, each with its peer, and the bytes they free.
fn oldest_first<'z>(
    storage: &dyn Storage,
    zones: &'z [String],
    range: impl Fn(&str) -> (u64, u64),
    bytes: u64,
    budget: usize,
) -> Result<(PeerRecords<'z>, u64), StorageError> {
    let mut candidates = Vec::new();
    for zone in zones {
        let (from, upto) = range(zone);
        let read = |after: u64, limit| storage.read_store(zone, after.max(from), upto, limit);
        let oldest = prefix(read, budget, until_freed(bytes))?;
        candidates.extend(oldest.into_iter().map(|record| (zone.as_str(), record)));
    }
    candidates.sort_by_key(|(_, r)| r.offset);
    let mut more = until_freed(bytes);
    let taken: Vec<_> = candidates
        .into_iter()
        .take(budget)
        .take_while(|(_, r)| more(r))
        .collect();
    let freed = taken.iter().map(|(_, r)| r.stored_bytes).sum();
    Ok((taken, freed))
}

fn trim_forward(storage: &dyn Storage, confirmed: u64, bytes: u64) -> Result<Planned, StorageError> {
    let read = |after, limit| storage.read_forward(after, confirmed, limit);
    let forward = prefix(read, BATCH, until_freed(bytes))?
        .into_iter()
        .map(|r| {
            let envelope = r.message()?.envelope;
            Ok(ForwardDelete {
                offset: r.offset,
                from_zone: envelope.from_zone,
                message_id: envelope.message_id,
                reason: DeleteReason::Confirmed,
                log: true,
                window: false,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    Ok(Planned {
        full_batch: forward.len() >= BATCH,
        plan: DeletePlan {
            store: Vec::new(),
            forward,
        },
        kept: Vec::new(),
    })
}

fn sweep_store(
    storage: &dyn Storage,
    confirmed: &Confirmed,
    cutoff_unix_ms: u64,
    expire_unconfirmed: bool,
) -> Result<Planned, StorageError> {
    let mut planned = Planned::default();
    for zone in storage.store_zones()? {
        let budget = BATCH - planned.plan.store.len();
        if budget == 0 {
            break;
        }
        let frontier = confirmed.frontier(&zone);
        let upto = if expire_unconfirmed { u64::MAX } else { frontier };
        let read = |after, limit| storage.read_store(&zone, after, upto, limit);
        let old = prefix(read, budget, |r| r.stored_at_unix_ms < cutoff_unix_ms)?;
        for record in old {
            let reason = match record.offset <= frontier {
                true => DeleteReason::Confirmed,
                false => DeleteReason::Expired,
            };
            planned.plan.store.push(store_delete(&zone, record, reason)?);
        }
        if !expire_unconfirmed {
            let oldest = storage.read_store(&zone, frontier, u64::MAX, 1)?;
            if let Some(r) = oldest.into_iter().find(|r| r.stored_at_unix_ms < cutoff_unix_ms) {
                planned.kept.push(Kept {
                    log: Log::Store,
                    zone: zone.clone(),
                    offset: r.offset,
                    message_id: r.message()?.envelope.message_id,
                });
            }
        }
    }
    forget_reclaimed(storage, cutoff_unix_ms, &mut planned.plan.store)?;
    planned.full_batch = planned.plan.store.len() >= BATCH;
    Ok(planned)
}

/// The store's dedupe-window entries of facts reclaimed before `cutoff_unix_ms`, oldest first,
/// into `plan` while it has room.
fn forget_reclaimed(
    storage: &dyn Storage,
    cutoff_unix_ms: u64,
    plan: &mut Vec<StoreDelete>,
) -> Result<(), StorageError> {
    let mut after = 0;
    while plan.len() < BATCH {
        let page = storage.read_window(Log::Store, after, PAGE.min(BATCH - plan.len()))?;
        let Some(last) = page.last().map(|e| e.offset) else {
            return Ok(());
        };
        for entry in page {
            // Reclaims happen in offset order, each batch at one time: the first young one ends it.
            if entry.received_at_unix_ms >= cutoff_unix_ms {
                return Ok(());
            }
            plan.push(StoreDelete {
                offset: entry.offset,
                peer: String::new(),
                origin: (!entry.from_zone.is_empty()).then_some(entry.from_zone),
                to_zone: String::new(),
                message_id: entry.message_id,
                reason: DeleteReason::Forgotten,
            });
        }
        after = last;
    }
    Ok(())
}

fn sweep_forward(
    storage: &dyn Storage,
    confirmed: u64,
    cutoff_unix_ms: u64,
    expire_unconfirmed: bool,
) -> Result<Planned, StorageError> {
    let mut planned = Planned::default();
    let mut after = 0;
    loop {
        let budget = BATCH - planned.plan.forward.len();
        let page = storage.read_window(Log::Forward, after, PAGE.min(budget))?;
        if page.is_empty() {
            break;
        }
        let sizes = storage.log_sizes(Log::Forward, &page.iter().map(|e| e.offset).collect::<Vec<_>>())?;
        for (entry, size) in page.into_iter().zip(sizes) {
            if entry.received_at_unix_ms >= cutoff_unix_ms {
                return Ok(planned);
            }
            let unconfirmed = size.is_some() && entry.offset > confirmed;
            if unconfirmed && !expire_unconfirmed {
                planned.kept.push(Kept {
                    log: Log::Forward,
                    zone: entry.from_zone,
                    offset: entry.offset,
                    message_id: entry.message_id,
                });
                return Ok(planned);
            }
            after = entry.offset;
            planned.plan.forward.push(ForwardDelete {
                offset: entry.offset,
                from_zone: entry.from_zone,
                message_id: entry.message_id,
                reason: if unconfirmed {
                    DeleteReason::Expired
                } else {
                    DeleteReason::Confirmed
                },
                log: size.is_some(),
                window: true,
            });
        }
        if planned.plan.forward.len() >= BATCH {
            planned.full_batch = true;
            break;
        }
    }
    Ok(planned)
}
