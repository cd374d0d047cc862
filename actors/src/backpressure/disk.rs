//! The disk guard, a plain value: keeps room on the data directory's file system for the work
//! that frees room. Appends are refused, pulls pause and confirmed facts are reclaimed while
//! the free space is below what the node needs — `node.disk_reserve_bytes` plus what RocksDB
//! will write by itself ([`DiskSpace::pending_bytes`]: memtables to flush, the log's next chunk).
//! So a disk never fills with facts nobody can confirm away: confirms, cursor writes, deletions
//! and the flushes and compactions that give space back always find room.
//!
//! It lets appends in again once the free space is back above the need by a margin, so the node
//! does not flap at the threshold. Between two measurements the journal spends a budget of what
//! is above the need, so a burst of appends cannot outrun the measurements.

use std::time::{Duration, Instant};

use crate::storage::DiskSpace;

/// The least margin between refusing and admitting again.
const MIN_MARGIN: u64 = 4 << 20;
/// What the deletions of one reclaim add to a flush (their tombstones), at most.
const TOMBSTONES: u64 = 4 << 20;
/// How long a refused commit counts in the need after the last refusal: a pull refused for the
/// disk is asked again within seconds of being let through, and refreshes it.
const WANTED_FOR: Duration = Duration::from_secs(60);

/// Where the disk stands, as the actor publishes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskState {
    /// Appends refused and pulls paused for lack of space.
    pub low: bool,
    pub space: DiskSpace,
    /// Free bytes the node needs before it takes more facts in.
    pub needed: u64,
}

#[derive(Debug, Clone)]
pub(super) struct DiskGuard {
    reserve: u64,
    state: DiskState,
    /// The most a commit refused by the budget wanted, kept until the disk has room for it: a
    /// page that does not fit above the need holds its pull back as a low disk does. Forgotten
    /// [`WANTED_FOR`] after the last refusal, so one producer's oversized batch, given up, does
    /// not keep the disk low for everyone.
    wanted: u64,
    /// When a refusal last set or raised `wanted`.
    wanted_at: Option<Instant>,
}

impl DiskGuard {
    pub(super) fn new(reserve: u64) -> Self {
        Self {
            reserve,
            state: DiskState::default(),
            wanted: 0,
            wanted_at: None,
        }
    }

    pub(super) fn state(&self) -> DiskState {
        self.state
    }

    /// A new measurement, and the most disk bytes a commit was refused since the last one;
    /// returns the new `low` when it changed.
    pub(super) fn on_space(&mut self, space: DiskSpace, refused: u64, now: Instant) -> Option<bool> {
        if refused > 0 {
            self.wanted = self.wanted.max(refused);
            self.wanted_at = Some(now);
        } else if self
            .wanted_at
            .is_some_and(|at| now.saturating_duration_since(at) >= WANTED_FOR)
        {
            self.wanted = 0;
        }
        let base = self.reserve.saturating_add(space.pending_bytes());
        let needed = base.saturating_add(self.wanted);
        let low = match self.state.low {
            false => space.free_bytes < needed,
            true => space.free_bytes < needed.saturating_add(self.margin()),
        };
        let changed = (low != self.state.low).then_some(low);
        let needed = match low {
            true => needed,
            // There is room for what was refused: it is asked again, from the budget.
            false => {
                self.wanted = 0;
                base
            }
        };
        self.state = DiskState { low, space, needed };
        changed
    }

    /// The disk bytes new facts may take until the next measurement: none while low.
    pub(super) fn budget(&self) -> u64 {
        match self.state.low {
            true => 0,
            false => self.state.space.free_bytes.saturating_sub(self.state.needed),
        }
    }

    /// Whether there is room to give space back with `retained` bytes of facts still kept: the
    /// flush that comes first writes what the memtables still hold, at most those facts (with
    /// their index entries) and the deletions' tombstones. A flush that failed for lack of space
    /// would stop every write, so none is started without room for it.
    pub(super) fn can_reclaim(&self, retained: u64) -> bool {
        let live = retained.saturating_add(retained / 4).saturating_add(TOMBSTONES);
        let flush = self.state.space.memtable_bytes.min(live);
        self.state.space.free_bytes >= flush.saturating_add(MIN_MARGIN / 2)
    }

    fn margin(&self) -> u64 {
        (self.reserve / 4).max(MIN_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// `pending_mib` of memtables (the log's chunk is counted with them here).
    fn space(free_mib: u64, pending_mib: u64) -> DiskSpace {
        DiskSpace {
            free_bytes: free_mib * MIB,
            total_bytes: 1024 * MIB,
            memtable_bytes: pending_mib * MIB,
            log_chunk_bytes: 0,
        }
    }

    #[test]
    fn low_below_the_reserve_plus_what_storage_writes_by_itself_and_back_above_a_margin() {
        let mut guard = DiskGuard::new(64 * MIB);
        assert_eq!(guard.on_space_of(space(200, 20)), None, "84 MiB needed, 200 free");
        assert_eq!(guard.budget(), 116 * MIB, "what is above the need");
        assert_eq!(guard.on_space_of(space(90, 20)), None);
        assert_eq!(guard.on_space_of(space(83, 20)), Some(true), "below 64 + 20");
        assert_eq!(guard.state().needed, 84 * MIB);
        assert_eq!(guard.budget(), 0, "nothing new while low");
        assert_eq!(guard.on_space_of(space(90, 20)), None, "not yet 16 MiB above the need");
        assert_eq!(
            guard.on_space_of(space(90, 5)),
            Some(false),
            "the memtables were flushed"
        );
        assert_eq!(guard.on_space_of(space(70, 5)), None);
    }

    impl DiskGuard {
        fn on_space_of(&mut self, space: DiskSpace) -> Option<bool> {
            self.on_space(space, 0, Instant::now())
        }
    }

    /// A receiver whose free space was above the need by less than a page's cost had its pages
    /// refused, pulled again and refused for ever: never low, so nothing reclaimed, nothing said.
    /// A refused commit now counts in the need until there is room for it.
    #[test]
    fn a_commit_refused_for_the_budget_is_needed_until_it_fits() {
        let mut guard = DiskGuard::new(64 * MIB);
        let t0 = Instant::now();
        assert_eq!(guard.on_space(space(90, 20), 0, t0), None, "6 MiB above the need of 84");
        assert_eq!(
            guard.on_space(space(90, 20), 8 * MIB, t0),
            Some(true),
            "an 8 MiB page refused"
        );
        assert_eq!(guard.state().needed, 92 * MIB, "the page counts in the need");
        assert_eq!(
            guard.on_space(space(100, 20), 0, t0),
            None,
            "still low: it needs 92 + 16"
        );
        assert_eq!(
            guard.on_space(space(108, 20), 0, t0),
            Some(false),
            "room for it, and the margin"
        );
        assert_eq!(guard.state().needed, 84 * MIB, "asked again from the budget");
        assert_eq!(guard.budget(), 24 * MIB);
        assert_eq!(guard.on_space(space(90, 20), 0, t0), None, "forgotten once it fitted");

        // A refusal nobody repeats (a producer's batch, given up) is forgotten after a while.
        assert_eq!(guard.on_space(space(90, 20), 32 * MIB, t0), Some(true));
        let later = t0 + WANTED_FOR;
        assert_eq!(guard.on_space(space(110, 20), 0, later), Some(false), "forgotten");
    }

    #[test]
    fn without_a_reserve_the_node_still_keeps_room_for_storage_itself() {
        let mut guard = DiskGuard::new(0);
        assert_eq!(guard.on_space_of(space(17, 18)), Some(true));
        assert_eq!(guard.on_space_of(space(21, 18)), None, "the margin is at least 4 MiB");
        assert_eq!(guard.on_space_of(space(22, 18)), Some(false));
    }

    #[test]
    fn reclaiming_needs_room_for_the_flush_of_what_is_still_kept() {
        let mut guard = DiskGuard::new(64 * MIB);
        guard.on_space_of(space(30, 20));
        assert!(guard.state().low && guard.can_reclaim(100 * MIB), "room for all 20 MiB");
        guard.on_space_of(space(10, 20));
        assert!(
            !guard.can_reclaim(100 * MIB),
            "20 MiB of facts kept cannot be flushed into 10 MiB"
        );
        assert!(guard.can_reclaim(0), "what was deleted is not written: only tombstones");
        assert!(
            !guard.can_reclaim(4 * MIB),
            "4 MiB kept, 4 MiB of tombstones, 2 MiB margin"
        );
    }
}
