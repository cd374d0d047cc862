//! Quiet when healthy: a pair whose nodes start at the same moment dial each other at once; one
//! of the two connections is given up during its handshake. That is a decision, not a TLS
//! failure: no `bsfg_tls_handshake_errors_total` series rises and no `tls_handshake_failed` is
//! logged on either side (the seeds' "alert on any TLS error" would page on every restart), and
//! the pair links.

use crate::harness;

use std::time::Duration;

use harness::{
    observe::{events, scrape, total},
    Cluster, PAIR,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_started_together_counts_no_handshake_error() {
    let mut cluster = Cluster::pair();
    // Restarting both together a few times makes the simultaneous dial (and the dropped
    // connection) happen every time the two dials cross.
    for round in 0..3 {
        cluster.start_together();
        cluster.wait_linked(Duration::from_secs(20)).await;
        for (zone, _) in PAIR {
            let text = scrape(&cluster, zone);
            let errors = total(&text, "bsfg_tls_handshake_errors_total");
            let failed = events(&cluster, zone, "tls_handshake_failed");
            assert!(
                errors == 0.0 && failed.is_empty(),
                "round {round}: {zone} counted {errors} handshake errors and logged {failed:?}"
            );
        }
        for (zone, _) in PAIR {
            assert!(cluster.terminate(zone).success(), "{zone} stops cleanly");
        }
    }
    // The race did happen: some round had both sides dial, and one gave its connection up.
    let replaced: usize = PAIR
        .iter()
        .map(|(zone, _)| events(&cluster, zone, "peer_connection_replaced").len())
        .sum();
    println!("connections replaced over three simultaneous starts: {replaced}");
}
