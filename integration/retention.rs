//! Property: retention (here a few seconds) deletes what is old — confirmed facts from both
//! buffers without a word, unconfirmed ones (standard mode) each logged as `fact_expired` and
//! counted in `bsfg_expired_facts_total`, never to be delivered — while the forward buffer's
//! dedupe window, as long as its own retention, still recognises a fact the sender forgot and
//! sent again (SPEC §4, §5; issue 5, test 4).

use crate::harness;

use std::time::Duration;

use harness::{
    append_many, message,
    observe::{event_fields, metric, wait_until},
    receive, Cluster,
};

const SHORT: &str = "\n[store]\nretention = \"2s\"\n\n[forward]\nretention = \"2s\"\n";
const FACTS: usize = 10;
const FRONTIER: &str = "bsfg_frontier_offset{peer=\"plant-a\"}";

async fn append_all(cluster: &Cluster, prefix: &str) -> Vec<String> {
    let producer = cluster.client("enterprise").await;
    let ids = append_many(&producer, "enterprise", "plant-a", prefix, FACTS, 0).await;
    producer.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_facts_disappear_after_the_retention() {
    let mut cluster = Cluster::pair();
    // The forward retention leaves time to see that confirmed facts are still kept until it ends.
    cluster.configure_all("\n[store]\nretention = \"2s\"\n\n[forward]\nretention = \"6s\"\n");
    cluster.start_all();
    append_all(&cluster, "fact").await;
    let consumer = cluster.client("plant-a").await;
    assert_eq!(
        receive(&consumer, "mes", FACTS, Duration::from_secs(30)).await.len(),
        FACTS
    );
    let page = consumer.fetch("early", 1000, 0, None).await.expect("fetch");
    assert_eq!(
        page.facts.len(),
        FACTS,
        "confirmed facts stay until their retention ends: another consumer still reads them"
    );
    wait_until(Duration::from_secs(20), "both buffers are empty", || {
        metric(&cluster, "enterprise", "bsfg_store_buffer_fill_percent") == 0.0
            && metric(&cluster, "plant-a", "bsfg_forward_buffer_fill_percent") == 0.0
    })
    .await;
    let page = consumer.fetch("audit", 1000, 0, None).await.expect("fetch");
    assert!(page.facts.is_empty(), "a new consumer finds nothing: {:?}", page.facts);
    for zone in ["enterprise", "plant-a"] {
        assert_eq!(
            metric(&cluster, zone, "bsfg_expired_facts_total"),
            0.0,
            "{zone}: nothing lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_facts_expire_are_counted_and_never_delivered() {
    let mut cluster = Cluster::pair();
    cluster.configure_all(SHORT);
    cluster.start("enterprise");
    let ids = append_all(&cluster, "lost").await;
    wait_until(Duration::from_secs(20), "every fact expired", || {
        metric(&cluster, "enterprise", "bsfg_expired_facts_total") == FACTS as f64
    })
    .await;
    wait_until(Duration::from_secs(5), "every expiry is logged", || {
        event_fields(&cluster, "enterprise", "fact_expired", "message_id").len() == FACTS
    })
    .await;
    assert_eq!(event_fields(&cluster, "enterprise", "fact_expired", "message_id"), ids);
    let zones = event_fields(&cluster, "enterprise", "fact_expired", "to_zone");
    assert!(zones.iter().all(|zone| zone == "plant-a"), "{zones:?}");

    cluster.start("plant-a");
    wait_until(Duration::from_secs(30), "plant-a has pulled past them", || {
        metric(&cluster, "enterprise", FRONTIER) >= FACTS as f64
    })
    .await;
    let consumer = cluster.client("plant-a").await;
    let page = consumer.fetch("mes", 1000, 500, None).await.expect("fetch");
    assert!(page.facts.is_empty(), "expired facts never arrive: {:?}", page.facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_recognised_within_the_dedupe_window() {
    let mut cluster = Cluster::pair();
    // The sender forgets quickly; the receiver's dedupe window is the default week.
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").extra = SHORT.to_owned();
    cluster.start_all();
    let producer = cluster.client("enterprise").await;
    let first = producer
        .append(message("enterprise", "plant-a", "once"))
        .await
        .expect("append");
    let consumer = cluster.client("plant-a").await;
    assert_eq!(receive(&consumer, "mes", 1, Duration::from_secs(30)).await.len(), 1);
    wait_until(Duration::from_secs(20), "the sender deleted the confirmed fact", || {
        metric(&cluster, "enterprise", "bsfg_store_buffer_fill_percent") == 0.0
    })
    .await;

    let again = producer
        .append(message("enterprise", "plant-a", "once"))
        .await
        .expect("append");
    assert!(
        !again.duplicate && again.offset > first.offset,
        "the sender sees a new fact: {again:?}"
    );
    let duplicates = "bsfg_duplicate_facts_total{buffer=\"forward\"}";
    wait_until(Duration::from_secs(30), "the receiver recognises the replay", || {
        metric(&cluster, "plant-a", duplicates) >= 1.0
    })
    .await;
    let page = consumer.fetch("mes", 1000, 500, None).await.expect("fetch");
    assert!(page.facts.is_empty(), "delivered once only: {:?}", page.facts);
}
