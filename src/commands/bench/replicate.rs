//! `--mode replicate` and `--mode relay`: producers append in the source zone while a consumer in
//! the sink zone fetches and confirms (directly, or through the relaying DMZ). Replication throughput runs from the first append to the consumer
//! receiving the last fact; end-to-end latency from each fact's send time (stamped in its payload
//! in microseconds when its append was sent: [`sent_at_us`]) to the consumer holding it. With
//! `--rate 10000` this is SPEC §14's p99 bar.
//!
//! The consumer pipelines like a peer does: it fetches the next page after the last offset it
//! holds while a task of its own confirms the newest offset (confirms are cumulative), so
//! confirming never delays fetching.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::sync::watch;

use super::{
    ensure_ends_at,
    lab::{Lab, SINK},
    load::{now_unix_us, sent_at_us, Appended},
    report::{per_second, Quantiles, Replication, Report},
    Bench,
};
use crate::client::Client;

const CONSUMER: &str = "bench";
/// Facts asked for per fetch: the most a node puts in one page.
const PAGE: u32 = 10_000;
/// Long-poll wait of each fetch.
const FETCH_WAIT_MS: u32 = 250;
/// The run fails when nothing arrives for this long while facts are still expected.
const STALL: Duration = Duration::from_secs(60);

pub(super) fn run(bench: &Bench, lab: &mut Lab, report: &mut Report) -> anyhow::Result<()> {
    lab.start_path()?;
    let (appended, consumed) = bench.sampled(lab, report, measure(bench, lab))?;
    report.appended(&appended);
    let seconds = consumed.last_arrival.duration_since(appended.started).as_secs_f64();
    let link_failures = lab.link_failures();
    report.replication = Some(Replication {
        seconds,
        facts_per_second: per_second(consumed.delivered, seconds),
        delivered: consumed.delivered,
        end_to_end_ms: Quantiles::of(&consumed.end_to_end_us, 1000.0),
        link_failures,
        link_failures_per_minute: per_second(link_failures, seconds) * 60.0,
    });
    Ok(())
}

async fn measure(bench: &Bench<'_>, lab: &Lab) -> anyhow::Result<(Appended, Consumed)> {
    let consumer = Client::connect(&lab.client(SINK)?).await?;
    let (total, expected) = watch::channel(bench.plan.count());
    let bar = bench.progress.facts("delivered", bench.plan.count());
    let consuming = tokio::spawn(consume(consumer, expected, bar.clone()));
    let appended = bench.append(lab, "appended").await?;
    total.send_replace(Some(appended.facts));
    let consumed = consuming.await??;
    bar.finish_and_clear();
    Ok((appended, consumed))
}

/// What the consumer saw.
pub(super) struct Consumed {
    pub delivered: u64,
    pub last_arrival: Instant,
    /// From each fact's send time to its arrival, in microseconds.
    pub end_to_end_us: Histogram<u64>,
}

/// Fetches until `expected` (known once the producers are done) facts arrived; checks that
/// exactly that many are there.
pub(super) async fn consume(
    client: Client,
    expected: watch::Receiver<Option<u64>>,
    bar: ProgressBar,
) -> anyhow::Result<Consumed> {
    let client = Arc::new(client);
    let (newest, offsets) = watch::channel(0u64);
    let confirming = tokio::spawn(confirm(client.clone(), offsets));
    let mut seen = Consumed {
        delivered: 0,
        last_arrival: Instant::now(),
        end_to_end_us: Histogram::new(3)?,
    };
    let mut after = 0;
    while !expected.borrow().is_some_and(|total| seen.delivered >= total) {
        let page = client.fetch(CONSUMER, PAGE, FETCH_WAIT_MS, Some(after)).await?;
        let (now_us, now) = (now_unix_us(), Instant::now());
        let Some(last) = page.facts.last() else {
            if now.duration_since(seen.last_arrival) > STALL {
                bail!(
                    "replication stalled: {} facts received, none in {STALL:?}",
                    seen.delivered
                );
            }
            continue;
        };
        after = last.offset;
        newest.send_replace(after);
        for fact in &page.facts {
            let sent_us = sent_at_us(&fact.message.fact.object_json)
                .with_context(|| format!("fact {} carries no send time", fact.message.envelope.message_id))?;
            seen.end_to_end_us.record(now_us.saturating_sub(sent_us))?;
        }
        seen.delivered += page.facts.len() as u64;
        seen.last_arrival = now;
        bar.inc(page.facts.len() as u64);
    }
    drop(newest);
    confirming.await??;
    let total = expected.borrow().unwrap_or_default();
    if seen.delivered != total {
        bail!("{} facts delivered for {total} appended", seen.delivered);
    }
    ensure_ends_at(&client, CONSUMER, total).await?;
    if let Some(client) = Arc::into_inner(client) {
        client.close().await;
    }
    Ok(seen)
}

/// Confirms the newest offset received, whenever it moves, until the fetcher is done; the last
/// one is always confirmed.
async fn confirm(client: Arc<Client>, mut offsets: watch::Receiver<u64>) -> anyhow::Result<()> {
    let mut confirmed = 0;
    loop {
        let closed = offsets.changed().await.is_err();
        let offset = *offsets.borrow_and_update();
        if offset > confirmed {
            client.confirm(CONSUMER, offset).await?;
            confirmed = offset;
        }
        if closed {
            return Ok(());
        }
    }
}
