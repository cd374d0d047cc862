//! The journal's watch on its own writes. A commit that has not returned after the node's
//! `write_stall_timeout` means the disk or file system under the data directory stopped
//! completing writes (a hung controller, a network file system gone away, a frozen file system).
//! The watch then reports storage as failing, so the node is not ready and logs
//! `storage_failed`, and every caller waiting on the journal, and every later one until the
//! commit returns, is answered `UNAVAILABLE` instead of hanging with it. Their outcome is
//! unknown: the stalled commit may still complete, and a retry (the same `message_id`) is then
//! answered as the duplicate it is. The first commit that returns ends the stall; its success is
//! what the health reports as `storage_recovered`.
//!
//! The watch is a thread of its own, as the writer is: it looks whatever the runtime is doing,
//! and it touches no disk.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Weak,
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::Shared;
use crate::events::StorageOp;

/// What the journal knows about the commit in progress.
pub(super) struct Stall {
    /// How long a commit may run before it counts as stalled.
    after: Duration,
    base: Instant,
    /// When the commit in progress began, in milliseconds after `base` plus one; 0 while none is.
    began: AtomicU64,
    /// Whether the commit in progress has run past `after`.
    stalled: watch::Sender<bool>,
}

impl Stall {
    pub(super) fn new(after: Duration) -> Self {
        Self {
            after,
            base: Instant::now(),
            began: AtomicU64::new(0),
            stalled: watch::Sender::new(false),
        }
    }

    pub(super) fn after(&self) -> Duration {
        self.after
    }

    /// Marks a commit as in progress until the guard drops.
    pub(super) fn committing(&self) -> Committing<'_> {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.began.store(now + 1, Ordering::Release);
        Committing(self)
    }

    pub(super) fn is_stalled(&self) -> bool {
        *self.stalled.borrow()
    }

    /// Follows whether a commit is stalled.
    pub(super) fn subscribe(&self) -> watch::Receiver<bool> {
        self.stalled.subscribe()
    }

    /// One look at the commit in progress: when it has just passed `after`, marks the stall and
    /// calls `report` with how long the commit has run. The mark is decided under the watch
    /// channel's lock, which the guard also takes after clearing `began`: a commit that returns
    /// meanwhile never leaves a stall behind it.
    fn look(&self, report: impl FnOnce(Duration)) {
        self.stalled.send_if_modified(|stalled| {
            let began = self.began.load(Ordering::Acquire);
            if *stalled || began == 0 {
                return false;
            }
            let ran = self.base.elapsed().saturating_sub(Duration::from_millis(began - 1));
            if ran < self.after {
                return false;
            }
            *stalled = true;
            report(ran);
            true
        });
    }
}

/// A commit in progress; dropping it ends the commit and any stall of it.
pub(super) struct Committing<'a>(&'a Stall);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.began.store(0, Ordering::Release);
        self.0
            .stalled
            .send_if_modified(|stalled| std::mem::replace(stalled, false));
    }
}

/// Looks at the journal's commits a few times per `write_stall_timeout` (at most once per
/// second) until the journal is gone.
pub(super) fn watch(shared: Weak<Shared>, after: Duration) {
    let period = (after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        std::thread::sleep(period);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.stall.look(|ran| shared.health.stalled(StorageOp::Commit, ran));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_past_the_limit_is_stalled_until_it_returns() {
        let stall = Stall::new(Duration::from_millis(20));
        let mut reported = Vec::new();
        stall.look(|ran| reported.push(ran));
        assert!(!stall.is_stalled() && reported.is_empty(), "no commit, no stall");

        let commit = stall.committing();
        stall.look(|ran| reported.push(ran));
        assert!(!stall.is_stalled(), "a commit that just began is not stalled");
        std::thread::sleep(Duration::from_millis(30));
        let follower = stall.subscribe();
        stall.look(|ran| reported.push(ran));
        stall.look(|ran| reported.push(ran));
        assert!(stall.is_stalled() && follower.has_changed().unwrap_or(false));
        assert_eq!(reported.len(), 1, "a stall is reported once");
        assert!(reported[0] >= Duration::from_millis(20), "{reported:?}");

        drop(commit);
        assert!(!stall.is_stalled(), "the commit returned");
        stall.look(|ran| reported.push(ran));
        assert_eq!((stall.is_stalled(), reported.len()), (false, 1));
    }
}
