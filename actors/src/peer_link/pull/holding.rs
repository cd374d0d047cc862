//! The next hops a relay holds at one peer while its store is full, as a plain value tested
//! without a runtime (docs/architecture.md, "Held destinations").
//!
//! A hop is held from the offset of its first fact a page was cut before: the pulls leave its
//! zones' facts at the peer (`FetchHeld`), and nothing from the lowest such offset on is
//! confirmed, so the peer keeps them. A hold is released when the store has room again (every
//! hop), when the hop's link is up while the store is only full, or once it has lasted
//! [`Holds::most`]: the pull then goes back to the first fact it held, and the copies of what it
//! took meanwhile are dropped as duplicates. That last release keeps those copies within the
//! relay's dedupe windows; the hop is then *overdue*, and holds the whole link at the cut (as
//! before holds) until its link is up again.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use crate::{backpressure::StoreRoom, relay::Routing};

/// One hop held, with its report (`R`: the session's `relay_held`, `()` in tests).
#[derive(Debug)]
struct Held<R> {
    hop: String,
    /// The offset of its first fact held.
    from: u64,
    since: Instant,
    report: R,
}

/// Holds to end, and whether because they lasted too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Release {
    pub(super) hops: Vec<String>,
    pub(super) overdue: bool,
}

/// The holds of one peer link.
#[derive(Debug)]
pub(super) struct Holds<R> {
    held: Vec<Held<R>>,
    /// Hops whose hold lasted [`Holds::most`]: not held again until their link is up.
    overdue: BTreeSet<String>,
    most: Duration,
}

impl<R> Holds<R> {
    /// Holds lasting at most `most`: half the shorter of the relay's dedupe windows.
    pub(super) fn new(most: Duration) -> Self {
        Self {
            held: Vec::new(),
            overdue: BTreeSet::new(),
            most,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds `hop` from `offset` on. False when it cannot be: it is held already (a fact of its
    /// zones came all the same: the peer could not read its destination) or overdue.
    pub(super) fn hold(&mut self, hop: &str, offset: u64, now: Instant, report: impl FnOnce() -> R) -> bool {
        if self.overdue.contains(hop) || self.held.iter().any(|held| held.hop == hop) {
            return false;
        }
        self.held.push(Held {
            hop: hop.to_owned(),
            from: offset,
            since: now,
            report: report(),
        });
        true
    }

    /// The highest offset that may be confirmed of those taken up to `high`: below every fact held.
    pub(super) fn cap(&self, high: u64) -> u64 {
        self.held
            .iter()
            .fold(high, |high, held| high.min(held.from.saturating_sub(1)))
    }

    /// The destination zones whose facts the pulls leave at the peer.
    pub(super) fn zones(&self, routing: &Routing) -> Vec<String> {
        self.held.iter().flat_map(|held| routing.zones_via(&held.hop)).collect()
    }

    /// The first fact held and its hop: where a peer that cannot leave facts out is cut.
    pub(super) fn first(&self) -> Option<(&str, u64)> {
        self.held
            .iter()
            .min_by_key(|held| held.from)
            .map(|held| (held.hop.as_str(), held.from))
    }

    /// When the oldest hold lasts [`Holds::most`].
    pub(super) fn due(&self) -> Option<Instant> {
        self.held.iter().map(|held| held.since + self.most).min()
    }

    /// The holds to end now, if any: every one when the store has room, those whose link is up
    /// while it is only full, and those that lasted [`Holds::most`] (overdue).
    pub(super) fn releasable(&self, room: StoreRoom, linked: &BTreeSet<String>, now: Instant) -> Option<Release> {
        let pick = |pick: &dyn Fn(&Held<R>) -> bool| -> Vec<String> {
            self.held
                .iter()
                .filter(|held| pick(held))
                .map(|held| held.hop.clone())
                .collect()
        };
        let overdue = pick(&|held| now >= held.since + self.most);
        let released = match room {
            _ if !overdue.is_empty() => Release {
                hops: overdue,
                overdue: true,
            },
            StoreRoom::Room => Release {
                hops: pick(&|_| true),
                overdue: false,
            },
            StoreRoom::Full => Release {
                hops: pick(&|held| linked.contains(&held.hop)),
                overdue: false,
            },
            StoreRoom::Exhausted => return None,
        };
        (!released.hops.is_empty()).then_some(released)
    }

    /// Ends the holds `release` names: their reports, and the lowest offset they held from (the
    /// pull goes back there).
    pub(super) fn release(&mut self, release: &Release) -> (Vec<R>, Option<u64>) {
        let (ended, kept) = std::mem::take(&mut self.held)
            .into_iter()
            .partition::<Vec<_>, _>(|held| release.hops.contains(&held.hop));
        self.held = kept;
        if release.overdue {
            self.overdue.extend(ended.iter().map(|held| held.hop.clone()));
        }
        let from = ended.iter().map(|held| held.from).min();
        (ended.into_iter().map(|held| held.report).collect(), from)
    }

    /// Ends every hold (the peer cannot leave facts out, or lost what it served).
    pub(super) fn release_all(&mut self) -> Vec<R> {
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|held| held.report)
            .collect()
    }

    /// `hop`'s link is up again: it may be held anew.
    pub(super) fn linked_again(&mut self, hop: &str) {
        self.overdue.remove(hop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOST: Duration = Duration::from_secs(3600);

    fn linked(hops: &[&str]) -> BTreeSet<String> {
        hops.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn nothing_is_confirmed_from_the_first_fact_held_on() {
        let (mut holds, now) = (Holds::new(MOST), Instant::now());
        assert_eq!(holds.cap(90), 90, "nothing held");
        assert!(holds.hold("plant-a", 40, now, || ()));
        assert!(holds.hold("plant-c", 25, now, || ()));
        assert_eq!(holds.cap(90), 24);
        assert_eq!(holds.cap(10), 10);
        assert_eq!(holds.first(), Some(("plant-c", 25)));
        assert!(!holds.hold("plant-a", 60, now, || ()), "held already");
        assert_eq!(holds.cap(90), 24, "a hop is held from its first fact");
    }

    #[test]
    fn the_pages_leave_out_the_zones_through_each_hop_held() {
        let routing = Routing {
            zone: "idmz".into(),
            peers: linked(&["enterprise", "plant-a", "plant-b"]),
            routes: [("line-7".to_owned(), "plant-a".to_owned())].into_iter().collect(),
            relay: Vec::new(),
        };
        let mut holds = Holds::new(MOST);
        holds.hold("plant-a", 5, Instant::now(), || ());
        assert_eq!(holds.zones(&routing), ["plant-a", "line-7"]);
    }

    #[test]
    fn a_hop_linked_again_is_released_alone_and_room_releases_all() {
        let (mut holds, now) = (Holds::new(MOST), Instant::now());
        holds.hold("plant-a", 40, now, || "a");
        holds.hold("plant-b", 70, now, || "b");
        assert_eq!(holds.releasable(StoreRoom::Full, &linked(&["enterprise"]), now), None);
        assert_eq!(holds.releasable(StoreRoom::Exhausted, &linked(&["plant-b"]), now), None);
        let release = holds
            .releasable(StoreRoom::Full, &linked(&["plant-b"]), now)
            .expect("plant-b is up");
        assert_eq!(release.hops, ["plant-b"]);
        assert_eq!(holds.release(&release), (vec!["b"], Some(70)));
        assert_eq!(holds.cap(90), 39, "plant-a is still held");

        let room = holds.releasable(StoreRoom::Room, &linked(&[]), now).expect("room");
        assert_eq!(
            (room.hops.as_slice(), room.overdue),
            (["plant-a".to_owned()].as_slice(), false)
        );
        assert_eq!(holds.release(&room), (vec!["a"], Some(40)));
        assert!(holds.is_empty());
        assert!(holds.hold("plant-a", 95, now, || "a"), "held anew");
    }

    #[test]
    fn a_hold_that_lasts_too_long_ends_and_the_hop_holds_the_link_until_it_is_up() {
        let (mut holds, start) = (Holds::new(MOST), Instant::now());
        holds.hold("plant-a", 40, start, || ());
        assert_eq!(holds.due(), Some(start + MOST));
        let before = start + MOST - Duration::from_secs(1);
        assert_eq!(holds.releasable(StoreRoom::Full, &linked(&[]), before), None);
        let release = holds
            .releasable(StoreRoom::Exhausted, &linked(&[]), start + MOST)
            .expect("overdue");
        assert!(release.overdue);
        holds.release(&release);
        assert!(!holds.hold("plant-a", 60, start + MOST, || ()), "overdue");
        holds.linked_again("plant-a");
        assert!(holds.hold("plant-a", 60, start + MOST, || ()));
    }
}
