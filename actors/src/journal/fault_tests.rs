//! The journal's failure path, against a real RocksDB behind the storage fault seam
//! (`testkit::faults`): a group whose commit (or a read it plans with) fails answers every caller
//! waiting in it `UNAVAILABLE`, gives back the offsets and usage it had reserved — the next group
//! takes the same offsets, and usage still equals a recount — and the next group commits as if
//! nothing had happened.

use std::{future::Future, pin::Pin};

use bsfg_proto::{ErrorCode, RpcError};

use super::{AppendMode, DeletePlan, JournalError};
use crate::{
    events::StorageOp,
    journal::JournalConfig,
    storage::{CursorKey, DeleteReason, Index, StoreDelete, Usage},
    testkit::{
        faults::{Held, Op},
        message, page, Fixture, ZONE,
    },
};

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + 'a>>;
/// A call of any outcome, for [`as_one_group`].
pub(super) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

fn usage(fixture: &Fixture) -> Usage {
    *fixture.journal.usage().borrow()
}

fn highs(fixture: &Fixture) -> (u64, u64) {
    (
        *fixture.journal.store_high().borrow(),
        *fixture.journal.forward_high().borrow(),
    )
}

/// One of each command, from five callers: appends of one fact and of two, a page inserted from
/// a peer, a peer's confirm and a deletion plan.
fn five_callers(fixture: &Fixture) -> Vec<Call<'_>> {
    let journal = &fixture.journal;
    let prepared = |ids: &[&str]| {
        ids.iter()
            .map(|id| super::Prepared::new(message(ZONE, "enterprise", id)).expect("prepare"))
            .collect::<Vec<_>>()
    };
    let deletes = DeletePlan {
        store: vec![StoreDelete {
            offset: 1,
            peer: "enterprise".into(),
            origin: None,
            to_zone: "enterprise".into(),
            message_id: "before".into(),
            reason: DeleteReason::Confirmed,
        }],
        forward: Vec::new(),
    };
    vec![
        Box::pin(async move { journal.append(prepared(&["a"]), AppendMode::EachAlone).await.map(drop) }),
        Box::pin(async move {
            journal
                .append(prepared(&["b", "c"]), AppendMode::EachAlone)
                .await
                .map(drop)
        }),
        Box::pin(async move { journal.insert(page("enterprise", 1, &["x", "y"])).await.map(drop) }),
        Box::pin(async move { journal.confirm(CursorKey::Peer("plant-b".into()), 1).await.map(drop) }),
        Box::pin(async move { journal.delete(deletes).await.map(drop) }),
    ]
}

/// Runs `calls` as one group: the writer is held in the commit of an earlier command (a probe)
/// until every call is queued behind it, then let go.
pub(super) async fn as_one_group<T>(fixture: &Fixture, mut held: Held, calls: Vec<Pending<'_, T>>) -> Vec<T> {
    let blocker = fixture.journal.probe();
    tokio::pin!(blocker);
    assert!(futures::poll!(&mut blocker).is_pending());
    held.reached().await;
    let mut calls = calls;
    for call in &mut calls {
        // One poll queues the command (the queue has room) and leaves it waiting for its answer.
        assert!(futures::poll!(call.as_mut()).is_pending(), "answered before its commit");
    }
    held.release();
    blocker.await.expect("the held commit itself succeeds");
    futures::future::join_all(calls).await
}

fn assert_unavailable(results: &[Result<(), JournalError>]) {
    for result in results {
        match result {
            Err(error @ JournalError::Storage(_)) => {
                let wire = RpcError::from(error.clone());
                assert_eq!((wire.code, wire.retryable), (ErrorCode::Unavailable, true), "{wire:?}");
            }
            other => panic!("every caller of the failed group gets a storage fault, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_failed_group_commit_answers_every_caller_and_gives_back_what_it_reserved() {
    let fixture = Fixture::open(JournalConfig::default());
    let first = fixture
        .append(message(ZONE, "enterprise", "before"))
        .await
        .expect("append");
    assert_eq!(first.offset, 1);
    let (before, highs_before) = (usage(&fixture), highs(&fixture));
    let held = fixture.faults.hold(Op::Commit);
    fixture.faults.fail(Op::Commit);

    let results = as_one_group(&fixture, held, five_callers(&fixture)).await;
    assert_eq!(results.len(), 5);
    assert_unavailable(&results);
    assert_eq!(fixture.faults.injected(), 1, "one failed commit answered all five");
    assert_eq!(highs(&fixture), highs_before, "nothing of the group is published");
    assert_eq!(usage(&fixture), before);
    assert_eq!(usage(&fixture), fixture.storage.recount().expect("recount"));
    assert_eq!(fixture.journal.cursor(&CursorKey::Peer("plant-b".into())), 0);
    let stored = fixture
        .storage()
        .read_store("enterprise", 0, u64::MAX, 10)
        .expect("read");
    assert_eq!(stored.len(), 1, "nothing of the failed group is stored");

    // The next group commits normally and takes the offsets the failed one gave back.
    let next = fixture.append(message(ZONE, "enterprise", "a")).await.expect("retry");
    assert_eq!(
        (next.offset, next.duplicate),
        (2, false),
        "no offset skipped, none reused"
    );
    let inserted = fixture
        .journal
        .insert(page("enterprise", 1, &["x"]))
        .await
        .expect("insert");
    assert_eq!(inserted.inserted(), 1);
    assert_eq!(highs(&fixture), (2, 1));
    assert_eq!(usage(&fixture), fixture.storage.recount().expect("recount"));
    assert_eq!((usage(&fixture).store.facts, usage(&fixture).forward.facts), (2, 1));
}

#[tokio::test]
async fn a_read_failing_while_a_group_is_planned_gives_back_the_offsets_planned_before_it() {
    let fixture = Fixture::open(JournalConfig::default());
    fixture
        .append(message(ZONE, "enterprise", "before"))
        .await
        .expect("append");
    let before = usage(&fixture);
    let held = fixture.faults.hold(Op::Commit);
    // The appends (planned first) reserve offsets 2..=4; then the insert's lookup fails.
    fixture.faults.fail(Op::Lookup(Index::Forward));

    let results = as_one_group(&fixture, held, five_callers(&fixture)).await;
    assert_unavailable(&results);
    assert_eq!(fixture.faults.injected(), 1);
    assert_eq!(highs(&fixture), (1, 0));
    assert_eq!(usage(&fixture), before);

    let next = fixture.append(message(ZONE, "enterprise", "b")).await.expect("retry");
    assert_eq!(
        next.offset, 2,
        "the offsets planned before the failed read are given back"
    );
    assert_eq!(usage(&fixture), fixture.storage.recount().expect("recount"));
}

#[tokio::test]
async fn failed_commits_make_storage_unhealthy_until_a_commit_or_probe_succeeds() {
    let fixture = Fixture::open(JournalConfig::default());
    let health = fixture.journal.health().clone();
    fixture.faults.fail(Op::Commit);
    let failed = fixture.append(message(ZONE, "enterprise", "a")).await;
    assert!(matches!(failed, Err(JournalError::Storage(_))), "{failed:?}");
    assert!(!health.healthy() && health.failing(StorageOp::Commit));
    fixture.faults.fail(Op::Commit);
    assert!(
        fixture.journal.probe().await.is_err(),
        "the probe commits, and fails with storage"
    );
    assert_eq!(health.report().failing[0].errors, 2);
    fixture.journal.probe().await.expect("storage takes writes again");
    assert!(health.healthy());
    assert_eq!(
        usage(&fixture),
        fixture.storage.recount().expect("recount"),
        "a probe changes nothing"
    );
}

#[tokio::test]
async fn a_standbys_refusal_is_no_storage_fault_and_clears_earlier_failures() {
    // An HA instance whose commits failed while it was active, then demoted: its probe (a commit)
    // is refused as a standby's. That is not failing storage, and `bsfg_node_up` must not stay 0.
    let fixture = Fixture::open(JournalConfig::default());
    let health = fixture.journal.health().clone();
    fixture.faults.fail(Op::Commit);
    assert!(fixture.journal.probe().await.is_err());
    assert!(health.failing(StorageOp::Commit));
    fixture.faults.refuse_as_standby(Op::Commit);
    let refused = fixture.journal.probe().await;
    assert!(matches!(refused, Err(JournalError::NotWriter(_))), "{refused:?}");
    assert!(health.healthy(), "a standby's refusal clears the failing state");
    fixture.faults.refuse_as_standby(Op::Commit);
    let refused = fixture.append(message(ZONE, "enterprise", "a")).await;
    let code = refused.map_err(|e| RpcError::from(e).code);
    assert_eq!(code.err(), Some(ErrorCode::Unavailable), "callers may retry elsewhere");
    assert!(health.healthy(), "and never makes storage failing");
}

#[tokio::test]
async fn a_commit_that_hangs_answers_its_callers_and_later_ones_until_it_returns() {
    let stall = std::time::Duration::from_millis(300);
    let fixture = Fixture::open(JournalConfig {
        write_stall: stall,
        ..JournalConfig::default()
    });
    let health = fixture.journal.health().clone();
    let mut held = fixture.faults.hold(Op::Commit);
    let waiting = fixture.append(message(ZONE, "enterprise", "a"));
    tokio::pin!(waiting);
    assert!(futures::poll!(&mut waiting).is_pending());
    held.reached().await;
    let began = std::time::Instant::now();
    let answered = waiting.await;
    assert!(
        matches!(answered, Err(JournalError::Stalled(after)) if after == stall),
        "{answered:?}"
    );
    assert!(began.elapsed() >= stall / 2, "answered only once the commit stalled");
    let code = answered.map_err(|e| RpcError::from(e).code);
    assert_eq!(code.err(), Some(ErrorCode::Unavailable), "the caller may retry");
    assert!(health.failing(StorageOp::Commit), "a stalled commit is failing storage");

    let later = fixture.append(message(ZONE, "enterprise", "b")).await;
    assert!(
        matches!(later, Err(JournalError::Stalled(_))),
        "refused at once: {later:?}"
    );
    assert!(
        fixture.journal.probe().await.is_err(),
        "the status refresher's probe too"
    );

    held.release();
    let retried = loop {
        match fixture.append(message(ZONE, "enterprise", "a")).await {
            Err(JournalError::Stalled(_)) => tokio::task::yield_now().await,
            other => break other.expect("the retry"),
        }
    };
    assert!(
        retried.duplicate && retried.offset == 1,
        "the stalled commit stored it after all, once: {retried:?}"
    );
    assert!(health.healthy(), "the first commit that returns ends the failure");
    let b = fixture.append(message(ZONE, "enterprise", "b")).await.expect("b");
    assert_eq!((b.offset, b.duplicate), (2, false), "b was refused, never queued");
}
