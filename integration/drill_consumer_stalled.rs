//! Drill: consumer backlog growing (docs/operations.md), a consumer that fetches and never
//! confirms. Its series exist from its first fetch (so the stall can alert); the runbook shows its
//! calls, what it is stuck on and whether batch 42 reached it; a poison fact is skipped (saved,
//! then confirmed) and the skip undone by a rewind; an abandoned consumer is deleted.

use crate::harness;

use std::time::Duration;

use harness::{
    admin::sample,
    drill::{Drill, Estate},
    message,
    observe::{scrape, wait_until},
    Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_handled_as_the_runbook_says() {
    let cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    let estate = Estate::new(cluster);
    estate.start_all().await;
    let producer = estate.cluster.client("idmz").await;
    for id in ["batch-40", "batch-41", "batch-42"] {
        producer.append(message("idmz", "plant-a", id)).await.expect("append");
    }
    producer.close().await;
    let consumer = estate.cluster.client("plant-a").await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let after = seen.last().map(|f: &bsfg_proto::FetchedFact| f.offset);
        seen.extend(
            consumer
                .fetch("mes-reporting", 10, 1000, after)
                .await
                .expect("fetch")
                .facts,
        );
    }
    consumer.fetch("old-reporting", 10, 0, None).await.expect("fetch");
    let backlog = |name: &str| {
        sample(
            &scrape(&estate.cluster, "plant-a"),
            &format!("bsfg_consumer_backlog_size{{consumer=\"{name}\"}}"),
        )
    };
    wait_until(
        Duration::from_secs(10),
        "the stalled consumer has a backlog series",
        || backlog("mes-reporting") == Some(3.0),
    )
    .await;
    let drill = Drill::load("consumer-stalled");

    let calls = estate.run(&drill, "calls");
    assert!(
        calls.contains("\"operation\":\"fetch_facts\"") && calls.contains("old-reporting"),
        "{calls}"
    );
    let peek = estate.run(&drill, "peek");
    assert!(
        peek.contains("batch-40") && !peek.contains("batch-41"),
        "the fact it is stuck on: {peek}"
    );
    let trace = estate.run(&drill, "trace");
    assert!(
        trace.contains("\"found\":\"received\"") && trace.contains("\"confirmed\":false"),
        "{trace}"
    );
    estate.run(&drill, "skip");
    let skipped = std::fs::read_to_string(estate.host("plant-a").join("var/tmp/bsfg-skipped.jsonl")).expect("saved");
    assert!(skipped.contains("batch-40"), "the skipped fact is saved: {skipped}");
    wait_until(Duration::from_secs(10), "the skip is confirmed", || {
        backlog("mes-reporting") == Some(2.0)
    })
    .await;
    let rewound = estate.run(&drill, "rewind");
    assert!(
        rewound.contains(&format!("\"next_offset\":{}", seen[0].offset)),
        "{rewound}"
    );
    let again = consumer.fetch("mes-reporting", 1, 0, None).await.expect("fetch");
    assert_eq!(harness::ids(&again.facts), ["batch-40"], "the skip is undone");
    let deleted = estate.run(&drill, "delete");
    assert!(
        deleted.contains("\"deleted\":true") && !deleted.contains("\"name\":\"old-reporting\""),
        "{deleted}"
    );
    wait_until(Duration::from_secs(10), "its series are gone", || {
        backlog("old-reporting").is_none()
    })
    .await;
    estate.assert_ran_every_step(&drill);
    consumer.close().await;
}
