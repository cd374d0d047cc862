//! Partition tolerance (SPEC §1, §4): either zone can vanish and both keep working; after the
//! heal the backlog replays and lands exactly once, in source order. Faults come from UDP proxies
//! in front of each node and from SIGKILL; the history checker judges the outcome.

use crate::harness;

use std::time::Duration;

use harness::{observe, traffic::Traffic, Cluster};
use rand::{rngs::StdRng, Rng, SeedableRng};

const PACE: Duration = Duration::from_millis(5);
/// The default `replication.link_timeout`: a dead link must be detected within it.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack for log polling and a loaded CI machine on top of the detection time.
const SLACK: Duration = Duration::from_secs(3);

fn start_traffic(cluster: &Cluster) -> Traffic {
    let mut traffic = Traffic::default();
    traffic.produce(cluster.options("enterprise"), "enterprise", "plant-a", PACE);
    traffic.produce(cluster.options("plant-a"), "plant-a", "enterprise", PACE);
    traffic.consume(cluster.options("enterprise"), "enterprise", "mes");
    traffic.consume(cluster.options("plant-a"), "plant-a", "mes");
    traffic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_partition_is_autonomous_then_reconciles_exactly_once() {
    let mut cluster = Cluster::pair();
    let proxies = cluster.proxy_all();
    cluster.start_all();
    let pair = [("enterprise", "plant-a"), ("plant-a", "enterprise")];
    for (zone, peer) in pair {
        let up = cluster.wait_gate(zone, peer, "normal", Duration::from_secs(20)).await;
        assert!(up.is_some(), "{zone} never reached normal toward {peer}");
    }
    let mut traffic = start_traffic(&cluster);
    tokio::time::sleep(Duration::from_secs(3)).await;

    for proxy in proxies.values() {
        proxy.blackhole();
    }
    for (zone, peer) in pair {
        let detected = cluster.wait_gate(zone, peer, "autonomous", LINK_TIMEOUT + SLACK).await;
        assert!(
            detected.is_some(),
            "{zone} did not go autonomous toward {peer} within {:?}",
            LINK_TIMEOUT + SLACK
        );
    }
    let acked_before = traffic.history.acked_count("enterprise");
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(LINK_TIMEOUT)).await;
    // Still partitioned: the gates are checked autonomous below.
    observe::wait_until(
        Duration::from_secs(30),
        "producers keep getting acknowledgements",
        || traffic.history.acked_count("enterprise") > acked_before + 1000,
    )
    .await;
    for (zone, peer) in pair {
        assert_eq!(cluster.gate_state(zone, peer), "autonomous", "{zone} stayed autonomous");
    }

    for proxy in proxies.values() {
        proxy.heal();
    }
    for (zone, peer) in pair {
        let healed = cluster.wait_gate(zone, peer, "normal", Duration::from_secs(60)).await;
        assert!(healed.is_some(), "{zone} did not return to normal toward {peer}");
        let after_partition: Vec<String> = cluster
            .gate_transitions(zone, peer)
            .into_iter()
            .map(|(_, new, _)| new)
            .skip_while(|new| new != "autonomous")
            .collect();
        assert!(
            after_partition.starts_with(&["autonomous".into(), "reconciliation".into()])
                && after_partition.last().is_some_and(|s| s == "normal"),
            "{zone}: after the heal the gate passes through reconciliation to normal: {after_partition:?}"
        );
    }

    let delivered = traffic.finish(Duration::from_secs(60)).await;
    assert_eq!(traffic.errors(), Vec::<String>::new(), "producers never saw an error");
    let report = traffic.history.report();
    println!("{report}");
    assert!(delivered, "not everything was delivered:\n{report}");
    report.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_and_kills_lose_nothing() {
    let seed: u64 = std::env::var("BSFG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("partition seed: BSFG_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::pair();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let proxies = cluster.proxy_all();
    cluster.start_all();
    let mut traffic = start_traffic(&cluster);

    // Two SIGKILLs of each node at random moments of the minute of flapping.
    let mut kills: Vec<(Duration, &str)> = ["enterprise", "enterprise", "plant-a", "plant-a"]
        .into_iter()
        .map(|zone| (Duration::from_millis(rng.random_range(5_000..55_000)), zone))
        .collect();
    kills.sort();
    let started = tokio::time::Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(60) {
        let next_flip = started.elapsed() + Duration::from_millis(rng.random_range(1_000..3_000));
        while let Some(&(at, zone)) = kills.first().filter(|(at, _)| *at < next_flip) {
            tokio::time::sleep_until(started + at).await;
            cluster.kill(zone);
            cluster.start(zone);
            kills.remove(0);
        }
        tokio::time::sleep_until(started + next_flip).await;
        cut = !cut;
        for proxy in proxies.values() {
            if cut {
                proxy.blackhole();
            } else {
                proxy.heal();
            }
        }
    }
    for proxy in proxies.values() {
        proxy.heal();
    }

    let delivered = traffic.finish(Duration::from_secs(90)).await;
    let report = traffic.history.report();
    println!("{report}");
    assert!(delivered, "not everything was delivered (seed {seed}):\n{report}");
    report.assert_clean();
    assert!(
        traffic.history.acked_count("enterprise") > 1000 && traffic.history.acked_count("plant-a") > 1000,
        "traffic flowed during the minute"
    );
}
