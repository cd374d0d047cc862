//! The decisions of the `Backpressure` actor as a plain value, driven by usage and time and
//! tested without a runtime. Per buffer it keeps the hysteresis flag (appends refused for the
//! store buffer under `reject`, pulls paused for the forward buffer), and it chooses the next
//! deletion job; one job runs at a time, so there is only ever one planner.
//!
//! - At or above the high watermark a buffer is *trimmed* down below its low watermark: confirmed
//!   facts oldest first and, for the store buffer under `drop_oldest`, then the oldest unconfirmed.
//! - If it is still at or above the high watermark after a trim, a `reject` store buffer refuses
//!   appends and a forward buffer pauses pulls, until fill falls below the low watermark. While
//!   blocked, trims keep running (at most every [`TRIM_RETRY`] when they find nothing), because
//!   only deleting confirmed facts can bring fill down.
//! - Every buffer is *swept* for retention every `retention / 10` (clamped to 250 ms ..= 60 s),
//!   at once again while sweeps find full batches.
//! - While the disk is low (see `disk`), every confirmed fact of both buffers is reclaimed, at
//!   most every [`DISK_TRIM_RETRY`] when there is none: a full disk must not keep facts nobody
//!   waits for. Unconfirmed facts are never dropped for the disk, only by the policy above.
//! - When several jobs are due they take turns, so no buffer starves another.

use std::time::Duration;

use super::{BackpressureConfig, WhenFull};
use crate::storage::{Log, Usage};

/// How soon a trim that found nothing to delete is tried again.
pub const TRIM_RETRY: Duration = Duration::from_millis(100);
/// The same while only the disk asks for trims: waiting on peers to confirm takes longer.
pub const DISK_TRIM_RETRY: Duration = Duration::from_secs(1);
const SWEEP_MIN: Duration = Duration::from_millis(250);
const SWEEP_MAX: Duration = Duration::from_secs(60);
const LOGS: [Log; 2] = [Log::Store, Log::Forward];

/// A deletion job: planned off the writer, applied by the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Free at least `bytes`: confirmed facts oldest first, then (when `drop_unconfirmed`) the
    /// oldest unconfirmed ones.
    Trim {
        log: Log,
        bytes: u64,
        drop_unconfirmed: bool,
    },
    /// Delete facts stored before `cutoff_unix_ms`; unconfirmed ones only when `expire_unconfirmed`.
    Sweep {
        log: Log,
        cutoff_unix_ms: u64,
        expire_unconfirmed: bool,
    },
}

impl Job {
    fn slot(&self) -> usize {
        match self {
            Job::Trim { log: Log::Store, .. } => 0,
            Job::Trim { log: Log::Forward, .. } => 1,
            Job::Sweep { log: Log::Store, .. } => 2,
            Job::Sweep { log: Log::Forward, .. } => 3,
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobReport {
    /// Entries deleted.
    pub deleted: usize,
    /// The plan hit its size bound: there may be more to do at once.
    pub full_batch: bool,
}

/// What the actor must do now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// New blocked state of a buffer (store: appends refused; forward: pulls paused).
    pub blocked: Vec<(Log, bool)>,
    pub job: Option<Job>,
}

/// Byte thresholds of one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub high: u64,
    pub low: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct BufferState {
    blocked: bool,
    /// Not before this time (unix ms) is the buffer trimmed again (see [`due`]).
    next_trim_ms: u64,
    next_sweep_ms: u64,
}

pub struct Core {
    config: BackpressureConfig,
    state: [BufferState; 2],
    busy: bool,
    /// The slot (see [`Job::slot`]) where the search for the next job starts.
    turn: usize,
    disk_low: bool,
}

impl Core {
    pub fn new(config: BackpressureConfig) -> Self {
        Self {
            config,
            state: [BufferState::default(); 2],
            busy: false,
            turn: 0,
            disk_low: false,
        }
    }

    /// The disk guard's verdict: while low, confirmed facts are reclaimed whatever the fill.
    pub fn set_disk_low(&mut self, low: bool) {
        self.disk_low = low;
    }

    /// Usage changed or time passed.
    pub fn on_usage(&mut self, now_ms: u64, usage: &Usage) -> Decision {
        let mut decision = Decision::default();
        for log in LOGS {
            let state = &mut self.state[index(log)];
            if state.blocked && usage.of(log).bytes < self.config.watermarks(log).low {
                state.blocked = false;
                decision.blocked.push((log, false));
            }
        }
        if !self.busy {
            decision.job = self.next_job(now_ms, usage);
            self.busy = decision.job.is_some();
        }
        decision
    }

    /// The running job finished (`usage` is the usage after it).
    pub fn on_done(&mut self, now_ms: u64, job: &Job, report: JobReport, usage: &Usage) -> Decision {
        self.busy = false;
        let mut blocked_now = None;
        match *job {
            Job::Trim { log, .. } => {
                let full = usage.of(log).bytes >= self.config.watermarks(log).high;
                let blocks = full && self.blocks(log);
                let state = &mut self.state[index(log)];
                if report.deleted == 0 {
                    let retry = match full || state.blocked {
                        true => TRIM_RETRY,
                        false => DISK_TRIM_RETRY,
                    };
                    state.next_trim_ms = now_ms + retry.as_millis() as u64;
                }
                if blocks && !state.blocked {
                    state.blocked = true;
                    blocked_now = Some(log);
                }
            }
            Job::Sweep { log, .. } => {
                let wait = if report.full_batch {
                    0
                } else {
                    self.sweep_interval(log).as_millis() as u64
                };
                self.state[index(log)].next_sweep_ms = now_ms + wait;
            }
        }
        let mut decision = self.on_usage(now_ms, usage);
        decision.blocked.extend(blocked_now.map(|log| (log, true)));
        decision
    }

    /// Forgets a job that will never report (the actor restarted).
    pub fn reset(&mut self) {
        self.busy = false;
    }

    /// Whether a full buffer blocks its input (rather than dropping facts).
    fn blocks(&self, log: Log) -> bool {
        log == Log::Forward || self.config.policy.when_full() == WhenFull::Reject
    }

    fn sweep_interval(&self, log: Log) -> Duration {
        (self.config.limits(log).retention / 10).clamp(SWEEP_MIN, SWEEP_MAX)
    }

    fn next_job(&mut self, now_ms: u64, usage: &Usage) -> Option<Job> {
        let candidates = [
            self.trim(Log::Store, now_ms, usage),
            self.trim(Log::Forward, now_ms, usage),
            self.sweep(Log::Store, now_ms),
            self.sweep(Log::Forward, now_ms),
        ];
        let job = (0..candidates.len())
            .map(|i| (self.turn + i) % candidates.len())
            .find_map(|slot| candidates[slot].clone())?;
        self.turn = (job.slot() + 1) % candidates.len();
        Some(job)
    }

    fn trim(&self, log: Log, now_ms: u64, usage: &Usage) -> Option<Job> {
        let state = self.state[index(log)];
        if !due(now_ms, state.next_trim_ms, DISK_TRIM_RETRY) {
            return None;
        }
        let (bytes, marks) = (usage.of(log).bytes, self.config.watermarks(log));
        if bytes >= marks.high || (state.blocked && bytes >= marks.low) {
            return Some(Job::Trim {
                log,
                bytes: bytes + 1 - marks.low,
                drop_unconfirmed: log == Log::Store && self.config.policy.when_full() == WhenFull::DropOldest,
            });
        }
        (self.disk_low && bytes > 0).then_some(Job::Trim {
            log,
            bytes: u64::MAX,
            drop_unconfirmed: false,
        })
    }

    fn sweep(&self, log: Log, now_ms: u64) -> Option<Job> {
        // A retention beyond u64 milliseconds (half a billion years) keeps everything: a
        // narrowing cast would wrap it into a short one and expire facts.
        let retention = u64::try_from(self.config.limits(log).retention.as_millis()).unwrap_or(u64::MAX);
        let next = self.state[index(log)].next_sweep_ms;
        due(now_ms, next, self.sweep_interval(log)).then(|| Job::Sweep {
            log,
            cutoff_unix_ms: now_ms.saturating_sub(retention),
            expire_unconfirmed: !self.config.policy.safety_critical(),
        })
    }
}

/// Whether a job planned for `next_ms` (at most `longest` after the time it was planned) is due
/// at `now_ms`. Times come from the wall clock, which the job's cutoffs need; a clock stepped
/// back (NTP after a partition, a bad RTC) would otherwise hold every trim and sweep back for as
/// long as the step, and with them a blocked buffer, so a plan further ahead than any wait it
/// could have been given is due at once.
fn due(now_ms: u64, next_ms: u64, longest: Duration) -> bool {
    let longest = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX);
    now_ms >= next_ms || next_ms - now_ms > longest
}

fn index(log: Log) -> usize {
    match log {
        Log::Store => 0,
        Log::Forward => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        backpressure::{BufferLimits, Policy},
        storage::{BufferUsage, Usage},
    };

    const KIB: u64 = 1024;
    /// A time after start-up when no sweep is due (sweeps are tested on their own).
    const LATER: u64 = 1_000_000;

    fn config(when_full: WhenFull) -> BackpressureConfig {
        let limits = BufferLimits {
            capacity_bytes: 100 * KIB,
            retention: Duration::from_secs(3),
        };
        BackpressureConfig {
            store: limits,
            forward: limits,
            policy: Policy::new(when_full, false, 80, 70).expect("a valid policy"),
            disk_reserve_bytes: 0,
        }
    }

    fn usage(store_kib: u64, forward_kib: u64) -> Usage {
        let of = |kib: u64| BufferUsage {
            facts: kib,
            bytes: kib * KIB,
        };
        Usage {
            store: of(store_kib),
            forward: of(forward_kib),
        }
    }

    /// A core whose first sweeps are done, so only trims are due before `LATER + 300 ms`.
    fn settled(config: BackpressureConfig) -> Core {
        let mut core = Core::new(config);
        let mut job = core.on_usage(LATER, &usage(0, 0)).job;
        let mut sweeps = 0;
        while let Some(sweep) = job {
            assert!(matches!(sweep, Job::Sweep { .. }), "{sweep:?}");
            sweeps += 1;
            job = core.on_done(LATER, &sweep, JobReport::default(), &usage(0, 0)).job;
        }
        assert_eq!(sweeps, 2, "one first sweep per buffer");
        core
    }

    fn trim(log: Log, bytes: u64, drop_unconfirmed: bool) -> Job {
        Job::Trim {
            log,
            bytes,
            drop_unconfirmed,
        }
    }

    #[test]
    fn reject_trims_at_the_high_watermark_then_blocks_until_below_the_low_one() {
        let mut core = settled(config(WhenFull::Reject));
        assert_eq!(
            core.on_usage(LATER, &usage(79, 0)),
            Decision::default(),
            "below high: nothing"
        );
        let job = core.on_usage(LATER, &usage(80, 0)).job.expect("a trim at high");
        assert_eq!(job, trim(Log::Store, 10 * KIB + 1, false), "down to just below low");
        assert_eq!(core.on_usage(LATER, &usage(81, 0)).job, None, "one job at a time");
        // Nothing was confirmed: still full, so appends are refused.
        let done = core.on_done(LATER, &job, JobReport::default(), &usage(81, 0));
        assert_eq!(done.blocked, vec![(Log::Store, true)]);
        assert!(core.state[index(Log::Store)].blocked);
        assert_eq!(done.job, None, "a trim that found nothing waits before the next");
        // Peers confirm meanwhile: trims keep running while blocked, even below high.
        let later = LATER + TRIM_RETRY.as_millis() as u64;
        let job = core.on_usage(later, &usage(75, 0)).job.expect("a trim while blocked");
        assert_eq!(job, trim(Log::Store, 5 * KIB + 1, false));
        let report = JobReport {
            deleted: 40,
            full_batch: false,
        };
        let done = core.on_done(later, &job, report, &usage(69, 0));
        assert_eq!(done.blocked, vec![(Log::Store, false)], "below low: appends again");
        assert_eq!(done.job, None);
        assert!(!core.state[index(Log::Store)].blocked);
    }

    #[test]
    fn a_low_disk_reclaims_every_confirmed_fact_of_both_buffers_and_never_drops() {
        let mut core = settled(config(WhenFull::DropOldest));
        core.set_disk_low(true);
        let store = core.on_usage(LATER, &usage(10, 5)).job.expect("a trim for the disk");
        assert_eq!(
            store,
            trim(Log::Store, u64::MAX, false),
            "all that is confirmed, nothing else"
        );
        let done = core.on_done(LATER, &store, JobReport::default(), &usage(10, 5));
        assert!(
            done.blocked.is_empty(),
            "the disk blocks nothing through the fill flags"
        );
        let forward = done.job.expect("then the forward buffer's turn");
        assert_eq!(forward, trim(Log::Forward, u64::MAX, false));
        let done = core.on_done(LATER, &forward, JobReport::default(), &usage(10, 5));
        assert_eq!(done.job, None, "nothing confirmed anywhere: wait");
        let soon = LATER + TRIM_RETRY.as_millis() as u64;
        assert_eq!(
            core.on_usage(soon, &usage(10, 5)).job,
            None,
            "not as often as a full buffer"
        );
        let later = LATER + DISK_TRIM_RETRY.as_millis() as u64;
        let trims = |core: &mut Core, now| {
            let job = core.on_usage(now, &usage(10, 5)).job;
            core.reset();
            matches!(job, Some(Job::Trim { .. }))
        };
        // Jobs take turns with the sweeps now due, so a trim comes within a round of four.
        assert!((0..4).any(|_| trims(&mut core, later)), "trims again after the wait");
        core.set_disk_low(false);
        assert!(!(0..4).any(|_| trims(&mut core, later + 1)), "space is back");
    }

    #[test]
    fn a_trim_that_frees_enough_does_not_block() {
        let mut core = settled(config(WhenFull::Reject));
        let job = core.on_usage(LATER, &usage(85, 0)).job.expect("trim");
        let report = JobReport {
            deleted: 3,
            full_batch: false,
        };
        let done = core.on_done(LATER, &job, report, &usage(69, 0));
        assert!(
            done.blocked.is_empty() && !core.state[index(Log::Store)].blocked,
            "{done:?}"
        );
    }

    #[test]
    fn drop_oldest_trims_with_drops_and_never_blocks() {
        let mut core = settled(config(WhenFull::DropOldest));
        let job = core.on_usage(LATER, &usage(90, 0)).job.expect("trim");
        assert_eq!(job, trim(Log::Store, 20 * KIB + 1, true));
        let done = core.on_done(LATER, &job, JobReport::default(), &usage(95, 0));
        assert!(done.blocked.is_empty(), "{done:?}");
        assert!(!core.state[index(Log::Store)].blocked);
    }

    #[test]
    fn a_full_forward_buffer_pauses_pulls_whatever_the_store_policy() {
        let mut core = settled(config(WhenFull::DropOldest));
        let job = core.on_usage(LATER, &usage(0, 80)).job.expect("trim");
        assert_eq!(
            job,
            trim(Log::Forward, 10 * KIB + 1, false),
            "consumers' facts are never dropped"
        );
        let done = core.on_done(LATER, &job, JobReport::default(), &usage(0, 82));
        assert_eq!(done.blocked, vec![(Log::Forward, true)]);
        let done = core.on_usage(LATER + 1, &usage(0, 60));
        assert_eq!(done.blocked, vec![(Log::Forward, false)]);
    }

    #[test]
    fn blocked_buffers_take_turns_with_each_other_and_with_sweeps() {
        let mut core = settled(config(WhenFull::Reject));
        let full = usage(90, 90);
        let mut now = LATER;
        let mut seen = Vec::new();
        let mut job = core.on_usage(now, &full).job;
        for _ in 0..8 {
            let current = job.expect("always a job due");
            seen.push(current.slot());
            now += 1_000;
            job = core.on_done(now, &current, JobReport::default(), &full).job;
        }
        for slot in 0..4 {
            assert!(seen.contains(&slot), "slot {slot} got a turn: {seen:?}");
        }
    }

    #[test]
    fn sweeps_follow_the_retention_and_repeat_at_once_after_a_full_batch() {
        let mut core = Core::new(config(WhenFull::Reject));
        let job = core.on_usage(LATER, &usage(0, 0)).job.expect("sweep at start");
        assert_eq!(
            job,
            Job::Sweep {
                log: Log::Store,
                cutoff_unix_ms: LATER - 3_000,
                expire_unconfirmed: true
            }
        );
        let full = JobReport {
            deleted: 5_000,
            full_batch: true,
        };
        let next = core
            .on_done(LATER, &job, full, &usage(0, 0))
            .job
            .expect("forward's first sweep");
        assert!(matches!(next, Job::Sweep { log: Log::Forward, .. }), "{next:?}");
        let again = core.on_done(LATER, &next, JobReport::default(), &usage(0, 0)).job;
        assert!(
            matches!(again, Some(Job::Sweep { log: Log::Store, .. })),
            "a full batch sweeps again at once: {again:?}"
        );
        core.on_done(LATER, &again.expect("sweep"), JobReport::default(), &usage(0, 0));
        assert_eq!(core.on_usage(LATER + 299, &usage(0, 0)).job, None, "3 s / 10 = 300 ms");
        assert!(core.on_usage(LATER + 300, &usage(0, 0)).job.is_some());
    }

    #[test]
    fn a_clock_stepped_back_holds_up_neither_trims_nor_sweeps() {
        let mut core = settled(config(WhenFull::Reject));
        let job = core.on_usage(LATER, &usage(81, 0)).job.expect("a trim at high");
        let done = core.on_done(LATER, &job, JobReport::default(), &usage(81, 0));
        assert_eq!(done.blocked, vec![(Log::Store, true)]);
        // The clock steps back ten minutes; peers confirm meanwhile.
        let stepped = LATER - 600_000;
        let mut decision = core.on_usage(stepped, &usage(75, 0));
        let (mut jobs, mut blocked) = (Vec::new(), Vec::new());
        while let Some(job) = decision.job.take() {
            let (report, after) = match job {
                // The trim deletes what peers confirmed.
                Job::Trim { .. } => (
                    JobReport {
                        deleted: 40,
                        full_batch: false,
                    },
                    usage(60, 0),
                ),
                Job::Sweep { .. } => (JobReport::default(), usage(75, 0)),
            };
            decision = core.on_done(stepped, &job, report, &after);
            blocked.append(&mut decision.blocked);
            jobs.push(job);
        }
        // Trims and sweeps planned before the step come due at once, not in ten minutes.
        assert!(jobs.contains(&trim(Log::Store, 5 * KIB + 1, false)), "{jobs:?}");
        let swept = |l: Log| jobs.iter().any(|j| matches!(j, Job::Sweep { log, .. } if *log == l));
        assert!(swept(Log::Store) && swept(Log::Forward), "{jobs:?}");
        assert_eq!(blocked, vec![(Log::Store, false)], "appends taken again");
        // Then they keep their intervals on the new clock.
        assert_eq!(core.on_usage(stepped + 299, &usage(60, 0)).job, None);
        assert!(core.on_usage(stepped + 300, &usage(60, 0)).job.is_some());
    }

    #[test]
    fn sweep_intervals_are_clamped() {
        let mut config = config(WhenFull::Reject);
        config.store.retention = Duration::from_secs(7 * 24 * 3600);
        config.forward.retention = Duration::from_secs(1);
        let core = Core::new(config);
        assert_eq!(core.sweep_interval(Log::Store), SWEEP_MAX);
        assert_eq!(core.sweep_interval(Log::Forward), SWEEP_MIN);
    }

    #[test]
    fn a_retention_too_long_for_milliseconds_keeps_everything() {
        let mut config = config(WhenFull::Reject);
        // 2^64 ms and a bit: wrapped to u64 it would be a retention of a few hundred ms.
        config.store.retention = Duration::from_millis(u64::MAX) + Duration::from_secs(1);
        let job = Core::new(config).on_usage(LATER, &usage(0, 0)).job;
        assert!(
            matches!(job, Some(Job::Sweep { cutoff_unix_ms: 0, .. })),
            "nothing is old enough to expire: {job:?}"
        );
    }

    #[test]
    fn safety_critical_sweeps_keep_unconfirmed_facts() {
        let mut config = config(WhenFull::Reject);
        config.policy = Policy::new(WhenFull::Reject, true, 80, 70).expect("a valid policy");
        let job = Core::new(config).on_usage(LATER, &usage(0, 0)).job;
        assert!(
            matches!(
                job,
                Some(Job::Sweep {
                    expire_unconfirmed: false,
                    ..
                })
            ),
            "{job:?}"
        );
    }
}
