//! The `Backpressure` actor's side of the disk guard: measuring the disk every [`DISK_POLL`] on
//! the blocking pool, carrying the guard's verdict out (flags, the journal's disk budget, the
//! core's trims for the disk), and giving the space of deleted facts back.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::prelude::*;

use super::Backpressure;
use crate::{
    events::{DeletionFailed, DiskSpaceLow, StorageOp},
    storage::{CursorKey, DiskSpace, Log, Storage, StorageError},
};

/// How often the disk's free space is measured.
const DISK_POLL: Duration = Duration::from_millis(250);

/// One measurement of the disk.
pub(super) struct DiskSample(Result<DiskSpace, StorageError>);

/// A measurement every [`DISK_POLL`], each on the blocking pool.
pub(super) fn samples(storage: Arc<dyn Storage>) -> impl futures::Stream<Item = DiskSample> {
    futures::stream::unfold(storage, |storage| async move {
        let measured = storage.clone();
        let space = tokio::task::spawn_blocking(move || measured.disk()).await.ok()?;
        tokio::time::sleep(DISK_POLL).await;
        Some((DiskSample(space), storage))
    })
}

impl StreamHandler<DiskSample> for Backpressure {
    fn handle(&mut self, DiskSample(sample): DiskSample, ctx: &mut Self::Context) {
        self.on_disk(sample, ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The runtime is shutting down.
    }
}

impl Backpressure {
    /// Measures the disk once, before the node takes anything in: the actor's own measurements
    /// begin only once it runs, and until the first the journal's budget refuses nothing (a
    /// receiver restarted on a nearly full disk pulled tens of MB into its reserve meanwhile).
    pub fn measure_disk(&mut self) {
        let sample = self.deps.journal.storage().disk();
        self.judge_disk(sample);
    }

    /// A measurement of the disk: the guard decides, the core trims for it, flags follow.
    fn on_disk(&mut self, sample: Result<DiskSpace, StorageError>, ctx: &mut Context<Self>) {
        if self.judge_disk(sample) {
            self.reclaim(ctx);
            self.evaluate(ctx);
        }
    }

    /// The guard's verdict on a measurement, published (flags, event, the journal's budget);
    /// `false` when the disk could not be measured.
    fn judge_disk(&mut self, sample: Result<DiskSpace, StorageError>) -> bool {
        let space = match sample {
            Ok(space) => space,
            Err(error) => {
                self.deps.journal.health().failed(StorageOp::Read, &error);
                return false;
            }
        };
        let refused = self.deps.journal.take_disk_refused();
        if let Some(low) = self.disk.on_space(space, refused, std::time::Instant::now()) {
            self.core.set_disk_low(low);
            let state = self.disk.state();
            self.deps.telemetry.emit(DiskSpaceLow {
                low,
                free_bytes: space.free_bytes,
                needed_bytes: state.needed,
                total_bytes: space.total_bytes,
            });
        }
        self.disk_state.send_replace(self.disk.state());
        self.deps.journal.set_disk_budget(self.disk.budget());
        true
    }

    /// While the disk is low and facts were deleted since the last time: flush and compact so
    /// their space really returns, unless a reclaim runs already or there is no room for the
    /// flush (the next measurement tries again).
    fn reclaim(&mut self, ctx: &mut Context<Self>) {
        let usage = *self.deps.journal.usage().borrow();
        let retained = usage.store.bytes + usage.forward.bytes;
        let due = self.unreclaimed && self.disk.state().low && !self.reclaiming;
        if !due || !self.disk.can_reclaim(retained) {
            return;
        }
        (self.reclaiming, self.unreclaimed) = (true, false);
        let cursors = self.deps.journal.cursors();
        let below = (
            confirmed_below(Log::Store, &cursors),
            confirmed_below(Log::Forward, &cursors),
        );
        let storage = self.deps.journal.storage();
        let work = async move { tokio::task::spawn_blocking(move || storage.reclaim(below.0, below.1)).await };
        ctx.spawn(work.into_actor(self).map(|done, actor, _| {
            actor.reclaiming = false;
            let failed = match done {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error.to_string(),
                Err(error) => format!("reclaim task failed: {error}"),
            };
            let reason = format!("giving back disk space: {failed}");
            actor.deps.telemetry.emit(DeletionFailed { reason: &reason });
        }));
    }
}

/// Where deletions are, below which `log` is compacted: under every peer's frontier (store),
/// under every consumer's cursor (forward).
fn confirmed_below(log: Log, cursors: &HashMap<CursorKey, u64>) -> u64 {
    let confirmed = cursors.iter().filter(|(key, _)| match log {
        Log::Store => matches!(key, CursorKey::Peer(_)),
        Log::Forward => matches!(key, CursorKey::Consumer(_)),
    });
    confirmed
        .map(|(_, cursor)| *cursor)
        .min()
        .unwrap_or(0)
        .saturating_add(1)
}
