//! The planner against a real RocksDB, with plans applied by the journal: what is confirmed is
//! reclaimed first and oldest first, drops and expiries take only what the policy allows, the
//! dedupe window outlives reclaimed log entries, and — a property over random sequences of
//! appends, inserts, confirms, trims, sweeps, replayed plans and injected storage faults (failed
//! commits and failed reads) — the journal's usage always equals a recount by scan, a failed
//! command changes nothing, and usage survives a reopen.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::{
    core::Job,
    planner::{self, Planned},
};
use crate::{
    journal::{DeletePlan, JournalConfig, JournalError},
    storage::{CursorKey, DeleteReason, Index, Log},
    testkit::{faults::Op, message, page, Fixture, ZONE},
};

async fn append(fixture: &Fixture, to: &str, id: &str) -> u64 {
    fixture.append(message(ZONE, to, id)).await.expect("append").offset
}

async fn confirm(fixture: &Fixture, key: CursorKey, offset: u64) {
    fixture.journal.confirm(key, offset).await.expect("confirm");
}

fn plan(fixture: &Fixture, job: &Job) -> Planned {
    planner::plan(fixture.storage(), job, &fixture.journal.cursors()).expect("plan")
}

fn trim(log: Log, bytes: u64, drop_unconfirmed: bool) -> Job {
    Job::Trim {
        log,
        bytes,
        drop_unconfirmed,
    }
}

fn sweep(log: Log, cutoff_unix_ms: u64, expire_unconfirmed: bool) -> Job {
    Job::Sweep {
        log,
        cutoff_unix_ms,
        expire_unconfirmed,
    }
}

fn store_offsets(plan: &DeletePlan, reason: DeleteReason) -> Vec<u64> {
    plan.store
        .iter()
        .filter(|d| d.reason == reason)
        .map(|d| d.offset)
        .collect()
}

/// Store facts 1..=6 alternating between two peers; `enterprise` confirmed up to 3.
async fn two_peers() -> Fixture {
    let fixture = Fixture::open(JournalConfig::default());
    for i in 0..6 {
        let to = if i % 2 == 0 { "enterprise" } else { "plant-b" };
        append(&fixture, to, &format!("m{i}")).await;
    }
    confirm(&fixture, CursorKey::Peer("enterprise".into()), 3).await;
    fixture
}

#[tokio::test]
async fn store_trims_reclaim_confirmed_facts_first_and_drop_only_when_allowed() {
    let fixture = two_peers().await;
    // enterprise holds 1, 3, 5 (1 and 3 confirmed); plant-b holds 2, 4, 6 (none confirmed).
    let everything = trim(Log::Store, u64::MAX, false);
    let planned = plan(&fixture, &everything);
    assert_eq!(store_offsets(&planned.plan, DeleteReason::Reclaimed), vec![1, 3]);
    assert_eq!(planned.plan.store.len(), 2, "reject never plans unconfirmed facts");

    let one = fixture.storage().read_store("enterprise", 0, 1, 1).expect("read")[0].stored_bytes;
    let planned = plan(&fixture, &trim(Log::Store, one + 1, true));
    assert_eq!(
        store_offsets(&planned.plan, DeleteReason::Reclaimed),
        vec![1, 3],
        "both needed"
    );
    assert!(planned.plan.store.iter().all(|d| d.reason == DeleteReason::Reclaimed));

    let planned = plan(&fixture, &trim(Log::Store, 3 * one + 1, true));
    assert_eq!(store_offsets(&planned.plan, DeleteReason::Reclaimed), vec![1, 3]);
    assert_eq!(
        store_offsets(&planned.plan, DeleteReason::Dropped),
        vec![2, 4],
        "oldest unconfirmed next"
    );

    let applied = fixture.journal.delete(planned.plan).await.expect("delete");
    assert_eq!(applied.len(), 4);
    let left: Vec<u64> = ["enterprise", "plant-b"]
        .iter()
        .flat_map(|zone| fixture.storage().read_store(zone, 0, u64::MAX, 10).expect("read"))
        .map(|r| r.offset)
        .collect();
    assert_eq!(left, vec![5, 6]);
    assert_eq!(
        *fixture.journal.usage().borrow(),
        fixture.storage.recount().expect("recount")
    );
}

/// A trim reclaims confirmed facts, not their ids: a producer's retry after it is still a
/// duplicate answered with the original offset, and other content under the id still refused,
/// until a sweep past the retention from the reclaim forgets them. Before, the trim deleted the
/// ids with the facts: a retry was stored again, and other content under a delivered id was
/// acknowledged here and refused as a conflict by the peer, never delivered.
#[tokio::test]
async fn reclaimed_facts_stay_in_the_store_dedupe_window_until_a_sweep_forgets_them() {
    let fixture = two_peers().await;
    let planned = plan(&fixture, &trim(Log::Store, u64::MAX, false));
    assert_eq!(store_offsets(&planned.plan, DeleteReason::Reclaimed), vec![1, 3]);
    fixture.journal.delete(planned.plan).await.expect("reclaim");
    assert!(
        fixture.storage().read_entry(Log::Store, 1).expect("read").is_none(),
        "reclaimed"
    );
    let recount = || fixture.storage.recount().expect("recount");
    assert_eq!(*fixture.journal.usage().borrow(), recount());

    let again = fixture
        .append(message(ZONE, "enterprise", "m0"))
        .await
        .expect("a retry");
    assert_eq!((again.offset, again.duplicate), (1, true), "the original offset");
    let mut other = message(ZONE, "enterprise", "m2");
    other.fact.object_json = "{\"other\":true}".into();
    let refused = fixture
        .append(other)
        .await
        .expect_err("other content under a delivered id");
    assert!(
        matches!(refused, JournalError::AlreadyExists { offset: 3, .. }),
        "{refused:?}"
    );

    let early = plan(&fixture, &sweep(Log::Store, 1, false));
    assert!(
        store_offsets(&early.plan, DeleteReason::Forgotten).is_empty(),
        "within the retention"
    );
    let late = plan(&fixture, &sweep(Log::Store, u64::MAX, false));
    assert_eq!(store_offsets(&late.plan, DeleteReason::Forgotten), vec![1, 3]);
    let applied = fixture.journal.delete(late.plan).await.expect("forget");
    assert_eq!(store_offsets(&applied, DeleteReason::Forgotten), vec![1, 3]);
    assert_eq!(*fixture.journal.usage().borrow(), recount(), "forgetting frees no fact");
    let fresh = fixture.append(message(ZONE, "enterprise", "m0")).await.expect("append");
    assert!(
        !fresh.duplicate && fresh.offset > 6,
        "a new fact once forgotten: {fresh:?}"
    );
    let nothing = plan(&fixture, &sweep(Log::Store, u64::MAX, false));
    assert!(
        store_offsets(&nothing.plan, DeleteReason::Forgotten).is_empty(),
        "forgotten once"
    );
}

#[tokio::test]
async fn store_sweeps_expire_unconfirmed_facts_unless_safety_critical() {
    let fixture = two_peers().await;
    let nothing_old = plan(&fixture, &sweep(Log::Store, 0, true));
    assert!(nothing_old.plan.is_empty() && nothing_old.kept.is_empty());

    let safe = plan(&fixture, &sweep(Log::Store, u64::MAX, false));
    assert_eq!(store_offsets(&safe.plan, DeleteReason::Confirmed), vec![1, 3]);
    assert_eq!(safe.plan.store.len(), 2, "unconfirmed facts are kept");
    let kept: BTreeSet<(String, u64)> = safe.kept.iter().map(|k| (k.zone.clone(), k.offset)).collect();
    let expected = [("enterprise".to_owned(), 5), ("plant-b".to_owned(), 2)];
    assert_eq!(
        kept,
        expected.into_iter().collect(),
        "the oldest kept fact of each peer"
    );

    let standard = plan(&fixture, &sweep(Log::Store, u64::MAX, true));
    assert_eq!(store_offsets(&standard.plan, DeleteReason::Confirmed), vec![1, 3]);
    assert_eq!(store_offsets(&standard.plan, DeleteReason::Expired), vec![5, 2, 4, 6]);
    assert!(!standard.full_batch);
}

#[tokio::test]
async fn forward_trims_need_every_consumer_and_sweeps_walk_the_window() {
    let fixture = Fixture::open(JournalConfig::default());
    let ids = ["a", "b", "c", "d"];
    fixture
        .journal
        .insert(page("enterprise", 1, &ids))
        .await
        .expect("insert");
    let everything = trim(Log::Forward, u64::MAX, false);
    assert!(
        plan(&fixture, &everything).plan.is_empty(),
        "no consumer known: nothing confirmed"
    );
    confirm(&fixture, CursorKey::Consumer("mes".into()), 3).await;
    confirm(&fixture, CursorKey::Consumer("erp".into()), 1).await;
    let planned = plan(&fixture, &everything);
    let offsets: Vec<u64> = planned.plan.forward.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, vec![1], "the slowest consumer decides");
    assert!(planned.plan.forward.iter().all(|d| d.log && !d.window));
    fixture.journal.delete(planned.plan).await.expect("reclaim");

    let safe = plan(&fixture, &sweep(Log::Forward, u64::MAX, false));
    let leaving: Vec<(u64, bool)> = safe.plan.forward.iter().map(|d| (d.offset, d.log)).collect();
    assert_eq!(
        leaving,
        vec![(1, false)],
        "the reclaimed fact leaves the window; 2 is unconfirmed"
    );
    assert_eq!(safe.kept.iter().map(|k| k.offset).collect::<Vec<_>>(), vec![2]);

    let standard = plan(&fixture, &sweep(Log::Forward, u64::MAX, true));
    let reasons: Vec<(u64, DeleteReason)> = standard.plan.forward.iter().map(|d| (d.offset, d.reason)).collect();
    let expected = [
        (1, DeleteReason::Confirmed),
        (2, DeleteReason::Expired),
        (3, DeleteReason::Expired),
        (4, DeleteReason::Expired),
    ];
    assert_eq!(reasons, expected);
    fixture.journal.delete(standard.plan).await.expect("sweep");
    assert!(fixture
        .storage()
        .read_window(Log::Forward, 0, 10)
        .expect("window")
        .is_empty());
    assert_eq!(
        *fixture.journal.usage().borrow(),
        fixture.storage.recount().expect("recount")
    );
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Append {
        id: u8,
        to_plant_b: bool,
    },
    Insert {
        ids: Vec<u8>,
    },
    ConfirmPeer {
        to_plant_b: bool,
        permille: u16,
    },
    ConfirmConsumer {
        permille: u16,
    },
    Trim {
        forward: bool,
        bytes: u16,
        drop: bool,
    },
    Sweep {
        forward: bool,
        all: bool,
        expire: bool,
    },
    ReplayLastPlan,
    /// The journal's next commit fails (whichever step commits next).
    FailNextCommit,
    /// The journal's next idempotency lookup in the store (appends) or forward index (inserts,
    /// window deletions) fails.
    FailNextLookup {
        forward: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..40, any::<bool>()).prop_map(|(id, to_plant_b)| Step::Append { id, to_plant_b }),
        2 => prop::collection::vec(0u8..40, 1..5).prop_map(|ids| Step::Insert { ids }),
        1 => (any::<bool>(), 0u16..=1000).prop_map(|(to_plant_b, permille)| Step::ConfirmPeer { to_plant_b, permille }),
        1 => (0u16..=1000).prop_map(|permille| Step::ConfirmConsumer { permille }),
        2 => (any::<bool>(), 0u16..2000, any::<bool>()).prop_map(|(forward, bytes, drop)| Step::Trim { forward, bytes, drop }),
        1 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(forward, all, expire)| Step::Sweep { forward, all, expire }),
        1 => Just(Step::ReplayLastPlan),
        1 => Just(Step::FailNextCommit),
        1 => any::<bool>().prop_map(|forward| Step::FailNextLookup { forward }),
    ]
}

/// `Some` result of a journal call, or `None` when it failed with a fault injected during it;
/// any other failure fails the test.
fn settle<T>(fixture: &Fixture, injected_before: u64, result: Result<T, JournalError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(JournalError::Storage(_)) if fixture.faults.injected() > injected_before => None,
        Err(error) => panic!("unexpected journal error: {error}"),
    }
}

async fn run_step(fixture: &Fixture, step: Step, last: &mut DeletePlan, inserted: &mut u64) {
    let log = |forward| if forward { Log::Forward } else { Log::Store };
    let injected = fixture.faults.injected();
    let job = match step {
        Step::Append { id, to_plant_b } => {
            let to = if to_plant_b { "plant-b" } else { "enterprise" };
            // Ids repeat (duplicates) but never move to another zone (that would be a conflict).
            let appended = fixture.append(message(ZONE, to, &format!("{to}-{id}"))).await;
            settle(fixture, injected, appended);
            return;
        }
        Step::Insert { ids } => {
            let names: Vec<String> = ids.iter().map(|id| format!("f{id}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let facts = page("enterprise", *inserted + 1, &names);
            let outcome = fixture.journal.insert(facts).await;
            if settle(fixture, injected, outcome).is_some() {
                *inserted += names.len() as u64;
            }
            return;
        }
        Step::ConfirmPeer { to_plant_b, permille } => {
            let peer = if to_plant_b { "plant-b" } else { "enterprise" };
            let high = *fixture.journal.store_high().borrow();
            let key = CursorKey::Peer(peer.into());
            settle(
                fixture,
                injected,
                fixture.journal.confirm(key, high * u64::from(permille) / 1000).await,
            );
            return;
        }
        Step::ConfirmConsumer { permille } => {
            let high = *fixture.journal.forward_high().borrow();
            let key = CursorKey::Consumer("mes".into());
            settle(
                fixture,
                injected,
                fixture.journal.confirm(key, high * u64::from(permille) / 1000).await,
            );
            return;
        }
        Step::Trim { forward, bytes, drop } => trim(log(forward), u64::from(bytes), drop),
        Step::Sweep { forward, all, expire } => sweep(log(forward), if all { u64::MAX } else { 0 }, expire),
        Step::ReplayLastPlan => {
            if let Some(again) = settle(fixture, injected, fixture.journal.delete(last.clone()).await) {
                assert!(
                    again.is_empty(),
                    "a plan applied twice deletes nothing the second time: {again:?}"
                );
            }
            return;
        }
        Step::FailNextCommit => return fixture.faults.fail(Op::Commit),
        Step::FailNextLookup { forward } => {
            let index = if forward { Index::Forward } else { Index::Store };
            return fixture.faults.fail(Op::Lookup(index));
        }
    };
    let planned = plan(fixture, &job);
    if let Some(applied) = settle(fixture, injected, fixture.journal.delete(planned.plan).await) {
        *last = applied;
    }
}

fn highs(fixture: &Fixture) -> (u64, u64) {
    (
        *fixture.journal.store_high().borrow(),
        *fixture.journal.forward_high().borrow(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn usage_always_equals_a_recount(steps in prop::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let mut fixture = Fixture::open(JournalConfig::default());
            let (mut last, mut inserted) = (DeletePlan::default(), 0);
            for step in steps {
                let (before, injected) = (highs(&fixture), fixture.faults.injected());
                run_step(&fixture, step.clone(), &mut last, &mut inserted).await;
                let recount = fixture.storage.recount().expect("recount");
                assert_eq!(*fixture.journal.usage().borrow(), recount, "after {step:?}");
                if fixture.faults.injected() > injected {
                    assert_eq!(highs(&fixture), before, "a failed {step:?} published no offset");
                }
            }
            let before = *fixture.journal.usage().borrow();
            fixture = fixture.reopen(JournalConfig::default());
            assert_eq!(*fixture.journal.usage().borrow(), before, "usage survives a reopen");
        });
    }
}

#[test]
fn uploads_being_received_count_against_the_room_on_the_disk() {
    use std::sync::Arc;

    use bsfg_proto::ErrorCode;
    use tokio::sync::watch;

    use super::{Admission, BackpressureConfig, BufferLimits, DiskState, Policy, WhenFull};
    use crate::storage::{DiskSpace, Usage};

    const MIB: u64 = 1 << 20;
    let space = DiskSpace {
        free_bytes: 100 * MIB,
        total_bytes: 1000 * MIB,
        ..DiskSpace::default()
    };
    let (_measured, disk) = watch::channel(DiskState {
        low: false,
        space,
        needed: 40 * MIB,
    });
    let limits = BufferLimits {
        capacity_bytes: 100 * MIB,
        retention: std::time::Duration::from_secs(3600),
    };
    let config = BackpressureConfig {
        store: limits,
        forward: limits,
        policy: Policy::new(WhenFull::Reject, false, 80, 70).expect("a valid policy"),
        disk_reserve_bytes: 32 * MIB,
    };
    let admission = Admission {
        rejecting: Arc::default(),
        usage: watch::channel(Usage::default()).1,
        disk,
        config: Arc::new(config),
        uploading: Arc::default(),
    };
    // 60 MiB of room: each of two 40 MiB artifacts fits alone, not both at once.
    let first = admission.check_upload(40 * MIB).expect("fits");
    let second = admission.check_upload(40 * MIB).err().expect("not beside the first");
    assert_eq!(second.code, ErrorCode::ResourceExhausted);
    assert!(
        second.message.contains(&format!("beside {}", 40 * MIB)),
        "{}",
        second.message
    );
    drop(first);
    admission
        .check_upload(40 * MIB)
        .expect("room again once the first ended");
}

/// The disk is measured before the node takes anything in. Before, the journal's budget refused
/// nothing until the actor's first sample, and a receiver restarted on a nearly full disk pulled
/// tens of MB into its reserve meanwhile.
#[tokio::test]
async fn the_disk_is_judged_before_the_first_fact_is_taken_in() {
    use super::{Backpressure, BackpressureConfig, BackpressureDeps, BufferLimits, Policy, WhenFull};

    let fixture = Fixture::open(JournalConfig::default());
    let limits = BufferLimits {
        capacity_bytes: 1 << 30,
        retention: std::time::Duration::from_secs(3600),
    };
    let config = BackpressureConfig {
        store: limits,
        forward: limits,
        policy: Policy::new(WhenFull::Reject, false, 80, 70).expect("a valid policy"),
        // More than any disk here has free: the disk is low for this node.
        disk_reserve_bytes: 1 << 60,
    };
    let deps = BackpressureDeps {
        journal: fixture.journal.clone(),
        telemetry: crate::testkit::telemetry(),
        relays: false,
    };
    let mut backpressure = Backpressure::new(config, deps, None);
    backpressure.measure_disk();
    let refused = fixture.append(message(ZONE, "enterprise", "first")).await;
    assert!(matches!(refused, Err(JournalError::DiskFull)), "{refused:?}");
    assert!(backpressure.admission().check().is_err(), "appends refused at once");
    assert!(backpressure.disk().borrow().low);
}

/// A relay's store: room until it blocks at the high watermark; then full (facts for next hops
/// that are down wait); exhausted from halfway to the capacity (no relayed fact), so the pages in
/// flight then still fit, until it is back below halfway between the high watermark and there,
/// so trims and refills around one threshold do not flap it; room once unblocked.
#[test]
fn a_blocked_store_is_full_then_exhausted_halfway_to_its_capacity() {
    use super::StoreRoom::{self, Exhausted, Full, Room};
    let (high, capacity) = (800, 1000);
    let of = |was, blocked, bytes| StoreRoom::of(was, blocked, bytes, high, capacity);
    assert_eq!(of(Room, false, 850), Room);
    assert_eq!(of(Room, true, 800), Full);
    assert_eq!(of(Full, true, 899), Full);
    assert_eq!(of(Full, true, 900), Exhausted);
    assert_eq!(of(Exhausted, true, 860), Exhausted, "within the band");
    assert_eq!(of(Exhausted, true, 849), Full, "below it");
    assert_eq!(of(Exhausted, true, 1200), Exhausted);
    assert_eq!(of(Exhausted, false, 950), Room);
}
