//! AppendFacts, the batched append (docs/architecture.md): every message of a call gets the outcome
//! AppendFact would give it alone, in the order given, and concurrent calls do not interleave; the
//! acknowledged facts survive `kill -9`;
//! the peer receives each exactly once, in order; a call outside 1..=1024 messages is refused;
//! and the append metrics count facts, not calls.

use crate::harness;

use std::time::Duration;

use bsfg_proto::{rpc::MAX_APPEND_BATCH, AppendResponse, ErrorCode, Message};
use harness::{ids, message, observe::metric, receive, Cluster};

fn batch(prefix: &str, count: usize) -> Vec<Message> {
    (0..count)
        .map(|i| message("enterprise", "plant-a", &format!("{prefix}-{i}")))
        .collect()
}

fn offsets(results: &[Result<AppendResponse, bsfg_proto::RpcError>]) -> Vec<u64> {
    results
        .iter()
        .map(|r| r.as_ref().unwrap_or_else(|e| panic!("fact refused: {e}")).offset)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_appends_in_order_with_an_outcome_per_fact_exactly_once_across_a_crash() {
    let mut cluster = Cluster::linked_pair().await;
    let producer = cluster.client("enterprise").await;

    let first = producer.append_batch(batch("b", 500)).await.expect("batch");
    let first_offsets = offsets(&first);
    assert_eq!(first_offsets.len(), 500);
    assert!(
        first_offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive offsets in the batch's order: {first_offsets:?}"
    );
    assert!(first.iter().all(|r| matches!(r, Ok(ack) if !ack.duplicate)));

    // Two calls at once, from two connections: each call's facts stay together (one journal
    // command), whichever commits first.
    let other = cluster.client("enterprise").await;
    let (left, right) = tokio::join!(
        producer.append_batch(batch("left", 300)),
        other.append_batch(batch("right", 300))
    );
    let (left, right) = (offsets(&left.expect("left")), offsets(&right.expect("right")));
    for call in [&left, &right] {
        assert!(call.windows(2).all(|w| w[1] == w[0] + 1), "{call:?}");
    }
    let mut all: Vec<u64> = left.iter().chain(&right).copied().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (first_offsets[499] + 1..=first_offsets[499] + 600).collect();
    assert_eq!(all, expected, "600 new offsets, no gap and none shared");
    other.close().await;

    // One call mixing every outcome AppendFact knows.
    let mut conflicting = message("enterprise", "plant-a", "b-3");
    conflicting.fact.object_json = "{\"changed\":true}".into();
    let mixed = vec![
        message("enterprise", "plant-a", "m-new"),
        message("enterprise", "plant-a", "b-3"),
        conflicting,
        message("enterprise", "nowhere", "m-lost"),
        message("enterprise", "plant-a", "m-new"),
    ];
    let results = producer.append_batch(mixed).await.expect("mixed batch");
    let new = results[0].as_ref().expect("a new fact").offset;
    assert_eq!(new, first_offsets[499] + 601);
    assert_eq!(
        results[1],
        Ok(AppendResponse {
            offset: first_offsets[3],
            duplicate: true
        })
    );
    let conflict = results[2].as_ref().expect_err("same id, other content");
    assert_eq!((conflict.code, conflict.retryable), (ErrorCode::AlreadyExists, false));
    let invalid = results[3].as_ref().expect_err("unknown to_zone");
    assert_eq!(invalid.code, ErrorCode::InvalidArgument);
    assert!(invalid.message.contains("nowhere"), "{}", invalid.message);
    assert_eq!(
        results[4],
        Ok(AppendResponse {
            offset: new,
            duplicate: true
        }),
        "a repeat inside the call is a duplicate of its first copy"
    );

    // Out-of-range calls are refused whole, naming the count.
    for size in [0, MAX_APPEND_BATCH + 1] {
        let error = producer
            .append_batch(batch("too-many", size))
            .await
            .expect_err("refused");
        assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
        assert!(
            error.to_string().contains(&format!("carries {size} messages")),
            "{error}"
        );
    }

    // Counted per fact: 500 + 600 + 5, plus the refused calls' 1025 (the empty one counts one).
    let requests = metric(&cluster, "enterprise", "bsfg_append_requests_total");
    assert_eq!(requests, (500 + 600 + 5 + 1 + MAX_APPEND_BATCH + 1) as f64);
    let failed = metric(
        &cluster,
        "enterprise",
        "bsfg_append_failures_total{reason=\"INVALID_ARGUMENT\"}",
    );
    assert_eq!(failed, (1 + 1 + MAX_APPEND_BATCH + 1) as f64);

    // Acknowledged means durable: after kill -9 the same batch is all duplicates, same offsets.
    producer.close().await;
    cluster.kill("enterprise");
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let again = producer.append_batch(batch("b", 500)).await.expect("replayed batch");
    assert_eq!(offsets(&again), first_offsets);
    assert!(again.iter().all(|r| matches!(r, Ok(ack) if ack.duplicate)));

    // The peer holds each fact once, in source order.
    let consumer = cluster.client("plant-a").await;
    let received = receive(&consumer, "mes", 1101, Duration::from_secs(60)).await;
    let mut expected: Vec<String> = (0..500).map(|i| format!("b-{i}")).collect();
    let (first, second) = match left[0] < right[0] {
        true => ("left", "right"),
        false => ("right", "left"),
    };
    for prefix in [first, second] {
        expected.extend((0..300).map(|i| format!("{prefix}-{i}")));
    }
    expected.push("m-new".into());
    assert_eq!(ids(&received), expected);
    let extra = consumer.fetch("mes", 100, 500, None).await.expect("fetch");
    assert!(extra.facts.is_empty(), "nothing twice: {:?}", ids(&extra.facts));
}
