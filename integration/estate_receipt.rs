//! Property (SPEC §2, §4a): a plant can never inject facts that claim to come from enterprise,
//! and the DMZ relays only the flows its `[[relay]]` rules allow. Here plant-a's node presents
//! two forged facts claiming `from_zone = "enterprise"` — one as its own, one as if it had relayed
//! it — written into its store buffer while it was stopped, as an attacker holding the plant
//! gateway's disk would; and a plant-a producer appends to plant-b, a flow the DMZ does not
//! allow. Each is refused at the DMZ, counted, logged at ERROR with its identity, confirmed so the
//! link keeps flowing, and never delivered anywhere; facts appended afterwards still arrive.

use crate::harness;

use std::time::Duration;

use bsfg::devnet::estate::{routes, ENTERPRISE, IDMZ, PLANT_A, PLANT_B};
use bsfg_actors::storage::{Batch, Log, RocksStorage, Storage, StoreAppend};
use bsfg_proto::{codec, Message};
use harness::{
    estate, message,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

const WAIT: Duration = Duration::from_secs(30);

/// Writes `forged` into the stopped plant-a node's store buffer, waiting for the DMZ to pull it.
fn forge(data_dir: &std::path::Path, forged: &[Message]) {
    let storage = RocksStorage::open(data_dir, PLANT_A).expect("plant-a's storage");
    let mut recovered = storage.recover().expect("recover");
    let mut batch = Batch::default();
    for message in forged {
        recovered.store_high += 1;
        let encoded = codec::encode_value(message).expect("encode");
        recovered.usage.store.add(Log::Store.entry_bytes(encoded.len()));
        batch.store.push(StoreAppend {
            offset: recovered.store_high,
            appended_at_unix_ms: bsfg_proto::model::now_unix_ms(),
            message_id: message.envelope.message_id.clone(),
            peer: IDMZ.into(),
            origin: None,
            digest: [0; 32],
            encoded,
        });
    }
    batch.store_high = Some(recovered.store_high);
    batch.usage = Some(recovered.usage);
    storage.commit(&batch).expect("commit the forged facts");
    let closed = storage.closed();
    drop(storage);
    let _ = closed.recv_timeout(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_origins_and_flows_the_dmz_does_not_allow_are_refused_and_never_delivered() {
    let mut cluster = Cluster::estate();
    cluster
        .net
        .add_toml(PLANT_A, &routes(&[PLANT_B]))
        .expect("plant-a routes plant-b");
    cluster.start_all();
    estate::wait_linked(&cluster, WAIT).await;

    assert!(cluster.terminate(PLANT_A).success());
    let as_its_own = message(ENTERPRISE, PLANT_B, "forged-direct");
    let mut as_relayed = message(ENTERPRISE, PLANT_B, "forged-relayed");
    as_relayed.envelope.hops = vec![PLANT_A.into()];
    forge(
        &cluster.net.node(PLANT_A).expect("plant-a").data_dir,
        &[as_its_own, as_relayed],
    );
    cluster.start(PLANT_A);
    let plant_a = cluster.client(PLANT_A).await;
    plant_a
        .append(message(PLANT_A, PLANT_B, "sideways"))
        .await
        .expect("plant-a acknowledges a routed fact; the DMZ judges its flow");
    plant_a
        .append(message(PLANT_A, ENTERPRISE, "after"))
        .await
        .expect("append");
    let enterprise = cluster.client(ENTERPRISE).await;
    enterprise
        .append(message(ENTERPRISE, PLANT_B, "down"))
        .await
        .expect("append");

    let arrived = receive(&cluster.client(ENTERPRISE).await, "mes", 1, WAIT).await;
    assert_eq!(
        harness::ids(&arrived),
        ["after"],
        "the link keeps flowing past refused facts"
    );
    let plant_b = cluster.client(PLANT_B).await;
    let arrived = receive(&plant_b, "mes", 1, WAIT).await;
    assert_eq!(harness::ids(&arrived), ["down"]);

    let rejected = metric(&cluster, IDMZ, "bsfg_rejected_facts_total{reason=\"wrong_origin\"}");
    assert_eq!(rejected, 2.0, "both forged facts are refused by the receipt rule");
    let refused = metric(&cluster, IDMZ, "bsfg_relay_refused_total{reason=\"not_allowed\"}");
    assert_eq!(refused, 1.0, "plant-a → plant-b is not a flow the DMZ relays");
    let logged = |event: &str| {
        events(&cluster, IDMZ, event)
            .into_iter()
            .map(|line| {
                assert_eq!(line["level"], "error", "{line}");
                let field = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
                (field("message_id"), field("from_zone"), field("to_zone"))
            })
            .collect::<Vec<_>>()
    };
    // Written by the DMZ's logger thread, maybe after `down` arrived.
    wait_until(WAIT, "the DMZ logs every refusal", || {
        events(&cluster, IDMZ, "fact_rejected").len() >= 2 && !events(&cluster, IDMZ, "relay_refused").is_empty()
    })
    .await;
    let forged = [
        ("forged-direct".to_owned(), ENTERPRISE.to_owned(), PLANT_B.to_owned()),
        ("forged-relayed".to_owned(), ENTERPRISE.to_owned(), PLANT_B.to_owned()),
    ];
    assert_eq!(logged("fact_rejected"), forged);
    let sideways = [("sideways".to_owned(), PLANT_A.to_owned(), PLANT_B.to_owned())];
    assert_eq!(logged("relay_refused"), sideways);

    // Confirmed with their pages: nothing stays in plant-a's backlog toward the DMZ.
    wait_until(WAIT, "plant-a's backlog toward the DMZ drains", || {
        cluster.status(PLANT_A)["peers"][IDMZ]["backlog"] == 0
    })
    .await;
    // Never delivered: plant-b got only `down`, the DMZ kept nothing for itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let late = plant_b.fetch("mes", 100, 0, None).await.expect("fetch");
    assert_eq!(
        harness::ids(&late.facts),
        Vec::<&str>::new(),
        "plant-b got nothing after `down`"
    );
    assert_eq!(cluster.status(IDMZ)["forward"]["facts"], 0);
    // A snapshot refreshed each second, after plant-b's confirm reached the DMZ.
    wait_until(WAIT, "the DMZ holds nothing for plant-b", || {
        cluster.status(IDMZ)["peers"][PLANT_B]["backlog"] == 0
    })
    .await;
}
