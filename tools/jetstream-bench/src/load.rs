//! The producers: `producers` connections to zone A, each with `concurrency` publishes in flight,
//! every message carrying a `Nats-Msg-Id` and awaited until its PubAck (acked = stored by
//! JetStream). With a rate, message k of the run is sent no earlier than k / rate seconds after
//! the start, spread round-robin over the producers.

use std::time::Duration;

use anyhow::bail;
use async_nats::jetstream::{self, message::PublishMessage, Context};
use futures::{stream, StreamExt};
use hdrhistogram::Histogram;
use tokio::time::{sleep_until, Instant};

use crate::{connect::Tls, payload, report::latency_histogram, setup::SUBJECT};

/// The shape of the load, the same flags as `bsfg bench`.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub count: u64,
    pub producers: u64,
    pub concurrency: usize,
    pub payload_bytes: usize,
    /// Facts per second over all producers; `None` sends as fast as acks come back.
    pub rate: Option<f64>,
}

/// Connected producers, ready to start the clock.
pub struct Producers(Vec<Context>);

impl Producers {
    /// Opens one connection (and JetStream context) per producer.
    pub async fn connect(url: &str, tls: &Tls, workload: &Workload) -> anyhow::Result<Self> {
        let mut contexts = Vec::new();
        for _ in 0..workload.producers.max(1) {
            let client = tls.connect(url).await?;
            let context = jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(30))
                .max_ack_inflight(workload.concurrency.max(1))
                .backpressure_on_inflight(true)
                .build(client);
            contexts.push(context);
        }
        Ok(Self(contexts))
    }

    /// Appends the whole workload from `started`; returns every append's latency (microseconds)
    /// once all are acknowledged.
    pub async fn run(self, workload: Workload, started: Instant) -> anyhow::Result<Histogram<u64>> {
        let producers = self.0.len() as u64;
        let tasks: Vec<_> = (0..producers)
            .zip(self.0)
            .map(|(producer, context)| {
                let share = workload.count / producers + u64::from(producer < workload.count % producers);
                let plan = Plan {
                    producer,
                    producers,
                    share,
                    started,
                    workload,
                };
                tokio::spawn(plan.produce(context))
            })
            .collect();
        let mut latencies = latency_histogram();
        for task in tasks {
            latencies.add(task.await??)?;
        }
        Ok(latencies)
    }
}

/// One producer's part of the run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    producer: u64,
    producers: u64,
    share: u64,
    started: Instant,
    workload: Workload,
}

impl Plan {
    async fn produce(self, context: Context) -> anyhow::Result<Histogram<u64>> {
        let context = &context;
        let calls = (0..self.share).map(|i| async move {
            if let Some(at) = self.send_at(i) {
                sleep_until(at).await;
            }
            let body = payload::encode(payload::now_micros(), self.workload.payload_bytes);
            let message = PublishMessage::build()
                .payload(body)
                .message_id(format!("{}-{i}", self.producer));
            let sent = Instant::now();
            let ack = context.send_publish(SUBJECT, message).await?.await?;
            if ack.duplicate {
                bail!("message {}-{i} was taken for a duplicate", self.producer);
            }
            Ok(sent.elapsed())
        });
        let mut latencies = latency_histogram();
        let mut acked = stream::iter(calls).buffer_unordered(self.workload.concurrency.max(1));
        while let Some(latency) = acked.next().await {
            latencies.saturating_record(u64::try_from(latency?.as_micros()).unwrap_or(u64::MAX));
        }
        Ok(latencies)
    }

    /// When this producer's `i`-th message is due under `--rate` (message `i * producers +
    /// producer` of the run).
    fn send_at(&self, i: u64) -> Option<Instant> {
        let rate = self.workload.rate.filter(|rate| *rate > 0.0)?;
        let index = i * self.producers + self.producer;
        Some(self.started + Duration::from_secs_f64(index as f64 / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(producer: u64, rate: Option<f64>) -> Plan {
        let workload = Workload {
            count: 100,
            producers: 4,
            concurrency: 8,
            payload_bytes: 256,
            rate,
        };
        Plan {
            producer,
            producers: 4,
            share: 25,
            started: Instant::now(),
            workload,
        }
    }

    #[test]
    fn without_a_rate_nothing_waits() {
        assert_eq!(plan(1, None).send_at(10), None);
    }

    #[test]
    fn a_rate_spreads_messages_round_robin_over_producers() {
        let plan = plan(1, Some(1000.0));
        // Producer 1's third message is the run's message 2 * 4 + 1 = 9: due 9 ms after the start.
        assert_eq!(plan.send_at(2), Some(plan.started + Duration::from_millis(9)));
    }
}
