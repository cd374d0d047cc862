//! `--mode failover` (the source zone is an HA zone): steady paced load into it while the two
//! drills of SPEC §15 run, one after the other. First the active instance's process is killed
//! (SIGKILL, a power cut); once the standby took over, the killed instance is started again and
//! waits as a standby; then the new active instance hands over (`bsfg admin step-down`, a planned
//! handover). For each drill: seconds from the action to the successor reporting itself active,
//! and to the first acknowledgement of an append *sent* after the action, through the producers'
//! clients, which list both instances and move on by themselves. A consumer in plant-a fetches
//! and confirms throughout; the run fails unless it received every acknowledged fact exactly once.
//!
//! The drills run on this thread (they block on processes and admin calls) while the producers
//! and the consumer run on the runtime's workers. The sampler follows the processes that run when
//! the load starts: the killed instance's figures end at the kill, its restart is not sampled.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use tokio::sync::watch;

use super::{
    lab::{Lab, HA_INSTANCES, SINK, SOURCE},
    load::{self, AckLog, Amount, Appended, Plan},
    replicate::{consume, Consumed},
    report::{Drill, Failover, Quantiles, Report},
    sample, Bench,
};
use crate::{client::Client, devnet::ha::role};

/// Appends per second when `--rate` is not given: steady load, well below saturation.
pub const DEFAULT_RATE: u64 = 2_000;
/// Load before the first drill, and between and after the drills.
const STEADY: Duration = Duration::from_secs(5);
/// How long a handover may take before the run fails (the clients give up after 15 s anyway).
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
/// How often a drill looks at the successor's role and the acknowledgements.
const POLL: Duration = Duration::from_millis(20);

pub(super) fn run(bench: &Bench, lab: &mut Lab, report: &mut Report) -> anyhow::Result<()> {
    lab.start_path()?;
    let sampler = sample(lab);
    let measured = measure(bench, lab);
    report.footprints(sampler.finish()?);
    let (appended, consumed, drills) = measured?;
    report.appended(&appended);
    report.rate_per_second = bench.plan.rate;
    report.failover = Some(Failover {
        drills,
        delivered: consumed.delivered,
        end_to_end_ms: Quantiles::of(&consumed.end_to_end_us, 1000.0),
    });
    Ok(())
}

/// Starts the consumer and the producers on the runtime, runs the drills here, stops the load.
fn measure(bench: &Bench, lab: &mut Lab) -> anyhow::Result<(Appended, Consumed, Vec<Drill>)> {
    let runtime = bench.runtime;
    let consumer = runtime.block_on(Client::connect(&lab.client(SINK)?))?;
    let (total, expected) = watch::channel(None);
    let delivered_bar = bench.progress.facts("delivered", None);
    let consuming = runtime.spawn(consume(consumer, expected, delivered_bar.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AckLog::default());
    let plan = Plan {
        amount: Amount::Until(stop.clone()),
        ..bench.plan.clone()
    };
    let (node, bar, log) = (
        lab.client(SOURCE)?,
        bench.progress.facts("appended", None),
        acks.clone(),
    );
    let producing = runtime.spawn(async move { load::append(&node, &plan, &bar, Some(log)).await });
    let drilled = drills(lab, &acks);
    stop.store(true, Ordering::Relaxed);
    let appended = runtime.block_on(producing)??;
    let drills = drilled?;
    total.send_replace(Some(appended.facts));
    let consumed = runtime.block_on(consuming)??;
    delivered_bar.finish_and_clear();
    Ok((appended, consumed, drills))
}

/// Steady load, the kill, the restart of the killed instance, steady load, the step-down, steady
/// load.
fn drills(lab: &mut Lab, acks: &AckLog) -> anyhow::Result<Vec<Drill>> {
    sleep(STEADY);
    let first = lab.active()?.context("no instance of the HA zone is active")?;
    let second = successor(first);
    let (mark, at) = (acks.len(), Instant::now());
    lab.kill(first)?;
    let killed = recovery(lab, acks, "sigkill", (first, second), (at, mark))?;
    lab.start_standby(first)?;
    sleep(STEADY);
    let (mark, at) = (acks.len(), Instant::now());
    lab.step_down(second)?;
    let stepped_down = recovery(lab, acks, "step-down", (second, first), (at, mark))?;
    sleep(STEADY);
    Ok(vec![killed, stepped_down])
}

/// The other instance of the HA zone.
fn successor(instance: &str) -> &'static str {
    HA_INSTANCES
        .into_iter()
        .find(|i| *i != instance)
        .unwrap_or(HA_INSTANCES[0])
}

/// Waits until `to` reports itself active and an append sent after `at` (acknowledgements past
/// `mark`) was acknowledged.
fn recovery(
    lab: &Lab,
    acks: &AckLog,
    action: &'static str,
    (from, to): (&str, &str),
    (at, mark): (Instant, usize),
) -> anyhow::Result<Drill> {
    let admin = lab.admin(to)?;
    let (mut active, mut acked) = (None, None);
    while at.elapsed() < RECOVERY_LIMIT {
        if active.is_none() && role(admin).as_deref() == Some("active") {
            active = Some(at.elapsed());
        }
        acked = acked.or_else(|| acks.first_sent_after(at, mark));
        if let (Some(active), Some(acked)) = (active, acked) {
            return Ok(Drill {
                action,
                from: from.to_owned(),
                to: to.to_owned(),
                active_seconds: active.as_secs_f64(),
                first_ack_seconds: acked.duration_since(at).as_secs_f64(),
            });
        }
        sleep(POLL);
    }
    bail!(
        "{action} of {from}: within {RECOVERY_LIMIT:?}, {to} {} and appends {} acknowledged again; see the node logs",
        if active.is_some() {
            "became active"
        } else {
            "did not become active"
        },
        if acked.is_some() { "were" } else { "were not" }
    )
}
