//! Property: when the active instance of an HA zone dies (SIGKILL), the standby is ready within
//! `lease_ttl` plus a few seconds, producers and the peer zone carry on through it (clients and
//! `plant-a` know both instances), and nothing acknowledged is lost or duplicated: every fact
//! acknowledged in either direction is delivered exactly once, in order.

mod harness;

use std::time::{Duration, Instant};

use harness::{
    ha::{HaZone, PLANT, ZONE},
    observe::{event_fields, wait_until},
};

const LEASE_TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_from_a_killed_active_instance_and_nothing_is_lost() {
    let mut ha = HaZone::started("lease_ttl = \"2s\"").await;
    let first = ha.wait_active(None, Duration::from_secs(5)).await;
    let mut traffic = ha.traffic(Duration::from_millis(20));
    let history = traffic.history.clone();
    wait_until(Duration::from_secs(30), "facts flow both ways", || {
        history.delivered_count(ZONE) > 50 && history.delivered_count(PLANT) > 50
    })
    .await;

    ha.cluster.kill(&first);
    let killed = Instant::now();
    let second = ha.wait_active(Some(&first), LEASE_TTL + Duration::from_secs(5)).await;
    println!("{second} ready {:?} after {first} was killed", killed.elapsed());
    assert_eq!(
        event_fields(&ha.cluster, &second, "ha_promoted", "instance"),
        vec![second.clone()],
        "promoted once"
    );

    let acked = (history.acked_count(ZONE), history.acked_count(PLANT));
    wait_until(Duration::from_secs(30), "producers and the link resume", || {
        history.acked_count(ZONE) > acked.0 + 50
            && history.acked_count(PLANT) > acked.1 + 50
            && history.delivered_count(ZONE) > acked.0
            && history.delivered_count(PLANT) > acked.1
    })
    .await;
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}
