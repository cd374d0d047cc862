//! Property (SPEC §3, §4a): artifacts travel with their facts hop by hop. An artifact put in
//! enterprise and referenced by a fact for plant-a is pulled by the DMZ before it relays the fact
//! (readable there by plant-a alone), then by plant-a before it delivers it; at plant-a it is
//! read back with its digest verified while the DMZ node is down.

use crate::harness;

use std::time::Duration;

use bsfg::devnet::estate::{ENTERPRISE, IDMZ, PLANT_A, PLANT_B};
use bsfg_proto::{ErrorCode, ObjectDigest};
use harness::{estate, message, observe::metric, receive, Cluster};

const WAIT: Duration = Duration::from_secs(30);
/// Larger than one 64 KiB chunk, so the body streams over every hop.
const SIZE: usize = 300_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_for_a_plant_is_pulled_hop_by_hop_and_read_there_while_the_dmz_is_down() {
    let mut cluster = Cluster::estate();
    cluster.start_all();
    estate::wait_linked(&cluster, WAIT).await;
    let content: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let enterprise = cluster.client(ENTERPRISE).await;
    let fact = message(ENTERPRISE, PLANT_A, "recipe-v7");
    let artifact = ("recipes", "line-3/v7.bin", "application/octet-stream");
    let reference = harness::append_with_artifact(&enterprise, fact, artifact, &content).await;
    assert_eq!(reference.digest, ObjectDigest::of(&content));

    let plant_a = cluster.client(PLANT_A).await;
    let arrived = receive(&plant_a, "mes", 1, WAIT).await;
    assert_eq!(harness::ids(&arrived), ["recipe-v7"]);
    assert_eq!(arrived[0].message.envelope.hops, [IDMZ]);
    for zone in [IDMZ, PLANT_A] {
        let pulled = metric(&cluster, zone, "bsfg_artifact_retrieval_total");
        assert_eq!(pulled, 1.0, "{zone} pulled the artifact from its upstream hop once");
    }
    // At the DMZ the artifact is readable by the next hop only, not by another plant.
    let as_plant_b = bsfg::client::Client::connect(&cluster.net.client(IDMZ, PLANT_B).expect("options"))
        .await
        .expect("connect as plant-b");
    let denied = as_plant_b
        .get_object("recipes", "line-3/v7.bin", &mut Vec::new(), |_| {})
        .await;
    let code = denied.expect_err("plant-b may not read plant-a's artifact").code();
    assert_eq!(code, ErrorCode::PermissionDenied);

    cluster.kill(IDMZ);
    let mut read = Vec::new();
    let got = plant_a
        .get_object("recipes", "line-3/v7.bin", &mut read, |_| {})
        .await
        .expect("read at plant-a, its digest verified, with the DMZ down");
    assert_eq!((got.digest, read), (reference.digest, content));
}

/// A relay's artifact store holds what its next hops have yet to pull: once plant-a confirmed a
/// relayed fact, its artifact at the DMZ goes at the next sweep past `[objects] retention`, while
/// the fact itself stays for the store's retention. A DMZ whose store has room for two artifacts
/// passes five, and the plain fact behind them. Before, the relayed facts kept their artifacts,
/// the store filled, and the DMZ retried the third pull for as long as the facts were retained,
/// holding every fact behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_keeps_only_the_artifacts_its_next_hops_have_yet_to_pull() {
    let mut cluster = Cluster::estate();
    let idmz = cluster.net.nodes.get_mut(IDMZ).expect("idmz");
    idmz.extra
        .push_str("\n[objects]\ncapacity_bytes = 700000\nretention = \"1s\"\n");
    cluster.start_all();
    estate::wait_linked(&cluster, WAIT).await;
    let enterprise = cluster.client(ENTERPRISE).await;
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let content: Vec<u8> = (0..SIZE).map(|j| (j % 251) as u8 ^ i).collect();
        let id = format!("report-{i}");
        let key = format!("line-3/report-{i}.bin");
        let artifact = ("reports", key.as_str(), "application/octet-stream");
        harness::append_with_artifact(&enterprise, message(ENTERPRISE, PLANT_A, &id), artifact, &content).await;
        sent.push(id);
    }
    enterprise
        .append(message(ENTERPRISE, PLANT_A, "plain-1"))
        .await
        .expect("a fact without an artifact");
    sent.push("plain-1".to_owned());

    let plant_a = cluster.client(PLANT_A).await;
    let arrived = receive(&plant_a, "mes", sent.len(), Duration::from_secs(90)).await;
    assert_eq!(
        harness::ids(&arrived),
        sent,
        "every fact, in order, through a DMZ with room for two"
    );
    let stored = metric(&cluster, IDMZ, "bsfg_object_store_blob_bytes");
    assert!(
        stored <= 700_000.0,
        "the DMZ's store stays within its capacity: {stored}"
    );
}
