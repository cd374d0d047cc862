//! Property: a safety-critical node (`store.safety_critical = true`) never loses an unconfirmed
//! fact to retention: facts whose peer is away outlive a short retention (the node says so with
//! `facts_kept_past_retention`), `bsfg_expired_facts_total` stays 0, and they are delivered
//! once the peer is back (SPEC §5; issue 5, test 3). That the node refuses to start with
//! `drop_oldest` is checked in `config_errors.rs`.

use crate::harness;

use std::time::Duration;

use harness::{
    append_many,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

const SAFETY: &str = "\n[store]\nsafety_critical = true\nbackpressure = \"reject\"\nretention = \"2s\"\n";
const FACTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_facts_outlive_their_retention_and_are_delivered() {
    let mut cluster = Cluster::pair();
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").extra = SAFETY.to_owned();
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let acked = append_many(&producer, "enterprise", "plant-a", "fact", FACTS, 100).await;
    wait_until(
        Duration::from_secs(20),
        "a sweep keeps the facts past their retention",
        || !events(&cluster, "enterprise", "facts_kept_past_retention").is_empty(),
    )
    .await;
    let kept = &events(&cluster, "enterprise", "facts_kept_past_retention")[0];
    assert_eq!(kept["peer"], "plant-a", "{kept}");
    assert_eq!(kept["message_id"], "fact-0", "{kept}");
    assert_eq!(metric(&cluster, "enterprise", "bsfg_expired_facts_total"), 0.0);

    cluster.start("plant-a");
    let consumer = cluster.client("plant-a").await;
    let delivered = receive(&consumer, "mes", FACTS, Duration::from_secs(30)).await;
    let ids = harness::ids(&delivered);
    assert_eq!(ids, acked, "every fact arrived, once, in order");
    assert_eq!(metric(&cluster, "enterprise", "bsfg_expired_facts_total"), 0.0);
    assert!(events(&cluster, "enterprise", "fact_expired").is_empty());
}
