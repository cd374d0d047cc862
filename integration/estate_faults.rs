//! Property (SPEC §4a): each hop is an independent pull relationship, so a fact acknowledged at
//! its origin arrives exactly once at its final zone, in origin order per `from_zone`, through
//! partitions of any leg and crashes of the relay. Here each leg of the reference estate is cut
//! for 20 s in turn (a fault proxy per leg, the others stay up), then the DMZ node is killed with
//! SIGKILL twice mid-stream; producers on every flow keep getting acknowledgements throughout,
//! and the history checker judges the outcome.

use crate::harness;

use std::time::Duration;

use bsfg::devnet::estate::{Legs, IDMZ, LEGS};
use harness::{estate, Cluster};

const PACE: Duration = Duration::from_millis(10);
const LINK_TIMEOUT: Duration = Duration::from_secs(2);
const CUT: Duration = Duration::from_secs(20);
/// Detection (link timeout plus keep-alive slack) and log polling on a loaded machine.
const DETECT: Duration = Duration::from_secs(10);
const RELINK: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_each_leg_and_relay_crashes_lose_and_duplicate_nothing() {
    let mut cluster = Cluster::estate();
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let legs = Legs::start(&mut cluster.net).expect("a proxy per leg");
    cluster.start_all();
    estate::wait_linked(&cluster, RELINK).await;
    let mut traffic = estate::traffic(&cluster, PACE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    for leg in LEGS {
        legs.leg(leg).blackhole();
        for (zone, peer) in [(leg, IDMZ), (IDMZ, leg)] {
            let cut = cluster.wait_gate(zone, peer, "autonomous", DETECT).await;
            assert!(cut.is_some(), "{zone} did not notice the cut toward {peer}");
        }
        let acked = traffic.history.acked_count(leg);
        tokio::time::sleep(CUT.saturating_sub(LINK_TIMEOUT)).await;
        assert!(
            traffic.history.acked_count(leg) > acked + 100,
            "{leg}'s producers kept getting acknowledgements while its leg was cut"
        );
        legs.leg(leg).heal();
        estate::wait_linked(&cluster, RELINK).await;
    }

    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.kill(IDMZ);
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.start(IDMZ);
        estate::wait_linked(&cluster, RELINK).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(120)).await;
}
