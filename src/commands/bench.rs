//! `bsfg bench`: a load generator over a two-zone dev network on loopback (real processes, real
//! fsync, real QUIC). Appends `count` facts into `enterprise` addressed to `plant-a` from
//! `producers` connections with `concurrency` calls in flight each. Prints a JSON report.
//!
//! - `replicate`: a consumer in `plant-a` drains and confirms meanwhile; reports durable append
//!   throughput, replication throughput and end-to-end latency from `produced_at_unix_ms`.
//! - `replay`: the link is cut (UDP proxies blackholed) while the backlog is appended, then healed;
//!   reports how long the reconnect took and how long the backlog took to land in `plant-a`'s
//!   forward buffer once the first fact arrived.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;
use bsfg_proto::{model::now_unix_ms, Envelope, Fact, Message};
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::{
    client::Client,
    devnet::{proxy::FaultProxy, Devnet},
};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Append and consume at the same time.
    Replicate,
    /// Build a backlog during a partition, heal, time the replay.
    Replay,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Replicate)]
    pub mode: Mode,
    /// Facts to append.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Producer connections.
    #[arg(long, default_value_t = 4)]
    pub producers: u64,
    /// Appends in flight per producer.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Size of each fact's object_json, in bytes.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Working directory (default: a new temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("bsfg-bench-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let mut net = Devnet::new(
        &dir,
        &["enterprise", "plant-a"],
        &[("enterprise", "plant-a")],
        &["bench"],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Both directions go through proxies, so replay mode can cut the link.
    let _guard = runtime.enter();
    let proxies = [
        FaultProxy::start(net.node("enterprise")?.rpc)?,
        FaultProxy::start(net.node("plant-a")?.rpc)?,
    ];
    net.set_peer_address("plant-a", "enterprise", proxies[0].addr())?;
    net.set_peer_address("enterprise", "plant-a", proxies[1].addr())?;
    net.write_configs()?;
    let bin = std::env::current_exe()?;
    let mut nodes = vec![net.spawn(&bin, "enterprise")?, net.spawn(&bin, "plant-a")?];
    let report = runtime.block_on(async {
        match args.mode {
            Mode::Replicate => measure(&net, &args).await,
            Mode::Replay => replay(&net, &args, &proxies).await,
        }
    });
    for node in &mut nodes {
        node.terminate(Duration::from_secs(10))?;
    }
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}

async fn measure(net: &Devnet, args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    let consumer = Client::connect(&net.client("plant-a", "bench")?).await?;
    let started = Instant::now();
    let drain = tokio::spawn(drain(consumer, args.count));
    append_all(net, args).await?;
    let appended = started.elapsed();
    let (latency, delivered) = drain.await??;
    Ok(serde_json::json!({
        "mode": "replicate",
        "facts": args.count,
        "producers": args.producers,
        "concurrency_per_producer": args.concurrency,
        "payload_bytes": args.payload_bytes,
        "append_seconds": appended.as_secs_f64(),
        "append_facts_per_second": args.count as f64 / appended.as_secs_f64(),
        "replicated_seconds": delivered.as_secs_f64(),
        "replication_facts_per_second": args.count as f64 / delivered.as_secs_f64(),
        "end_to_end_ms": {
            "p50": latency.value_at_quantile(0.5),
            "p99": latency.value_at_quantile(0.99),
            "p999": latency.value_at_quantile(0.999),
            "max": latency.max(),
        },
    }))
}

/// Appends `args.count` facts from `args.producers` connections; returns when all are acknowledged.
async fn append_all(net: &Devnet, args: &BenchArgs) -> anyhow::Result<()> {
    let mut producers = Vec::new();
    for p in 0..args.producers {
        let client = Client::connect(&net.client("enterprise", "bench")?).await?;
        let share = args.count / args.producers + u64::from(p < args.count % args.producers);
        producers.push(tokio::spawn(produce(
            client,
            p,
            share,
            args.concurrency,
            args.payload_bytes,
        )));
    }
    for producer in producers {
        producer.await??;
    }
    Ok(())
}

/// Cuts the link, appends the backlog, heals, and times the replay into `plant-a`'s forward
/// buffer (watched with a long-poll for its last offset, without consuming).
async fn replay(net: &Devnet, args: &BenchArgs, proxies: &[FaultProxy]) -> anyhow::Result<serde_json::Value> {
    for proxy in proxies {
        proxy.blackhole();
    }
    let started = Instant::now();
    append_all(net, args).await?;
    let appended = started.elapsed();
    eprintln!(
        "backlog of {} facts appended in {appended:?}; healing the link",
        args.count
    );
    let watcher = Client::connect(&net.client("plant-a", "bench")?).await?;
    let healed = Instant::now();
    for proxy in proxies {
        proxy.heal();
    }
    let arrived = |after: u64| {
        let watcher = &watcher;
        async move {
            let page = watcher.fetch("bench-watch", 1, 1000, Some(after)).await?;
            anyhow::Ok(!page.facts.is_empty())
        }
    };
    while !arrived(0).await? {
        if healed.elapsed() > Duration::from_secs(120) {
            bail!("nothing replayed within 120 s of the heal");
        }
    }
    let reconnected = healed.elapsed();
    let first = Instant::now();
    while !arrived(args.count.saturating_sub(1)).await? {
        if first.elapsed() > Duration::from_secs(600) {
            bail!("the backlog did not replay within 600 s");
        }
    }
    let replayed = first.elapsed();
    watcher.close().await;
    Ok(serde_json::json!({
        "mode": "replay",
        "backlog_facts": args.count,
        "payload_bytes": args.payload_bytes,
        "append_seconds": appended.as_secs_f64(),
        "append_facts_per_second": args.count as f64 / appended.as_secs_f64(),
        "reconnect_seconds": reconnected.as_secs_f64(),
        "replay_seconds": replayed.as_secs_f64(),
        "replay_facts_per_second": args.count as f64 / replayed.as_secs_f64(),
    }))
}

async fn produce(client: Client, producer: u64, count: u64, concurrency: usize, payload: usize) -> anyhow::Result<()> {
    let client = Arc::new(client);
    let filler = "x".repeat(payload.saturating_sub(16));
    let calls = (0..count).map(|i| {
        let (client, filler) = (client.clone(), filler.clone());
        async move { client.append(bench_message(producer, i, &filler)).await }
    });
    let mut results = futures::stream::iter(calls).buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

fn bench_message(producer: u64, i: u64, filler: &str) -> Message {
    Message {
        envelope: Envelope {
            message_id: format!("bench-{producer}-{i}"),
            from_zone: "enterprise".into(),
            to_zone: "plant-a".into(),
            produced_at_unix_ms: now_unix_ms(),
            ..Envelope::default()
        },
        fact: Fact {
            subject: format!("item/{i}"),
            predicate: "measured".into(),
            object_json: format!("\"{filler}\""),
        },
    }
}

/// Fetches and confirms until `count` facts arrived; returns their latency histogram (ms) and
/// when the last one arrived.
async fn drain(client: Client, count: u64) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let started = Instant::now();
    let mut latency = Histogram::<u64>::new(3)?;
    let mut received = 0u64;
    while received < count {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {received} of {count} facts replicated within 600 s");
        }
        let page = client.fetch("bench", 10_000, 1000, None).await?;
        let now = now_unix_ms();
        for fact in &page.facts {
            latency.record(now.saturating_sub(fact.message.envelope.produced_at_unix_ms))?;
        }
        received += page.facts.len() as u64;
        if let Some(last) = page.facts.last() {
            client.confirm("bench", last.offset).await?;
        }
    }
    Ok((latency, started.elapsed()))
}
