//! The next hops a relay holds at one peer while its store is full, and what its pulls went
//! through meanwhile, as a plain value tested without a runtime (docs/architecture.md, "Held
//! destinations").
//!
//! A hop is held from the offset of its first fact a page was cut before: the pulls leave its
//! zones' facts at the peer (`FetchHeld`), and nothing from the lowest such offset on is
//! confirmed, so the peer keeps them. A hold is released when the store has room again (every
//! hop), or when the hop's link is up while the store is only full. The pull then goes back to
//! the first fact the hold held, and takes again only what it had left: the facts of the hold's
//! zones up to where it had gone ([`Replay`]); the others there were taken already
//! ([`Holds::taken`]), so they are neither stored nor counted twice.

use bsfg_proto::FetchedFact;

use crate::backpressure::StoreRoom;

/// One hop held, with its report (`R`: the session's `relay_held`, `()` in tests).
#[derive(Debug)]
struct Held<R> {
    hop: String,
    /// The destination zones whose facts go through the hop.
    zones: Vec<String>,
    /// The offset of its first fact held.
    from: u64,
    report: R,
}

/// What a released hold left at the peer: its zones' facts in `from..=upto`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Replay {
    zones: Vec<String>,
    from: u64,
    upto: u64,
}

/// A fact a page brought, where the peer served it: on a new connection, the peer serving the
/// same fact there again proves its offsets up to it name the facts they named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Witness {
    pub(super) offset: u64,
    from_zone: String,
    message_id: String,
}

impl Witness {
    fn of(fact: &FetchedFact) -> Self {
        let envelope = &fact.message.envelope;
        Self {
            offset: fact.offset,
            from_zone: envelope.from_zone.clone(),
            message_id: envelope.message_id.clone(),
        }
    }

    /// Whether `fact` is the one witnessed, where it was.
    pub(super) fn is(&self, fact: &FetchedFact) -> bool {
        let envelope = &fact.message.envelope;
        fact.offset == self.offset && envelope.from_zone == self.from_zone && envelope.message_id == self.message_id
    }
}

/// Holds to end: the hops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Release {
    pub(super) hops: Vec<String>,
}

/// The holds of one peer link, and how far its pulls went.
#[derive(Debug)]
pub(super) struct Holds<R> {
    held: Vec<Held<R>>,
    /// What released holds left behind, until the pulls are past it.
    replays: Vec<Replay>,
    /// The highest offset the pulls went through (facts taken, or left at the peer by a hold);
    /// lowered to go back for what a released hold left.
    pulled: u64,
    /// The highest offset the pulls ever went through: up to it, a fact was taken unless a hold
    /// left it.
    passed: u64,
    /// The last fact a page brought.
    witness: Option<Witness>,
}

impl<R> Default for Holds<R> {
    fn default() -> Self {
        Self {
            held: Vec::new(),
            replays: Vec::new(),
            pulled: 0,
            passed: 0,
            witness: None,
        }
    }
}

impl<R> Holds<R> {
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds `hop`, reaching `zones`, from `offset` on. False when it is held already (a fact of
    /// its zones came all the same: the peer could not read its destination).
    pub(super) fn hold(&mut self, hop: &str, zones: Vec<String>, offset: u64, report: impl FnOnce() -> R) -> bool {
        if self.held.iter().any(|held| held.hop == hop) {
            return false;
        }
        self.held.push(Held {
            hop: hop.to_owned(),
            zones,
            from: offset,
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
    pub(super) fn zones(&self) -> Vec<String> {
        self.held.iter().flat_map(|held| held.zones.iter().cloned()).collect()
    }

    /// The first fact held and its hop: where a peer that cannot leave facts out is cut.
    pub(super) fn first(&self) -> Option<(&str, u64)> {
        self.held
            .iter()
            .min_by_key(|held| held.from)
            .map(|held| (held.hop.as_str(), held.from))
    }

    /// The holds to end now, if any: every one when the store has room, those whose link is up
    /// while it is only full.
    pub(super) fn releasable(&self, room: StoreRoom, linked: &std::collections::BTreeSet<String>) -> Option<Release> {
        let ending = |held: &&Held<R>| match room {
            StoreRoom::Room => true,
            StoreRoom::Full => linked.contains(&held.hop),
            StoreRoom::Exhausted => false,
        };
        let hops: Vec<String> = self.held.iter().filter(ending).map(|held| held.hop.clone()).collect();
        (!hops.is_empty()).then_some(Release { hops })
    }

    /// Ends the holds `release` names, and returns their reports: the pulls go back to the first
    /// fact they held, for what they left.
    pub(super) fn release(&mut self, release: &Release) -> Vec<R> {
        let (ended, kept) = std::mem::take(&mut self.held)
            .into_iter()
            .partition::<Vec<_>, _>(|held| release.hops.contains(&held.hop));
        self.held = kept;
        let mut reports = Vec::with_capacity(ended.len());
        for held in ended {
            self.pulled = self.pulled.min(held.from.saturating_sub(1));
            self.replays.push(Replay {
                zones: held.zones,
                from: held.from,
                upto: self.passed,
            });
            reports.push(held.report);
        }
        reports
    }

    /// Ends every hold (the peer cannot leave facts out).
    pub(super) fn release_all(&mut self) -> Vec<R> {
        let hops = self.held.iter().map(|held| held.hop.clone()).collect();
        self.release(&Release { hops })
    }

    /// Forgets everything: the peer lost what it served, and its offsets may name other facts.
    pub(super) fn reset(&mut self) -> Vec<R> {
        let reports = std::mem::take(&mut self.held)
            .into_iter()
            .map(|held| held.report)
            .collect();
        *self = Self::default();
        reports
    }

    /// The pulls went through `offset` (a page inserted up to it, or cut after it). What a
    /// replay left up to there is stored now: a later release that sends the pulls back does not
    /// take it again.
    pub(super) fn went_through(&mut self, offset: u64) {
        self.pulled = self.pulled.max(offset);
        self.passed = self.passed.max(offset);
        let pulled = self.pulled;
        for replay in &mut self.replays {
            replay.from = replay.from.max(pulled + 1);
        }
        self.replays.retain(|replay| replay.from <= replay.upto);
    }

    /// A page brought `fact`, its last.
    pub(super) fn witnessed(&mut self, fact: &FetchedFact) {
        if self.witness.as_ref().is_none_or(|witness| witness.offset < fact.offset) {
            self.witness = Some(Witness::of(fact));
        }
    }

    /// What to ask a peer on a new connection whose resume point `resumed` it took, if what the
    /// holds know goes past it: the last fact a page brought, if that is past it too.
    pub(super) fn witness_past(&self, resumed: u64) -> Option<&Witness> {
        let past = |witness: &&Witness| witness.offset > resumed;
        (self.passed > resumed)
            .then_some(self.witness.as_ref().filter(past))
            .flatten()
    }

    /// Forgets what the pulls went through past `known`, up to which the peer's offsets are known
    /// to name the facts they named (its data may have been replaced by an older copy, whose
    /// offsets past there name new facts): those are pulled again and taken, or left if held, and
    /// no hold confirms past `known`. Copies of facts taken before are dropped as duplicates.
    pub(super) fn known_up_to(&mut self, known: u64) {
        self.pulled = self.pulled.min(known);
        self.passed = self.passed.min(known);
        for replay in &mut self.replays {
            replay.upto = replay.upto.min(known);
        }
        self.replays.retain(|replay| replay.from <= replay.upto);
        for held in &mut self.held {
            held.from = held.from.min(known + 1);
        }
        self.witness = self.witness.take().filter(|witness| witness.offset <= known);
    }

    /// Where a session resumes whose confirmed point is `inserted`: past what the pulls went
    /// through, since what a hold left there is held still, or taken again from `pulled` on.
    pub(super) fn resume(&self, inserted: u64) -> u64 {
        inserted.max(self.pulled)
    }

    /// The highest offset the pulls went through.
    pub(super) fn pulled(&self) -> u64 {
        self.pulled
    }

    /// Whether the fact at `offset` for `to_zone`, pulled again, was taken already: the pulls went
    /// past it, and no hold, on or released, left it at the peer.
    pub(super) fn taken(&self, offset: u64, to_zone: &str) -> bool {
        // Every fact of every page is asked: a new one (past `passed`) answers at the first test.
        if offset > self.passed {
            return false;
        }
        let zone = |zones: &[String]| zones.iter().any(|z| z == to_zone);
        let held = || self.held.iter().any(|held| offset >= held.from && zone(&held.zones));
        let left = || {
            self.replays
                .iter()
                .any(|replay| (replay.from..=replay.upto).contains(&offset) && zone(&replay.zones))
        };
        !held() && !left()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn linked(hops: &[&str]) -> BTreeSet<String> {
        hops.iter().map(|h| h.to_string()).collect()
    }

    fn zones(names: &[&str]) -> Vec<String> {
        names.iter().map(|z| z.to_string()).collect()
    }

    /// Holds `hop` (reaching the zone of the same name) from `from`, reported as `hop`.
    fn hold(holds: &mut Holds<&'static str>, hop: &'static str, from: u64) -> bool {
        holds.hold(hop, zones(&[hop]), from, || hop)
    }

    #[test]
    fn nothing_is_confirmed_from_the_first_fact_held_on() {
        let mut holds = Holds::default();
        assert_eq!(holds.cap(90), 90, "nothing held");
        assert!(hold(&mut holds, "plant-a", 40));
        assert!(hold(&mut holds, "plant-c", 25));
        assert_eq!(holds.cap(90), 24);
        assert_eq!(holds.cap(10), 10);
        assert_eq!(holds.first(), Some(("plant-c", 25)));
        assert_eq!(holds.zones(), ["plant-a", "plant-c"]);
        assert!(!hold(&mut holds, "plant-a", 60), "held already");
        assert_eq!(holds.cap(90), 24, "a hop is held from its first fact");
    }

    #[test]
    fn a_hop_linked_again_is_released_alone_and_room_releases_all() {
        let mut holds = Holds::default();
        hold(&mut holds, "plant-a", 40);
        hold(&mut holds, "plant-b", 70);
        holds.went_through(90);
        assert_eq!(holds.releasable(StoreRoom::Full, &linked(&["enterprise"])), None);
        assert_eq!(holds.releasable(StoreRoom::Exhausted, &linked(&["plant-b"])), None);
        let release = holds
            .releasable(StoreRoom::Full, &linked(&["plant-b"]))
            .expect("plant-b is up");
        assert_eq!(release.hops, ["plant-b"]);
        assert_eq!(holds.release(&release), ["plant-b"]);
        assert_eq!(holds.cap(90), 39, "plant-a is still held");
        assert_eq!(holds.resume(39), 69, "back to plant-b's first fact held");

        let room = holds.releasable(StoreRoom::Room, &linked(&[])).expect("room");
        assert_eq!(holds.release(&room), ["plant-a"]);
        assert!(holds.is_empty());
        assert_eq!(holds.resume(39), 39, "back to plant-a's");
        assert!(hold(&mut holds, "plant-a", 95), "held anew");
    }

    #[test]
    fn pulled_again_after_a_release_only_what_the_holds_left_is_taken() {
        let mut holds = Holds::default();
        holds.went_through(30);
        hold(&mut holds, "plant-a", 40);
        holds.went_through(60);
        hold(&mut holds, "plant-b", 70);
        holds.went_through(90);
        assert!(holds.taken(35, "plant-a"), "before the hold");
        assert!(!holds.taken(45, "plant-a"), "held");
        assert!(holds.taken(65, "plant-b"), "before plant-b's hold");
        assert!(!holds.taken(75, "plant-b"), "held");
        assert!(holds.taken(75, "idmz"), "not held");
        assert!(!holds.taken(91, "idmz"), "not pulled yet");

        holds.release(&Release {
            hops: vec!["plant-a".into()],
        });
        assert_eq!(holds.resume(39), 39);
        assert!(!holds.taken(45, "plant-a"), "left by the released hold");
        assert!(!holds.taken(85, "plant-b"), "still held");
        assert!(
            holds.taken(45, "plant-b") && holds.taken(45, "idmz"),
            "taken during the hold"
        );

        holds.went_through(60);
        assert!(!holds.taken(80, "plant-a"), "not yet pulled again");
        holds.went_through(90);
        assert!(holds.taken(80, "plant-a"), "pulled again: the replay is over");
    }

    #[test]
    fn what_a_replay_took_again_is_not_taken_a_third_time() {
        let mut holds = Holds::default();
        hold(&mut holds, "plant-b", 20);
        hold(&mut holds, "plant-a", 40);
        holds.went_through(90);
        holds.release(&Release {
            hops: vec!["plant-a".into()],
        });
        holds.went_through(60);
        assert!(!holds.taken(70, "plant-a"), "not yet pulled again");
        holds.release(&Release {
            hops: vec!["plant-b".into()],
        });
        assert_eq!(holds.resume(0), 19, "back to plant-b's first fact held");
        assert!(holds.taken(50, "plant-a"), "taken again before plant-b's release");
        assert!(!holds.taken(70, "plant-a") && !holds.taken(30, "plant-b"));
    }

    fn fact(offset: u64, id: &str) -> FetchedFact {
        let mut fact = FetchedFact {
            offset,
            message: bsfg_proto::Message::default(),
        };
        fact.message.envelope.from_zone = "enterprise".into();
        fact.message.envelope.message_id = id.into();
        fact
    }

    #[test]
    fn the_last_fact_a_page_brought_is_asked_for_only_past_the_resume_point() {
        let mut holds = Holds::default();
        holds.witnessed(&fact(30, "wo-30"));
        holds.went_through(30);
        hold(&mut holds, "plant-a", 31);
        holds.went_through(80);
        assert_eq!(holds.witness_past(30), None, "pages of held facts only brought nothing");
        holds.witnessed(&fact(85, "wo-85"));
        holds.witnessed(&fact(60, "wo-60"));
        holds.went_through(90);
        let witness = holds.witness_past(30).expect("past the resume point").clone();
        assert!(witness.is(&fact(85, "wo-85")));
        assert!(!witness.is(&fact(85, "new-1")), "another fact there");
        assert!(!witness.is(&fact(84, "wo-85")), "elsewhere");
        assert_eq!(holds.witness_past(90), None, "nothing known past the resume point");
    }

    #[test]
    fn what_is_known_past_a_proven_offset_is_forgotten_and_no_hold_confirms_past_it() {
        let mut holds = Holds::default();
        holds.went_through(30);
        hold(&mut holds, "plant-a", 31);
        holds.went_through(60);
        hold(&mut holds, "plant-b", 61);
        holds.went_through(90);
        holds.release(&Release {
            hops: vec!["plant-b".into()],
        });
        holds.went_through(70);
        holds.witnessed(&fact(90, "wo-90"));

        holds.known_up_to(50);
        assert_eq!(holds.resume(30), 50, "pulled again past 50");
        assert!(holds.taken(45, "plant-b"), "taken before 50");
        assert!(!holds.taken(55, "plant-b"), "pulled again, as new");
        assert!(!holds.taken(65, "idmz") && !holds.taken(75, "plant-b"));
        assert_eq!(holds.witness_past(30), None, "its witness was past 50");
        assert_eq!(holds.cap(90), 30, "plant-a still held from 31");
    }

    #[test]
    fn a_hold_from_past_what_is_proven_holds_from_just_after_it() {
        let mut holds = Holds::default();
        holds.went_through(60);
        hold(&mut holds, "plant-b", 61);
        holds.went_through(90);
        holds.known_up_to(50);
        assert_eq!(holds.cap(90), 50, "nothing confirmed past what is known");
        assert_eq!(holds.first(), Some(("plant-b", 51)));
        assert!(!holds.taken(55, "idmz") && !holds.taken(55, "plant-b"), "pulled again");
        assert!(holds.taken(45, "idmz"), "taken before what is known");
    }

    #[test]
    fn a_peer_that_lost_its_data_resets_everything() {
        let mut holds = Holds::default();
        holds.went_through(50);
        hold(&mut holds, "plant-a", 40);
        assert_eq!(holds.reset(), ["plant-a"]);
        assert!(holds.is_empty());
        assert_eq!(holds.resume(0), 0);
        assert!(!holds.taken(10, "idmz"), "its offsets may name other facts now");
    }
}
