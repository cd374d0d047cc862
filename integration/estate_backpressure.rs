//! Property (SPEC §4a, §5): relayed facts count against the relay's store, and a full relay takes
//! no fact for a next hop whose link is down, so pressure travels back to the origin instead of
//! facts being lost. With plant-a down,
//! enterprise's facts for it fill the DMZ's small safety-critical store (`reject`); the DMZ refuses
//! new facts and leaves enterprise's facts for plant-a at enterprise (`relay_held`, then
//! `relay_resumed`), the enterprise producer keeps getting acknowledgements from its
//! own node (the facts wait there), nothing is dropped, and once plant-a is back the backlog
//! drains, every fact delivered exactly once and in order. Meanwhile the flows of the zones that
//! are up go on through the full DMZ: plant-b's facts reach enterprise, and enterprise's facts for
//! plant-b pass those waiting for plant-a. A next hop that is up but takes nothing exhausts the
//! DMZ, which then pulls nothing until it drains.

use crate::harness;

use std::time::Duration;

use bsfg::{
    client::Client,
    devnet::estate::{ENTERPRISE, IDMZ, PLANT_A, PLANT_B},
};
use harness::{
    append_many, estate,
    observe::{events, metric, wait_until},
    receive, Cluster,
};

/// Small, so a few hundred facts fill it; pages of 50 facts keep the overshoot of the pages in
/// flight (three per link) well under it.
const DMZ: &str = "[store]\ncapacity_bytes = \"256KiB\"\nbackpressure = \"reject\"\nsafety_critical = true\n\
[replication]\nbatch_limit = 50\n";
/// About 1 KiB per fact.
const PAD: usize = 1000;
const FACTS: usize = 1200;
const WAIT: Duration = Duration::from_secs(60);

/// `zone`'s consumer `mes` receives the facts `ids`, and nothing else, in that order.
async fn assert_received(cluster: &Cluster, zone: &str, ids: &[String], why: &str) {
    let consumer = cluster.client(zone).await;
    let delivered = receive(&consumer, "mes", ids.len(), WAIT).await;
    assert_eq!(harness::ids(&delivered), ids, "{why}");
}

/// The bytes in the DMZ's store buffer and its capacity, from its status.
fn dmz_store(cluster: &Cluster) -> (u64, u64) {
    let store = &cluster.status(IDMZ)["store"];
    let field = |name: &str| store[name].as_u64().unwrap_or(0);
    (field("bytes"), field("capacity_bytes"))
}

/// `bsfg_relay_held{peer}` on the DMZ.
fn relay_held(cluster: &Cluster, peer: &str) -> f64 {
    metric(cluster, IDMZ, &format!("bsfg_relay_held{{peer=\"{peer}\"}}"))
}

/// How many times the DMZ said it holds enterprise's facts for `hop` there while it takes the
/// others (a destination hold, not a wait at the cut).
fn held(cluster: &Cluster, hop: &str) -> usize {
    let destination = |e: &serde_json::Value| {
        e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("facts for live next hops go on"))
    };
    events(cluster, IDMZ, "relay_held")
        .iter()
        .filter(|e| e["peer"] == ENTERPRISE && e["next_hop"] == hop && destination(e))
        .count()
}

/// The estate with plant-a down and `FACTS` facts for it appended at enterprise, once the DMZ's
/// store refuses new facts; the producer and the facts' ids.
async fn dmz_full_of_facts_for_plant_a() -> (Cluster, Client, Vec<String>) {
    let mut cluster = Cluster::estate();
    cluster.net.add_toml(IDMZ, DMZ).expect("a small DMZ store");
    cluster.start_all();
    estate::wait_linked(&cluster, WAIT).await;
    assert!(cluster.terminate(PLANT_A).success());
    let producer = cluster.client(ENTERPRISE).await;
    let ids = append_many(&producer, ENTERPRISE, PLANT_A, "order", FACTS, PAD).await;
    wait_until(WAIT, "the DMZ's store refuses new facts", || {
        !events(&cluster, IDMZ, "appends_rejected").is_empty()
    })
    .await;
    (cluster, producer, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_dmz_pushes_back_to_the_origin_which_keeps_acknowledging_and_nothing_is_lost() {
    let (mut cluster, producer, ids) = dmz_full_of_facts_for_plant_a().await;
    // The hold begins at the pull's next page after the store refused; logged, then counted.
    wait_until(WAIT, "the DMZ says it holds enterprise's pages for plant-a", || {
        let held = events(&cluster, IDMZ, "relay_held");
        held.iter().any(|e| e["peer"] == ENTERPRISE && e["next_hop"] == PLANT_A)
            && relay_held(&cluster, ENTERPRISE) == 1.0
    })
    .await;
    assert_eq!(relay_held(&cluster, PLANT_B), 0.0);
    let backlog = || {
        cluster.status(ENTERPRISE)["peers"][IDMZ]["backlog"]
            .as_u64()
            .unwrap_or(0)
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = backlog();
    assert!(
        waiting > 600,
        "the rest waits in enterprise's store: {waiting} of {FACTS}"
    );
    let (bytes, capacity) = dmz_store(&cluster);
    assert!(
        bytes < capacity + 160 * 1024,
        "the DMZ paused its pulls: {bytes} of {capacity} bytes"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backlog(), waiting, "the DMZ pulls nothing while it is full");
    producer
        .append(harness::padded_message(ENTERPRISE, PLANT_A, "still-acked", PAD))
        .await
        .expect("the enterprise producer keeps getting acknowledgements");

    cluster.start(PLANT_A);
    let mut expected = ids;
    expected.push("still-acked".to_owned());
    assert_received(&cluster, PLANT_A, &expected, "every fact, once, in order").await;
    assert!(
        !events(&cluster, IDMZ, "appends_accepted").is_empty(),
        "the DMZ took facts again"
    );
    let resumed = events(&cluster, IDMZ, "relay_resumed");
    assert!(
        resumed.iter().any(|e| e["next_hop"] == PLANT_A),
        "and says when it takes them again: {resumed:?}"
    );
    assert_eq!(relay_held(&cluster, ENTERPRISE), 0.0);
    assert_eq!(metric(&cluster, IDMZ, "bsfg_dropped_facts_total"), 0.0);
    let relayed = metric(&cluster, IDMZ, "bsfg_relayed_facts_total{to_zone=\"plant-a\"}");
    assert_eq!(relayed as usize, FACTS + 1, "each fact relayed once through the pauses");
}

/// One plant offline for long fills the DMZ with facts for it; the other plant's facts for
/// enterprise still pass (their next hop is up and drains them), and nothing is lost either way.
/// Before, a full DMZ stopped its pulls on every link: plant-b's flow stood still until plant-a
/// came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_plant_offline_does_not_stop_the_other_plants_flow_through_a_full_dmz() {
    const FROM_B: usize = 300;
    let (mut cluster, _producer, for_a) = dmz_full_of_facts_for_plant_a().await;
    wait_until(WAIT, "the DMZ holds enterprise's pages for plant-a", || {
        !events(&cluster, IDMZ, "relay_held").is_empty()
    })
    .await;

    let plant_b = cluster.client(PLANT_B).await;
    let from_b = append_many(&plant_b, PLANT_B, ENTERPRISE, "quality", FROM_B, 200).await;
    let why = "plant-b's facts reach enterprise while plant-a is down, once, in order";
    assert_received(&cluster, ENTERPRISE, &from_b, why).await;

    cluster.start(PLANT_A);
    assert_received(&cluster, PLANT_A, &for_a, "every fact for plant-a, once, in order").await;
    assert_eq!(metric(&cluster, IDMZ, "bsfg_dropped_facts_total"), 0.0);
}

/// Enterprise's facts for plant-b, appended behind a backlog for plant-a that fills the DMZ while
/// plant-a is down, reach plant-b meanwhile: the DMZ's pulls leave plant-a's facts at enterprise
/// (`FetchHeld`) instead of stopping at the first of them. Once plant-a is back the DMZ pulls from
/// there again: plant-a gets every fact once, in order, and plant-b gets nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_for_a_plant_that_is_up_pass_a_full_dmz_behind_facts_for_one_that_is_down() {
    const FOR_B: usize = 200;
    let (mut cluster, producer, for_a) = dmz_full_of_facts_for_plant_a().await;
    wait_until(WAIT, "the DMZ holds plant-a's facts at enterprise", || {
        held(&cluster, PLANT_A) >= 1
    })
    .await;

    let for_b = append_many(&producer, ENTERPRISE, PLANT_B, "work-order", FOR_B, 200).await;
    let plant_b = cluster.client(PLANT_B).await;
    let delivered = receive(&plant_b, "mes", FOR_B, WAIT).await;
    let why = "enterprise's facts for plant-b pass while plant-a is down, once, in order";
    assert_eq!(harness::ids(&delivered), for_b, "{why}");
    assert_eq!(relay_held(&cluster, ENTERPRISE), 1.0, "plant-a's facts are still held");

    plant_a_back_and_nothing_twice(&mut cluster, &for_a, &plant_b).await;
    let relayed = metric(&cluster, IDMZ, "bsfg_relayed_facts_total{to_zone=\"plant-b\"}");
    assert_eq!(relayed as usize, FOR_B, "each fact for plant-b relayed once");
}

/// Plant-a comes back: it gets `for_a` once, in order, the DMZ takes all of enterprise's facts
/// again, and what it had taken during the holds is neither stored again nor delivered twice to
/// plant-b (`plant_b`, its consumer).
async fn plant_a_back_and_nothing_twice(cluster: &mut Cluster, for_a: &[String], plant_b: &Client) {
    cluster.start(PLANT_A);
    assert_received(cluster, PLANT_A, for_a, "every fact for plant-a, once, in order").await;
    wait_until(WAIT, "the DMZ takes all of enterprise's facts again", || {
        relay_held(cluster, ENTERPRISE) == 0.0 && cluster.status(ENTERPRISE)["peers"][IDMZ]["backlog"] == 0
    })
    .await;
    let again = plant_b.fetch("mes", 1000, 2000, None).await.expect("fetch");
    assert!(
        again.facts.is_empty(),
        "nothing twice: {:?}",
        harness::ids(&again.facts)
    );
    let copies = metric(cluster, IDMZ, "bsfg_duplicate_facts_total{buffer=\"store\"}");
    assert_eq!(copies, 0.0, "what was taken during the holds is not stored again");
    assert_eq!(metric(cluster, IDMZ, "bsfg_dropped_facts_total"), 0.0);
}

/// A second plant down while the first is held is held on its own, and released on its own: once
/// plant-b is back its facts flow again although plant-a is still down. Each release pulls
/// again from the first fact it held and takes only what the hold left there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_plant_down_meanwhile_is_held_and_released_on_its_own() {
    const FOR_B: usize = 100;
    let (mut cluster, producer, for_a) = dmz_full_of_facts_for_plant_a().await;
    wait_until(WAIT, "the DMZ holds plant-a's facts at enterprise", || {
        held(&cluster, PLANT_A) >= 1
    })
    .await;

    assert!(cluster.terminate(PLANT_B).success());
    let down = cluster.wait_gate(IDMZ, PLANT_B, "autonomous", WAIT).await;
    down.expect("the DMZ sees plant-b's link down");
    let for_b = append_many(&producer, ENTERPRISE, PLANT_B, "work-order", FOR_B, 200).await;
    wait_until(WAIT, "the DMZ holds plant-b's facts too", || {
        held(&cluster, PLANT_B) >= 1
    })
    .await;
    assert_eq!(relay_held(&cluster, ENTERPRISE), 2.0, "two holds on");
    cluster.start(PLANT_B);
    let plant_b = cluster.client(PLANT_B).await;
    let delivered = receive(&plant_b, "mes", FOR_B, WAIT).await;
    assert_eq!(
        harness::ids(&delivered),
        for_b,
        "plant-b's facts flow once it is back, plant-a still down"
    );
    assert_eq!(relay_held(&cluster, ENTERPRISE), 1.0, "plant-a's hold is on");

    plant_a_back_and_nothing_twice(&mut cluster, &for_a, &plant_b).await;
}

/// A next hop whose link is up but which takes nothing (plant-a's forward buffer full, no
/// consumer) is not held while the DMZ's store is only full: its facts keep coming, and the
/// store would grow without bound. Exhausted (halfway from the high watermark to the capacity)
/// the DMZ takes no relayed fact at all and says so; once plant-a's consumer drains, every fact
/// arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_hop_that_is_up_but_takes_nothing_exhausts_the_dmz_which_then_pulls_nothing() {
    let mut cluster = Cluster::estate();
    cluster.net.add_toml(IDMZ, DMZ).expect("a small DMZ store");
    let plant = "\n[forward]\ncapacity_bytes = \"64KiB\"\n\n[replication]\nbatch_limit = 10\n";
    cluster
        .net
        .add_toml(PLANT_A, plant)
        .expect("a small plant-a forward buffer");
    cluster.start_all();
    estate::wait_linked(&cluster, WAIT).await;

    let producer = cluster.client(ENTERPRISE).await;
    let ids = append_many(&producer, ENTERPRISE, PLANT_A, "order", FACTS, PAD).await;
    wait_until(WAIT, "the DMZ's store is exhausted", || {
        events(&cluster, IDMZ, "pulls_paused")
            .iter()
            .any(|e| e["buffer"] == "store")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (bytes, capacity) = dmz_store(&cluster);
    // At most the one page being inserted when it became exhausted (50 facts of 1 KiB).
    assert!(
        bytes < capacity + 64 * 1024,
        "the DMZ stopped taking facts: {bytes} of {capacity} bytes"
    );
    assert_eq!(relay_held(&cluster, ENTERPRISE), 1.0);

    assert_received(&cluster, PLANT_A, &ids, "every fact, once, in order").await;
    let resumed = events(&cluster, IDMZ, "pulls_resumed");
    assert!(resumed.iter().any(|e| e["buffer"] == "store"), "{resumed:?}");
    assert_eq!(metric(&cluster, IDMZ, "bsfg_dropped_facts_total"), 0.0);
}

/// The DMZ's link to enterprise is cut and made again during a hold (here its operator closes
/// and opens the DMZ's gate toward enterprise). On the new connection enterprise still serves the
/// last fact the DMZ pulled where it was, so the DMZ goes on from there: plant-a's facts still
/// held, the flow to plant-b on, nothing pulled or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_made_again_during_a_hold_goes_on_from_where_the_hold_was() {
    const FOR_B: usize = 100;
    let (mut cluster, producer, for_a) = dmz_full_of_facts_for_plant_a().await;
    let for_b = append_many(&producer, ENTERPRISE, PLANT_B, "work-order", FOR_B, 200).await;
    let plant_b = cluster.client(PLANT_B).await;
    let delivered = receive(&plant_b, "mes", FOR_B, WAIT).await;
    assert_eq!(harness::ids(&delivered), for_b, "plant-b's facts pass the hold");

    let gate = |action: &str| {
        let done = cluster.admin_cli(IDMZ, &["admin", action, ENTERPRISE]);
        assert_eq!(done.status.code(), Some(0), "{}", harness::stderr(&done));
    };
    gate("gate-close");
    let disconnected = || {
        events(&cluster, IDMZ, "peer_disconnected")
            .iter()
            .any(|e| e["peer"] == ENTERPRISE)
    };
    wait_until(WAIT, "the DMZ's link to enterprise is down", disconnected).await;
    gate("gate-open");
    let more = append_many(&producer, ENTERPRISE, PLANT_B, "after-the-gate", 20, 200).await;
    let delivered = receive(&plant_b, "mes", more.len(), WAIT).await;
    assert_eq!(
        harness::ids(&delivered),
        more,
        "the flow to plant-b goes on, once, in order"
    );
    let connected = events(&cluster, IDMZ, "peer_connected");
    assert!(
        connected.iter().filter(|e| e["peer"] == ENTERPRISE).count() >= 2,
        "a new connection: {connected:?}"
    );
    assert_eq!(relay_held(&cluster, ENTERPRISE), 1.0, "plant-a's facts are still held");
    assert_eq!(held(&cluster, PLANT_A), 1, "plant-a was held once, throughout");
    plant_a_back_and_nothing_twice(&mut cluster, &for_a, &plant_b).await;
}

/// Enterprise's data is replaced by an older copy while the DMZ holds plant-a's facts there and
/// has pulled plant-b's past them: enterprise takes the DMZ's confirmed point (the copy has it)
/// but numbers its new facts with offsets the DMZ's pulls went through. The DMZ finds the last
/// fact it pulled no longer there, pulls again from its confirmed point, and every new fact for
/// plant-b arrives; plant-a, back, gets its facts once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_restored_from_an_older_copy_during_a_hold_loses_no_new_fact() {
    let (mut cluster, producer, for_a) = dmz_full_of_facts_for_plant_a().await;
    producer.close().await;
    wait_until(WAIT, "enterprise has the DMZ's confirmed point for the copy", || {
        let stored = cluster.status(IDMZ)["store"]["facts"].as_u64().unwrap_or(0);
        held(&cluster, PLANT_A) >= 1 && cluster.status(ENTERPRISE)["peers"][IDMZ]["frontier"] == stored
    })
    .await;
    let data = cluster.net.node(ENTERPRISE).expect("zone").data_dir.clone();
    let copy = cluster.dir().join("enterprise-copy");
    assert!(cluster.terminate(ENTERPRISE).success());
    copy_dir(&data, &copy);
    cluster.start(ENTERPRISE);

    let producer = cluster.client(ENTERPRISE).await;
    let not_in_the_copy = append_many(&producer, ENTERPRISE, PLANT_B, "work-order", 100, 200).await;
    let plant_b = cluster.client(PLANT_B).await;
    let delivered = receive(&plant_b, "mes", not_in_the_copy.len(), WAIT).await;
    assert_eq!(
        harness::ids(&delivered),
        not_in_the_copy,
        "plant-b's facts pass the hold"
    );
    producer.close().await;

    assert!(cluster.terminate(ENTERPRISE).success());
    std::fs::remove_dir_all(&data).expect("enterprise's data removed");
    copy_dir(&copy, &data);
    cluster.start(ENTERPRISE);
    let producer = cluster.client(ENTERPRISE).await;
    let new = append_many(&producer, ENTERPRISE, PLANT_B, "after-the-restore", 50, 200).await;
    let delivered = receive(&plant_b, "mes", new.len(), WAIT).await;
    assert_eq!(
        harness::ids(&delivered),
        new,
        "every new fact for plant-b, once, in order"
    );
    // Not refused and forgotten: the restored origin took the resume point, the hold went on.
    assert_eq!(held(&cluster, PLANT_A), 1, "plant-a was held once, throughout");

    cluster.start(PLANT_A);
    assert_received(&cluster, PLANT_A, &for_a, "every fact for plant-a, once, in order").await;
    assert_eq!(metric(&cluster, IDMZ, "bsfg_dropped_facts_total"), 0.0);
}

/// `cp -a from to`: a node's data directory, copied while the node is stopped.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(copied.success(), "cp -a {} {}", from.display(), to.display());
}
