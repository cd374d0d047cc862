//! Promotion and leading: catch up, append the `Epoch` record, serve; renew the lease; demote on
//! the first reason to (fenced, outcome unknown, lease lost, step-down).

use std::time::{Duration, Instant};

use bsfg_engine::{Grant, Lease, LeaseError, ReplicatedLog};
use slog::warn;

use super::Controller;
use crate::{
    events::{HaDemoted, HaPromoted, LeaseRenewed, PromotionCatchingUp, PromotionStarted},
    standing::Standing,
    storage::StorageError,
    zone_gate::RestoreSwitches,
};

/// A promotion whose `Epoch` append finds the log moved on (a fenced writer's last record
/// slipped in after the catch-up) catches up and tries again, this many times.
const PROMOTE_ATTEMPTS: usize = 3;
/// How often a promotion's catch-up says how far it has come.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl<L: ReplicatedLog, E: Lease> Controller<L, E> {
    /// From a fresh grant to serving; `None` (lease released) if the log cannot be caught up or
    /// the `Epoch` record not appended.
    pub(super) async fn promote(&mut self, mut grant: Grant) -> Option<Grant> {
        let started = Instant::now();
        self.deps.telemetry.emit(PromotionStarted {
            instance: &self.config.instance,
            epoch: grant.holder.epoch,
            wal_applied: self.deps.storage.position().seq,
            wal_last: self.status.borrow().wal_last,
        });
        let mut caught_up = 0;
        for _ in 0..PROMOTE_ATTEMPTS {
            match self.catch_up_holding(&mut grant).await {
                Ok(applied) => caught_up += applied,
                Err(reason) => return self.abandon(grant, &format!("cannot catch up: {reason}")).await,
            }
            let storage = self.deps.storage.clone();
            let (epoch, revision) = (grant.holder.epoch, grant.revision);
            let appended = tokio::task::spawn_blocking(move || storage.promote(epoch, revision)).await;
            match appended {
                Ok(Ok(position)) => {
                    // Under the lease, renewed meanwhile: the gate or the journal may be slow.
                    let taking_over = async {
                        self.restore_switches().await;
                        self.take_up_state().await;
                    };
                    let (waited, mut told) = (Instant::now(), false);
                    let slow = || {
                        if !told && waited.elapsed() >= self.ttl() {
                            warn!(self.deps.telemetry.log, "promotion_waiting"; "instance" => &self.config.instance,
                                "reason" => "the gate switches or the journal's state are not taken up yet; the lease is held meanwhile");
                            told = true;
                        }
                        Ok(())
                    };
                    if let Err(reason) = self.holding(&mut grant, taking_over, slow).await {
                        let storage = self.deps.storage.clone();
                        tokio::task::spawn_blocking(move || storage.demote(epoch));
                        return self.abandon(grant, &reason).await;
                    }
                    self.set_standing(Standing::Active);
                    self.status.send_modify(|s| {
                        s.epoch = epoch;
                        s.wal_applied = position.seq;
                    });
                    self.deps.telemetry.emit(HaPromoted {
                        instance: &self.config.instance,
                        epoch,
                        wal_seq: position.seq,
                        caught_up,
                        took_ms: started.elapsed().as_millis() as u64,
                    });
                    return Some(grant);
                }
                Ok(Err(StorageError::Fenced(_))) => continue,
                Ok(Err(error)) => return self.abandon(grant, &error.to_string()).await,
                Err(error) => return self.abandon(grant, &error.to_string()).await,
            }
        }
        self.abandon(grant, "the log kept moving on").await
    }

    /// Catches up while holding the lease ([`Self::holding`]): a standby far behind (it was
    /// down, or just restored) may take longer than the lease lasts, and would otherwise be
    /// promoted on a lapsed lease and demoted at once (`lease_lost`).
    ///
    /// Only while the catch-up moves: one that applied nothing for a whole `lease_ttl` (its
    /// engine connection stale, say) is given up, and the lease released, rather than held for
    /// as long as it hangs while another instance could take the zone. One that takes longer
    /// than [`PROGRESS_EVERY`] says how far it has come at about that pace.
    async fn catch_up_holding(&self, grant: &mut Grant) -> Result<u64, String> {
        let started = Instant::now();
        let mut last = (self.deps.storage.position().seq, Instant::now());
        let mut said = last;
        let moving = || {
            let applied = self.deps.storage.position().seq;
            if applied != last.0 {
                last = (applied, Instant::now());
            } else if last.1.elapsed() >= self.ttl() {
                return Err(format!("applied nothing for {:?} (at record {applied})", self.ttl()));
            }
            if said.1.elapsed() >= PROGRESS_EVERY {
                let rate = applied.saturating_sub(said.0) as f64 / said.1.elapsed().as_secs_f64();
                self.deps.telemetry.emit(PromotionCatchingUp {
                    wal_applied: applied,
                    wal_last: self.status.borrow().wal_last,
                    records_per_second: rate as u64,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                });
                said = (applied, Instant::now());
            }
            Ok(())
        };
        self.holding(grant, self.catch_up(), moving).await?
    }

    /// Runs `work` while renewing the lease every `lease_ttl / 5`, as the active instance does;
    /// before each renewal `going` may give the work up (its error). `Err` too when the lease
    /// was lost meanwhile.
    async fn holding<T>(
        &self,
        grant: &mut Grant,
        work: impl std::future::Future<Output = T>,
        mut going: impl FnMut() -> Result<(), String>,
    ) -> Result<T, String> {
        let renew_every = self.ttl() / 5;
        tokio::pin!(work);
        loop {
            let valid_until = tokio::time::Instant::from_std(grant.valid_until);
            tokio::select! {
                done = &mut work => return Ok(done),
                () = tokio::time::sleep(renew_every) => {
                    going()?;
                    match self.renew(grant, valid_until).await {
                        Ok(renewed) => *grant = renewed,
                        Err(Some(detail)) => return Err(format!("the lease was lost meanwhile: {detail}")),
                        Err(None) => {}
                    }
                }
            }
        }
    }

    async fn abandon(&mut self, grant: Grant, reason: &str) -> Option<Grant> {
        warn!(self.deps.telemetry.log, "promotion_failed"; "instance" => &self.config.instance, "reason" => reason);
        let _ = self.deps.lease.release(&grant).await;
        self.hold_off_until = Some(Instant::now() + self.ttl());
        None
    }

    /// Has the journal take up the promoted replica's state (its highest offsets, cursors and
    /// usage, as the log made them) before this instance serves. The journal otherwise follows
    /// a new epoch at its next command, and a zone that nobody appends to would serve peers and
    /// consumers the state it had at start, without the facts the old active instance wrote.
    ///
    /// Waited for at most one `lease_ttl`: skipping it is safe, the next write takes it up.
    async fn take_up_state(&self) {
        let reason = match tokio::time::timeout(self.ttl(), self.deps.journal.probe()).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("the journal did not answer within {:?}", self.ttl()),
        };
        warn!(self.deps.telemetry.log, "promotion_state_stale"; "reason" => reason,
            "error_message" => "the next write takes it up");
    }

    /// The operator's gate switches as the replica holds them (they travel in the log). Not
    /// given up when slow: serving without them would open a gate an operator closed.
    async fn restore_switches(&self) {
        let storage = self.deps.storage.clone();
        let recovered = tokio::task::spawn_blocking(move || storage.local().closed_gates()).await;
        match recovered {
            Ok(Ok(closed)) => {
                let _ = self.deps.gate.send(RestoreSwitches(closed)).await;
            }
            Ok(Err(error)) => warn!(self.deps.telemetry.log, "gate_restore_failed"; "reason" => error.to_string()),
            Err(error) => warn!(self.deps.telemetry.log, "gate_restore_failed"; "reason" => error.to_string()),
        }
    }

    /// Serves until a reason to stop; then demotes.
    pub(super) async fn lead(&mut self, mut grant: Grant) {
        let mut demotions = self.deps.storage.demotions();
        let renew_every = self.ttl() / 5;
        let (reason, detail) = loop {
            let valid_until = tokio::time::Instant::from_std(grant.valid_until);
            tokio::select! {
                _ = tokio::time::sleep(renew_every) => match self.renew(&grant, valid_until).await {
                    Ok(renewed) => grant = renewed,
                    Err(Some(detail)) => break ("lease_lost", detail),
                    Err(None) => {}
                },
                _ = tokio::time::sleep_until(valid_until) => {
                    break ("lease_lost", "the lease could not be renewed within its TTL".to_owned());
                }
                Ok(()) = demotions.changed() => {
                    let demotion = demotions.borrow_and_update().clone();
                    if let Some(demotion) = demotion {
                        break (demotion.reason(), demotion.detail().to_owned());
                    }
                }
                Some(reply) = self.requests.recv() => {
                    self.demote(&grant, "step_down", "asked by an operator");
                    let _ = self.deps.lease.release(&grant).await;
                    self.hold_off_until = Some(Instant::now() + self.ttl());
                    let _ = reply.send(Ok(()));
                    return;
                }
            }
        };
        self.demote(&grant, reason, &detail);
    }

    /// `Ok`: renewed; `Err(Some)`: lost for good; `Err(None)`: failed this time, still valid.
    async fn renew(&self, grant: &Grant, valid_until: tokio::time::Instant) -> Result<Grant, Option<String>> {
        let renewed = tokio::time::timeout_at(valid_until, self.deps.lease.renew(grant)).await;
        let failure = match renewed {
            Ok(Ok(renewed)) => {
                self.deps.telemetry.emit(LeaseRenewed { failure: None });
                return Ok(renewed);
            }
            Ok(Err(LeaseError::Lost(detail))) => Some(format!("lease lost: {detail}")),
            Ok(Err(error)) => {
                let reason = error.to_string();
                self.deps.telemetry.emit(LeaseRenewed { failure: Some(&reason) });
                return Err(None);
            }
            Err(_) => Some("the lease could not be renewed within its TTL".to_owned()),
        };
        self.deps.telemetry.emit(LeaseRenewed {
            failure: failure.as_deref(),
        });
        Err(failure)
    }

    /// Stops writing first (the storage refuses every batch from the append in flight on; taking
    /// its lock may wait for that append, so on the blocking pool), then stops serving.
    fn demote(&self, grant: &Grant, reason: &str, detail: &str) {
        let (storage, epoch) = (self.deps.storage.clone(), grant.holder.epoch);
        tokio::task::spawn_blocking(move || storage.demote(epoch));
        self.set_standing(Standing::Standby {
            instance: self.config.instance.clone(),
            active: None,
        });
        self.deps.telemetry.emit(HaDemoted {
            instance: &self.config.instance,
            reason,
            detail,
        });
    }
}
