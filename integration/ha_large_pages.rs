//! Property: an HA zone takes commands larger than one record of its log (4 MiB), both ways.
//! - A peer's page: a backlog of facts of 5 KB each waits in `plant-a` while the zone is down;
//!   the zone's first pull asks for `batch_limit` (1 000) of them, a page of about 5 MB. The
//!   page is inserted in parts, and every fact arrives once, in order.
//! - A producer's `AppendFacts` call of 1 000 facts of 5 KB: queued in parts, every fact
//!   acknowledged, and all of them reach `plant-a` in order.

use crate::harness;

use std::time::Duration;

use bsfg::{client::Client, devnet::nats::NatsOptions};
use harness::{
    ha::{HaZone, INSTANCES, PLANT, ZONE},
    ids, padded_message, receive,
};

const FACTS: usize = 1_000;
const PAD: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_larger_than_a_log_record_arrives_whole() {
    let mut ha = HaZone::new(NatsOptions::default(), "").await;
    ha.cluster.start(PLANT);
    let plant = ha.cluster.client(PLANT).await;
    let sent: Vec<String> = (0..FACTS).map(|i| format!("large-{i}")).collect();
    for batch in sent.chunks(100) {
        let messages = batch.iter().map(|id| padded_message(PLANT, ZONE, id, PAD)).collect();
        let outcomes = plant.append_batch(messages).await.expect("append");
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    }
    plant.close().await;

    for instance in INSTANCES {
        ha.cluster.start(instance);
    }
    ha.wait_active(None, Duration::from_secs(30)).await;
    let consumer = Client::connect(&ha.zone_client()).await.expect("client");
    arrive_once_in_order(consumer, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_call_larger_than_a_log_record_is_acknowledged_whole() {
    let ha = HaZone::started("").await;
    let producer = Client::connect(&ha.zone_client()).await.expect("client");
    let sent: Vec<String> = (0..FACTS).map(|i| format!("batched-{i}")).collect();
    let messages = sent.iter().map(|id| padded_message(ZONE, PLANT, id, PAD)).collect();
    let outcomes = producer.append_batch(messages).await.expect("append");
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {FACTS} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    producer.close().await;

    arrive_once_in_order(ha.cluster.client(PLANT).await, &sent).await;
}

/// `consumer` (as `mes`) receives the facts `sent`, each once, in order.
async fn arrive_once_in_order(consumer: Client, sent: &[String]) {
    let received = receive(&consumer, "mes", sent.len(), Duration::from_secs(60)).await;
    assert_eq!(
        ids(&received),
        sent.iter().map(String::as_str).collect::<Vec<_>>(),
        "every fact, once, in order"
    );
    consumer.close().await;
}
