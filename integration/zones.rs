//! Multi-zone routing and connection direction (SPEC §2, §4): facts reach only the zone named in
//! `to_zone`, a peer never obtains another zone's facts, one plant's frontier does not wait for
//! another plant, `dial = false` keeps a node from ever initiating a connection, and a peer's
//! address may be a host name, resolved when it is dialled (SPEC §9).

use crate::harness;

use std::{collections::BTreeMap, time::Duration};

use bsfg::client::Client;
use bsfg_actors::{
    storage::{CursorKey, RocksStorage, Storage},
    transport::address::PeerAddress,
};
use harness::{message, observe, receive, Cluster};

const PLANTS: [&str; 2] = ["plant-a", "plant-b"];

/// Appends `count` facts to each plant, interleaved; returns the store offsets per plant.
async fn append_to_plants(client: &Client, tag: &str, count: usize) -> BTreeMap<&'static str, Vec<u64>> {
    let mut offsets: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for i in 0..count {
        for plant in PLANTS {
            let ack = client
                .append(message("enterprise", plant, &format!("{tag}-{plant}-{i}")))
                .await
                .expect("append");
            offsets.entry(plant).or_default().push(ack.offset);
        }
    }
    offsets
}

/// The frontier `enterprise` holds for each peer, read from its storage while it is stopped.
fn frontiers(cluster: &Cluster) -> BTreeMap<String, u64> {
    let node = cluster.net.node("enterprise").expect("enterprise");
    let storage = RocksStorage::open(&node.data_dir, "enterprise").expect("open enterprise's storage");
    let recovered = storage.recover().expect("recover");
    PLANTS
        .iter()
        .map(|p| {
            let cursor = recovered.cursors.get(&CursorKey::Peer((*p).to_owned())).copied();
            ((*p).to_owned(), cursor.unwrap_or(0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_reach_only_their_zone_and_each_frontier_moves_alone() {
    let mut cluster = Cluster::new(
        &["enterprise", "plant-a", "plant-b"],
        &[("enterprise", "plant-a"), ("enterprise", "plant-b")],
    );
    cluster.start_all();
    let producer = cluster.client("enterprise").await;
    append_to_plants(&producer, "first", 50).await;
    producer.close().await;
    for plant in PLANTS {
        let client = cluster.client(plant).await;
        let facts = receive(&client, "mes", 50, Duration::from_secs(30)).await;
        assert_eq!(facts.len(), 50, "{plant} received its facts");
        for fact in &facts {
            assert_eq!(
                fact.message.envelope.to_zone, plant,
                "{plant} only receives facts addressed to it"
            );
        }
        let more = client.fetch("mes", 1000, 500, None).await.expect("fetch");
        assert!(
            more.facts.is_empty(),
            "{plant} received more than its facts: {:?}",
            more.facts
        );
        client.close().await;
    }

    // plant-b's own certificate, asking enterprise for plant-a's stream, still gets plant-b's.
    let as_plant_b = Client::connect(&cluster.net.client("enterprise", "plant-b").expect("options"))
        .await
        .expect("plant-b's certificate is valid");
    let page = as_plant_b
        .fetch("peer:plant-a", 1000, 0, Some(0))
        .await
        .expect("a peer may fetch");
    assert!(!page.facts.is_empty(), "plant-b's facts are there to fetch");
    assert!(
        page.facts.iter().all(|f| f.message.envelope.to_zone == "plant-b"),
        "plant-b obtained a fact addressed to another zone"
    );
    as_plant_b.close().await;

    // With one plant down, the other plant's frontier advances past the down plant's facts.
    for (up, down) in [("plant-a", "plant-b"), ("plant-b", "plant-a")] {
        cluster.kill(down);
        let producer = cluster.client("enterprise").await;
        let offsets = append_to_plants(&producer, &format!("while-{down}-down"), 100).await;
        producer.close().await;
        let client = cluster.client(up).await;
        let facts = receive(&client, "mes", 100, Duration::from_secs(30)).await;
        assert_eq!(facts.len(), 100, "{up} received its facts while {down} was down");
        client.close().await;
        // The confirm follows the insert; the status shows committed cursors only.
        let up_last = offsets[up][99];
        observe::wait_until(
            Duration::from_secs(30),
            "enterprise committed the up plant's confirm",
            || cluster.status("enterprise")["peers"][up]["frontier"].as_u64() >= Some(up_last),
        )
        .await;
        with_enterprise_stopped(&mut cluster, |cluster| {
            let frontier = frontiers(cluster);
            let (up_last, down_first) = (offsets[up][99], offsets[down][0]);
            assert!(
                frontier[up] >= up_last,
                "{up}'s frontier {} reached its last fact {up_last} although {down}'s facts wait",
                frontier[up]
            );
            assert!(
                frontier[down] < down_first,
                "{down}'s frontier {} stays before its first unreceived fact {down_first}",
                frontier[down]
            );
        });
        cluster.start(down);
        let client = cluster.client(down).await;
        let facts = receive(&client, "mes", 100, Duration::from_secs(30)).await;
        assert_eq!(facts.len(), 100, "{down} received its backlog after it came back");
        client.close().await;
    }
}

/// Stops `enterprise` (SIGKILL: what is confirmed is durable), runs `check` on its storage, and
/// starts it again.
fn with_enterprise_stopped(cluster: &mut Cluster, check: impl FnOnce(&Cluster)) {
    cluster.kill("enterprise");
    check(cluster);
    cluster.start("enterprise");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_dial_false_never_initiates_yet_facts_flow_both_ways() {
    let mut cluster = Cluster::pair();
    cluster.net.set_dial("plant-a", "enterprise", false).expect("set dial");
    let proxies = cluster.proxy_all();
    cluster.start_all();

    for round in 0..2 {
        let (to_plant, to_enterprise) = (cluster.client("enterprise").await, cluster.client("plant-a").await);
        for i in 0..100 {
            let id = format!("round-{round}-{i}");
            to_plant
                .append(message("enterprise", "plant-a", &id))
                .await
                .expect("append");
            to_enterprise
                .append(message("plant-a", "enterprise", &id))
                .await
                .expect("append");
        }
        to_plant.close().await;
        to_enterprise.close().await;
        for zone in ["plant-a", "enterprise"] {
            let client = cluster.client(zone).await;
            let facts = receive(&client, "mes", 100, Duration::from_secs(30)).await;
            assert_eq!(
                facts.len(),
                100,
                "round {round}: {zone} received the other side's facts"
            );
            client.close().await;
        }
        // The second round runs after plant-a restarted: the enterprise side dials again.
        cluster.kill("plant-a");
        cluster.start("plant-a");
    }

    let towards_enterprise = &proxies["enterprise"];
    assert_eq!(
        (towards_enterprise.sessions(), towards_enterprise.initial_packets()),
        (0, 0),
        "plant-a (dial = false) must never initiate a connection"
    );
    assert!(
        proxies["plant-a"].initial_packets() > 0,
        "the enterprise side initiated the connections"
    );
}

/// plant-a dials enterprise as `localhost:PORT`; enterprise's own entry for plant-a names a host
/// that never resolves (`.invalid`, RFC 6761). Both nodes start; enterprise's dials fail as
/// unreachable, logged with the name and counted; the link plant-a dialled by name carries facts
/// both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_named_by_host_name_is_resolved_when_dialled_and_an_unknown_name_is_an_unreachable_peer() {
    let mut cluster = Cluster::pair();
    let port = |zone: &str| cluster.net.node(zone).expect("zone").rpc.port();
    let (enterprise_port, plant_port) = (port("enterprise"), port("plant-a"));
    let named: PeerAddress = format!("localhost:{enterprise_port}").parse().expect("address");
    let unknown: PeerAddress = format!("no-such-gateway.invalid:{plant_port}")
        .parse()
        .expect("address");
    cluster
        .net
        .set_peer_address("plant-a", "enterprise", named)
        .expect("set address");
    cluster
        .net
        .set_peer_address("enterprise", "plant-a", unknown.clone())
        .expect("set address");
    cluster.start_all();

    for (from, to) in harness::PAIR {
        let producer = cluster.client(from).await;
        for i in 0..10 {
            let id = format!("named-{from}-{i}");
            producer.append(message(from, to, &id)).await.expect("append");
        }
        producer.close().await;
    }
    for (zone, _) in harness::PAIR {
        let consumer = cluster.client(zone).await;
        let facts = receive(&consumer, "mes", 10, Duration::from_secs(30)).await;
        assert_eq!(facts.len(), 10, "{zone} received the other side's facts");
        consumer.close().await;
    }

    let dialled = observe::events(&cluster, "plant-a", "peer_connected");
    let expected_remote = format!("127.0.0.1:{enterprise_port}");
    assert!(
        dialled
            .iter()
            .any(|e| e["direction"] == "outbound" && e["remote"] == expected_remote.as_str()),
        "plant-a dialled localhost and reached {expected_remote}: {dialled:?}"
    );
    let failed = observe::events(&cluster, "enterprise", "peer_dial_failed");
    let first = failed
        .first()
        .unwrap_or_else(|| panic!("enterprise logged no failed dial"));
    assert_eq!(first["address"], unknown.to_string().as_str(), "{first}");
    assert_eq!(first["kind"], "unreachable", "{first}");
    assert!(first["remote"].is_null(), "nothing was dialled: {first}");
    let reason = first["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("cannot resolve no-such-gateway.invalid"), "{reason}");
    let counted = observe::metric(
        &cluster,
        "enterprise",
        "bsfg_link_failures_total{peer=\"plant-a\",reason=\"unreachable\"}",
    );
    assert!(counted >= 1.0, "the failed dial is counted: {counted}");
}

/// Facts waiting for a peer that a restart's configuration no longer names are said at start,
/// with how many: nothing would pull them, and before nothing said so (the status and metrics
/// list configured peers only). Configured again, the peer receives them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_waiting_for_a_peer_no_longer_configured_are_reported_at_start() {
    let mut cluster = Cluster::pair();
    let route = "\n[[routes]]\nzones = [\"plant-x\"]\nvia = \"plant-a\"\n";
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").extra = route.to_owned();
    cluster.start("enterprise");
    let producer = cluster.client("enterprise").await;
    harness::append_many(&producer, "enterprise", "plant-a", "waiting", 7, 10).await;
    harness::append_many(&producer, "enterprise", "plant-x", "routed", 1, 10).await;
    producer.close().await;
    assert!(cluster.terminate("enterprise").success());

    let removed = {
        let node = cluster.net.nodes.get_mut("enterprise").expect("enterprise");
        node.extra.clear();
        let at = node
            .peers
            .iter()
            .position(|p| p.zone == "plant-a")
            .expect("plant-a peer");
        node.peers.remove(at)
    };
    cluster.start("enterprise");
    let said = observe::events(&cluster, "enterprise", "facts_stranded");
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(
        (said[0]["peer"].as_str(), said[0]["facts"].as_u64()),
        (Some("plant-a"), Some(8))
    );
    assert_eq!(said[0]["level"], "error");
    // `trace` names the peer a fact waits for as it was stored, not the way configured now.
    let traced = cluster.admin_cli("enterprise", &["trace", "--message-id", "routed-0"]);
    assert!(traced.status.success(), "{}", harness::stderr(&traced));
    let traced = &harness::json_lines(&traced)[0];
    assert_eq!(traced["stored"]["next_hop"], "plant-a", "{traced}");
    assert_eq!(traced["stored"]["confirmed_by_peer"], false, "{traced}");

    assert!(cluster.terminate("enterprise").success());
    cluster
        .net
        .nodes
        .get_mut("enterprise")
        .expect("enterprise")
        .peers
        .push(removed);
    cluster.start("enterprise");
    cluster.start("plant-a");
    let consumer = cluster.client("plant-a").await;
    let got = receive(&consumer, "qa", 7, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 7, "configured again, the peer receives them");
    let said = observe::events(&cluster, "enterprise", "facts_stranded");
    assert_eq!(said.len(), 1, "not said again once the peer is configured");
}
