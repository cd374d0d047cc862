//! Deletion plans: made off the writer (read-only, in bounded batches, see `backpressure`), applied
//! by it. The writer re-checks every entry against committed state before deleting it, so a stale
//! or repeated plan can neither delete a fact twice nor count it twice: a log entry that is gone is
//! skipped, and a dedupe-window entry is left only while its `fwd_idem` (or `store_idem`) record
//! still points at the planned offset (a later re-insert of the same key owns the record then). Plans read cursors
//! from a snapshot, and a consumer's cursor may have been rewound since: a forward fact planned
//! as confirmed is deleted only while every consumer's cursor is still at or past it.

use std::collections::{HashMap, HashSet};

use crate::storage::{Batch, DeleteReason, ForwardDelete, Index, Log, Storage, StoreDelete, Usage};

use super::JournalError;

/// Facts to delete from both buffers. As a reply: the deletions actually applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletePlan {
    pub store: Vec<StoreDelete>,
    pub forward: Vec<ForwardDelete>,
}

impl DeletePlan {
    pub fn is_empty(&self) -> bool {
        self.store.is_empty() && self.forward.is_empty()
    }

    /// How many entries the plan touches.
    pub fn len(&self) -> usize {
        self.store.len() + self.forward.len()
    }
}

/// What is confirmed when a plan is applied, which may be more than when it was planned.
#[derive(Debug, Default)]
pub(super) struct Confirmed {
    /// The forward offset every consumer has confirmed.
    pub(super) consumed: u64,
    /// Each peer's frontier, for the peers whose store facts are to be deleted.
    pub(super) frontiers: HashMap<String, u64>,
}

/// Adds the still-valid part of `plan` to `batch`, updates `usage`, and returns that part. A
/// fact planned as a loss (dropped, expired) that is confirmed now is deleted as a trim, not
/// counted as lost: a store fact's id then stays in the dedupe window as after any trim.
pub(super) fn apply(
    storage: &dyn Storage,
    plan: DeletePlan,
    confirmed: &Confirmed,
    usage: &mut Usage,
    batch: &mut Batch,
) -> Result<DeletePlan, JournalError> {
    let store = apply_store(storage, plan.store, &confirmed.frontiers, usage, batch)?;
    let forward = apply_forward(storage, plan.forward, confirmed.consumed, usage, batch)?;
    Ok(DeletePlan { store, forward })
}

fn apply_store(
    storage: &dyn Storage,
    deletes: Vec<StoreDelete>,
    frontiers: &HashMap<String, u64>,
    usage: &mut Usage,
    batch: &mut Batch,
) -> Result<Vec<StoreDelete>, JournalError> {
    let offsets: Vec<u64> = deletes.iter().map(|d| d.offset).collect();
    let sizes = storage.log_sizes(Log::Store, &offsets)?;
    let mut taken: HashSet<u64> = batch.store_deletes.iter().map(|d| d.offset).collect();
    let mut applied = Vec::new();
    for (mut delete, size) in deletes.into_iter().zip(sizes) {
        if frontiers
            .get(&delete.peer)
            .is_some_and(|frontier| delete.offset <= *frontier)
        {
            delete.reason = match delete.reason {
                DeleteReason::Dropped => DeleteReason::Reclaimed,
                DeleteReason::Expired => DeleteReason::Confirmed,
                other => other,
            };
        }
        // A dedupe-window entry is left whatever remains of its fact: its log entry is gone (or
        // its id was stored again under a new offset after a drop, which storage checks).
        let forgotten = delete.reason == DeleteReason::Forgotten;
        if !(forgotten || size.is_some()) || !taken.insert(delete.offset) {
            continue;
        }
        if let Some(size) = size.filter(|_| !forgotten) {
            usage.store.remove(size);
        }
        batch.store_deletes.push(delete.clone());
        applied.push(delete);
    }
    Ok(applied)
}

fn apply_forward(
    storage: &dyn Storage,
    deletes: Vec<ForwardDelete>,
    consumed: u64,
    usage: &mut Usage,
    batch: &mut Batch,
) -> Result<Vec<ForwardDelete>, JournalError> {
    // Confirmed when planned, but a consumer was rewound below it since: it is to be delivered
    // again, and its dedupe-window entry stays with it.
    let rewound = |d: &ForwardDelete| d.log && d.reason == DeleteReason::Confirmed && d.offset > consumed;
    let deletes: Vec<ForwardDelete> = deletes.into_iter().filter(|d| !rewound(d)).collect();
    let offsets: Vec<u64> = deletes.iter().map(|d| d.offset).collect();
    let sizes = storage.log_sizes(Log::Forward, &offsets)?;
    // Only window deletions need the owner of the id (trims of confirmed facts have none).
    let keys: Vec<(&str, &str)> = deletes
        .iter()
        .filter(|d| d.window)
        .map(|d| (d.from_zone.as_str(), d.message_id.as_str()))
        .collect();
    let mut owners = storage.lookup(Index::Forward, &keys)?.into_iter();
    let mut taken: HashSet<u64> = batch.forward_deletes.iter().map(|d| d.offset).collect();
    let mut applied = Vec::new();
    for (mut delete, size) in deletes.into_iter().zip(sizes) {
        delete.log &= size.is_some();
        if delete.log && delete.reason == DeleteReason::Expired && delete.offset <= consumed {
            // Expired when planned, but every consumer confirmed it since: a trim, not a loss.
            delete.reason = DeleteReason::Confirmed;
        }
        if delete.window {
            let owner = owners.next().flatten();
            delete.window = owner.is_some_and(|o| o.offset == delete.offset);
        }
        if !(delete.log || delete.window) || !taken.insert(delete.offset) {
            continue;
        }
        if !delete.log {
            // Only the dedupe window is left: no fact is lost by that.
            delete.reason = DeleteReason::Confirmed;
        }
        if let Some(size) = size.filter(|_| delete.log) {
            usage.forward.remove(size);
        }
        batch.forward_deletes.push(delete.clone());
        applied.push(delete);
    }
    Ok(applied)
}
