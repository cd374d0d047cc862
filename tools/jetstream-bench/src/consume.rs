//! The consumer in zone B: a durable pull consumer on the sourced stream, fetching in batches
//! and acknowledging (ack-all, every [`ACK_EVERY`] messages and the last), recording each
//! message's end-to-end latency from the send time stamped in its payload.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::{
    consumer::{pull, AckPolicy, PullConsumer},
    Context,
};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::time::{timeout, Instant};

use crate::{payload, report::latency_histogram, setup::SOURCED};

/// Messages asked for per pull request.
const BATCH: usize = 1000;
/// One ack-all acknowledges everything up to it; acking every message would only add load.
const ACK_EVERY: u64 = 256;
/// A run fails when nothing arrives for this long.
const STALL: Duration = Duration::from_secs(60);

/// What the consumer saw.
pub struct Received {
    /// End-to-end latency of each message, in microseconds.
    pub latencies: Histogram<u64>,
    /// When the last message arrived.
    pub last_at: Instant,
}

/// Creates the consumer on zone B's sourced stream (before the clock starts).
pub async fn prepare(zone_b: &Context) -> anyhow::Result<PullConsumer> {
    let config = pull::Config {
        durable_name: Some("bench".into()),
        ack_policy: AckPolicy::All,
        // Enough room that acking every ACK_EVERY messages never stalls delivery.
        max_ack_pending: 100_000,
        ..Default::default()
    };
    let stream = zone_b.get_stream(SOURCED).await.context("zone B's sourced stream")?;
    Ok(stream.create_consumer(config).await?)
}

/// Receives `count` messages and acknowledges them.
pub async fn drain(consumer: PullConsumer, count: u64) -> anyhow::Result<Received> {
    let mut messages = consumer.stream().max_messages_per_batch(BATCH).messages().await?;
    let mut latencies = latency_histogram();
    let mut received = 0;
    let mut last_at = Instant::now();
    while received < count {
        let message = timeout(STALL, messages.next())
            .await
            .map_err(|_| anyhow!("nothing received for {STALL:?} after {received} of {count} messages"))?
            .ok_or_else(|| anyhow!("the consumer's message stream ended after {received} messages"))??;
        let now = payload::now_micros();
        last_at = Instant::now();
        let Some(sent) = payload::sent_micros(&message.payload) else {
            bail!("message without a send time on {}", message.subject);
        };
        latencies.saturating_record(now.saturating_sub(sent));
        received += 1;
        if received % ACK_EVERY == 0 || received == count {
            message.ack().await.map_err(|error| anyhow!(error))?;
        }
    }
    Ok(Received { latencies, last_at })
}
