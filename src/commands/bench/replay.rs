//! `--mode replay`: with the link up, cuts it (both fault proxies blackholed), appends the
//! backlog, waits until the sink's gate has noticed (`autonomous`), heals, and times two things:
//! the reconnect (heal to the sink's gate leaving `autonomous`, mostly reconnect backoff) and the
//! replay (from there to the last fact in the sink's forward buffer). SPEC §14's bar is the replay.
//!
//! Arrivals are watched without consuming: a long-poll fetch after offset `k - 1` of the forward
//! buffer returns as soon as fact `k` is stored (offsets start at 1 and only this source
//! writes there), stepping `k` through 1 % milestones up to the backlog's size.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use indicatif::ProgressBar;

use super::{
    ensure_ends_at,
    lab::{gate_state, Lab, SINK, SOURCE},
    load::Appended,
    report::{per_second, Replay, Report},
    Bench,
};
use crate::client::Client;

/// Reads the forward buffer without ever confirming.
const WATCHER: &str = "bench-watch";
/// How long the gate may take to change as expected (link timeout, backoff cap and jitter).
const GATE_TIMEOUT: Duration = Duration::from_secs(120);
const GATE_POLL: Duration = Duration::from_millis(10);
/// The run fails when no milestone is reached for this long.
const STALL: Duration = Duration::from_secs(120);

pub(super) fn run(bench: &Bench, lab: &mut Lab, report: &mut Report) -> anyhow::Result<()> {
    lab.start(SOURCE)?;
    lab.start(SINK)?;
    let (appended, replay) = bench.sampled(lab, report, measure(bench, lab))?;
    report.appended(&appended);
    report.replay = Some(replay);
    Ok(())
}

async fn measure(bench: &Bench<'_>, lab: &Lab) -> anyhow::Result<(Appended, Replay)> {
    let admin = lab.admin(SINK)?;
    wait_gate(admin, "the link is up", |state| state == "normal").await?;
    lab.partition();
    let appended = bench.append(lab, "backlog").await?;
    wait_gate(admin, "the sink noticed the partition", |state| state == "autonomous").await?;
    let watcher = Client::connect(&lab.client(SINK)?).await?;
    let healed = Instant::now();
    lab.heal();
    wait_gate(admin, "the link is back", |state| state != "autonomous").await?;
    let reconnected = Instant::now();
    let bar = bench.progress.facts("replayed", Some(appended.facts));
    watch_arrivals(&watcher, appended.facts, &bar).await?;
    let replay_seconds = reconnected.elapsed().as_secs_f64();
    bar.finish_and_clear();
    ensure_ends_at(&watcher, WATCHER, appended.facts).await?;
    watcher.close().await;
    let replay = Replay {
        backlog_facts: appended.facts,
        reconnect_seconds: reconnected.duration_since(healed).as_secs_f64(),
        replay_seconds,
        facts_per_second: per_second(appended.facts, replay_seconds),
    };
    Ok((appended, replay))
}

/// Returns once fact number `total` is in the forward buffer `watcher` reads.
async fn watch_arrivals(watcher: &Client, total: u64, bar: &ProgressBar) -> anyhow::Result<()> {
    let step = (total / 100).max(1);
    let (mut reached, mut progressed) = (0, Instant::now());
    while reached < total {
        let milestone = (reached + step).min(total);
        let page = watcher.fetch(WATCHER, 1, 1000, Some(milestone - 1)).await?;
        if page.facts.is_empty() {
            if progressed.elapsed() > STALL {
                bail!("replay stalled: {reached} of {total} facts arrived, no more in {STALL:?}");
            }
            continue;
        }
        (reached, progressed) = (milestone, Instant::now());
        bar.set_position(reached);
    }
    Ok(())
}

/// Polls the sink's gate toward the source until `wanted` holds.
async fn wait_gate(admin: SocketAddr, what: &str, wanted: fn(&str) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + GATE_TIMEOUT;
    loop {
        let state = tokio::task::spawn_blocking(move || gate_state(admin, SOURCE))
            .await
            .context("gate poll")??;
        if wanted(&state) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("waited {GATE_TIMEOUT:?} in vain until {what} (gate is {state})");
        }
        tokio::time::sleep(GATE_POLL).await;
    }
}
