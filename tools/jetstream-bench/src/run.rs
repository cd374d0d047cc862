//! `run`: one measured run against already started servers. Creates the streams, connects the
//! producers (and in `replicate` the consumer in zone B) before starting the clock, runs the
//! workload, checks that every message is stored exactly once where it should be, and samples
//! the servers.

use std::{collections::BTreeMap, time::Duration};

use anyhow::bail;
use async_nats::jetstream::{self, Context};
use tokio::time::Instant;

use crate::{
    connect::Tls,
    consume,
    load::{Producers, Workload},
    procstat::{self, Server},
    report::{per_second, Append, NodeStats, Percentiles, Replication, Report},
    setup::{self, Storage},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Producers append to zone A; nothing consumes.
    Append,
    /// Producers append to zone A while a consumer in zone B receives the sourced copies.
    Replicate,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Zone A's client URL (the hub, JetStream domain `--domain-a`).
    #[arg(long)]
    pub zone_a: String,
    /// Zone B's client URL (the leafnode); needed by `replicate`.
    #[arg(long, required_if_eq("mode", "replicate"))]
    pub zone_b: Option<String>,
    /// Zone A's JetStream domain, through which zone B sources.
    #[arg(long, default_value = "zonea")]
    pub domain_a: String,
    /// Messages to append.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Producer connections.
    #[arg(long, default_value_t = 4)]
    pub producers: u64,
    /// Publishes in flight per producer.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Size of each message body, in bytes.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Messages per second over all producers (default: as fast as acks come back).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Replicas of both streams (3 needs a three-server cluster in each zone).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// The sentence the report states about what an ack means in this setting.
    #[arg(long)]
    pub durability: String,
    /// A server process to sample, as name=pid (repeat for each).
    #[arg(long = "server")]
    pub servers: Vec<Server>,
    #[command(flatten)]
    pub tls: Tls,
    /// Print the JSON report instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let storage = Storage {
        replicas: args.replicas,
    };
    let zone_a = jetstream::new(args.tls.connect(&args.zone_a).await?);
    setup::create_origin(&zone_a, storage).await?;
    let workload = Workload {
        count: args.count,
        producers: args.producers,
        concurrency: args.concurrency,
        payload_bytes: args.payload_bytes,
        rate: args.rate,
    };
    let zone_b = match (args.mode, &args.zone_b) {
        (Mode::Append, _) => None,
        (Mode::Replicate, Some(url)) => {
            let zone_b = jetstream::new(args.tls.connect(url).await?);
            setup::create_sourced(&zone_b, &args.domain_a, storage).await?;
            Some(zone_b)
        }
        (Mode::Replicate, None) => bail!("replicate needs --zone-b"),
    };
    let producers = Producers::connect(&args.zone_a, &args.tls, &workload).await?;
    // CPU is counted for the measured phase only, as `bsfg bench` counts it for its nodes:
    // not the servers' start-up, cluster forming and stream creation.
    let before = sample(&args.servers)?;
    let (append, replication) = match &zone_b {
        None => (append_only(producers, workload).await?, None),
        Some(zone_b) => {
            let (append, replication) = replicate(producers, workload, zone_b).await?;
            (append, Some(replication))
        }
    };
    let nodes = measured(before, sample(&args.servers)?);
    if let Some(zone_b) = &zone_b {
        expect_stored(zone_b, setup::SOURCED, args.count).await?;
    }
    expect_stored(&zone_a, setup::ORIGIN, args.count).await?;
    Ok(Report {
        tool: "jetstream".into(),
        mode: format!("{:?}", args.mode).to_lowercase(),
        facts: args.count,
        producers: args.producers,
        concurrency: args.concurrency as u64,
        batch: None,
        payload_bytes: args.payload_bytes as u64,
        rate_per_second: args.rate,
        durability: args.durability.clone(),
        append: Some(append),
        replication,
        nodes,
    })
}

async fn append_only(producers: Producers, workload: Workload) -> anyhow::Result<Append> {
    let started = Instant::now();
    let latencies = producers.run(workload, started).await?;
    Ok(append_section(workload.count, started.elapsed(), &latencies))
}

async fn replicate(
    producers: Producers,
    workload: Workload,
    zone_b: &Context,
) -> anyhow::Result<(Append, Replication)> {
    let consumer = crate::consume::prepare(zone_b).await?;
    let started = Instant::now();
    let drain = tokio::spawn(consume::drain(consumer, workload.count));
    let latencies = producers.run(workload, started).await?;
    let append = append_section(workload.count, started.elapsed(), &latencies);
    let received = drain.await??;
    let seconds = received.last_at - started;
    let replication = Replication {
        seconds: seconds.as_secs_f64(),
        facts_per_second: per_second(workload.count, seconds),
        end_to_end_ms: Percentiles::from_micros(&received.latencies),
    };
    Ok((append, replication))
}

fn append_section(count: u64, elapsed: Duration, latencies: &hdrhistogram::Histogram<u64>) -> Append {
    Append {
        seconds: elapsed.as_secs_f64(),
        facts_per_second: per_second(count, elapsed),
        latency_ms: Percentiles::from_micros(latencies),
    }
}

/// Fails unless `stream` holds exactly `count` messages: none lost, none stored twice.
async fn expect_stored(zone: &Context, stream: &str, count: u64) -> anyhow::Result<()> {
    let stored = setup::stored(zone, stream).await?;
    if stored != count {
        bail!("stream {stream} holds {stored} messages, expected {count}");
    }
    Ok(())
}

/// Peak memory as the servers report it at the end; CPU seconds used between the two samples.
fn measured(
    before: BTreeMap<String, NodeStats>,
    mut after: BTreeMap<String, NodeStats>,
) -> BTreeMap<String, NodeStats> {
    for (name, stats) in &mut after {
        if let Some(start) = before.get(name) {
            stats.cpu_seconds -= start.cpu_seconds;
        }
    }
    after
}

fn sample(servers: &[Server]) -> anyhow::Result<BTreeMap<String, NodeStats>> {
    servers
        .iter()
        .map(|server| Ok((server.name.clone(), procstat::sample(server)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::measured;
    use crate::report::NodeStats;

    #[test]
    fn cpu_is_what_the_measured_phase_used_and_memory_the_peak() {
        let stats = |peak_rss_bytes, cpu_seconds| NodeStats {
            peak_rss_bytes,
            cpu_seconds,
        };
        let before = BTreeMap::from([("zonea".to_owned(), stats(10, 1.5))]);
        let after = BTreeMap::from([("zonea".to_owned(), stats(40, 4.0))]);
        assert_eq!(measured(before, after)["zonea"], stats(40, 2.5));
    }
}
