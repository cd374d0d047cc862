//! Standing by: follow the zone's log into the local replica, watch the lease, take it when it is
//! free. Records are applied in order on the blocking pool (one RocksDB batch each, unsynced,
//! with the new position); a record of another history stops the replica for good.

use std::{sync::Arc, time::Duration};

use bsfg_engine::{Grant, Lease, LeaseError, LogError, ReplicatedLog};
use futures::StreamExt;
use slog::{info, warn};
use tokio::sync::watch;

use super::{Controller, HaStatus};
use crate::{
    events::{set_role, Telemetry, WalDivergence},
    standing::Standing,
    storage::replicated::{FollowError, ReplicatedStorage},
};

/// How long a follower waits before it tails the log again after the engine failed it.
const RETRY: Duration = Duration::from_secs(1);
/// How often the log's end is asked for (the lag gauge and `/v1/status`).
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Why following stopped.
enum Stopped {
    /// A record of another history: the replica must be rebuilt.
    Diverged { seq: u64, detail: String },
    /// The engine failed the reader (or the replica refused a write): tail again after a pause.
    Interrupted(String),
}

impl<L: ReplicatedLog, E: Lease> Controller<L, E> {
    /// Follows the log until this instance holds the lease (`Some(grant)`), or stops for good
    /// after a divergence (`None`).
    pub(super) async fn stand_by(&mut self) -> Option<Grant> {
        set_role(&self.deps.telemetry.metrics, false);
        let mut lease = self.deps.lease.observe();
        // Its own task: the waits below never interrupt an apply half-way.
        let (storage, status, log) = (
            self.deps.storage.clone(),
            self.status.clone(),
            self.deps.telemetry.log.clone(),
        );
        let mut follower = tokio::spawn(follow_until_diverged(storage, status, log));
        loop {
            self.note_holder(&lease.borrow_and_update());
            if let Some(grant) = self.try_acquire().await {
                follower.abort();
                return Some(grant);
            }
            tokio::select! {
                diverged = &mut follower => {
                    let (seq, detail) = diverged.unwrap_or_else(|e| (0, e.to_string()));
                    self.deps.telemetry.emit(WalDivergence { seq, detail: &detail });
                    self.set_standing(Standing::Diverged { instance: self.config.instance.clone() });
                    return None;
                }
                _ = lease.changed() => {}
                _ = tokio::time::sleep(self.ttl() / 5) => {}
                Some(reply) = self.requests.recv() => {
                    let _ = reply.send(Err(super::StepDownError::NotActive(self.config.instance.clone())));
                }
            }
        }
    }

    /// Takes the lease when it is free and this instance is not holding off after a step-down.
    async fn try_acquire(&mut self) -> Option<Grant> {
        if !self.deps.lease.observe().borrow().is_free() {
            return None;
        }
        if self
            .hold_off_until
            .is_some_and(|until| std::time::Instant::now() < until)
        {
            return None;
        }
        match self.deps.lease.acquire().await {
            Ok(grant) => Some(grant),
            Err(LeaseError::Held { .. } | LeaseError::Lost(_)) => None,
            Err(error) => {
                warn!(self.deps.telemetry.log, "lease_acquire_failed"; "reason" => error.to_string());
                None
            }
        }
    }

    fn note_holder(&self, lease: &bsfg_engine::LeaseState) {
        let active = lease
            .holder
            .as_ref()
            .filter(|_| !lease.expired)
            .map(|h| h.instance.clone());
        self.set_standing(Standing::Standby {
            instance: self.config.instance.clone(),
            active,
        });
    }

    /// Applies every record up to the log's end as it is now (before a promotion).
    pub(super) async fn catch_up(&self) -> Result<u64, String> {
        let storage = &self.deps.storage;
        let before = storage.position().seq;
        loop {
            let last = storage.log().bounds().await.map_err(|e| e.to_string())?.last;
            if storage.position().seq >= last {
                return Ok(storage.position().seq - before);
            }
            match follow(storage, Some(last), &self.status).await {
                Stopped::Diverged { seq, detail } => {
                    self.deps.telemetry.emit(WalDivergence { seq, detail: &detail });
                    return Err(detail);
                }
                Stopped::Interrupted(reason) if storage.position().seq < last => return Err(reason),
                Stopped::Interrupted(_) => {}
            }
        }
    }
}

/// Follows the log until a record of another history arrives: its sequence and why.
async fn follow_until_diverged<L: ReplicatedLog>(
    storage: Arc<ReplicatedStorage<L>>,
    status: watch::Sender<HaStatus>,
    log: slog::Logger,
) -> (u64, String) {
    loop {
        match follow(&storage, None, &status).await {
            Stopped::Diverged { seq, detail } => return (seq, detail),
            Stopped::Interrupted(reason) => {
                warn!(log, "wal_follow_interrupted"; "reason" => reason);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Applies the log's records after the replica's position, in order, until `upto` (or forever).
async fn follow<L: ReplicatedLog>(
    storage: &Arc<ReplicatedStorage<L>>,
    upto: Option<u64>,
    status: &watch::Sender<HaStatus>,
) -> Stopped {
    let from = storage.position().seq + 1;
    if upto.is_some_and(|upto| from > upto) {
        return Stopped::Interrupted("caught up".into());
    }
    let mut tail = match storage.log().tail(from).await {
        Ok(tail) => tail,
        Err(error) => return Stopped::Interrupted(error.to_string()),
    };
    while let Some(record) = tail.next().await {
        let record = match record {
            Ok(record) => record,
            Err(LogError::Gap { expected, found }) if found > expected => {
                return Stopped::Interrupted(format!(
                    "the log no longer holds record {expected} (it starts at {found}): this replica needs a snapshot"
                ))
            }
            Err(error) => return Stopped::Interrupted(error.to_string()),
        };
        let (seq, storage) = (record.seq, storage.clone());
        let applied = tokio::task::spawn_blocking(move || storage.follow(record.seq, &record.payload)).await;
        match applied {
            Ok(Ok(position)) => status.send_modify(|s| {
                s.wal_applied = position.seq;
                s.epoch = position.epoch;
            }),
            Ok(Err(FollowError::Diverged(divergence))) => {
                return Stopped::Diverged {
                    seq,
                    detail: divergence.to_string(),
                }
            }
            Ok(Err(FollowError::Storage(error))) => return Stopped::Interrupted(error.to_string()),
            Err(error) => return Stopped::Interrupted(error.to_string()),
        }
        if upto.is_some_and(|upto| seq >= upto) {
            return Stopped::Interrupted("caught up".into());
        }
    }
    Stopped::Interrupted("the log's reader ended".into())
}

/// Once a second: the log's end, this replica's position, and the lag between them.
pub(super) async fn report_lag<L: ReplicatedLog>(
    storage: Arc<ReplicatedStorage<L>>,
    status: watch::Sender<HaStatus>,
    telemetry: Telemetry,
) {
    let mut logged_unavailable = false;
    loop {
        let applied = storage.position().seq;
        telemetry.metrics.engine_wal_applied.set(applied as i64);
        match storage.log().bounds().await {
            Ok(bounds) => {
                let lag = bounds.last.saturating_sub(applied);
                telemetry.metrics.engine_wal_lag.set(lag as i64);
                status.send_modify(|s| {
                    s.wal_last = bounds.last;
                    s.wal_applied = applied;
                });
                logged_unavailable = false;
            }
            Err(error) if !logged_unavailable => {
                info!(telemetry.log, "engine_unavailable"; "reason" => error.to_string());
                logged_unavailable = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(LAG_EVERY).await;
    }
}
