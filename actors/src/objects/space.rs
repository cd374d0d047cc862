//! What the artifact store holds against `[objects] capacity_bytes` (SPEC §7): the bytes of its
//! distinct blobs (content shared by several keys counts once, as it sits on disk once), plus the
//! uploads in progress, each of which reserves its announced size before its first byte is
//! written. An upload that would take the store past its capacity is refused up front with
//! `RESOURCE_EXHAUSTED`; space comes back when the sweep deletes unreferenced artifacts past
//! `[objects] retention`.
//!
//! `used` starts from a recount of the index at open and then moves with every blob installed or
//! removed, under the catalog's lock, so it always equals a recount.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus::IntGauge;

use super::ObjectError;

pub(super) struct Space {
    capacity: u64,
    state: Mutex<State>,
    /// `bsfg_object_store_blob_bytes`.
    bytes: IntGauge,
}

#[derive(Default)]
struct State {
    used: u64,
    reserved: u64,
}

impl Space {
    pub(super) fn new(capacity: u64, used: u64, bytes: IntGauge) -> Arc<Self> {
        let space = Arc::new(Self {
            capacity,
            state: Mutex::new(State { used, reserved: 0 }),
            bytes,
        });
        space.show(used);
        space
    }

    /// Room for an upload of `size` bytes, held until the returned reservation drops.
    pub(super) fn reserve(self: &Arc<Self>, size: u64) -> Result<Reservation, ObjectError> {
        let mut state = self.state();
        let wanted = state.used + state.reserved + size;
        if wanted > self.capacity {
            return Err(ObjectError::Full {
                size,
                used: state.used,
                reserved: state.reserved,
                capacity: self.capacity,
            });
        }
        state.reserved += size;
        Ok(Reservation {
            space: self.clone(),
            size,
        })
    }

    /// A blob of `bytes` was installed.
    pub(super) fn add(&self, bytes: u64) {
        let mut state = self.state();
        state.used += bytes;
        self.show(state.used);
    }

    /// A blob of `bytes` was removed.
    pub(super) fn remove(&self, bytes: u64) {
        let mut state = self.state();
        state.used = state.used.saturating_sub(bytes);
        self.show(state.used);
    }

    /// Bytes of the distinct blobs the index names.
    #[cfg(test)]
    pub(super) fn used(&self) -> u64 {
        self.state().used
    }

    fn show(&self, used: u64) {
        self.bytes.set(i64::try_from(used).unwrap_or(i64::MAX));
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Room held for one upload in progress; given back when dropped (the blob, once installed,
/// counts in `used` instead).
pub(super) struct Reservation {
    space: Arc<Space>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.space.state();
        state.reserved = state.reserved.saturating_sub(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(capacity: u64, used: u64) -> Arc<Space> {
        Space::new(capacity, used, IntGauge::new("bytes", "test").expect("gauge"))
    }

    #[test]
    fn reservations_count_until_dropped_and_refuse_what_would_not_fit() {
        let space = space(100, 40);
        let first = space.reserve(50).expect("fits");
        let refused = space.reserve(20).err().expect("40 used + 50 reserved + 20 > 100");
        assert!(
            matches!(
                refused,
                ObjectError::Full {
                    size: 20,
                    used: 40,
                    reserved: 50,
                    capacity: 100
                }
            ),
            "{refused}"
        );
        drop(first);
        let _second = space.reserve(60).expect("fits again once the first is given back");
        assert_eq!(space.used(), 40);
    }

    #[test]
    fn used_bytes_move_with_blobs_and_show_on_the_gauge() {
        let space = space(200, 0);
        space.add(150);
        assert_eq!(space.bytes.get(), 150);
        space.remove(100);
        assert_eq!((space.used(), space.bytes.get()), (50, 50));
        space.remove(100);
        assert_eq!(space.used(), 0, "never below zero");
    }
}
