//! The producers. Each one is a QUIC connection on its own tokio task with `concurrency` calls
//! in flight — one AppendFact per fact, or AppendFacts of `batch` facts — building each message
//! from a template at the moment it sends it (so `produced_at_unix_ms` is the send time, and the
//! payload starts with the same time in microseconds: see [`sent_at_us`]) and timing every call's
//! round trip into its own histogram; the histograms are merged at the end, so producers share
//! nothing while they run.
//!
//! With a rate, fact `i` of producer `p` (of `P`) is due at `start + (i·P + p) / rate`: the
//! producers interleave and together keep the total rate; a call goes when its first fact is due.
//! A due time in the past sends at once, so a node that falls behind is not given a rest; the
//! achieved rate is in the report.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use bsfg_proto::{Envelope, Fact, Message};
use futures::{future, stream, StreamExt};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use super::lab::{SINK, SOURCE};
use crate::client::{Client, ClientOptions};

/// How much to append.
#[derive(Debug, Clone)]
pub enum Amount {
    Count(u64),
    For(Duration),
    /// Until the flag is set (failover mode: until the drills are done).
    Until(Arc<AtomicBool>),
}

/// The load to apply.
#[derive(Debug, Clone)]
pub struct Plan {
    pub amount: Amount,
    pub producers: u64,
    pub concurrency: usize,
    /// Facts per call; 1 is AppendFact, more is AppendFacts.
    pub batch: usize,
    pub payload_bytes: usize,
    pub rate: Option<u64>,
}

impl Plan {
    /// Facts to append, when counted rather than timed.
    pub fn count(&self) -> Option<u64> {
        match self.amount {
            Amount::Count(n) => Some(n),
            Amount::For(_) | Amount::Until(_) => None,
        }
    }
}

/// When each call of a run was sent and acknowledged, in acknowledgement order: what failover
/// mode reads its recovery times from (its paced runs keep this small).
#[derive(Debug, Default)]
pub struct AckLog(Mutex<Vec<(Instant, Instant)>>);

impl AckLog {
    fn record(&self, sent: Instant, acked: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((sent, acked));
    }

    /// Calls acknowledged so far: a mark for [`AckLog::first_sent_after`].
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The first acknowledgement of a call sent at or after `at`, looking only past `mark` (taken
    /// before `at`: nothing sent later can have been acknowledged earlier).
    pub fn first_sent_after(&self, at: Instant, mark: usize) -> Option<Instant> {
        let calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        calls
            .get(mark..)?
            .iter()
            .filter(|(sent, _)| *sent >= at)
            .map(|(_, acked)| *acked)
            .min()
    }
}

/// What the producers achieved.
pub struct Appended {
    /// Facts acknowledged.
    pub facts: u64,
    /// When the first call could go (after every producer connected).
    pub started: Instant,
    /// From `started` to the last acknowledgement.
    pub seconds: f64,
    /// Round trip of every call, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Runs the plan against `node` and waits for every acknowledgement; fails on the first error.
/// Files every call's times in `acks` when given.
pub async fn append(
    node: &ClientOptions,
    plan: &Plan,
    bar: &ProgressBar,
    acks: Option<Arc<AckLog>>,
) -> anyhow::Result<Appended> {
    let mut clients = Vec::new();
    for _ in 0..plan.producers {
        clients.push(Arc::new(Client::connect(node).await?));
    }
    let started = Instant::now();
    let producers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(p, client)| {
            let schedule = Schedule::new(plan, p as u64, started);
            let template = Template::new(p as u64, plan.payload_bytes);
            let producer = Producer {
                client: client.clone(),
                bar: bar.clone(),
                acks: acks.clone(),
            };
            tokio::spawn(produce(producer, schedule, template, plan.clone()))
        })
        .collect();
    let mut appended = Appended {
        facts: 0,
        started,
        seconds: 0.0,
        latency_us: Histogram::new(3)?,
    };
    for producer in producers {
        let (facts, latency, last_ack) = producer.await??;
        appended.facts += facts;
        appended.latency_us.add(latency)?;
        appended.seconds = appended.seconds.max(last_ack.duration_since(started).as_secs_f64());
    }
    future::join_all(clients.into_iter().filter_map(Arc::into_inner).map(Client::close)).await;
    Ok(appended)
}

/// One producer's connection and where it reports its acknowledgements.
struct Producer {
    client: Arc<Client>,
    bar: ProgressBar,
    acks: Option<Arc<AckLog>>,
}

/// One producer: returns its acknowledged count, its latency histogram and its last ack's time.
async fn produce(
    producer: Producer,
    schedule: Schedule,
    template: Template,
    plan: Plan,
) -> anyhow::Result<(u64, Histogram<u64>, Instant)> {
    let Producer { client, bar, acks } = producer;
    let (schedule, template) = (&schedule, &template);
    let batch = plan.batch.max(1) as u64;
    let calls = stream::iter(0u64..)
        .map(|call| (call * batch, schedule.due(call * batch)))
        .take_while(|(_, due)| future::ready(due.is_some()))
        .then(|(first, due)| async move {
            if let Some(at) = due.filter(|at| *at > Instant::now()) {
                tokio::time::sleep_until(at.into()).await;
            }
            first
        })
        .map(|first| {
            let facts: Vec<Message> = (first..first + batch)
                .take_while(|i| schedule.due(*i).is_some())
                .map(|i| template.message(i))
                .collect();
            let client = client.clone();
            async move {
                let (sent, count) = (Instant::now(), facts.len() as u64);
                send(&client, facts, batch).await.map(|()| (sent, count))
            }
        })
        .buffer_unordered(plan.concurrency.max(1));
    let mut calls = std::pin::pin!(calls);
    let (mut acked, mut latency, mut last_ack) = (0u64, Histogram::new(3)?, Instant::now());
    while let Some(call) = calls.next().await {
        let (sent, facts) = call?;
        last_ack = Instant::now();
        let took = last_ack.duration_since(sent);
        latency.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX))?;
        if let Some(acks) = &acks {
            acks.record(sent, last_ack);
        }
        acked += facts;
        bar.inc(facts);
    }
    Ok((acked, latency, last_ack))
}

/// One call: AppendFact when the bench sends one fact per call, else AppendFacts; any failed fact
/// fails the run.
async fn send(client: &Client, mut facts: Vec<Message>, batch: u64) -> anyhow::Result<()> {
    if batch == 1 {
        if let Some(message) = facts.pop() {
            client.append(message).await?;
        }
        return Ok(());
    }
    for (i, result) in client.append_batch(facts).await?.into_iter().enumerate() {
        result.map_err(|e| anyhow::anyhow!("fact {i} of an AppendFacts call failed: {e}"))?;
    }
    Ok(())
}

/// When each fact of one producer is due, and when the producer is done.
struct Schedule {
    started: Instant,
    /// Facts this producer appends, when counted.
    share: Option<u64>,
    deadline: Option<Instant>,
    /// `(first slot, slots between two of this producer's facts, slots per second)` when paced.
    pace: Option<(u64, u64, u64)>,
    stop: Option<Arc<AtomicBool>>,
}

impl Schedule {
    fn new(plan: &Plan, producer: u64, started: Instant) -> Self {
        let (share, deadline, stop) = match &plan.amount {
            Amount::Count(n) => (
                Some(n / plan.producers + u64::from(producer < n % plan.producers)),
                None,
                None,
            ),
            Amount::For(duration) => (None, Some(started + *duration), None),
            Amount::Until(stop) => (None, None, Some(stop.clone())),
        };
        Self {
            started,
            share,
            deadline,
            pace: plan.rate.map(|rate| (producer, plan.producers, rate)),
            stop,
        }
    }

    /// When fact `i` may go, or `None` when this producer is done.
    fn due(&self, i: u64) -> Option<Instant> {
        if self.share.is_some_and(|share| i >= share)
            || self.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed))
        {
            return None;
        }
        let at = match self.pace {
            Some((first, stride, rate)) => {
                let nanos = (u128::from(i) * u128::from(stride) + u128::from(first)) * 1_000_000_000 / u128::from(rate);
                self.started + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            None => Instant::now(),
        };
        match self.deadline {
            Some(deadline) if at >= deadline => None,
            _ => Some(at),
        }
    }
}

/// Digits of the send time stamped at the start of each payload (microseconds since the Unix
/// epoch, zero-padded).
const STAMP_DIGITS: usize = 16;
/// The smallest payload: the stamp between the JSON string's quotes.
pub const MIN_PAYLOAD_BYTES: u64 = STAMP_DIGITS as u64 + 2;

/// Microseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn now_unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// When a bench fact was sent, in microseconds since the Unix epoch: the stamp its producer put
/// at the start of its payload. `produced_at_unix_ms` holds the same time in whole milliseconds,
/// too coarse for the latency of one hop on loopback; the consumer runs in the same process, so
/// both ends read the same clock.
pub fn sent_at_us(object_json: &str) -> Option<u64> {
    object_json.get(1..=STAMP_DIGITS)?.parse().ok()
}

/// A producer's message, complete but for what changes per call.
struct Template {
    producer: u64,
    /// What follows the stamp: the rest of a JSON string of exactly the requested payload size.
    padding: String,
}

impl Template {
    fn new(producer: u64, payload_bytes: usize) -> Self {
        let padding = "x".repeat(payload_bytes.saturating_sub(MIN_PAYLOAD_BYTES as usize));
        Self { producer, padding }
    }

    fn message(&self, i: u64) -> Message {
        let sent_us = now_unix_us();
        Message {
            envelope: Envelope {
                message_id: format!("bench-{}-{i}", self.producer),
                from_zone: SOURCE.into(),
                to_zone: SINK.into(),
                produced_at_unix_ms: sent_us / 1000,
                ..Envelope::default()
            },
            fact: Fact {
                subject: format!("item/{i}"),
                predicate: "measured".into(),
                object_json: format!("\"{sent_us:0width$}{}\"", self.padding, width = STAMP_DIGITS),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(amount: Amount, rate: Option<u64>) -> Plan {
        Plan {
            amount,
            producers: 4,
            concurrency: 1,
            batch: 1,
            payload_bytes: 256,
            rate,
        }
    }

    #[test]
    fn a_count_is_shared_out_to_the_last_fact() {
        let started = Instant::now();
        let shares: Vec<u64> = (0..4)
            .map(|p| {
                let schedule = Schedule::new(&plan(Amount::Count(10), None), p, started);
                (0..).take_while(|i| schedule.due(*i).is_some()).count() as u64
            })
            .collect();
        assert_eq!(shares, [3, 3, 2, 2]);
    }

    #[test]
    fn paced_producers_interleave_at_the_total_rate() {
        let started = Instant::now();
        let schedule = Schedule::new(&plan(Amount::Count(100), Some(1000)), 1, started);
        let due = |i| schedule.due(i).expect("due").duration_since(started);
        assert_eq!(due(0), Duration::from_millis(1));
        assert_eq!(due(2), Duration::from_millis(9));
    }

    #[test]
    fn a_paced_duration_ends_at_its_deadline() {
        let started = Instant::now();
        let schedule = Schedule::new(&plan(Amount::For(Duration::from_secs(1)), Some(100)), 0, started);
        let calls = (0..).take_while(|i| schedule.due(*i).is_some()).count();
        assert_eq!(calls, 25);
    }

    #[test]
    fn the_payload_is_a_json_string_of_the_requested_size() {
        let message = Template::new(0, 256).message(7);
        assert_eq!(message.fact.object_json.len(), 256);
        assert!(serde_json::from_str::<String>(&message.fact.object_json).is_ok());
        assert_eq!(message.envelope.message_id, "bench-0-7");
        let smallest = Template::new(0, MIN_PAYLOAD_BYTES as usize).message(7);
        assert_eq!(smallest.fact.object_json.len(), MIN_PAYLOAD_BYTES as usize);
    }

    #[test]
    fn the_payload_carries_the_send_time_in_microseconds() {
        let before = now_unix_us();
        let message = Template::new(0, 64).message(1);
        let sent = sent_at_us(&message.fact.object_json).expect("a stamp");
        assert!((before..=now_unix_us()).contains(&sent), "{sent}");
        assert_eq!(message.envelope.produced_at_unix_ms, sent / 1000);
        assert_eq!(sent_at_us("\"not a stamp\""), None);
    }
}
