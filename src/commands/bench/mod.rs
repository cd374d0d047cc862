//! `bsfg bench`: a load generator over a dev network on loopback — real `bsfg serve` processes,
//! real fsync, real QUIC with mutual TLS — that measures the performance bars of SPEC §14.
//!
//! Producers append into `enterprise` facts addressed to `plant-a`; what happens next depends on
//! the mode (one file each): [`append`] times durable appends alone, [`replicate`] also consumes
//! and confirms in `plant-a` (in relay mode through `idmz`, which relays: origin → DMZ →
//! destination), [`replay`] builds a backlog during a partition and times its replay,
//! [`startup`] fills a node and times its restarts. With `--ha` the source zone is an HA zone
//! (two instances over a three-server nats-server cluster) for append and replicate, and
//! [`failover`] drills its failover under load. Every mode samples the node processes
//! ([`sampler`]) and ends with a [`report`]: a table on stdout, or JSON with `--json`.

mod append;
mod failover;
mod lab;
mod load;
mod progress;
mod replay;
mod replicate;
mod report;
mod sampler;
mod startup;

use std::{future::Future, path::PathBuf, time::Duration};

use anyhow::{bail, Context};

use self::{
    lab::{Lab, Logging, Network, HA_INSTANCES, SOURCE},
    load::{Amount, Appended, Plan},
    progress::Progress,
    report::{HaZone, Report},
    sampler::Sampler,
};
use crate::{
    client::Client,
    devnet::nats::{NatsCluster, NatsOptions},
};

/// The name of this process (producers and consumers) among the sampled ones.
const GENERATOR: &str = "generator";
/// Facts appended when neither `--count` nor `--duration` is given.
const DEFAULT_COUNT: u64 = 100_000;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Durable appends into one node (its peer is not running): throughput and call latency.
    Append,
    /// Append in one zone while a consumer in the other fetches and confirms: replication
    /// throughput and end-to-end latency from each fact's send time (in microseconds).
    Replicate,
    /// As replicate, but the zones reach each other only through a relaying DMZ node
    /// (enterprise → idmz → plant-a, SPEC §4a): three nodes, two hops.
    Relay,
    /// Append a backlog while the link is cut, heal it, time the reconnect and the replay.
    Replay,
    /// Fill a node, then time its restart after kill -9 and after a clean stop.
    Startup,
    /// HA source zone (implies --ha): paced load (--rate, default 2000/s) into it while its active
    /// instance is killed (SIGKILL), then, once the killed one is back as a standby, the new
    /// active one steps down (`bsfg admin step-down`); times each handover to the standby
    /// reporting active and to the first acknowledged append, and checks in plant-a that every
    /// acknowledged fact arrived once. --count and --duration do not apply.
    Failover,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::Replicate => "replicate",
            Mode::Relay => "relay",
            Mode::Replay => "replay",
            Mode::Startup => "startup",
            Mode::Failover => "failover",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Replicate)]
    pub mode: Mode,
    /// Facts to append [default: 100000 unless --duration is given].
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Append for this long instead of a fixed count (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Producer connections, each on its own task.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub producers: u64,
    /// Calls in flight per producer.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,
    /// Facts per call: 1 sends one AppendFact per fact; more sends AppendFacts calls of this
    /// many facts each (at most 1024).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=bsfg_proto::rpc::MAX_APPEND_BATCH as u64))]
    pub batch: u64,
    /// Size of each fact's object_json, in bytes (a JSON string of that length, starting with
    /// its send time in microseconds, from which the end-to-end latency is measured).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(load::MIN_PAYLOAD_BYTES..))]
    pub payload_bytes: u64,
    /// Total appends per second, paced over all producers [default: as fast as acknowledged].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Run the source zone (`enterprise`, where producers append) as an HA zone: two instances
    /// over a three-server nats-server cluster (`BSFG_NATS_SERVER`; `. scripts/nats-server.sh`
    /// installs it); producers and consumers list both instances. An acknowledgement then means
    /// fsync'd on 2 of the 3 engine servers. Modes append, replicate and failover.
    #[arg(long)]
    pub ha: bool,
    /// Working directory: PKI, configs, data and node logs [default: a temporary directory,
    /// removed afterwards].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// The nodes' `log.level`; `warning` keeps per-fact logging out of the measurement.
    #[arg(long, default_value = "warning",
          value_parser = ["trace", "debug", "info", "warning", "error", "critical"])]
    pub node_log_level: String,
    /// Turn the nodes' audit log (`log.audit`, one line per call) on; off by default.
    #[arg(long)]
    pub audit: bool,
    /// Put a fault proxy on the link that drops this percentage of datagrams, both ways
    /// (replicate mode: a lossy WAN).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub loss: Option<u8>,
    /// Put a fault proxy on the link that holds every datagram back this long, each way (e.g.
    /// `50ms`; the round trip grows by twice as much).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Spread each datagram's delay over `delay ± jitter`, so datagrams overtake each other.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub jitter: Option<Duration>,
}

impl BenchArgs {
    fn plan(&self) -> Plan {
        let amount = match (self.count, self.duration) {
            (_, Some(duration)) => Amount::For(duration),
            (count, None) => Amount::Count(count.unwrap_or(DEFAULT_COUNT)),
        };
        let rate = match self.mode {
            Mode::Failover => Some(self.rate.unwrap_or(failover::DEFAULT_RATE)),
            _ => self.rate,
        };
        Plan {
            amount,
            producers: self.producers,
            concurrency: usize::try_from(self.concurrency).unwrap_or(usize::MAX),
            batch: usize::try_from(self.batch).unwrap_or(1),
            payload_bytes: usize::try_from(self.payload_bytes).unwrap_or(usize::MAX),
            rate,
        }
    }

    /// Whether the source zone runs as an HA zone.
    fn ha(&self) -> bool {
        self.ha || self.mode == Mode::Failover
    }

    /// The impaired link asked for, if any.
    fn network(&self) -> Option<Network> {
        if self.loss.is_none() && self.delay.is_none() && self.jitter.is_none() {
            return None;
        }
        Some(Network {
            loss_percent: self.loss.unwrap_or(0),
            delay: self.delay.unwrap_or_default(),
            jitter: self.jitter.unwrap_or_default(),
        })
    }

    fn logging(&self) -> Logging {
        Logging {
            level: self.node_log_level.clone(),
            audit: self.audit,
        }
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("bsfg-bench-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.ha() && !matches!(args.mode, Mode::Append | Mode::Replicate | Mode::Failover) {
        bail!("--ha applies to --mode append, replicate and failover");
    }
    if args.mode == Mode::Failover && (args.count.is_some() || args.duration.is_some()) {
        bail!("--mode failover appends until its drills are done: --count and --duration do not apply");
    }
    let engine = if args.ha() {
        let engine_dir = dir.join("engine");
        let started = runtime.block_on(NatsCluster::start(&engine_dir, NatsOptions::default()));
        Some(started.context("starting the HA zone's engine (nats-server; `. scripts/nats-server.sh` installs it)")?)
    } else {
        None
    };
    let ha = engine.as_ref().map(|engine| HaZone {
        zone: SOURCE,
        instances: HA_INSTANCES.to_vec(),
        engine: "nats-server (JetStream, sync_interval: always)",
        engine_servers: engine.len(),
    });
    let mut report = Report::new(&args, args.mode.name(), ha);
    let bench = Bench {
        runtime: &runtime,
        plan: args.plan(),
        progress: Progress::new(!args.json),
    };
    // The proxies of replay mode run on this runtime.
    let _guard = runtime.enter();
    let network = args.network();
    if network.is_some() && (args.mode != Mode::Replicate || args.ha()) {
        bail!("--loss, --delay and --jitter shape the link of --mode replicate only, without --ha");
    }
    let mut lab = Lab::new(&dir, &args.logging(), args.mode, network.as_ref(), engine)?;
    let measured = match args.mode {
        Mode::Append => append::run(&bench, &mut lab, &mut report),
        Mode::Replicate | Mode::Relay => replicate::run(&bench, &mut lab, &mut report),
        Mode::Replay => replay::run(&bench, &mut lab, &mut report),
        Mode::Startup => startup::run(&bench, &mut lab, &mut report),
        Mode::Failover => failover::run(&bench, &mut lab, &mut report),
    };
    warn_if_unclean(lab.stop_all());
    match measured {
        Ok(()) => report.print(args.json),
        // The node logs explain most failures; a temporary directory would take them along.
        Err(error) if args.dir.is_none() => {
            let kept = temp.keep();
            Err(error.context(format!(
                "working directory with the node logs kept in {}",
                kept.display()
            )))
        }
        Err(error) => Err(error),
    }
}

/// A node that fails to stop cleanly does not void what was measured before: say so on stderr
/// and carry on.
fn warn_if_unclean(stopped: anyhow::Result<()>) {
    if let Err(error) = stopped {
        eprintln!("warning: {error:#}");
    }
}

/// What every mode needs besides the lab: the runtime for its async phases, the load to apply
/// and where to show progress.
struct Bench<'a> {
    runtime: &'a tokio::runtime::Runtime,
    plan: Plan,
    progress: Progress,
}

impl Bench<'_> {
    /// Runs `phase` to completion while sampling every running node and this process, and files
    /// their footprints in `report`.
    fn sampled<T>(
        &self,
        lab: &Lab,
        report: &mut Report,
        phase: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let sampler = sample(lab);
        let outcome = self.runtime.block_on(phase);
        report.footprints(sampler.finish()?);
        outcome
    }

    /// Applies the plan to the source node with a progress bar labelled `what`.
    async fn append(&self, lab: &Lab, what: &str) -> anyhow::Result<Appended> {
        let bar = self.progress.facts(what, self.plan.count());
        let appended = load::append(&lab.client(SOURCE)?, &self.plan, &bar, None).await;
        bar.finish_and_clear();
        appended
    }
}

/// Starts sampling every running node and this process.
fn sample(lab: &Lab) -> Sampler {
    let mut targets: Vec<(String, String)> = lab
        .pids()
        .into_iter()
        .map(|(zone, pid)| (zone, pid.to_string()))
        .collect();
    targets.push((GENERATOR.to_owned(), "self".to_owned()));
    Sampler::start(targets)
}

/// Fails unless the forward buffer `client` reads from ends at offset `last`: with one source and
/// offsets from 1, that is every fact exactly once once all `last` facts were seen.
async fn ensure_ends_at(client: &Client, consumer: &str, last: u64) -> anyhow::Result<()> {
    let beyond = client.fetch(consumer, 1, 0, Some(last)).await?;
    if let Some(extra) = beyond.facts.first() {
        bail!(
            "the forward buffer holds more facts than were appended ({last}): offset {} is {}",
            extra.offset,
            extra.message.envelope.message_id
        );
    }
    Ok(())
}
