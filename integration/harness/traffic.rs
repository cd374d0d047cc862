//! Continuous traffic for fault tests: producers that append at a steady pace and retry the same
//! message id until it is acknowledged (reconnecting after a node restart), and consumers that
//! read and confirm, all recording into one [`History`].

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bsfg::client::{Client, ClientOptions};
use tokio::task::JoinHandle;

use super::{history::History, message, padded_message, Cluster, PAIR};

const RETRY: Duration = Duration::from_millis(100);

/// Running producers and consumers.
pub struct Traffic {
    pub history: History,
    producing: Arc<AtomicBool>,
    consuming: Arc<AtomicBool>,
    /// Every failed append, as `zone: error`.
    errors: Arc<Mutex<Vec<String>>>,
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            history: History::new(),
            producing: Arc::new(AtomicBool::new(true)),
            consuming: Arc::new(AtomicBool::new(true)),
            errors: Arc::default(),
            producers: Vec::new(),
            consumers: Vec::new(),
        }
    }
}

impl Traffic {
    /// Producers both ways between the pair's zones, one fact every `pace` each, and a consumer
    /// `mes` in each zone.
    pub fn both_ways(cluster: &Cluster, pace: Duration) -> Self {
        let mut traffic = Self::default();
        for (zone, peer) in PAIR {
            traffic.produce(cluster.options(zone), zone, peer, pace);
            traffic.consume(cluster.options(zone), zone, "mes");
        }
        traffic
    }

    /// Appends `from → to` through `options` (a client of `from`'s node) every `pace`.
    pub fn produce(&mut self, options: ClientOptions, from: &str, to: &str, pace: Duration) {
        let (history, producing, errors) = (self.history.clone(), self.producing.clone(), self.errors.clone());
        let (from, to) = (from.to_owned(), to.to_owned());
        self.producers.push(tokio::spawn(async move {
            let mut client: Option<Client> = None;
            let mut seq = 0u64;
            while producing.load(Ordering::Relaxed) {
                let id = format!("{from}-to-{to}-{seq}");
                // The same id until acknowledged: a retry after a lost ack is idempotent.
                while producing.load(Ordering::Relaxed) {
                    let outcome = match &client {
                        Some(c) => c
                            .append(message(&from, &to, &id))
                            .await
                            .map_err(|e| (e.retryable(), e.to_string())),
                        None => match Client::connect(&options).await {
                            Ok(c) => {
                                client = Some(c);
                                continue;
                            }
                            Err(e) => Err((e.retryable(), e.to_string())),
                        },
                    };
                    match outcome {
                        Ok(ack) => {
                            history.acked_to(&from, &to, &id, ack.offset);
                            break;
                        }
                        Err((retryable, error)) => {
                            assert!(retryable, "append {id} failed for good: {error}");
                            errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(format!("{from}: {error}"));
                            client = None;
                            tokio::time::sleep(RETRY).await;
                        }
                    }
                }
                seq += 1;
                tokio::time::sleep(pace).await;
            }
        }));
    }

    /// Appends `from → to` through `options` in AppendFacts calls of `batch` facts, each object
    /// padded by `pad` bytes, as fast as they are acknowledged. A refused call is retried as it
    /// was after a pause (facts it already appended come back as duplicates); each refusal is
    /// kept in [`Traffic::errors`] as `zone: CODE: message`.
    pub fn flood(&mut self, options: ClientOptions, from: &str, to: &str, batch: usize, pad: usize) {
        let (history, producing, errors) = (self.history.clone(), self.producing.clone(), self.errors.clone());
        let (from, to) = (from.to_owned(), to.to_owned());
        self.producers.push(tokio::spawn(async move {
            let mut client: Option<Client> = None;
            let mut seq = 0u64;
            while producing.load(Ordering::Relaxed) {
                let ids: Vec<String> = (seq..seq + batch as u64).map(|i| format!("{from}-flood-{i}")).collect();
                let messages = || ids.iter().map(|id| padded_message(&from, &to, id, pad)).collect();
                let c = match &client {
                    Some(c) => c,
                    None => {
                        client = Client::connect(&options).await.ok();
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                };
                let refusal = match c.append_batch(messages()).await {
                    Ok(results) => match results.iter().find_map(|r| r.as_ref().err()) {
                        None => {
                            for (id, ack) in ids.iter().zip(results.into_iter().flatten()) {
                                history.acked(&from, id, ack.offset);
                            }
                            seq += batch as u64;
                            continue;
                        }
                        Some(e) => format!("{from}: {}: {}", e.code.as_str(), e.message),
                    },
                    Err(e) => {
                        assert!(e.retryable(), "appends from {from} failed for good: {e}");
                        client = None;
                        format!("{from}: {}: {e}", e.code().as_str())
                    }
                };
                errors.lock().unwrap_or_else(|p| p.into_inner()).push(refusal);
                tokio::time::sleep(RETRY).await;
            }
        }));
    }

    /// Reads and confirms `zone`'s forward buffer as `consumer` until [`Traffic::finish`].
    pub fn consume(&mut self, options: ClientOptions, zone: &str, consumer: &str) {
        let (history, consuming) = (self.history.clone(), self.consuming.clone());
        let (zone, consumer) = (zone.to_owned(), consumer.to_owned());
        self.consumers.push(tokio::spawn(async move {
            let mut client: Option<Client> = None;
            while consuming.load(Ordering::Relaxed) {
                let Some(c) = &client else {
                    match Client::connect(&options).await {
                        Ok(c) => client = Some(c),
                        Err(_) => tokio::time::sleep(RETRY).await,
                    }
                    continue;
                };
                let read = async {
                    let page = c.fetch(&consumer, 1000, 200, None).await?;
                    for fact in &page.facts {
                        history.consumed(&zone, fact);
                    }
                    if let Some(last) = page.facts.last() {
                        c.confirm(&consumer, last.offset).await?;
                    }
                    Ok::<_, bsfg::client::ClientError>(())
                };
                if read.await.is_err() {
                    client = None;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }));
    }

    /// Stops the producers (each finishes its current append).
    pub async fn stop_producing(&mut self) {
        self.producing.store(false, Ordering::Relaxed);
        for producer in self.producers.drain(..) {
            producer.await.expect("producer task");
        }
    }

    /// Stops producing, waits until every acknowledged fact was read or `timeout` passed, then
    /// stops the consumers. Returns whether everything was delivered.
    pub async fn finish(&mut self, timeout: Duration) -> bool {
        self.stop_producing().await;
        let deadline = Instant::now() + timeout;
        while !self.history.all_delivered() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.consuming.store(false, Ordering::Relaxed);
        for consumer in self.consumers.drain(..) {
            consumer.await.expect("consumer task");
        }
        self.history.all_delivered()
    }

    /// [`Traffic::finish`], then prints the history's report and fails the test unless every
    /// acknowledged fact was delivered, exactly once and in order.
    pub async fn assert_delivered_exactly_once(&mut self, timeout: Duration) {
        let delivered = self.finish(timeout).await;
        let report = self.history.report();
        println!("{report}");
        assert!(delivered, "not everything was delivered:\n{report}");
        report.assert_clean();
    }

    /// Failed appends so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
