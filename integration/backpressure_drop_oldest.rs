//! Property: with `backpressure = "drop_oldest"` and the peer unreachable, appends keep succeeding
//! past the store buffer's capacity; the oldest unconfirmed facts are deleted, each logged as
//! `fact_dropped` and counted in `bsfg_dropped_facts_total`; after the heal the peer receives
//! exactly the facts that were not dropped, once and in order (SPEC §5; issue 5, test 2).

use crate::harness;

use std::time::Duration;

use harness::{
    append_many,
    observe::{event_fields, metric, wait_until},
    receive, Cluster,
};

const STORE: &str = "\n[store]\ncapacity_bytes = \"64KiB\"\nbackpressure = \"drop_oldest\"\n";
const PAD: usize = 1000;
/// About three times what the buffer holds.
const FACTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_unconfirmed_facts_are_dropped_counted_and_never_delivered() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    cluster
        .net
        .nodes
        .get_mut("enterprise")
        .expect("enterprise")
        .extra
        .push_str(STORE);
    let proxies = cluster.proxy_all();
    cluster.start_all();
    let up = cluster
        .wait_gate("plant-a", "enterprise", "normal", Duration::from_secs(20))
        .await;
    assert!(up.is_some(), "plant-a never linked to enterprise");
    for proxy in proxies.values() {
        proxy.blackhole();
    }
    let down = cluster
        .wait_gate("plant-a", "enterprise", "autonomous", Duration::from_secs(10))
        .await;
    assert!(down.is_some(), "plant-a never noticed the partition");

    let producer = cluster.client("enterprise").await;
    let acked = append_many(&producer, "enterprise", "plant-a", "fact", FACTS, PAD).await;
    // The gauge may lag a drop still to come: wait until every fact is either dropped (counted)
    // or held (the status's live usage), nothing confirmed during the partition.
    wait_until(
        Duration::from_secs(10),
        "the fill is back under the high watermark, every drop counted",
        || {
            let store = cluster.status("enterprise")["store"].clone();
            let held = store["facts"].as_u64().unwrap_or(0);
            let dropped = metric(&cluster, "enterprise", "bsfg_dropped_facts_total") as u64;
            store["fill_percent"].as_f64().is_some_and(|fill| fill < 80.0) && dropped + held == FACTS as u64
        },
    )
    .await;
    let dropped_total = metric(&cluster, "enterprise", "bsfg_dropped_facts_total") as usize;
    wait_until(Duration::from_secs(10), "the drops are logged", || {
        event_fields(&cluster, "enterprise", "fact_dropped", "message_id").len() >= dropped_total
    })
    .await;
    let dropped = event_fields(&cluster, "enterprise", "fact_dropped", "message_id");
    assert!(dropped_total > FACTS / 2, "most facts had to go: {dropped_total}");
    assert_eq!(dropped.len(), dropped_total, "one fact_dropped line per counted fact");
    assert_eq!(dropped, acked[..dropped.len()], "the oldest went first");
    let to_zones = event_fields(&cluster, "enterprise", "fact_dropped", "to_zone");
    assert!(to_zones.iter().all(|zone| zone == "plant-a"), "{to_zones:?}");

    for proxy in proxies.values() {
        proxy.heal();
    }
    let consumer = cluster.client("plant-a").await;
    let kept = &acked[dropped.len()..];
    let delivered = receive(&consumer, "mes", kept.len(), Duration::from_secs(60)).await;
    let frontier = "bsfg_frontier_offset{peer=\"plant-a\"}";
    wait_until(
        Duration::from_secs(30),
        "plant-a confirmed everything enterprise holds",
        || metric(&cluster, "enterprise", frontier) >= FACTS as f64,
    )
    .await;
    let late = consumer.fetch("mes", 1000, 500, None).await.expect("fetch");
    let ids = harness::ids(delivered.iter().chain(&late.facts));
    assert_eq!(ids, kept, "exactly the facts that were not dropped, once, in order");
}
