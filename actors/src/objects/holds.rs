//! Artifacts on their way into a fact: between the moment a fact's reference is checked (and the
//! object marked referenced) and the moment the fact is durable in a buffer, no scan of the logs
//! can see that fact. A [`Hold`] covers that gap: the caller keeps it until the append or insert
//! has been answered, and the sweep never deletes an object that is held, or that was released
//! after the sweep began (its fact may have been committed behind the sweep's scan).
//!
//! Sweeps are numbered (generations). A sweep begins a new generation *before* it scans; a key
//! whose last hold was released in an earlier generation had its fact committed before the scan
//! started, so the scan sees that fact if it is still retained.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

type ObjectKey = (String, String);

#[derive(Default)]
pub(super) struct Holds {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    generation: u64,
    keys: HashMap<ObjectKey, KeyHolds>,
}

struct KeyHolds {
    alive: usize,
    /// The generation in which the last hold was released.
    released: u64,
}

impl Holds {
    /// Holds `(bucket, key)` until the returned value drops.
    pub(super) fn hold(self: &Arc<Self>, bucket: &str, key: &str) -> Hold {
        let key = (bucket.to_owned(), key.to_owned());
        let mut state = self.state();
        let released = state.generation;
        state
            .keys
            .entry(key.clone())
            .or_insert(KeyHolds { alive: 0, released })
            .alive += 1;
        Hold {
            holds: self.clone(),
            key,
        }
    }

    /// Begins a sweep; returns its generation. Keys released before it no longer matter.
    pub(super) fn begin_sweep(&self) -> u64 {
        let mut state = self.state();
        state.keys.retain(|_, holds| holds.alive > 0);
        state.generation += 1;
        state.generation
    }

    /// Whether the sweep of `generation` may delete `(bucket, key)`: nobody holds it, and nobody
    /// released it since that sweep began.
    pub(super) fn may_delete(&self, bucket: &str, key: &str, generation: u64) -> bool {
        let state = self.state();
        match state.keys.get(&(bucket.to_owned(), key.to_owned())) {
            None => true,
            Some(holds) => holds.alive == 0 && holds.released < generation,
        }
    }

    fn release(&self, key: &ObjectKey) {
        let mut state = self.state();
        let generation = state.generation;
        if let Some(holds) = state.keys.get_mut(key) {
            holds.alive = holds.alive.saturating_sub(1);
            holds.released = generation;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps one object from being swept while the fact that references it is being stored.
#[must_use = "the object may be swept once the hold drops: keep it until the fact is durable"]
pub struct Hold {
    holds: Arc<Holds>,
    key: ObjectKey,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hold({}/{})", self.key.0, self.key.1)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.holds.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_object_or_one_released_during_the_sweep_is_kept() {
        let holds = Arc::new(Holds::default());
        let early = holds.hold("coa", "a");
        let late = holds.hold("coa", "b");
        drop(early);
        let sweep = holds.begin_sweep();
        assert!(holds.may_delete("coa", "a", sweep), "released before the sweep began");
        assert!(!holds.may_delete("coa", "b", sweep), "still held");
        drop(late);
        assert!(
            !holds.may_delete("coa", "b", sweep),
            "released after the sweep began: its fact may be behind the scan"
        );
        let next = holds.begin_sweep();
        assert!(holds.may_delete("coa", "b", next));
        assert!(holds.may_delete("coa", "never-held", next));
    }

    #[test]
    fn every_hold_of_a_key_must_be_released() {
        let holds = Arc::new(Holds::default());
        let (first, second) = (holds.hold("coa", "a"), holds.hold("coa", "a"));
        drop(first);
        let sweep = holds.begin_sweep();
        assert!(!holds.may_delete("coa", "a", sweep));
        drop(second);
        assert!(holds.may_delete("coa", "a", holds.begin_sweep()));
    }
}
