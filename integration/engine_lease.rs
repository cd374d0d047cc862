//! Property: the lease of an HA zone, on a real three-server cluster, has one holder at a time.
//! While the holder renews, nobody else can take it; a holder that stops renewing (paused) keeps
//! it for one TTL as the other instance measures on its own clock, then the other takes it by
//! compare-and-set with a higher epoch, and the old holder's renewal fails. A released lease is
//! free at once.

use crate::harness;

use std::time::{Duration, Instant};

use bsfg_engine::{Lease, LeaseError};
use harness::engine::EngineFixture;

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_and_a_paused_holder_loses_the_lease_after_its_ttl() {
    let engine = EngineFixture::start().await;
    let a = engine.lease("alpha", TTL).await;
    let b = engine.lease("beta", TTL).await;

    let mut grant_a = a.acquire().await.expect("a vacant lease is taken");
    assert!(matches!(b.acquire().await, Err(LeaseError::Held { ref holder, .. }) if holder == "alpha"));

    // Renewing holds it well past one TTL.
    let holding_since = Instant::now();
    let mut last_renewal = Instant::now();
    while holding_since.elapsed() < TTL * 2 {
        tokio::time::sleep(TTL / 4).await;
        last_renewal = Instant::now();
        grant_a = a.renew(&grant_a).await.expect("the holder renews");
        assert!(b.acquire().await.is_err(), "taken while renewed");
    }

    // Alpha pauses: beta takes over one TTL after it saw alpha's last renewal, not before.
    let taking_over = async {
        loop {
            match b.acquire().await {
                Ok(grant) => break grant,
                Err(LeaseError::Held { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(other) => panic!("{other}"),
            }
        }
    };
    let grant_b = tokio::time::timeout(TTL * 4, taking_over)
        .await
        .expect("beta takes the lease of a holder that stopped renewing");
    let waited = last_renewal.elapsed();
    assert!(
        waited >= TTL,
        "taken {waited:?} after the holder's last renewal, before its TTL"
    );
    assert!(waited <= TTL + Duration::from_secs(2), "taken too late: {waited:?}");
    assert!(
        grant_b.holder.epoch > grant_a.holder.epoch,
        "{grant_b:?} after {grant_a:?}"
    );

    let renewal = a.renew(&grant_a).await;
    assert!(
        matches!(renewal, Err(LeaseError::Lost(_))),
        "the old holder's renewal: {renewal:?}"
    );
    let mut seen_by_a = a.observe();
    let state = seen_by_a
        .wait_for(|s| s.holder.as_ref().is_some_and(|h| h.instance == "beta"))
        .await
        .expect("alpha sees beta")
        .clone();
    assert_eq!(state.holder.as_ref().map(|h| h.epoch), Some(grant_b.holder.epoch));

    b.release(&grant_b).await.expect("release");
    let grant_a = a.acquire().await.expect("a released lease is free at once");
    assert!(grant_a.holder.epoch > grant_b.holder.epoch);
}
