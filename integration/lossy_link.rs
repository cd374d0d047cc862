//! Property: a link that delivers packets always makes progress (issue 16, test 4). Through fault
//! proxies dropping 10 % of the datagrams and delaying each by 50 ms ± 20 ms (so they are also
//! reordered), 20 000 facts each way arrive exactly once and in order, and no session fails — a
//! page is never thrown away because it crosses slowly. The same at 1 % loss must not be more
//! than 20 times faster: a tenfold loss rate may slow the link, never collapse it.
//!
//! (Issue 16 words the ratio the other way round — "the same at 1 % loss completes at least 20×
//! faster than the 10 % case" — which would demand that 10 % loss be slow; the measured ratio is
//! printed, and docs/performance.md discusses it.)

use crate::harness;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bsfg::devnet::proxy::FaultProxy;
use harness::{observe::events, padded_message, receive, Cluster, PAIR};

const FACTS: usize = 20_000;
const BATCH: usize = 500;
const PAD: usize = 100;

fn impair(proxies: &BTreeMap<String, FaultProxy>, loss: u8) {
    for proxy in proxies.values() {
        proxy.drop_percent(loss);
        proxy.delay(Duration::from_millis(50));
        proxy.jitter(Duration::from_millis(20));
    }
}

/// Appends `FACTS` facts each way (ids `{round}-{i}`), then waits until each side's consumer has
/// all of them; returns how long that took and checks they arrived once, in order.
async fn round(cluster: &Cluster, round: &str) -> Duration {
    let started = Instant::now();
    let mut sent = BTreeMap::new();
    for (zone, peer) in PAIR {
        let producer = cluster.client(zone).await;
        let mut ids = Vec::new();
        for call in 0..FACTS / BATCH {
            let batch: Vec<String> = (0..BATCH)
                .map(|i| format!("{round}-{zone}-{}", call * BATCH + i))
                .collect();
            let messages = batch.iter().map(|id| padded_message(zone, peer, id, PAD)).collect();
            let results = producer.append_batch(messages).await.expect("append");
            assert!(results.iter().all(Result::is_ok), "acknowledged");
            ids.extend(batch);
        }
        sent.insert(peer, ids);
    }
    let receiving = PAIR.map(|(_, peer)| {
        let options = cluster.options(peer);
        tokio::spawn(async move {
            let client = bsfg::client::Client::connect(&options).await.expect("connect");
            receive(&client, "mes", FACTS, Duration::from_secs(180)).await
        })
    });
    for (task, (_, peer)) in receiving.into_iter().zip(PAIR) {
        let delivered = task.await.expect("receiver");
        assert_eq!(
            harness::ids(&delivered),
            sent[peer],
            "{peer}: every fact once, in order"
        );
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_facts_each_way_cross_a_lossy_jittery_link_without_a_failed_session() {
    let mut cluster = Cluster::pair();
    let proxies = cluster.proxy_all();
    impair(&proxies, 10);
    cluster.start_all();
    cluster.wait_linked(Duration::from_secs(60)).await;

    let lossy = round(&cluster, "lossy").await;
    impair(&proxies, 1);
    let clean = round(&cluster, "clean").await;
    let ratio = lossy.as_secs_f64() / clean.as_secs_f64();
    println!("10 % loss: {lossy:?}; 1 % loss: {clean:?}; ratio {ratio:.2}");
    for (zone, _) in PAIR {
        let failed = events(&cluster, zone, "peer_disconnected");
        assert!(
            failed.is_empty(),
            "{zone}: no session failed, no page thrown away: {failed:?}"
        );
    }
    assert!(ratio <= 20.0, "10 % loss is {ratio:.1} times slower than 1 %");
}
