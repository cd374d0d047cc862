//! The reference estate under test (SPEC §4a): enterprise ↔ idmz ↔ plant-a, plant-b as real
//! processes (`Cluster::estate`), waiting for its links, and the traffic of its allowed flows —
//! enterprise to each plant and each plant to enterprise, all through the DMZ — with a consumer
//! in every zone, the DMZ's included, so a fact kept by the relay would show as misdelivered.

use std::time::Duration;

use bsfg::devnet::estate::{ENTERPRISE, IDMZ, LEGS, PLANTS};

use super::{traffic::Traffic, Cluster};

/// The flows producers append to, as (from, to).
pub const FLOWS: [(&str, &str); 4] = [
    (ENTERPRISE, PLANTS[0]),
    (ENTERPRISE, PLANTS[1]),
    (PLANTS[0], ENTERPRISE),
    (PLANTS[1], ENTERPRISE),
];

/// Waits until both gates of every leg are `normal`; panics after `timeout`.
pub async fn wait_linked(cluster: &Cluster, timeout: Duration) {
    for leg in LEGS {
        for (zone, peer) in [(leg, IDMZ), (IDMZ, leg)] {
            let up = cluster.wait_gate(zone, peer, "normal", timeout).await;
            assert!(
                up.is_some(),
                "{zone} did not reach normal toward {peer} within {timeout:?}"
            );
        }
    }
}

/// Producers on every flow of [`FLOWS`], one fact every `pace` each, and a consumer `mes` in
/// every zone.
pub fn traffic(cluster: &Cluster, pace: Duration) -> Traffic {
    let mut traffic = Traffic::default();
    for (from, to) in FLOWS {
        traffic.produce(cluster.options(from), from, to, pace);
    }
    for zone in cluster.net.nodes.keys() {
        traffic.consume(cluster.options(zone), zone, "mes");
    }
    traffic
}
