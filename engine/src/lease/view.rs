//! What one observer knows of the lease, and what it may do about it: a plain core fed with
//! the revisions it sees and the instants it sees them at (its own monotonic clock).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Holder, LeaseState};

/// The value of the lease key (JSON, readable with `nats kv get`). Every write differs from
/// every other (`after` is the revision it replaced), so a writer whose answer was lost can
/// tell its own write by reading the key back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The holder's instance; `None` once released.
    pub holder: Option<String>,
    /// The holder's epoch; `None` on the write that takes the lease, whose revision it is.
    pub epoch: Option<u64>,
    /// The revision this write replaced (0: the key did not exist).
    pub after: u64,
}

impl LeaseValue {
    /// The holder named by this value written at `revision`.
    pub fn holder_at(&self, revision: u64) -> Option<Holder> {
        self.holder.as_ref().map(|instance| Holder {
            instance: instance.clone(),
            epoch: self.epoch.unwrap_or(revision),
        })
    }
}

/// What an acquire may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Write over `revision` (0: create the key).
    TakeOver { revision: u64 },
    /// `holder` is live until `until` (this observer's clock).
    Wait { holder: Holder, until: Instant },
}

#[derive(Debug, Clone)]
struct Seen {
    revision: u64,
    holder: Option<Holder>,
    at: Instant,
}

/// One observer's view of the lease.
#[derive(Debug, Clone)]
pub struct LeaseView {
    ttl: Duration,
    seen: Seen,
}

impl LeaseView {
    /// A view that has seen nothing yet: it treats the lease as held by nobody it knows, and
    /// waits a whole TTL from `now` before it would take a lease it then finds held.
    pub fn new(ttl: Duration, now: Instant) -> Self {
        Self {
            ttl,
            seen: Seen {
                revision: 0,
                holder: None,
                at: now,
            },
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Records the key as read or watched at `now`: its `revision` (0 if absent) and holder
    /// (`None` if absent, released or deleted). Returns whether it changed. A revision older
    /// than one already seen (a lagging replica's read) is ignored.
    pub fn observe(&mut self, now: Instant, revision: u64, holder: Option<Holder>) -> bool {
        if revision < self.seen.revision || (revision == self.seen.revision && revision != 0) {
            return false;
        }
        self.seen = Seen {
            revision,
            holder,
            at: now,
        };
        true
    }

    /// When the holder seen last runs out, as this observer measures it.
    pub fn expires_at(&self) -> Option<Instant> {
        self.seen.holder.as_ref().map(|_| self.seen.at + self.ttl)
    }

    pub fn state(&self, now: Instant) -> LeaseState {
        LeaseState {
            holder: self.seen.holder.clone(),
            revision: self.seen.revision,
            expired: self.expires_at().is_some_and(|at| now >= at),
        }
    }

    /// What an acquire may do at `now`. A lease held under one's own name is waited out like any
    /// other: the grant of an earlier incarnation is not this one's.
    pub fn claim(&self, now: Instant) -> Claim {
        match (&self.seen.holder, self.expires_at()) {
            (Some(holder), Some(until)) if now < until => Claim::Wait {
                holder: holder.clone(),
                until,
            },
            _ => Claim::TakeOver {
                revision: self.seen.revision,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    fn held(instance: &str, epoch: u64) -> Option<Holder> {
        Some(Holder {
            instance: instance.into(),
            epoch,
        })
    }

    #[test]
    fn an_absent_key_is_taken_by_creating_it() {
        let now = Instant::now();
        let mut view = LeaseView::new(TTL, now);
        view.observe(now, 0, None);
        assert_eq!(view.claim(now), Claim::TakeOver { revision: 0 });
        assert!(view.state(now).is_free());
    }

    #[test]
    fn a_live_holder_is_waited_out_for_a_whole_ttl_from_first_sight() {
        let t0 = Instant::now();
        let mut view = LeaseView::new(TTL, t0);
        let seen_at = t0 + Duration::from_secs(1);
        assert!(view.observe(seen_at, 7, held("a", 7)));
        let just_before = seen_at + TTL - Duration::from_millis(1);
        assert!(matches!(view.claim(just_before), Claim::Wait { until, .. } if until == seen_at + TTL));
        assert!(!view.state(just_before).expired);
        assert_eq!(view.claim(seen_at + TTL), Claim::TakeOver { revision: 7 });
        assert!(view.state(seen_at + TTL).expired);
    }

    #[test]
    fn each_renewal_restarts_the_observers_clock() {
        let t0 = Instant::now();
        let mut view = LeaseView::new(TTL, t0);
        view.observe(t0, 7, held("a", 7));
        let renewed = t0 + Duration::from_secs(4);
        assert!(view.observe(renewed, 9, held("a", 7)));
        assert!(matches!(view.claim(t0 + TTL), Claim::Wait { .. }));
        assert_eq!(view.claim(renewed + TTL), Claim::TakeOver { revision: 9 });
    }

    #[test]
    fn seeing_the_same_or_an_older_revision_again_does_not_renew() {
        let t0 = Instant::now();
        let mut view = LeaseView::new(TTL, t0);
        view.observe(t0, 9, held("a", 7));
        assert!(!view.observe(t0 + Duration::from_secs(3), 9, held("a", 7)));
        assert!(!view.observe(t0 + Duration::from_secs(4), 8, held("a", 7)));
        assert_eq!(view.claim(t0 + TTL), Claim::TakeOver { revision: 9 });
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let t0 = Instant::now();
        let mut view = LeaseView::new(TTL, t0);
        view.observe(t0, 7, held("a", 7));
        view.observe(t0, 8, None);
        assert_eq!(view.claim(t0), Claim::TakeOver { revision: 8 });
    }

    #[test]
    fn ones_own_name_gets_no_shortcut() {
        let t0 = Instant::now();
        let mut view = LeaseView::new(TTL, t0);
        view.observe(t0, 7, held("me", 7));
        assert!(matches!(view.claim(t0), Claim::Wait { .. }));
    }

    #[test]
    fn the_epoch_is_the_revision_that_took_the_lease() {
        let taking = LeaseValue {
            holder: Some("a".into()),
            epoch: None,
            after: 4,
        };
        assert_eq!(taking.holder_at(5), held("a", 5));
        let renewal = LeaseValue {
            holder: Some("a".into()),
            epoch: Some(5),
            after: 5,
        };
        assert_eq!(renewal.holder_at(6), held("a", 5));
    }
}
