//! The demo's traffic: a producer per [`Flow`] appending at a steady rate in its zone, addressed to
//! the flow's zone, and a consumer in every zone fetching and confirming what arrived there. They
//! keep score in each flow, so the demo can show what is still in transit and prove at the end
//! that every acknowledged fact arrived exactly once at its zone, in the order it was produced; a
//! fact that arrives where no flow leads (at a relay, say) is counted as a stray.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use anyhow::Context;
use bsfg_proto::{model::now_unix_ms, Envelope, Fact, Message};
use tokio::{task::JoinHandle, time::MissedTickBehavior};

use super::lab::CLIENT;
use crate::{client::Client, devnet::Devnet};

/// The durable consumer name the demo reads under, in both zones.
const CONSUMER: &str = "demo";
const PAGE_LIMIT: u32 = 1000;
/// Long-poll wait of a consumer fetch; also how quickly a consumer notices it should stop.
const LONG_POLL_MS: u32 = 200;
/// Appends per second are sent in batches, about this many batches a second.
const BATCHES_PER_SECOND: u32 = 20;
/// A retryable append error is retried with the same messages after this pause, at most
/// `MAX_RETRIES` times in a row.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRIES: u32 = 50;

/// One direction of traffic, `from` → `to`: which sequence numbers the producer got
/// acknowledged and which the consumer on the other side received.
pub struct Flow {
    pub from: &'static str,
    pub to: &'static str,
    /// Message ids are this prefix and a sequence number.
    id_prefix: String,
    score: Mutex<Score>,
}

#[derive(Default)]
struct Score {
    acked: HashSet<u64>,
    received: HashSet<u64>,
    /// The highest sequence number received so far.
    highest: Option<u64>,
    /// Facts received after a fact with a higher sequence number.
    out_of_order: u64,
    duplicates: u64,
    /// Received facts that this run's producer did not send.
    strangers: u64,
    /// Why the producer or consumer stopped early.
    failure: Option<String>,
}

/// A snapshot of a flow's score.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Acknowledged to the producer.
    pub appended: u64,
    /// Distinct facts received by the consumer.
    pub delivered: u64,
    /// Delivered after a fact appended later.
    pub out_of_order: u64,
    pub duplicates: u64,
    /// Acknowledged but (not yet) received.
    pub missing: u64,
    pub strangers: u64,
}

impl Tally {
    /// What the other side has yet to receive, cheap to compute at every tick.
    pub fn backlog(&self) -> u64 {
        self.appended.saturating_sub(self.delivered)
    }
}

impl Flow {
    pub fn new(from: &'static str, to: &'static str) -> Self {
        Self {
            from,
            to,
            id_prefix: format!("demo-{from}-{to}-"),
            score: Mutex::default(),
        }
    }

    fn message(&self, seq: u64) -> Message {
        Message {
            envelope: Envelope {
                message_id: format!("{}{seq}", self.id_prefix),
                from_zone: self.from.to_owned(),
                to_zone: self.to.to_owned(),
                produced_at_unix_ms: now_unix_ms(),
                ..Envelope::default()
            },
            fact: Fact {
                subject: format!("demo/{seq}"),
                predicate: "produced".to_owned(),
                object_json: format!("{{\"seq\":{seq},\"zone\":\"{}\"}}", self.from),
            },
        }
    }

    fn score(&self) -> MutexGuard<'_, Score> {
        // Every update leaves the score consistent, so a panicking holder cannot spoil it.
        self.score.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn acked(&self, seq: u64) {
        self.score().acked.insert(seq);
    }

    fn received(&self, message: &Message) {
        let seq = (message.envelope.from_zone == self.from)
            .then(|| message.envelope.message_id.strip_prefix(&self.id_prefix))
            .flatten()
            .and_then(|seq| seq.parse::<u64>().ok());
        let mut score = self.score();
        match seq {
            Some(seq) if !score.received.insert(seq) => score.duplicates += 1,
            Some(seq) => {
                if score.highest.is_some_and(|highest| seq < highest) {
                    score.out_of_order += 1;
                }
                score.highest = score.highest.max(Some(seq));
            }
            None => score.strangers += 1,
        }
    }

    fn fail(&self, error: anyhow::Error) {
        self.score().failure.get_or_insert(format!("{error:#}"));
    }

    pub fn failure(&self) -> Option<String> {
        self.score().failure.clone()
    }

    /// The counts; `exact` also counts the acknowledged facts that were not received, which
    /// takes a pass over every one.
    pub fn tally(&self, exact: bool) -> Tally {
        let score = self.score();
        let missing = if exact {
            score.acked.difference(&score.received).count() as u64
        } else {
            0
        };
        Tally {
            appended: score.acked.len() as u64,
            delivered: score.received.len() as u64,
            out_of_order: score.out_of_order,
            duplicates: score.duplicates,
            missing,
            strangers: score.strangers,
        }
    }
}

/// Facts that arrived in a zone no flow leads to, and why a consumer of such a zone stopped.
#[derive(Debug, Default)]
pub struct Strays {
    pub facts: u64,
    pub failure: Option<String>,
}

/// The running producers and consumers. A task that fails records why in its flows (or in the
/// strays) and ends.
pub struct Traffic {
    producing: Arc<AtomicBool>,
    consuming: Arc<AtomicBool>,
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
    strays: Arc<Mutex<Strays>>,
}

impl Traffic {
    /// Connects a producer to the node of each flow's `from` zone and a consumer to the node of
    /// every zone of `net` (to every instance of an HA zone: the client moves to the active one),
    /// and starts them.
    pub async fn start(net: &Devnet, flows: &[Arc<Flow>], rate: u32) -> anyhow::Result<Self> {
        let mut traffic = Self {
            producing: Arc::new(AtomicBool::new(true)),
            consuming: Arc::new(AtomicBool::new(true)),
            producers: Vec::new(),
            consumers: Vec::new(),
            strays: Arc::default(),
        };
        for flow in flows {
            let producer = connect(net, flow.from).await?;
            let running = traffic.producing.clone();
            traffic
                .producers
                .push(tokio::spawn(produce(producer, flow.clone(), rate, running)));
        }
        let zones: std::collections::BTreeSet<&String> = net.nodes.values().map(|node| &node.zone).collect();
        for zone in zones {
            let inbox = Inbox {
                flows: flows.iter().filter(|f| f.to == zone).cloned().collect(),
                strays: traffic.strays.clone(),
            };
            let consumer = connect(net, zone).await?;
            let (zone, running) = (zone.clone(), traffic.consuming.clone());
            traffic
                .consumers
                .push(tokio::spawn(consume(consumer, zone, inbox, running)));
        }
        Ok(traffic)
    }

    /// Facts that arrived where no flow leads, so far.
    pub fn strays(&self) -> MutexGuard<'_, Strays> {
        self.strays.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn stop_producers(&mut self) {
        stop(&self.producing, &mut self.producers).await;
    }

    pub async fn stop_consumers(&mut self) {
        stop(&self.consuming, &mut self.consumers).await;
    }
}

async fn connect(net: &Devnet, zone: &str) -> anyhow::Result<Client> {
    let options = net.client_of_zone(zone, CLIENT)?;
    Client::connect(&options)
        .await
        .with_context(|| format!("connecting to the node of {zone}"))
}

async fn stop(running: &AtomicBool, tasks: &mut Vec<JoinHandle<()>>) {
    running.store(false, Ordering::Relaxed);
    for task in tasks.drain(..) {
        // A task that panicked has nothing left to report.
        let _ = task.await;
    }
}

async fn produce(client: Client, flow: Arc<Flow>, rate: u32, running: Arc<AtomicBool>) {
    if let Err(error) = append_steadily(&client, &flow, rate, &running).await {
        flow.fail(error.context(format!("producer in {}", flow.from)));
    }
    client.close().await;
}

/// Appends `rate` facts a second in small batches (the node's group commit makes one fsync for a
/// batch) until told to stop. Each batch is one in-order AppendFacts call, so the facts are stored
/// in sequence order.
async fn append_steadily(client: &Client, flow: &Flow, rate: u32, running: &AtomicBool) -> anyhow::Result<()> {
    let batch = (rate / BATCHES_PER_SECOND).max(1);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(f64::from(batch) / f64::from(rate)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next = 0u64;
    while running.load(Ordering::Relaxed) {
        ticks.tick().await;
        let messages = (next..next + u64::from(batch)).map(|seq| flow.message(seq)).collect();
        append(client, flow, next, messages).await?;
        next += u64::from(batch);
    }
    Ok(())
}

/// Appends `messages`, whose sequence numbers start at `first`, in order. A retryable failure
/// (backpressure, a node draining, a lost answer) resends what is not acknowledged yet — the same
/// messages, send times included — so a retry after a lost acknowledgement is a duplicate, not a
/// second copy, and nothing overtakes a fact that failed.
async fn append(client: &Client, flow: &Flow, first: u64, mut messages: Vec<Message>) -> anyhow::Result<()> {
    let (mut seq, mut retries) = (first, 0);
    while !messages.is_empty() {
        let (retryable, error) = match client.append_in_order(messages.clone()).await {
            Ok(results) => {
                let acked = results.iter().take_while(|r| r.is_ok()).count();
                for _ in messages.drain(..acked) {
                    flow.acked(seq);
                    seq += 1;
                }
                match results.into_iter().find_map(Result::err) {
                    Some(error) => (error.retryable, anyhow::Error::new(error)),
                    None => continue,
                }
            }
            Err(error) => (error.retryable(), anyhow::Error::new(error)),
        };
        if !retryable || retries >= MAX_RETRIES {
            return Err(error.context(format!("appending {}{seq}", flow.id_prefix)));
        }
        retries += 1;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Ok(())
}

/// What one zone's consumer scores into: the flows that lead to its zone, and the strays.
struct Inbox {
    flows: Vec<Arc<Flow>>,
    strays: Arc<Mutex<Strays>>,
}

impl Inbox {
    fn received(&self, message: &Message) {
        match self.flows.iter().find(|f| f.from == message.envelope.from_zone) {
            Some(flow) => flow.received(message),
            None => self.strays().facts += 1,
        }
    }

    fn fail(&self, error: anyhow::Error) {
        for flow in &self.flows {
            flow.fail(anyhow::anyhow!("{error:#}"));
        }
        self.strays().failure.get_or_insert(format!("{error:#}"));
    }

    fn strays(&self) -> MutexGuard<'_, Strays> {
        self.strays.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn consume(client: Client, zone: String, inbox: Inbox, running: Arc<AtomicBool>) {
    if let Err(error) = fetch_and_confirm(&client, &inbox, &running).await {
        inbox.fail(error.context(format!("consumer in {zone}")));
    }
    client.close().await;
}

/// Reads pages under the consumer name and confirms each one, until told to stop.
async fn fetch_and_confirm(client: &Client, inbox: &Inbox, running: &AtomicBool) -> anyhow::Result<()> {
    while running.load(Ordering::Relaxed) {
        let page = client
            .fetch(CONSUMER, PAGE_LIMIT, LONG_POLL_MS, None)
            .await
            .context("fetching")?;
        for fact in &page.facts {
            inbox.received(&fact.message);
        }
        if let Some(last) = page.facts.last() {
            client.confirm(CONSUMER, last.offset).await.context("confirming")?;
        }
    }
    Ok(())
}
