//! Property: the JetStream log of an HA zone, on a real three-server nats-server cluster, is a
//! fenced compare-and-append log. Two writers racing for the same sequence leave exactly one
//! record there, and the loser learns it is fenced and by whom; a record sent again after an
//! unknown outcome resolves to the sequence it already has and is never stored twice; the ordered
//! reader yields every record once, in order, and reports a purged start as a gap.

use crate::harness;

use std::time::Duration;

use bsfg_engine::{
    jetstream::LogSpec,
    log::{LogError, ReplicatedLog},
};
use bytes::Bytes;
use futures::StreamExt;
use harness::engine::{within, EngineFixture, ZONE};

const DEADLINE: Duration = Duration::from_secs(10);

fn payload(id: &str) -> Bytes {
    Bytes::from(format!("record {id}").into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_leave_one_record_per_sequence_and_the_loser_is_fenced() {
    let engine = EngineFixture::start().await;
    let a = engine.log("writer-a").await;
    let b = engine.log("writer-b").await;
    for round in 1..=20u64 {
        let last = round - 1;
        let (id_a, id_b) = (format!("a.1.{round}"), format!("b.1.{round}"));
        let (won_a, won_b) = tokio::join!(
            a.append(last, &id_a, payload(&id_a), within(DEADLINE)),
            b.append(last, &id_b, payload(&id_b), within(DEADLINE)),
        );
        let (winner, loser) = match (won_a, won_b) {
            (Ok(seq), Err(lost)) => ((seq, id_a), (lost, id_b)),
            (Err(lost), Ok(seq)) => ((seq, id_b), (lost, id_a)),
            other => panic!("round {round}: exactly one writer must win, got {other:?}"),
        };
        assert_eq!(winner.0, last + 1, "round {round}");
        assert_eq!(
            loser.0,
            LogError::Fenced {
                seq: last + 1,
                found_id: winner.1.clone(),
            },
            "round {round}: {} must learn that {} holds the sequence",
            loser.1,
            winner.1
        );
        let stored = a.get(last + 1).await.expect("read").expect("the winner's record");
        assert_eq!(
            (stored.id.as_str(), &stored.payload),
            (winner.1.as_str(), &payload(&winner.1))
        );
    }
    assert_eq!(
        a.bounds().await.expect("bounds").last,
        20,
        "one record per round, no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_sent_again_resolves_to_its_sequence_and_is_never_stored_twice() {
    let engine = EngineFixture::start().await;
    // The shortest dedupe window the server allows, so a late resend goes past it and is
    // resolved by reading the record back rather than by the server's msg-id dedupe.
    let mut spec = LogSpec::new(ZONE, 3);
    spec.duplicate_window = Duration::from_millis(100);
    let log = engine.log_with("writer", &spec).await;
    let first = log.append(0, "w.1.1", payload("w.1.1"), within(DEADLINE)).await;
    assert_eq!(first, Ok(1));

    // At once, inside the dedupe window: the acknowledgement of the first send was "lost".
    let again = log.append(0, "w.1.1", payload("w.1.1"), within(DEADLINE)).await;
    assert_eq!(again, Ok(1), "a resend inside the dedupe window");
    let forged = log.append(0, "w.1.1", payload("other bytes"), within(DEADLINE)).await;
    assert!(
        matches!(forged, Err(LogError::Corrupt { seq: 1, .. })),
        "same id, other bytes: {forged:?}"
    );
    assert_eq!(log.append(1, "w.1.2", payload("w.1.2"), within(DEADLINE)).await, Ok(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = log.append(1, "w.1.2", payload("w.1.2"), within(DEADLINE)).await;
    assert_eq!(
        late,
        Ok(2),
        "a resend after the dedupe window, resolved by reading back"
    );

    let forged = log.append(1, "w.1.2", payload("other bytes"), within(DEADLINE)).await;
    assert!(
        matches!(forged, Err(LogError::Corrupt { seq: 2, .. })),
        "late, other bytes: {forged:?}"
    );
    let behind = log.append(5, "w.1.3", payload("w.1.3"), within(DEADLINE)).await;
    assert_eq!(behind, Err(LogError::Conflict { expected: 5, last: 2 }));

    let bounds = log.bounds().await.expect("bounds");
    assert_eq!(
        (bounds.first, bounds.last),
        (1, 2),
        "every resend resolved, nothing stored twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_yields_every_record_in_order_and_reports_a_purged_start() {
    let engine = EngineFixture::start().await;
    let log = engine.log("writer").await;
    for seq in 1..=10 {
        let id = format!("w.1.{seq}");
        assert_eq!(log.append(seq - 1, &id, payload(&id), within(DEADLINE)).await, Ok(seq));
    }
    let mut tail = log.tail(4).await.expect("tail");
    for seq in 4..=10 {
        let record = next(&mut tail).await;
        assert_eq!((record.seq, record.id), (seq, format!("w.1.{seq}")));
    }
    // The reader waits at the end and takes what comes next.
    assert_eq!(
        log.append(10, "w.1.11", payload("w.1.11"), within(DEADLINE)).await,
        Ok(11)
    );
    assert_eq!(next(&mut tail).await.seq, 11);

    assert_eq!(log.purge_before(6).await, Ok(5));
    let bounds = log.bounds().await.expect("bounds");
    assert_eq!((bounds.first, bounds.last), (6, 11));
    let mut purged = log.tail(3).await.expect("tail");
    let gap = tokio::time::timeout(DEADLINE, purged.next()).await.expect("an answer");
    assert_eq!(gap, Some(Err(LogError::Gap { expected: 3, found: 6 })));
    assert_eq!(log.get(3).await, Ok(None));
}

async fn next(tail: &mut <bsfg_engine::jetstream::JetStreamLog as ReplicatedLog>::Tail) -> bsfg_engine::Record {
    tokio::time::timeout(DEADLINE, tail.next())
        .await
        .expect("a record within the deadline")
        .expect("the reader goes on")
        .expect("a record")
}
