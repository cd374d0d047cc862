//! A model test of the journal under injected storage failures (issue 16): random rounds, each a
//! group of concurrent callers — appends of one to three facts, pages inserted from a peer,
//! confirms, probes — lined up behind one held commit, with a storage fault (a failed commit, a
//! failed index lookup) or a small disk budget injected into some. After every round:
//!
//! - every caller was answered, with its outcome or with the fault (nobody hangs);
//! - no acknowledged offset is ever handed out again, and every new one is above all before it;
//! - what storage holds is exactly what was acknowledged, and usage equals a recount;
//! - a failed group published nothing.
//!
//! Every case prints its seed through proptest's failure persistence and shrinking.

use std::{collections::BTreeMap, time::Duration};

use bsfg_proto::AppendResponse;
use proptest::prelude::*;

use super::{
    fault_tests::{as_one_group, Pending},
    AppendMode, JournalConfig, JournalError, Prepared,
};
use crate::{
    storage::{CursorKey, Index, Storage},
    testkit::{faults::Op, message, page, Fixture, ZONE},
};

#[derive(Debug, Clone)]
enum CallSpec {
    Append(Vec<u8>),
    Insert(Vec<u8>),
    Confirm(u16),
    Probe,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Commit,
    Lookup {
        forward: bool,
    },
    /// Room on disk for this many bytes of new facts (each spends twice its size).
    Budget(u16),
}

#[derive(Debug, Clone)]
struct Round {
    calls: Vec<CallSpec>,
    fault: Option<Fault>,
}

fn call() -> impl Strategy<Value = CallSpec> {
    prop_oneof![
        4 => prop::collection::vec(0u8..60, 1..4).prop_map(CallSpec::Append),
        2 => prop::collection::vec(0u8..60, 1..4).prop_map(CallSpec::Insert),
        1 => (0u16..=1000).prop_map(CallSpec::Confirm),
        1 => Just(CallSpec::Probe),
    ]
}

fn round() -> impl Strategy<Value = Round> {
    let fault = prop_oneof![
        3 => Just(None),
        1 => Just(Some(Fault::Commit)),
        1 => any::<bool>().prop_map(|forward| Some(Fault::Lookup { forward })),
        1 => (0u16..2000).prop_map(|bytes| Some(Fault::Budget(bytes))),
    ];
    (prop::collection::vec(call(), 1..6), fault).prop_map(|(calls, fault)| Round { calls, fault })
}

/// What one caller got back.
#[derive(Debug)]
enum Answer {
    Appended(Vec<(String, Result<AppendResponse, JournalError>)>),
    Inserted(Result<usize, JournalError>),
    Other(Result<(), JournalError>),
}

/// What the test knows: every id acknowledged with its offset, and the inserts so far.
#[derive(Default)]
struct Model {
    acked: BTreeMap<String, u64>,
    inserted: u64,
    highest: u64,
}

fn pending<'a>(fixture: &'a Fixture, spec: &CallSpec, inserted: u64) -> Pending<'a, Answer> {
    let journal = &fixture.journal;
    match spec.clone() {
        CallSpec::Append(ids) => Box::pin(async move {
            let ids: Vec<String> = ids.iter().map(|id| format!("a{id}")).collect();
            let facts = ids
                .iter()
                .map(|id| Prepared::new(message(ZONE, "enterprise", id)).expect("prepare"))
                .collect();
            match journal.append(facts, AppendMode::EachAlone).await {
                Ok(results) => Answer::Appended(ids.into_iter().zip(results).collect()),
                Err(e) => Answer::Appended(ids.into_iter().map(|id| (id, Err(e.clone()))).collect()),
            }
        }),
        CallSpec::Insert(ids) => Box::pin(async move {
            let names: Vec<String> = ids.iter().map(|id| format!("f{id}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let facts = page("enterprise", inserted + 1, &names);
            Answer::Inserted(journal.insert(facts).await.map(|o| o.inserted()))
        }),
        CallSpec::Confirm(permille) => Box::pin(async move {
            let high = *journal.store_high().borrow();
            let key = CursorKey::Peer("enterprise".into());
            Answer::Other(journal.confirm(key, high * u64::from(permille) / 1000).await.map(drop))
        }),
        CallSpec::Probe => Box::pin(async move { Answer::Other(journal.probe().await) }),
    }
}

fn inject(fixture: &Fixture, fault: Option<Fault>) {
    match fault {
        None => {}
        Some(Fault::Commit) => fixture.faults.fail(Op::Commit),
        Some(Fault::Lookup { forward }) => {
            let index = if forward { Index::Forward } else { Index::Store };
            fixture.faults.fail(Op::Lookup(index));
        }
        Some(Fault::Budget(bytes)) => fixture.journal.set_disk_budget(u64::from(bytes)),
    }
}

/// Checks one answer against the model and records what it acknowledged.
fn check(answer: Answer, model: &mut Model, round_high: &mut u64) {
    let expected = |e: &JournalError| matches!(e, JournalError::Storage(_) | JournalError::DiskFull);
    match answer {
        Answer::Appended(results) => {
            for (id, result) in results {
                match result {
                    Ok(ack) if ack.duplicate => assert_eq!(model.acked.get(&id), Some(&ack.offset), "{id}"),
                    Ok(ack) => {
                        assert!(ack.offset > model.highest, "{id} at {} reuses an offset", ack.offset);
                        let first = model.acked.insert(id.clone(), ack.offset);
                        assert!(first.is_none(), "{id} appended twice");
                        *round_high = (*round_high).max(ack.offset);
                    }
                    Err(e) => assert!(expected(&e), "{id}: {e}"),
                }
            }
        }
        Answer::Inserted(Ok(_)) | Answer::Other(Ok(())) => {}
        Answer::Inserted(Err(e)) | Answer::Other(Err(e)) => {
            assert!(expected(&e) || matches!(e, JournalError::BeyondEnd { .. }), "{e}")
        }
    }
}

async fn run(rounds: Vec<Round>) {
    let mut fixture = Fixture::open(JournalConfig::default());
    let mut model = Model::default();
    for round in rounds {
        let held = fixture.faults.hold(Op::Commit);
        let calls = round
            .calls
            .iter()
            .map(|spec| pending(&fixture, spec, model.inserted))
            .collect();
        inject(&fixture, round.fault);
        let answers = tokio::time::timeout(Duration::from_secs(10), as_one_group(&fixture, held, calls))
            .await
            .unwrap_or_else(|_| panic!("a caller was never answered in {round:?}"));
        let mut round_high = model.highest;
        for answer in answers {
            if let Answer::Inserted(Ok(n)) = answer {
                model.inserted += n as u64;
            }
            check(answer, &mut model, &mut round_high);
        }
        model.highest = round_high;
        // A fault no call met (a failed lookup in a group without inserts) ends with its round.
        fixture.faults.clear();
        fixture.journal.set_disk_budget(u64::MAX);
        assert_stored_as_acknowledged(&fixture, &model, &round);
    }
    fixture = fixture.reopen(JournalConfig::default());
    assert_stored_as_acknowledged(
        &fixture,
        &model,
        &Round {
            calls: Vec::new(),
            fault: None,
        },
    );
}

fn assert_stored_as_acknowledged(fixture: &Fixture, model: &Model, round: &Round) {
    let stored = fixture
        .storage
        .read_store("enterprise", 0, u64::MAX, usize::MAX)
        .expect("read");
    let stored: BTreeMap<String, u64> = stored
        .iter()
        .map(|r| (r.message().expect("decodes").envelope.message_id, r.offset))
        .collect();
    assert_eq!(
        stored, model.acked,
        "storage holds exactly what was acknowledged, after {round:?}"
    );
    let usage = *fixture.journal.usage().borrow();
    assert_eq!(usage, fixture.storage.recount().expect("recount"), "after {round:?}");
    assert_eq!(
        *fixture.journal.store_high().borrow(),
        model.highest,
        "published, after {round:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn under_injected_faults_every_caller_is_answered_and_nothing_is_reused_or_lost(
        rounds in prop::collection::vec(round(), 1..12)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(run(rounds));
    }
}
