//! A node whose store is replaced (its data directory lost, the node started empty) numbers its
//! facts from 1 again. Its peer, which had pulled the old store's facts, must not confirm the new
//! store's facts on the strength of offsets the old one served: every fact appended to the new
//! store is delivered.

use crate::harness;

use std::time::Duration;

use harness::{message, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_resumes_only_against_the_store_that_served_it() {
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let proxies = cluster.proxy_all();
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(20)).await;

    let producer = cluster.client("enterprise").await;
    for i in 0..5 {
        let old = message("enterprise", "plant-a", &format!("old-{i}"));
        producer.append(old).await.expect("append to the old store");
    }
    producer.close().await;
    let consumer = cluster.client("plant-a").await;
    let got = harness::receive(&consumer, "mes", 5, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 5, "the old store's facts delivered");

    // While the link is cut, enterprise loses its store, starts empty and takes new facts: they
    // get the offsets plant-a last pulled from the old store.
    for proxy in proxies.values() {
        proxy.blackhole();
    }
    cluster.kill("enterprise");
    let data = cluster.net.node("enterprise").expect("zone").data_dir.clone();
    std::fs::remove_dir_all(&data).expect("wipe enterprise's data");
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    let expected: Vec<String> = (0..10).map(|i| format!("new-{i}")).collect();
    for id in &expected {
        let new = message("enterprise", "plant-a", id);
        producer.append(new).await.expect("append to the new store");
    }
    producer.close().await;
    for proxy in proxies.values() {
        proxy.heal();
    }

    let got = harness::receive(&consumer, "mes", expected.len(), Duration::from_secs(30)).await;
    let ids: Vec<&str> = got.iter().map(|f| f.message.envelope.message_id.as_str()).collect();
    assert_eq!(ids, expected, "every fact of the new store delivered, in order, once");
    consumer.close().await;
}
