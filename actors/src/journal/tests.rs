//! The journal's accounting against a real RocksDB: usage follows every append, insert and
//! delete exactly, survives a reopen, a plan applied twice deletes (and counts) nothing twice, and
//! the hard limit refuses the append that would overflow the store buffer; idempotency compares
//! content without the send time, and a call that stops at its first failure stores a prefix.

use bsfg_proto::{ErrorCode, RpcError};

use super::{AppendMode, DeletePlan, JournalConfig, JournalError, Prepared};
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
    // A consumer confirmed the forward fact deleted as confirmed below.
    let mes = CursorKey::Consumer("mes".into());
    fixture.journal.confirm(mes, 1).await.expect("confirm");

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
    let mes = CursorKey::Consumer("mes".into());
    fixture.journal.confirm(mes, 1).await.expect("confirm");
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
        ..JournalConfig::default()
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
        ..JournalConfig::default()
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
    let results = fixture
        .journal
        .append(batch, AppendMode::EachAlone)
        .await
        .expect("one commit");
    assert_eq!(
        outcomes(&results),
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

/// The ids of the four forward facts [`forward_of_four`] inserts.
const FOUR: [&str; 4] = ["a", "b", "c", "d"];

fn mes() -> CursorKey {
    CursorKey::Consumer("mes".into())
}

/// A journal whose forward buffer holds [`FOUR`] from enterprise at offsets 1 to 4, consumer
/// `mes` at `cursor`.
async fn forward_of_four(cursor: u64) -> Fixture {
    let fixture = Fixture::open(JournalConfig::default());
    fixture
        .journal
        .insert(page("enterprise", 1, &FOUR))
        .await
        .expect("insert");
    fixture.journal.confirm(mes(), cursor).await.expect("confirm");
    fixture
}

/// The deletion of forward fact `offset` of [`forward_of_four`]'s, for `reason`.
fn forward_delete(offset: u64, reason: DeleteReason) -> ForwardDelete {
    ForwardDelete {
        offset,
        from_zone: "enterprise".into(),
        message_id: FOUR[offset as usize - 1].into(),
        reason,
        log: true,
        window: false,
    }
}

#[tokio::test]
async fn a_deletion_planned_before_a_rewind_keeps_what_the_rewind_delivers_again() {
    let fixture = forward_of_four(4).await;
    // A trim planned from the cursors of this moment: every fact is confirmed.
    let plan = DeletePlan {
        store: Vec::new(),
        forward: (1..=4)
            .map(|offset| forward_delete(offset, DeleteReason::Confirmed))
            .collect(),
    };
    // Before it is applied, the consumer is rewound to 2: 3 and 4 are to be delivered again.
    fixture.journal.rewind(mes(), 2).await.expect("rewind");
    let applied = fixture.journal.delete(plan).await.expect("delete");
    let deleted: Vec<u64> = applied.forward.iter().map(|d| d.offset).collect();
    assert_eq!(deleted, [1, 2], "only what every consumer still has confirmed");
    let kept = fixture.storage().read_forward(2, u64::MAX, 10).expect("read");
    let kept: Vec<u64> = kept.iter().map(|r| r.offset).collect();
    assert_eq!(kept, [3, 4], "what the rewind promised is still there");
}

#[tokio::test]
async fn store_facts_the_peer_confirmed_after_their_drop_was_planned_are_trimmed_not_lost() {
    let fixture = Fixture::open(JournalConfig::default());
    for id in ["a", "b", "c", "d"] {
        append(&fixture, id).await.expect("append");
    }
    // A drop planned from the cursors of this moment: nothing confirmed, the oldest three go.
    let loss = |offset: u64, id: &str, reason: DeleteReason| StoreDelete {
        reason,
        ..store_delete(offset, id)
    };
    let plan = DeletePlan {
        store: vec![
            loss(1, "a", DeleteReason::Dropped),
            loss(2, "b", DeleteReason::Expired),
            loss(3, "c", DeleteReason::Dropped),
        ],
        forward: Vec::new(),
    };
    // Before it is applied, the peer confirms the first two.
    let peer = CursorKey::Peer("enterprise".into());
    fixture.journal.confirm(peer, 2).await.expect("confirm");
    let applied = fixture.journal.delete(plan).await.expect("delete");
    let reasons: Vec<(u64, DeleteReason)> = applied.store.iter().map(|d| (d.offset, d.reason)).collect();
    assert_eq!(
        reasons,
        [
            (1, DeleteReason::Reclaimed),
            (2, DeleteReason::Confirmed),
            (3, DeleteReason::Dropped)
        ],
        "only what the peer did not confirm is a loss"
    );
    let again = append(&fixture, "a").await.expect("append again");
    assert_eq!(
        again, 1,
        "a reclaimed fact's id stays in the dedupe window: a duplicate"
    );
}

#[tokio::test]
async fn a_fact_confirmed_after_its_expiry_was_planned_is_trimmed_not_lost() {
    let fixture = forward_of_four(2).await;
    // A sweep planned from the cursors of this moment: 3 and 4 are past retention, unconfirmed.
    let plan = DeletePlan {
        store: Vec::new(),
        forward: (3..=4)
            .map(|offset| forward_delete(offset, DeleteReason::Expired))
            .collect(),
    };
    // Before it is applied, the consumer confirms 3.
    fixture.journal.confirm(mes(), 3).await.expect("confirm");
    let applied = fixture.journal.delete(plan).await.expect("delete");
    let reasons: Vec<(u64, DeleteReason)> = applied.forward.iter().map(|d| (d.offset, d.reason)).collect();
    assert_eq!(
        reasons,
        [(3, DeleteReason::Confirmed), (4, DeleteReason::Expired)],
        "only what no consumer confirmed is a loss"
    );
}

/// Each outcome as `offset`, `offset` + `d` for a duplicate, `exists@offset` or `full`.
fn outcomes(results: &[Result<bsfg_proto::AppendResponse, JournalError>]) -> Vec<String> {
    results
        .iter()
        .map(|r| match r {
            Ok(ack) => format!("{}{}", ack.offset, if ack.duplicate { "d" } else { "" }),
            Err(JournalError::AlreadyExists { offset, .. }) => format!("exists@{offset}"),
            Err(JournalError::Full { .. }) => "full".into(),
            Err(other) => format!("{other}"),
        })
        .collect()
}

#[tokio::test]
async fn a_call_that_stops_at_its_first_failure_stores_a_prefix_of_itself() {
    let fixture = Fixture::open(JournalConfig::default());
    append(&fixture, "stored").await.expect("stored");
    let mut conflicting = message(ZONE, "enterprise", "stored");
    conflicting.fact.object_json = "\"other content\"".into();
    let call = |messages: Vec<bsfg_proto::Message>| {
        let prepared = messages.into_iter().map(|m| Prepared::new(m).expect("prepare"));
        fixture.journal.append(prepared.collect(), AppendMode::StopAtFailure)
    };
    let ids = |ids: &[&str]| ids.iter().map(|id| message(ZONE, "enterprise", id)).collect::<Vec<_>>();
    let mut first = ids(&["a", "stored", "b"]);
    first.extend([conflicting, message(ZONE, "enterprise", "c")]);
    first.extend(ids(&["stored", "d"]));
    let results = call(first).await.expect("one commit");
    assert_eq!(
        outcomes(&results),
        ["2", "1d", "3", "exists@1"],
        "answered up to and including the first failure, nothing after it"
    );
    assert_eq!(*fixture.journal.store_high().borrow(), 3, "c and d were not stored");
    // The rest, resent after the failure, lands after what was stored: the call's order holds.
    let rest = call(ids(&["c", "stored", "d"])).await.expect("one commit");
    assert_eq!(outcomes(&rest), ["4", "1d", "5"]);
}

#[tokio::test]
async fn a_retry_with_a_new_send_time_is_a_duplicate_and_other_content_a_conflict() {
    let fixture = Fixture::open(JournalConfig::default());
    let original = message(ZONE, "enterprise", "wo-7");
    let offset = fixture.append(original.clone()).await.expect("append").offset;
    let mut retried = original.clone();
    retried.envelope.produced_at_unix_ms += 60_000;
    let again = fixture.append(retried).await.expect("retry");
    assert_eq!((again.offset, again.duplicate), (offset, true));
    let mut relabelled = original.clone();
    relabelled.envelope.labels.insert("line".into(), "3".into());
    let refused = fixture.append(relabelled).await.expect_err("other content");
    assert!(
        matches!(refused, JournalError::AlreadyExists { offset: o, .. } if o == offset),
        "{refused}"
    );

    // The forward buffer judges a replay the same way: a new send time is a duplicate.
    let mut replay = page("enterprise", 1, &["f"]);
    fixture.journal.insert(replay.clone()).await.expect("insert");
    replay[0].message.envelope.produced_at_unix_ms += 1;
    let outcome = fixture.journal.insert(replay.clone()).await.expect("replay");
    assert_eq!(
        (outcome.inserted(), outcome.duplicates(), outcome.conflicts()),
        (0, 1, 0)
    );
    replay[0].message.fact.subject.push('x');
    let outcome = fixture.journal.insert(replay).await.expect("conflict");
    assert_eq!(
        (outcome.inserted(), outcome.duplicates(), outcome.conflicts()),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn appends_take_offsets_in_the_order_they_were_queued_whenever_their_answers_are_awaited() {
    let fixture = Fixture::open(JournalConfig::default());
    let prepared = |ids: &[&str]| -> Vec<Prepared> {
        ids.iter()
            .map(|id| Prepared::new(message(ZONE, "enterprise", id)).expect("prepare"))
            .collect()
    };
    // The writer is held in a probe's commit, so both appends wait in its queue.
    let mut held = fixture.faults.hold(crate::testkit::faults::Op::Commit);
    let probe = fixture.journal.probe();
    tokio::pin!(probe);
    assert!(futures::poll!(&mut probe).is_pending());
    held.reached().await;
    let first = fixture
        .journal
        .queue_append(prepared(&["a", "b"]), AppendMode::EachAlone)
        .await;
    let second = fixture
        .journal
        .queue_append(prepared(&["c"]), AppendMode::EachAlone)
        .await;
    held.release();
    probe.await.expect("probe");

    // The second is awaited first: the order of queuing decides, not the order of awaiting.
    let second = second.expect("queued").answer().await.expect("second");
    let first = first.expect("queued").answer().await.expect("first");
    let offsets = |outcomes: Vec<Result<bsfg_proto::AppendResponse, JournalError>>| -> Vec<u64> {
        outcomes.into_iter().map(|o| o.expect("appended").offset).collect()
    };
    assert_eq!((offsets(first), offsets(second)), (vec![1, 2], vec![3]));
}

#[test]
fn a_large_command_is_cut_in_order_into_parts_of_the_command_limit() {
    use super::{cut, MAX_COMMAND_BYTES};
    let third = MAX_COMMAND_BYTES / 3;
    let sizes = vec![third, third, third, 1, MAX_COMMAND_BYTES + 5, 2, third];
    let parts = cut(sizes.clone(), |size| *size);
    assert_eq!(
        parts,
        [
            vec![third, third, third, 1],
            vec![MAX_COMMAND_BYTES + 5],
            vec![2, third]
        ],
        "in order, each part within the limit, a larger item alone"
    );
    assert_eq!(parts.concat(), sizes);
    assert!(cut(Vec::<usize>::new(), |size| *size).is_empty());
}

/// A message from `from` to `to` whose object is a JSON string of `pad` bytes.
fn padded(from: &str, to: &str, id: &str, pad: usize) -> bsfg_proto::Message {
    let mut m = message(from, to, id);
    m.fact.object_json = format!("\"{}\"", "x".repeat(pad));
    m
}

/// Where commits are records of a size-limited log (an HA zone), a call of facts that stand alone
/// past the command limit is queued in parts; once a part meets the store's byte limit, the rest
/// of the call is refused with it — even a later fact that would still fit — as the planning of
/// one command refuses it, so a retried call keeps its order.
#[tokio::test]
async fn a_call_queued_in_parts_keeps_its_order_at_the_byte_limit() {
    use super::MAX_COMMAND_BYTES;
    let ours = |id: &str, pad: usize| padded(ZONE, "enterprise", id, pad);
    let size = |m: &bsfg_proto::Message| Prepared::new(m.clone()).expect("prepared").encoded.len();
    // The first part: big facts, the last one padded so that the part fills the command limit
    // to within a few bytes; the second part: one small fact.
    let mut facts: Vec<_> = (0..100).map(|i| ours(&format!("big-{i}"), 10_000)).collect();
    let filled: usize = facts.iter().map(size).sum();
    let mut pad = MAX_COMMAND_BYTES - filled - size(&ours("big-last", 0));
    while filled + size(&ours("big-last", pad)) > MAX_COMMAND_BYTES {
        pad -= 1;
    }
    facts.push(ours("big-last", pad));
    let small = message(ZONE, "enterprise", "small");
    assert!(facts.iter().map(size).sum::<usize>() + size(&small) > MAX_COMMAND_BYTES);
    facts.push(small);
    let prepare = |facts: &[bsfg_proto::Message]| -> Vec<Prepared> {
        facts
            .iter()
            .map(|m| Prepared::new(m.clone()).expect("prepared"))
            .collect()
    };

    // Room for the first 50 big facts and the small one exactly.
    let probe = Fixture::open(JournalConfig::default());
    probe
        .journal
        .append(prepare(&facts[..50]), AppendMode::EachAlone)
        .await
        .expect("probe");
    let fifty = usage(&probe).store.bytes;
    probe
        .journal
        .append(prepare(&facts[101..]), AppendMode::EachAlone)
        .await
        .expect("probe");
    let limit = usage(&probe).store.bytes;

    let fixture = Fixture::open(JournalConfig {
        store_byte_limit: Some(limit),
        ..JournalConfig::default()
    });
    fixture.faults.limit_records(4 << 20);
    let outcomes = fixture
        .journal
        .append(prepare(&facts), AppendMode::EachAlone)
        .await
        .expect("append");
    assert_eq!(outcomes.len(), facts.len());
    let offsets: Vec<u64> = outcomes[..50]
        .iter()
        .map(|o| o.as_ref().expect("fits").offset)
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "in the call's order: {offsets:?}"
    );
    for (i, outcome) in outcomes.iter().enumerate().skip(50) {
        assert!(
            matches!(outcome, Err(JournalError::Full { .. })),
            "fact {i} of {}: {outcome:?}",
            facts.len()
        );
    }
    assert_eq!(usage(&fixture).store.bytes, fifty, "the small fact was not taken");
}

/// Where commits are records of a size-limited log, a call and a page of 5 MB each are taken in
/// parts that fit (the storage of the fixture refuses a larger record, as an HA zone's log does),
/// every fact with its outcome, in order.
#[tokio::test]
async fn a_call_and_a_page_past_the_record_limit_are_taken_in_parts() {
    let big = |from: &str, to: &str, id: String| padded(from, to, &id, 10_000);
    let fixture = Fixture::open(JournalConfig::default());
    fixture.faults.limit_records(4 << 20);
    let call: Vec<Prepared> = (0..500)
        .map(|i| Prepared::new(big(ZONE, "enterprise", format!("call-{i}"))).expect("prepared"))
        .collect();
    let outcomes = fixture
        .journal
        .append(call, AppendMode::EachAlone)
        .await
        .expect("append");
    let offsets: Vec<u64> = outcomes.iter().map(|o| o.as_ref().expect("appended").offset).collect();
    assert_eq!(
        offsets,
        (1..=500).collect::<Vec<_>>(),
        "one caller: consecutive, in order"
    );

    let pulled = (0..500u64)
        .map(|i| bsfg_proto::FetchedFact {
            offset: i + 1,
            message: big("plant-a", ZONE, format!("page-{i}")),
        })
        .collect();
    let outcome = fixture.journal.insert(pulled).await.expect("insert");
    assert_eq!(outcome.inserted(), 500);
}

/// Where commits are records of a size-limited log, a group takes no command that would bring
/// it past the group's byte bound: an in-order call of 3 MB queued behind 1.9 MB of other calls
/// commits in a group of its own, and every call is appended (together they would pass the 4 MiB
/// record, and the log would refuse the commit, failing all of them).
#[tokio::test]
async fn a_command_that_would_bring_its_group_past_a_record_waits_for_the_next_group() {
    let big = |id: String| Prepared::new(padded(ZONE, "enterprise", &id, 10_000)).expect("prepared");
    let fixture = Fixture::open(JournalConfig::default());
    fixture.faults.limit_records(4 << 20);
    // The writer is held in a probe's commit, so the calls wait in its queue together.
    let mut held = fixture.faults.hold(crate::testkit::faults::Op::Commit);
    let probe = fixture.journal.probe();
    tokio::pin!(probe);
    assert!(futures::poll!(&mut probe).is_pending());
    held.reached().await;
    let mut queued = Vec::new();
    for (call, mode, facts) in [
        ("first", AppendMode::EachAlone, 95),
        ("second", AppendMode::EachAlone, 95),
        ("in-order", AppendMode::StopAtFailure, 300),
    ] {
        let facts: Vec<Prepared> = (0..facts).map(|i| big(format!("{call}-{i}"))).collect();
        let waiting = fixture.journal.queue_append(facts, mode).await.expect("queued");
        queued.push(waiting);
    }
    held.release();
    probe.await.expect("probe");
    for (call, waiting) in ["first", "second", "in-order"].into_iter().zip(queued) {
        let outcomes = waiting.answer().await.unwrap_or_else(|e| panic!("{call}: {e}"));
        assert!(outcomes.iter().all(Result::is_ok), "{call}: {outcomes:?}");
    }
    assert_eq!(usage(&fixture).store.facts, 490);
}

/// An in-order call is one command: where its facts alone pass the log's record limit it can
/// never be committed, so it is refused at once as a permanent error naming the sizes, and the
/// journal goes on committing (a call that fits is appended).
#[tokio::test]
async fn an_in_order_call_past_the_record_limit_is_refused_before_it_is_queued() {
    let big = |id: String| Prepared::new(padded(ZONE, "enterprise", &id, 10_000)).expect("prepared");
    let fixture = Fixture::open(JournalConfig::default());
    fixture.faults.limit_records(1 << 20);
    let call: Vec<Prepared> = (0..200).map(|i| big(format!("in-order-{i}"))).collect();
    let refused = fixture
        .journal
        .append(call, AppendMode::StopAtFailure)
        .await
        .expect_err("too large for one record");
    assert!(
        matches!(refused, JournalError::TooLargeForLog { limit, .. } if limit == 1 << 20),
        "{refused}"
    );
    let rpc = bsfg_proto::RpcError::from(refused);
    assert_eq!(rpc.code, bsfg_proto::ErrorCode::InvalidArgument);
    assert!(!rpc.retryable, "{}", rpc.message);
    assert!(rpc.message.contains("1048576"), "{}", rpc.message);

    let fits: Vec<Prepared> = (0..20).map(|i| big(format!("fits-{i}"))).collect();
    let appended = fixture
        .journal
        .append(fits, AppendMode::StopAtFailure)
        .await
        .expect("a call that fits");
    assert!(appended.iter().all(Result::is_ok), "{appended:?}");
}
