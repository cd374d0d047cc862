//! The two zones' streams, created fresh for each run: `FACTS` in zone A takes the producers'
//! messages (file storage, message-id dedupe over a duplicate window); `FACTS_B` in zone B sources
//! `FACTS` across the leafnode through zone A's JetStream domain. Replication is the sourcing.

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{
    self,
    stream::{Config, External, Source, StorageType},
    Context,
};
use tokio::time::{sleep, Instant};

/// The stream producers append to, in zone A.
pub const ORIGIN: &str = "FACTS";
/// The stream in zone B that sources [`ORIGIN`].
pub const SOURCED: &str = "FACTS_B";
/// The subject producers publish on (inside the origin's `facts.>`).
pub const SUBJECT: &str = "facts.bench";
/// Message ids are remembered this long for dedupe (JetStream's default is 2 minutes too).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long setup waits for a leafnode, a domain or a clustered meta leader to be ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How the streams are stored; the same for both zones.
#[derive(Debug, Clone, Copy)]
pub struct Storage {
    /// Stream replicas: 1 for one server per zone, 3 for a three-server cluster per zone.
    pub replicas: usize,
}

/// Creates zone A's origin stream.
pub async fn create_origin(zone_a: &Context, storage: Storage) -> anyhow::Result<()> {
    let config = Config {
        name: ORIGIN.into(),
        subjects: vec!["facts.>".into()],
        duplicate_window: DUPLICATE_WINDOW,
        ..stream_config(storage)
    };
    retry("creating stream FACTS in zone A", || {
        zone_a.create_stream(config.clone())
    })
    .await?;
    Ok(())
}

/// Creates zone B's stream sourcing zone A's origin through `domain_a`; waits first until zone A's
/// origin stream can be looked up from zone B, i.e. the leafnode is up.
pub async fn create_sourced(zone_b: &Context, domain_a: &str, storage: Storage) -> anyhow::Result<()> {
    let across = jetstream::with_domain(zone_b.client(), domain_a);
    retry("looking up zone A's FACTS from zone B", || across.get_stream(ORIGIN)).await?;
    let config = Config {
        name: SOURCED.into(),
        sources: Some(vec![Source {
            name: ORIGIN.into(),
            external: Some(External {
                api_prefix: format!("$JS.{domain_a}.API"),
                delivery_prefix: None,
            }),
            ..Default::default()
        }]),
        ..stream_config(storage)
    };
    retry("creating stream FACTS_B in zone B", || {
        zone_b.create_stream(config.clone())
    })
    .await?;
    Ok(())
}

/// Messages stored in `stream` now.
pub async fn stored(zone: &Context, stream: &str) -> anyhow::Result<u64> {
    let info = zone.get_stream(stream).await?.get_info().await?;
    Ok(info.state.messages)
}

fn stream_config(storage: Storage) -> Config {
    Config {
        storage: StorageType::File,
        num_replicas: storage.replicas,
        ..Default::default()
    }
}

/// Retries `attempt` until it succeeds or [`READY_WITHIN`] has passed: a fresh server needs a
/// moment for its leafnode, and a fresh cluster for its meta leader, before API calls work.
async fn retry<T, E, F, Fut>(what: &str, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => {
                return Err(error).with_context(|| format!("{what} (still failing after {READY_WITHIN:?})"))
            }
            Err(_) => sleep(Duration::from_millis(250)).await,
        }
    }
}
