//! `bsfg demo`: the newcomer's tour. Two zones (`enterprise`, `plant-a`) on loopback with a
//! generated dev PKI, two real `bsfg serve` processes, facts appended in each zone, and what
//! arrived on the other side, fetched and confirmed by a local consumer.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bsfg_proto::{Envelope, Fact, Message};

use crate::{client::Client, devnet::Devnet};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Facts to send in each direction.
    #[arg(long, default_value_t = 1000)]
    pub count: u32,
    /// Keep PKI, configs, data and logs here (default: a new temporary directory, kept).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const ZONES: [&str; 2] = ["enterprise", "plant-a"];
const CLIENT: &str = "demo-client";

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => tempfile::Builder::new().prefix("bsfg-demo-").tempdir()?.keep(),
    };
    println!(
        "bsfg demo: zones {} and {} on loopback, files in {}",
        ZONES[0],
        ZONES[1],
        dir.display()
    );
    let net = Devnet::new(&dir, &ZONES, &[(ZONES[0], ZONES[1])], &[CLIENT])?;
    let bin = std::env::current_exe()?;
    let mut nodes = Vec::new();
    for zone in ZONES {
        nodes.push(net.spawn(&bin, zone)?);
        println!(
            "  started {zone:<10} QUIC {}  (log {})",
            net.node(zone)?.rpc,
            dir.join(format!("{zone}.log")).display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(tour(&net, args.count));
    for node in &mut nodes {
        node.terminate(Duration::from_secs(10))?;
    }
    println!("nodes stopped; configs, data and logs are in {}", dir.display());
    result
}

async fn tour(net: &Devnet, count: u32) -> anyhow::Result<()> {
    let enterprise = Client::connect(&net.client(ZONES[0], CLIENT)?).await?;
    let plant = Client::connect(&net.client(ZONES[1], CLIENT)?).await?;
    let started = Instant::now();
    produce(&enterprise, ZONES[0], ZONES[1], "work-order", "released", count).await?;
    produce(&plant, ZONES[1], ZONES[0], "batch", "completed", count).await?;
    println!(
        "appended {count} facts in each zone in {:?} (each acknowledged after fsync)",
        started.elapsed()
    );
    consume(&plant, ZONES[1], count).await?;
    consume(&enterprise, ZONES[0], count).await?;
    println!("both directions delivered exactly once in {:?}", started.elapsed());
    Ok(())
}

async fn produce(client: &Client, from: &str, to: &str, kind: &str, predicate: &str, count: u32) -> anyhow::Result<()> {
    let appends = (1..=count).map(|i| {
        client.append(Message {
            envelope: Envelope {
                message_id: format!("{from}-{kind}-{i}"),
                from_zone: from.to_owned(),
                to_zone: to.to_owned(),
                produced_at_unix_ms: bsfg_proto::model::now_unix_ms(),
                ..Envelope::default()
            },
            fact: Fact {
                subject: format!("{kind}/{i}"),
                predicate: predicate.to_owned(),
                object_json: format!("{{\"seq\":{i},\"zone\":\"{from}\"}}"),
            },
        })
    });
    for result in futures::future::join_all(appends).await {
        result.with_context(|| format!("append in {from}"))?;
    }
    println!("  {from:<10} → {to:<10} appended {count} {kind} facts");
    Ok(())
}

async fn consume(client: &Client, zone: &str, count: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0u32;
    while received < count {
        if Instant::now() > deadline {
            bail!("only {received} of {count} facts arrived in {zone} within 60 s");
        }
        let page = client.fetch("demo", 1000, 500, None).await?;
        for fact in page.facts.iter().take(if received == 0 { 3 } else { 0 }) {
            println!(
                "  {zone:<10} received offset {}: {} {} {}",
                fact.offset, fact.message.fact.subject, fact.message.fact.predicate, fact.message.fact.object_json
            );
        }
        received += page.facts.len() as u32;
        if let Some(last) = page.facts.last() {
            client.confirm("demo", last.offset).await?;
        }
    }
    println!("  {zone:<10} consumer \"demo\" received and confirmed {received} facts");
    Ok(())
}
