//! Property: with `backpressure = "reject"` a store buffer whose peer does not confirm accepts
//! appends until its high watermark, then refuses them with the retryable `RESOURCE_EXHAUSTED`
//! (exit code 75 in the CLI; an AppendFacts call is refused whole); once the peer has pulled and
//! confirmed, fill falls below the low watermark and appends are accepted again — and every
//! acknowledged fact arrives exactly once, in order (SPEC §5; issue 5, test 1).

use crate::harness;

use std::time::Duration;

use bsfg_proto::ErrorCode;
use harness::{
    observe::{metric, wait_until},
    padded_message, receive, Cluster,
};

const STORE: &str = "\n[store]\ncapacity_bytes = \"64KiB\"\nbackpressure = \"reject\"\n";
/// About 1 KiB per fact: the buffer holds some sixty.
const PAD: usize = 1000;
const FILL: &str = "bsfg_store_buffer_fill_percent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_appends_until_the_peer_confirms_and_loses_nothing() {
    let mut cluster = Cluster::pair();
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").extra = STORE.to_owned();
    // plant-a is down: nothing enterprise holds for it gets confirmed.
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let mut acked = Vec::new();
    let refusal = loop {
        let id = format!("fact-{}", acked.len());
        match producer.append(padded_message("enterprise", "plant-a", &id, PAD)).await {
            Ok(ack) => acked.push((id, ack.offset)),
            Err(error) => break error,
        }
        assert!(acked.len() < 200, "64 KiB never filled up");
    };
    assert_eq!(refusal.code(), ErrorCode::ResourceExhausted, "{refusal}");
    assert!(refusal.retryable(), "{refusal}");
    let message = refusal.to_string();
    assert!(
        message.contains("high watermark 80%") && message.contains("65536") && message.contains("low watermark 70%"),
        "the refusal names the fill, watermarks and capacity: {message}"
    );
    let fill = metric(&cluster, "enterprise", FILL);
    println!(
        "{} appends accepted, refused at {fill:.1}% full: {message}",
        acked.len()
    );
    assert!(
        (80.0..=100.0).contains(&fill),
        "refused from the high watermark on, never past capacity: {fill}"
    );
    assert!(
        acked.len() > 40,
        "appends succeeded up to the high watermark: {}",
        acked.len()
    );

    let cli = cluster.cli_append("enterprise", "plant-a");
    assert_eq!(cli.status.code(), Some(75), "{}", harness::stderr(&cli));
    assert!(
        harness::stderr(&cli).starts_with("error: RESOURCE_EXHAUSTED: "),
        "{}",
        harness::stderr(&cli)
    );

    // AppendFacts is refused whole: none of its facts is appended (the last check below would
    // receive them before "after").
    let batch = (0..3)
        .map(|i| padded_message("enterprise", "plant-a", &format!("refused-{i}"), PAD))
        .collect();
    let whole = producer.append_batch(batch).await.expect_err("refused whole");
    assert_eq!(whole.code(), ErrorCode::ResourceExhausted, "{whole}");

    cluster.start("plant-a");
    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", acked.len(), Duration::from_secs(60)).await;
    let ids = harness::ids(&delivered);
    let expected: Vec<&str> = acked.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, expected, "every acknowledged fact, once, in order");

    wait_until(Duration::from_secs(30), "fill falls below the low watermark", || {
        metric(&cluster, "enterprise", FILL) < 70.0
    })
    .await;
    let ack = producer
        .append(padded_message("enterprise", "plant-a", "after", PAD))
        .await
        .expect("appends are accepted again");
    assert!(ack.offset > acked.last().map_or(0, |(_, offset)| *offset));
    let last = receive(&consumer, "mes", 1, Duration::from_secs(30)).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].message.envelope.message_id, "after");
}
