//! `bsfg demo`: the newcomer's tour. Two zones (`enterprise`, `plant-a`) on loopback with a
//! generated dev PKI and two real `bsfg serve` processes, each reaching the other through a
//! fault-injecting UDP proxy so the demo can cut the link. Traffic flows both ways while a
//! scripted story partitions and heals the link, and the tour ends by proving that every
//! acknowledged fact arrived exactly once and in order. With `--estate` the tour runs on the
//! reference estate (enterprise ↔ idmz ↔ plant-a, plant-b): traffic between the enterprise and the
//! plants through the DMZ, a partition of the plant-a leg, the status per hop, and the proof that
//! every fact arrived exactly once at its final zone and nowhere else. With `--ha` plant-a is an
//! HA zone (SPEC §15): two instances over a three-server JetStream cluster; the active instance is
//! killed, the standby takes over, and the same proof shows the failover lost nothing.
//!
//! - [`lab`]: the processes, proxies, engine and configs, started and stopped; [`ha`]: which
//!   instance of the HA zone is active.
//! - [`scenario`]: the flows, the links they cross and what the partition cuts; the status per hop.
//! - [`traffic`]: a producer per flow and a consumer per zone, scoring every fact in a [`traffic::Flow`].
//! - [`gates`]: gate states, read from the `gate_transition` lines the nodes log.
//! - [`monitor`]: what the user watches: narration, gate events and a live status.
//! - [`screen`]: stdout, with the status kept at the bottom of a terminal.
//! - [`story`]: the phases and the final summary; [`narration`]: their words per scenario.

mod gates;
mod ha;
mod lab;
mod monitor;
mod narration;
mod scenario;
mod screen;
mod story;
mod traffic;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

use self::{lab::Lab, scenario::Scenario, story::Plan};
use super::CommandError;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Shorter phases (2 s link up, 6 s partition, 1 s after the heal): the whole tour in
    /// about 15 s, for a smoke test.
    #[arg(long)]
    pub fast: bool,
    /// Facts each zone's producer appends per second, addressed to the other zone.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rate: u32,
    /// Keep PKI, configs, data and logs here; it must be new or empty (default: a new temporary
    /// directory, kept for inspection).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The reference estate instead of two zones: enterprise, idmz (the industrial DMZ, which
    /// relays) and plants plant-a and plant-b; traffic between the enterprise and each plant
    /// through the DMZ, a partition of the plant-a leg, and the status per hop. `--rate` is per flow.
    #[arg(long)]
    pub estate: bool,
    /// plant-a as an HA zone (SPEC §15): two instances over a three-server nats-server cluster
    /// (`BSFG_NATS_SERVER`; `scripts/demo.sh --ha` installs it). The active instance is killed
    /// instead of a link cut; the standby takes over and nothing acknowledged is lost.
    #[arg(long, conflicts_with = "estate")]
    pub ha: bool,
}

/// How fast the nodes declare a silent link dead (`replication.link_timeout`, default 5 s):
/// shorter here so the partition shows within the tour.
const LINK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args.fast, args.rate, LINK_TIMEOUT);
    let dir = work_dir(args.dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The proxies spawn their tasks on this runtime, so they start inside it.
    let (mut lab, scenario) = {
        let _inside = runtime.enter();
        match (args.estate, args.ha) {
            (true, _) => (Lab::estate(&dir, LINK_TIMEOUT)?, Scenario::estate()),
            (_, true) => (runtime.block_on(Lab::ha(&dir, LINK_TIMEOUT))?, Scenario::ha()),
            _ => (Lab::pair(&dir, LINK_TIMEOUT)?, Scenario::pair()),
        }
    };
    let result = runtime.block_on(story::tour(&mut lab, &plan, &scenario));
    let stopped = lab.stop();
    screen::print(&format!(
        "nodes stopped; configs, data and logs are in {}",
        dir.display()
    ))?;
    result.and(stopped)
}

/// The directory for this run: the one given, which must hold no earlier run (its facts and
/// consumer positions would muddle the score), or a new temporary one that is kept.
fn work_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let Some(dir) = dir else {
        return Ok(tempfile::Builder::new().prefix("bsfg-demo-").tempdir()?.keep());
    };
    if is_non_empty_dir(&dir)? {
        let message = format!("--dir {} is not empty; give a new or empty directory", dir.display());
        return Err(CommandError::invalid(message).into());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn is_non_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}
