//! The report: what was run, what it achieved, what it cost. Rendered as JSON with `--json`
//! (the field names are a contract: `scripts/bench.sh` and the JetStream comparison read them;
//! sections a mode does not measure are absent) or as an aligned table for people.

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{lab::Network, load::Appended, sampler::Footprint, BenchArgs};

/// What every acknowledgement promised: a single node's.
const DURABILITY: &str = "fsync before ack (group commit)";
/// What every acknowledgement promised: an HA zone's (`--ha`).
const HA_DURABILITY: &str =
    "on a quorum (2 of 3) of the engine servers' disks, fsync before ack (nats-server sync_interval: always)";

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub mode: &'static str,
    /// Facts acknowledged by the node.
    pub facts: u64,
    pub producers: u64,
    pub concurrency: u64,
    /// Facts per call (1: AppendFact; more: AppendFacts).
    pub batch: u64,
    pub payload_bytes: u64,
    pub rate_per_second: Option<u64>,
    pub durability: &'static str,
    /// `--ha`: the source zone's instances and engine; absent for a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaZone>,
    pub node_log_level: String,
    pub audit: bool,
    /// The WAN the fault proxies made of the link, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub append: Option<Throughput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup: Option<Startup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Each node's process over the measured phase, by zone.
    pub nodes: BTreeMap<String, Footprint>,
    /// This process (producers and consumer) over the measured phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<Footprint>,
    pub machine: Machine,
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub seconds: f64,
    pub facts_per_second: f64,
    /// Round trip of each call (AppendFact, or AppendFacts with `batch` facts).
    pub latency_ms: Quantiles,
}

impl From<&Appended> for Throughput {
    fn from(appended: &Appended) -> Self {
        Self {
            seconds: appended.seconds,
            facts_per_second: per_second(appended.facts, appended.seconds),
            latency_ms: Quantiles::of(&appended.latency_us, 1000.0),
        }
    }
}

/// `facts / seconds`, 0 when nothing was timed.
pub fn per_second(facts: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        facts as f64 / seconds
    } else {
        0.0
    }
}

#[derive(Debug, Serialize)]
pub struct Replication {
    /// From the first append to the consumer receiving the last fact.
    pub seconds: f64,
    pub facts_per_second: f64,
    /// Facts the consumer received (each exactly once).
    pub delivered: u64,
    /// From the fact's send time (stamped in its payload, in microseconds) to the consumer
    /// receiving it.
    pub end_to_end_ms: Quantiles,
    /// Sessions with the peer that failed on either node (each one a reconnect).
    pub link_failures: u64,
    pub link_failures_per_minute: f64,
}

/// A replay run ends only with every one of the `backlog_facts` facts in the sink's forward
/// buffer, once; it fails otherwise.
#[derive(Debug, Serialize)]
pub struct Replay {
    pub backlog_facts: u64,
    /// From healing the partition to the sink's gate leaving `autonomous`.
    pub reconnect_seconds: f64,
    /// From the reconnect to the last fact being in the sink's forward buffer.
    pub replay_seconds: f64,
    pub facts_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct Startup {
    pub retained_facts: u64,
    /// From spawning `bsfg serve` to `/readyz` 200, after SIGTERM.
    pub clean_seconds: f64,
    /// The same after kill -9.
    pub after_kill_seconds: f64,
}

/// The source zone of an `--ha` run.
#[derive(Debug, Serialize)]
pub struct HaZone {
    pub zone: &'static str,
    pub instances: Vec<&'static str>,
    pub engine: &'static str,
    pub engine_servers: usize,
}

/// A failover run ends only with every acknowledged fact received once in the sink (it fails
/// otherwise): `delivered` equals `facts`.
#[derive(Debug, Serialize)]
pub struct Failover {
    pub drills: Vec<Drill>,
    pub delivered: u64,
    /// From the fact's send time to the consumer receiving it, over the whole run.
    pub end_to_end_ms: Quantiles,
}

/// One failover drill under load.
#[derive(Debug, Serialize)]
pub struct Drill {
    /// `sigkill` (the active instance's process killed) or `step-down` (`bsfg admin step-down`).
    pub action: &'static str,
    /// The instance that was active.
    pub from: String,
    /// The instance that took over.
    pub to: String,
    /// From the action to `to` reporting itself active in `/v1/status` (polled every 20 ms).
    pub active_seconds: f64,
    /// From the action to the first acknowledgement of an append sent after it.
    pub first_ack_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Quantiles {
    /// From a histogram whose unit is `1 / per_ms` of a millisecond.
    pub fn of(histogram: &Histogram<u64>, per_ms: f64) -> Self {
        let at = |q| histogram.value_at_quantile(q) as f64 / per_ms;
        Self {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: histogram.max() as f64 / per_ms,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub model: String,
    pub kernel: String,
}

impl Machine {
    fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown", |(_, model)| model.trim());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model: model.to_owned(),
            kernel: kernel.trim().to_owned(),
        }
    }
}

impl Report {
    pub fn new(args: &BenchArgs, mode: &'static str, ha: Option<HaZone>) -> Self {
        Self {
            tool: "bsfg",
            mode,
            facts: 0,
            producers: args.producers,
            concurrency: args.concurrency,
            batch: args.batch,
            payload_bytes: args.payload_bytes,
            rate_per_second: args.rate,
            durability: if ha.is_some() { HA_DURABILITY } else { DURABILITY },
            ha,
            node_log_level: args.node_log_level.clone(),
            audit: args.audit,
            network: args.network(),
            append: None,
            replication: None,
            replay: None,
            startup: None,
            failover: None,
            nodes: BTreeMap::new(),
            generator: None,
            machine: Machine::this(),
        }
    }

    /// Files what the producers achieved.
    pub fn appended(&mut self, appended: &Appended) {
        self.facts = appended.facts;
        self.append = Some(Throughput::from(appended));
    }

    /// Files the sampler's footprints: nodes by zone, this process as the generator.
    pub fn footprints(&mut self, mut footprints: BTreeMap<String, Footprint>) {
        self.generator = footprints.remove(super::GENERATOR);
        self.nodes = footprints;
    }

    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{}", self.table()?);
        }
        Ok(())
    }

    fn table(&self) -> Result<String, std::fmt::Error> {
        let mut rows: Vec<(String, String)> = vec![
            ("mode".into(), self.mode.into()),
            ("facts".into(), self.facts.to_string()),
            ("load".into(), self.load()),
            ("durability".into(), self.durability.into()),
            (
                "node logs".into(),
                format!("level {}, audit {}", self.node_log_level, on_off(self.audit)),
            ),
        ];
        if let Some(ha) = &self.ha {
            let zone = format!(
                "{}: instances {} over {} × {}",
                ha.zone,
                ha.instances.join(", "),
                ha.engine_servers,
                ha.engine
            );
            rows.push(("HA zone".into(), zone));
        }
        if let Some(n) = &self.network {
            let link = format!(
                "{} % loss, {} ms ± {} ms delay each way",
                n.loss_percent,
                n.delay.as_millis(),
                n.jitter.as_millis()
            );
            rows.push(("network".into(), link));
        }
        self.measured_rows(&mut rows);
        for (name, footprint) in &self.nodes {
            rows.push((format!("node {name}"), footprint_text(footprint)));
        }
        if let Some(generator) = &self.generator {
            rows.push(("generator".into(), footprint_text(generator)));
        }
        let m = &self.machine;
        rows.push((
            "machine".into(),
            format!("{} CPUs, {}, Linux {}", m.cpus, m.model, m.kernel),
        ));
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in rows {
            writeln!(out, "{name:<width$}  {value}")?;
        }
        Ok(out)
    }

    fn load(&self) -> String {
        let rate = self
            .rate_per_second
            .map_or("unpaced".to_owned(), |r| format!("paced at {r} facts/s"));
        let calls = match self.batch {
            1 => "AppendFact calls".to_owned(),
            n => format!("AppendFacts calls of {n} facts"),
        };
        format!(
            "{} producers x {} {calls} in flight, {}-byte objects, {rate}",
            self.producers, self.concurrency, self.payload_bytes
        )
    }

    fn measured_rows(&self, rows: &mut Vec<(String, String)>) {
        if let Some(a) = &self.append {
            rows.push(("append".into(), rate_text(a.facts_per_second, a.seconds)));
            rows.push(("append latency".into(), quantiles_text(&a.latency_ms)));
        }
        if let Some(r) = &self.replication {
            let delivered = format!(
                "{}, {} delivered",
                rate_text(r.facts_per_second, r.seconds),
                r.delivered
            );
            rows.push(("replication".into(), delivered));
            rows.push(("end-to-end latency".into(), quantiles_text(&r.end_to_end_ms)));
            let failures = format!("{} ({:.1} per minute)", r.link_failures, r.link_failures_per_minute);
            rows.push(("link failures".into(), failures));
        }
        if let Some(r) = &self.replay {
            rows.push(("reconnect".into(), format!("{:.3} s", r.reconnect_seconds)));
            let replayed = format!(
                "{} facts: {}",
                r.backlog_facts,
                rate_text(r.facts_per_second, r.replay_seconds)
            );
            rows.push(("replay".into(), replayed));
        }
        if let Some(f) = &self.failover {
            for d in &f.drills {
                let drill = format!(
                    "{} → {}: active after {:.3} s, first acknowledged append after {:.3} s",
                    d.from, d.to, d.active_seconds, d.first_ack_seconds
                );
                rows.push((d.action.into(), drill));
            }
            rows.push((
                "delivered".into(),
                format!("{} (each acknowledged fact once)", f.delivered),
            ));
            rows.push(("end-to-end latency".into(), quantiles_text(&f.end_to_end_ms)));
        }
        if let Some(s) = &self.startup {
            rows.push(("retained facts".into(), s.retained_facts.to_string()));
            rows.push(("start after SIGTERM".into(), format!("{:.3} s", s.clean_seconds)));
            rows.push(("start after kill -9".into(), format!("{:.3} s", s.after_kill_seconds)));
        }
    }
}

fn rate_text(per_second: f64, seconds: f64) -> String {
    format!("{per_second:.0} facts/s ({seconds:.3} s)")
}

fn quantiles_text(q: &Quantiles) -> String {
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        q.p50, q.p99, q.p999, q.max
    )
}

fn footprint_text(f: &Footprint) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!(
        "peak RSS {:.1} MiB (sampled max {:.1} MiB), CPU {:.2} s",
        f.peak_rss_bytes as f64 / MIB,
        f.max_sampled_rss_bytes as f64 / MIB,
        f.cpu_seconds
    )
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
