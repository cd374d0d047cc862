//! The journal's accounting against a real RocksDB: usage follows every append, insert and
//! delete exactly, survives a reopen, a plan applied twice deletes (and counts) nothing twice, and
//! the hard limit refuses the append that would overflow the store buffer.

use bsfg_proto::{ErrorCode, RpcError};

use super::{DeletePlan, JournalConfig, JournalError, Prepared};
use crate::{
    storage::{CursorKey, DeleteReason, ForwardDelete, Index, StoreDelete, Usage},
    testkit::{message, page, Fixture, ZONE},
};

async fn append(fixture: &Fixture, id: &str) -> Result<u64, JournalError> {
    Ok(fixture.append(message(ZONE, "enterprise", id)).await?.offset)
}

fn store_delete(offset: u64, id: &str) -> StoreDelete {
    StoreDelete {
        offset,
        peer: "enterprise".into(),
        origin: None,
        to_zone: "enterprise".into(),
        message_id: id.into(),
        reason: DeleteReason::Confirmed,
    }
}

fn usage(fixture: &Fixture) -> Usage {
    *fixture.journal.usage().borrow()
}

#[tokio::test]
async fn usage_is_exact_across_appends_inserts_deletes_and_a_reopen() {
    let mut fixture = Fixture::open(JournalConfig::default());
    for id in ["a", "b", "c"] {
        append(&fixture, id).await.expect("append");
    }
    append(&fixture, "a").await.expect("a duplicate adds nothing");
    let outcome = fixture
        .journal
        .insert(page("enterprise", 1, &["x", "y"]))
        .await
        .expect("insert");
    assert_eq!(outcome.inserted(), 2);
    let counted = usage(&fixture);
    assert_eq!((counted.store.facts, counted.forward.facts), (3, 2));
    assert_eq!(counted, fixture.storage.recount().expect("recount"));

    let plan = DeletePlan {
        store: vec![store_delete(1, "a")],
        forward: vec![ForwardDelete {
            offset: 1,
            from_zone: "enterprise".into(),
            message_id: "x".into(),
            reason: DeleteReason::Confirmed,
            log: true,
            window: false,
        }],
    };
    let applied = fixture.journal.delete(plan.clone()).await.expect("delete");
    assert_eq!(applied, plan);
    let again = fixture.journal.delete(plan).await.expect("delete again");
    assert!(again.is_empty(), "already gone: {again:?}");
    let counted = usage(&fixture);
    assert_eq!((counted.store.facts, counted.forward.facts), (2, 1));
    assert_eq!(counted, fixture.storage.recount().expect("recount"));

    fixture = fixture.reopen(JournalConfig::default());
    assert_eq!(usage(&fixture), counted, "read back from meta, not recounted");
    assert_eq!(
        fixture.journal.store_high().borrow().to_owned(),
        3,
        "offsets are never reused"
    );
}

#[tokio::test]
async fn a_deleted_store_fact_is_new_again_but_the_forward_window_outlives_its_log_entry() {
    let fixture = Fixture::open(JournalConfig::default());
    let offset = append(&fixture, "a").await.expect("append");
    let plan = DeletePlan {
        store: vec![store_delete(offset, "a")],
        forward: Vec::new(),
    };
    fixture.journal.delete(plan).await.expect("delete");
    let ack = fixture
        .append(message(ZONE, "enterprise", "a"))
        .await
        .expect("re-append");
    assert!(!ack.duplicate && ack.offset > offset, "{ack:?}");

    fixture
        .journal
        .insert(page("enterprise", 1, &["x"]))
        .await
        .expect("insert");
    let reclaim = |window| ForwardDelete {
        offset: 1,
        from_zone: "enterprise".into(),
        message_id: "x".into(),
        reason: DeleteReason::Confirmed,
        log: true,
        window,
    };
    let plan = |window| DeletePlan {
        store: Vec::new(),
        forward: vec![reclaim(window)],
    };
    fixture.journal.delete(plan(false)).await.expect("reclaim");
    let replay = page("enterprise", 1, &["x"]);
    let outcome = fixture.journal.insert(replay.clone()).await.expect("replay");
    assert_eq!(
        (outcome.inserted(), outcome.duplicates()),
        (0, 1),
        "still in the dedupe window"
    );
    let left = fixture.journal.delete(plan(true)).await.expect("leave the window");
    assert_eq!(left.forward.len(), 1);
    assert!(!left.forward[0].log, "the log entry was already gone");
    let keys = [("enterprise", "x")];
    assert_eq!(
        fixture.storage().lookup(Index::Forward, &keys).expect("lookup"),
        vec![None]
    );
    let outcome = fixture.journal.insert(replay).await.expect("replay");
    assert_eq!(outcome.inserted(), 1, "outside the window a replay is new");
}

#[tokio::test]
async fn the_hard_limit_refuses_the_append_that_would_overflow() {
    let probe = Fixture::open(JournalConfig::default());
    append(&probe, "a").await.expect("append");
    let one = usage(&probe).store.bytes;
    let config = JournalConfig {
        store_byte_limit: Some(2 * one + one / 2),
    };
    let fixture = Fixture::open(config);
    append(&fixture, "a").await.expect("first");
    append(&fixture, "b").await.expect("second");
    let error = append(&fixture, "c").await.expect_err("third overflows");
    assert!(matches!(error, JournalError::Full { .. }), "{error}");
    let wire = RpcError::from(error);
    assert_eq!(wire.code, ErrorCode::ResourceExhausted);
    assert!(wire.retryable);
    append(&fixture, "a").await.expect("a duplicate needs no room");
    let confirmed = fixture.journal.confirm(CursorKey::Peer("enterprise".into()), 2).await;
    assert_eq!(confirmed.expect("confirm"), 2);
    assert_eq!(usage(&fixture).store.facts, 2);
}

#[tokio::test]
async fn a_batch_is_appended_in_order_with_an_outcome_per_fact() {
    let probe = Fixture::open(JournalConfig::default());
    append(&probe, "a").await.expect("append");
    let one = usage(&probe).store.bytes;
    // Room for the stored fact, three more and a half: `big` (two facts' worth) does not fit, the
    // fact after it would, but must not overtake it.
    let fixture = Fixture::open(JournalConfig {
        store_byte_limit: Some(5 * one + one / 2),
    });
    append(&fixture, "stored").await.expect("stored");
    let mut conflicting = message(ZONE, "enterprise", "stored");
    conflicting.fact.object_json = "\"other content\"".into();
    let mut big = message(ZONE, "enterprise", "big");
    big.fact.object_json = format!("\"{}\"", "x".repeat(one as usize * 2));
    let batch = [
        message(ZONE, "enterprise", "b1"),
        message(ZONE, "enterprise", "stored"),
        message(ZONE, "enterprise", "b2"),
        message(ZONE, "enterprise", "b1"),
        conflicting,
        message(ZONE, "enterprise", "b3"),
        big,
        message(ZONE, "enterprise", "after-big"),
        message(ZONE, "enterprise", "b2"),
    ]
    .into_iter()
    .map(|m| Prepared::new(m).expect("prepare"))
    .collect();
    let results = fixture.journal.append(batch).await.expect("one commit");
    let summary: Vec<_> = results
        .iter()
        .map(|r| match r {
            Ok(ack) => format!("{}{}", ack.offset, if ack.duplicate { "d" } else { "" }),
            Err(JournalError::AlreadyExists { offset, .. }) => format!("exists@{offset}"),
            Err(JournalError::Full { .. }) => "full".into(),
            Err(other) => format!("{other}"),
        })
        .collect();
    assert_eq!(
        summary,
        ["2", "1d", "3", "2d", "exists@1", "4", "full", "full", "3d"],
        "offsets follow the batch's order; a repeat inside the batch is its duplicate; nothing new \
         after a fact that did not fit"
    );
    assert_eq!(*fixture.journal.store_high().borrow(), 4);
    assert_eq!(usage(&fixture).store.facts, 4);
    assert_eq!(usage(&fixture), fixture.storage.recount().expect("recount"));
}

#[tokio::test]
async fn consumer_cursors_are_rewound_and_removed_durably() {
    let mut fixture = Fixture::open(JournalConfig::default());
    fixture
        .journal
        .insert(page("enterprise", 1, &["x", "y", "z"]))
        .await
        .expect("insert");
    let mes = || CursorKey::Consumer("mes".into());
    fixture.journal.confirm(mes(), 3).await.expect("confirm");

    let forward = fixture.journal.rewind(mes(), 4).await.expect_err("forward");
    assert_eq!(RpcError::from(forward).code, ErrorCode::InvalidArgument);
    let rewound = fixture.journal.rewind(mes(), 1).await.expect("rewind");
    assert_eq!((rewound.previous, rewound.cursor), (Some(3), Some(1)));
    fixture = fixture.reopen(JournalConfig::default());
    assert_eq!(fixture.journal.cursor(&mes()), 1, "the rewind is durable");

    let removed = fixture.journal.remove(mes()).await.expect("remove");
    assert_eq!((removed.previous, removed.cursor), (Some(1), None));
    let unknown = fixture.journal.remove(mes()).await.expect_err("gone");
    assert_eq!(RpcError::from(unknown).code, ErrorCode::NotFound);
    fixture = fixture.reopen(JournalConfig::default());
    assert!(
        !fixture.journal.cursors().contains_key(&mes()),
        "the removal is durable"
    );
    let stranger = fixture.journal.rewind(CursorKey::Consumer("nobody".into()), 0).await;
    assert_eq!(stranger.map_err(|e| RpcError::from(e).code), Err(ErrorCode::NotFound));
}
