//! Actor `Backpressure` (SPEC §5, §7): fill computation, admission decision, policy enforcement
//! and retention, for both buffers.
//!
//! The journal publishes exact usage after every commit; this actor follows it (and ticks), feeds
//! it to the plain decision [`core::Core`], and carries the decisions out:
//! - it sets the store buffer's [`Admission`] flag, read by `StoreBuffer` on every append (never
//!   a storage read), and publishes the store's [`StoreRoom`] for a relaying node's peer links
//!   (relayed facts go to the store buffer): full, they take no fact for a next hop whose link is
//!   down; exhausted (halfway from the high watermark to the capacity), none at all. And the
//!   forward buffer's pull pause, waited on by every peer link's fetcher;
//! - it runs one deletion job at a time: the read-only [`planner`] runs on the blocking pool and
//!   the journal applies the plan in one batch, so the writer stays the only writer and no entry
//!   is deleted or counted twice;
//! - it reports every lost fact ([`events`]) and keeps the fill gauges current.
//!
//! Two hard limits sit outside this loop: under `reject` the journal refuses any append that would
//! take the store buffer past 100 % of its capacity (the actor reacts within one commit, the
//! limit holds even before it does); a forward buffer may overshoot its high watermark by the
//! pages already in flight when pulls pause (`replication.batch_limit` facts each).
//!
//! The disk is watched too ([`disk`], the actor's side in `space`): every 250 ms its free space
//! is measured on the blocking pool; while it is below what the node needs, appends are refused, pulls pause,
//! confirmed facts are reclaimed and their space given back (a flush and a compaction of the
//! deleted range, when there is room for the flush). Pulls also pause while storage fails to
//! commit: a forward buffer that cannot write must not take pages it would drop.

mod config;
mod core;
mod disk;
mod events;
mod planner;
mod space;
#[cfg(test)]
mod tests;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::prelude::*;
use bsfg_proto::{ErrorCode, RpcError};
use tokio::sync::watch;

pub use self::config::{BackpressureConfig, BufferLimits, Policy, PolicyError, WhenFull};
use self::core::{Core, Decision, Job, JobReport};
use self::disk::DiskGuard;
pub use self::disk::DiskState;
use crate::{
    clock::RetentionClock,
    events::{ClockStepped, DeletionFailed, StorageOp, Telemetry},
    journal::{Journal, JournalError},
    storage::{Log, Usage},
};

/// How often the actor looks at usage and time when nothing else wakes it.
const TICK: Duration = Duration::from_millis(100);

/// Retained facts and bytes of one buffer against its capacity (for `/v1/status`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fill {
    pub facts: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub fill_percent: f64,
}

/// Fill of both buffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageReport {
    pub store: Fill,
    pub forward: Fill,
}

impl UsageReport {
    pub fn new(usage: &Usage, config: &BackpressureConfig) -> Self {
        let fill = |log: Log| {
            let (used, capacity) = (usage.of(log), config.limits(log).capacity_bytes);
            Fill {
                facts: used.facts,
                bytes: used.bytes,
                capacity_bytes: capacity,
                fill_percent: percent(used.bytes, capacity),
            }
        };
        Self {
            store: fill(Log::Store),
            forward: fill(Log::Forward),
        }
    }
}

fn percent(bytes: u64, capacity: u64) -> f64 {
    bytes as f64 * 100.0 / capacity.max(1) as f64
}

/// The store buffer's admission decision, read on every append without touching storage.
#[derive(Clone)]
pub struct Admission {
    rejecting: Arc<AtomicBool>,
    usage: watch::Receiver<Usage>,
    disk: watch::Receiver<DiskState>,
    config: Arc<BackpressureConfig>,
    /// Bytes of producers' artifacts admitted and still being received.
    uploading: Arc<AtomicU64>,
}

/// Room on the disk held for one artifact while it is received; given back when dropped.
pub struct UploadRoom {
    uploading: Arc<AtomicU64>,
    size: u64,
}

impl Drop for UploadRoom {
    fn drop(&mut self) {
        self.uploading.fetch_sub(self.size, Ordering::AcqRel);
    }
}

impl Admission {
    /// `RESOURCE_EXHAUSTED` (retryable) while the store buffer refuses appends: it is full, or
    /// the disk is.
    pub fn check(&self) -> Result<(), RpcError> {
        let disk = *self.disk.borrow();
        if disk.low {
            return Err(self.disk_refusal(&disk, "appends are refused"));
        }
        if !self.rejecting.load(Ordering::Acquire) {
            return Ok(());
        }
        let bytes = self.usage.borrow().store.bytes;
        let capacity = self.config.store.capacity_bytes;
        Err(RpcError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "store buffer is {:.1}% full ({bytes} of {capacity} bytes, high watermark {}%): appends are \
                 refused until it falls below the low watermark {}% as peers confirm",
                percent(bytes, capacity),
                self.config.policy.high_watermark_percent(),
                self.config.policy.low_watermark_percent(),
            ),
        ))
    }
}

impl Admission {
    /// `RESOURCE_EXHAUSTED` (retryable) for a producer's artifact of `size` bytes while the disk
    /// is low, or when the artifact would take the free space below what the node needs: the
    /// artifact store shares the data directory's file system with storage, which must never
    /// run out of room for its own writes (confirms, reclaims, flushes). The artifacts still
    /// being received count against the room too: hold the answer until the upload ends.
    pub fn check_upload(&self, size: u64) -> Result<UploadRoom, RpcError> {
        let disk = *self.disk.borrow();
        // Not measured yet (the first measurement comes within a second of start): the capacity
        // of `[objects]` is the only bound until then.
        let measured = disk.space.total_bytes > 0;
        let room = disk.space.free_bytes.saturating_sub(disk.needed);
        let mut others = self.uploading.load(Ordering::Acquire);
        loop {
            let promised = others.saturating_add(size);
            if disk.low || (measured && promised > room) {
                let refused =
                    format!("an artifact of {size} bytes (beside {others} of uploads being received) is refused");
                return Err(self.disk_refusal(&disk, &refused));
            }
            match self
                .uploading
                .compare_exchange_weak(others, promised, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => others = now,
            }
        }
        Ok(UploadRoom {
            uploading: self.uploading.clone(),
            size,
        })
    }

    fn disk_refusal(&self, disk: &DiskState, refused: &str) -> RpcError {
        RpcError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "the data directory's file system has {} bytes free and the node needs {} \
                 (node.disk_reserve_bytes {} plus {} that storage writes by itself): {refused} \
                 until confirmed facts are reclaimed or space is freed",
                disk.space.free_bytes,
                disk.needed,
                self.config.disk_reserve_bytes,
                disk.space.pending_bytes(),
            ),
        )
    }
}

/// The store buffer's room for relayed facts (SPEC §4a), as a relaying node's peer links follow
/// it. A relay's store is shared by all its next hops: stopping every pull when it is full would
/// let one destination offline for long stop the flows of every other zone through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRoom {
    /// Below the high watermark (or not blocked): relayed facts are taken.
    Room,
    /// At the high watermark (`reject`): facts for a next hop whose link is down wait at their
    /// sender (a page is cut before the first); those for live next hops, which drain, are
    /// taken.
    Full,
    /// From halfway between the high watermark and `capacity_bytes` (90 % by default) until it
    /// is back below halfway between the high watermark and there (85 %): nothing is pulled, and
    /// a page in flight is cut before its first relayed fact. Not at 100 %: the page being
    /// inserted when it is reached still goes in, into the last tenth of the store.
    /// The band keeps a store that trims and refills around one threshold from flapping.
    Exhausted,
}

impl StoreRoom {
    /// The room of a store holding `bytes`, blocked or not, with its high watermark and capacity,
    /// after `was`.
    pub fn of(was: Self, blocked: bool, bytes: u64, high: u64, capacity: u64) -> Self {
        let enter = high + capacity.saturating_sub(high) / 2;
        let exhausted = match was {
            Self::Exhausted => bytes >= high + (enter - high) / 2,
            _ => bytes >= enter,
        };
        match (blocked, exhausted) {
            (true, true) => Self::Exhausted,
            (true, false) => Self::Full,
            (false, _) => Self::Room,
        }
    }
}

/// Runtime handles of the actor.
pub struct BackpressureDeps {
    pub journal: Journal,
    pub telemetry: Telemetry,
    /// The node relays facts (`[[relay]]`): its store exhausted stops every link's pulls
    /// (`peer_link`), and that is said (`pulls_paused` with `buffer: store`).
    pub relays: bool,
}

pub struct Backpressure {
    core: Core,
    config: Arc<BackpressureConfig>,
    deps: BackpressureDeps,
    rejecting: Arc<AtomicBool>,
    /// Shared with every [`Admission`]: bytes of uploads being received.
    uploading: Arc<AtomicU64>,
    store_room: watch::Sender<StoreRoom>,
    /// The store buffer refuses new facts (`reject` at its high watermark).
    store_blocked: bool,
    pulls_paused: watch::Sender<bool>,
    /// The forward buffer is at its high watermark (pulls pause for that alone too).
    forward_full: bool,
    disk: DiskGuard,
    disk_state: watch::Sender<DiskState>,
    /// A flush and compaction giving space back is running.
    reclaiming: bool,
    /// Facts were deleted since the last reclaim.
    unreclaimed: bool,
    events: events::Reporter,
    clock: RetentionClock,
}

impl Backpressure {
    /// `last_stored`: when this node last stored a fact before this start (see [`clock`]).
    pub fn new(config: BackpressureConfig, deps: BackpressureDeps, last_stored: Option<u64>) -> Self {
        let events = events::Reporter::new(deps.telemetry.clone(), &config, deps.relays);
        let settle = config.store.retention.max(config.forward.retention);
        Self {
            core: Core::new(config.clone()),
            disk: DiskGuard::new(config.disk_reserve_bytes),
            config: Arc::new(config),
            deps,
            rejecting: Arc::default(),
            uploading: Arc::default(),
            store_room: watch::Sender::new(StoreRoom::Room),
            store_blocked: false,
            pulls_paused: watch::Sender::new(false),
            forward_full: false,
            disk_state: watch::Sender::new(DiskState::default()),
            reclaiming: false,
            unreclaimed: false,
            events,
            clock: RetentionClock::new(settle, last_stored),
        }
    }

    /// The time retention goes by (see [`clock`]); a forward step of the wall clock is logged.
    fn now_ms(&mut self) -> u64 {
        let reading = self.clock.read();
        if let Some(ahead) = reading.stepped {
            self.deps.telemetry.emit(ClockStepped { ahead });
        }
        reading.now_ms
    }

    /// The admission check for `StoreBuffer`.
    pub fn admission(&self) -> Admission {
        Admission {
            rejecting: self.rejecting.clone(),
            usage: self.deps.journal.usage(),
            disk: self.disk_state.subscribe(),
            config: self.config.clone(),
            uploading: self.uploading.clone(),
        }
    }

    /// The disk as last measured (for `/v1/status`).
    pub fn disk(&self) -> watch::Receiver<DiskState> {
        self.disk_state.subscribe()
    }

    /// `true` while the forward buffer is full: peer links wait before each pull.
    pub fn pulls_paused(&self) -> watch::Receiver<bool> {
        self.pulls_paused.subscribe()
    }

    /// The store buffer's room for relayed facts, followed by a relaying node's peer links.
    pub fn store_room(&self) -> watch::Receiver<StoreRoom> {
        self.store_room.subscribe()
    }

    fn evaluate(&mut self, ctx: &mut Context<Self>) {
        let usage = self.usage();
        let now = self.now_ms();
        let decision = self.core.on_usage(now, &usage);
        self.carry_out(decision, &usage, ctx);
        self.pause_pulls();
        self.publish_store_room(&usage);
    }

    /// Pulls pause while the forward buffer is full, the disk is low, or commits fail.
    fn pause_pulls(&self) {
        let paused =
            self.forward_full || self.disk.state().low || self.deps.journal.health().failing(StorageOp::Commit);
        self.pulls_paused
            .send_if_modified(|before| std::mem::replace(before, paused) != paused);
    }

    /// [`StoreRoom`] from the block and `usage`; a change to or from `Exhausted` is said.
    fn publish_store_room(&self, usage: &Usage) {
        let (high, capacity) = (
            self.config.watermarks(Log::Store).high,
            self.config.store.capacity_bytes,
        );
        let before = *self.store_room.borrow();
        let room = StoreRoom::of(before, self.store_blocked, usage.store.bytes, high, capacity);
        // Only a change wakes the links that wait on it.
        self.store_room
            .send_if_modified(|now| std::mem::replace(now, room) != room);
        if (before == StoreRoom::Exhausted) != (room == StoreRoom::Exhausted) {
            self.events.exhausted(room == StoreRoom::Exhausted, usage);
        }
    }

    fn usage(&self) -> Usage {
        let usage = *self.deps.journal.usage().borrow();
        let report = UsageReport::new(&usage, &self.config);
        let metrics = &self.deps.telemetry.metrics;
        metrics.store_buffer_fill_percent.set(report.store.fill_percent);
        metrics.forward_buffer_fill_percent.set(report.forward.fill_percent);
        usage
    }

    fn carry_out(&mut self, decision: Decision, usage: &Usage, ctx: &mut Context<Self>) {
        for (log, blocked) in decision.blocked {
            match log {
                Log::Store => {
                    self.rejecting.store(blocked, Ordering::Release);
                    self.store_blocked = blocked;
                    self.publish_store_room(usage);
                }
                Log::Forward => {
                    self.forward_full = blocked;
                    self.pause_pulls();
                }
            }
            self.events.blocked(log, blocked, usage);
        }
        if let Some(job) = decision.job {
            let run = run(self.deps.journal.clone(), job.clone());
            ctx.spawn(
                run.into_actor(self)
                    .map(move |result, actor, ctx| actor.done(job, result, ctx)),
            );
        }
    }

    fn done(&mut self, job: Job, result: Result<planner::Outcome, JournalError>, ctx: &mut Context<Self>) {
        let report = match result {
            Ok(outcome) => {
                self.events.outcome(&outcome);
                self.unreclaimed |= !outcome.applied.is_empty();
                JobReport {
                    deleted: outcome.applied.len(),
                    full_batch: outcome.full_batch,
                }
            }
            Err(error) => {
                self.deps.telemetry.emit(DeletionFailed { reason: &error });
                JobReport::default()
            }
        };
        let usage = self.usage();
        let now = self.now_ms();
        let decision = self.core.on_done(now, &job, report, &usage);
        self.carry_out(decision, &usage, ctx);
    }
}

/// Plans `job` on the blocking pool, then has the journal apply the plan.
async fn run(journal: Journal, job: Job) -> Result<planner::Outcome, JournalError> {
    let (storage, cursors) = (journal.storage(), journal.cursors());
    let planned = tokio::task::spawn_blocking(move || planner::plan(storage.as_ref(), &job, &cursors))
        .await
        .map_err(|e| JournalError::Storage(format!("planner task failed: {e}")))??;
    let applied = match planned.plan.is_empty() {
        true => planned.plan,
        false => journal.delete(planned.plan).await?,
    };
    Ok(planner::Outcome {
        applied,
        full_batch: planned.full_batch,
        kept: planned.kept,
    })
}

impl Actor for Backpressure {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let changes = futures::stream::unfold(self.deps.journal.usage(), |mut usage| async move {
            usage.changed().await.ok()?;
            Some(((), usage))
        });
        ctx.add_stream(changes);
        ctx.add_stream(space::samples(self.deps.journal.storage()));
        ctx.run_interval(TICK, |actor, ctx| actor.evaluate(ctx));
        self.evaluate(ctx);
    }
}

impl Supervised for Backpressure {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.core.reset();
    }
}

impl StreamHandler<()> for Backpressure {
    fn handle(&mut self, (): (), ctx: &mut Self::Context) {
        self.evaluate(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The journal is gone (shutdown); the ticks stop with the actor.
    }
}
