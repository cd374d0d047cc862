//! Property: a fact acknowledged by AppendFact survives SIGKILL of the node at any moment — it is
//! present afterwards at its acknowledged offset with its exact content — and the peer's forward
//! buffer ends up with exactly one copy of each acknowledged fact (issue #2, test 3).

use crate::harness;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bsfg::client::{Client, ClientOptions};
use bsfg_proto::Message;
use harness::{message, receive, Cluster};
use rand::{rngs::StdRng, Rng, SeedableRng};

const PRODUCERS: usize = 4;
const KILLS: usize = 5;

type Acked = Arc<Mutex<BTreeMap<u64, Message>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_and_reach_the_peer_exactly_once() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| tokio::spawn(produce(p, cluster.options("plant-a"), acked.clone(), stop.clone())))
        .collect();
    for round in 0..KILLS {
        // Let the producers get going on the fresh node, then kill at a random moment.
        let floor = acked.lock().expect("lock").len() + 200;
        while acked.lock().expect("lock").len() < floor {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        let before = acked.lock().expect("lock").len();
        cluster.kill("plant-a");
        println!("kill {round}: {before} facts acknowledged so far");
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..500))).await;
        cluster.start("plant-a");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for producer in producers {
        producer.await.expect("producer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 100,
        "only {} facts acknowledged: the producers barely ran",
        acked.len()
    );

    // Every acknowledged offset holds exactly that content: re-appending it is a duplicate at
    // the same offset (the node compares the content digest).
    let client = cluster.client("plant-a").await;
    for (offset, message) in &acked {
        let again = client.append(message.clone()).await.expect("re-append");
        assert_eq!(
            (again.offset, again.duplicate),
            (*offset, true),
            "{}",
            message.envelope.message_id
        );
    }

    // The peer holds exactly one copy of each acknowledged fact.
    let enterprise = cluster.client("enterprise").await;
    let received = receive(&enterprise, "checker", acked.len(), Duration::from_secs(120)).await;
    let extra = enterprise
        .fetch("checker", 1000, 1000, None)
        .await
        .expect("fetch")
        .facts;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for fact in received.iter().chain(&extra) {
        *copies.entry(fact.message.envelope.message_id.as_str()).or_default() += 1;
    }
    for message in acked.values() {
        let id = message.envelope.message_id.as_str();
        assert_eq!(copies.get(id), Some(&1), "copies of {id} in the peer's forward buffer");
    }
    assert!(copies.values().all(|n| *n == 1), "some fact arrived twice");
}

/// Appends `p-<n>` forever; on any failure reconnects and retries the same message (so a fact
/// that was durable but unacknowledged at the crash comes back as a duplicate).
async fn produce(p: usize, options: ClientOptions, acked: Acked, stop: Arc<AtomicBool>) {
    let mut client: Option<Client> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let message = message("plant-a", "enterprise", &format!("p{p}-{n}"));
        if client.is_none() {
            client = tokio::time::timeout(Duration::from_secs(1), Client::connect(&options))
                .await
                .ok()
                .and_then(Result::ok);
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let Some(connected) = &client else { continue };
        match tokio::time::timeout(Duration::from_millis(500), connected.append(message.clone())).await {
            Ok(Ok(reply)) => {
                let previous = acked.lock().expect("lock").insert(reply.offset, message);
                if let Some(previous) = previous {
                    assert_eq!(
                        previous.envelope.message_id,
                        format!("p{p}-{n}"),
                        "offset {} acknowledged twice",
                        reply.offset
                    );
                }
                n += 1;
            }
            _ => client = None,
        }
    }
}
