//! The scripted tour, narrated for a newcomer: link up, partition, heal — or, for the HA zone,
//! link up, the active instance killed, the standby taking over — then the proof that every
//! acknowledged fact arrived exactly once at its zone and in order, and a summary. The words for
//! each scenario (the pair, the estate through its DMZ, the HA zone) are in `narration`.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::{
    ha,
    lab::{Lab, HA_INSTANCES, HA_ZONE},
    monitor::Monitor,
    narration,
    scenario::{hop_lines, Kind, Scenario},
    traffic::{Tally, Traffic},
};

/// How long the nodes may take to connect at start.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// How long the nodes may take to reconnect and replay after the heal.
const HEAL_LIMIT: Duration = Duration::from_secs(60);
/// How long the last facts may take to arrive once the producers stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// After the last fact arrived, consumers keep reading this long to catch a late duplicate.
const DUPLICATE_WATCH: Duration = Duration::from_secs(1);
/// How long the standby of the HA zone may take to serve after the active instance is killed.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(30);
/// More than the once-a-second refresh of the backlogs in `/v1/status`.
const STATUS_REFRESH: Duration = Duration::from_millis(1500);

/// The length of each phase and the traffic.
pub struct Plan {
    pub link_up: Duration,
    pub partition: Duration,
    /// Normal traffic after the heal, before the producers stop.
    pub settle: Duration,
    pub rate: u32,
    pub link_timeout: Duration,
}

impl Plan {
    pub fn new(fast: bool, rate: u32, link_timeout: Duration) -> Self {
        let secs = |default, fast_secs| Duration::from_secs(if fast { fast_secs } else { default });
        Self {
            link_up: secs(5, 2),
            partition: secs(12, 6),
            settle: secs(3, 1),
            rate,
            link_timeout,
        }
    }
}

/// What the story measured, for the summary.
#[derive(Default)]
pub struct Measured {
    pub autonomous_after_cut: Option<Duration>,
    pub acked_during_partition: Vec<u64>,
    pub backlog_at_heal: Vec<u64>,
    pub normal_after_heal: Option<Duration>,
    pub backlog_delivered_after_heal: Option<Duration>,
    /// `--ha`: the instance killed, the one that took over, and when after the kill it answered
    /// as active and acknowledged plant-a's producer again.
    pub killed: String,
    pub promoted: String,
    pub active_after_kill: Option<Duration>,
    pub first_ack_after_kill: Option<Duration>,
}

pub async fn tour(lab: &mut Lab, plan: &Plan, scenario: &Scenario) -> anyhow::Result<()> {
    let mut monitor = Monitor::new(lab.dir(), scenario);
    monitor.say(&narration::intro(scenario.kind, plan))?;
    let mut traffic = Traffic::start(&lab.net, &scenario.flows, plan.rate).await?;
    let mut measured = Measured::default();
    let story = async {
        link_up(&mut monitor, plan).await?;
        if scenario.kind == Kind::Ha {
            failover(&mut monitor, lab, plan, scenario, &mut measured).await?;
            after_failover(&mut monitor, plan, scenario).await?;
        } else {
            partition(&mut monitor, lab, plan, scenario, &mut measured).await?;
            heal(&mut monitor, lab, plan, scenario, &mut measured).await?;
        }
        drain(&mut monitor, &mut traffic).await
    }
    .await;
    // Idempotent: after a failure, the traffic still has to stop.
    traffic.stop_producers().await;
    traffic.stop_consumers().await;
    monitor.finish()?;
    story?;
    summary(&mut monitor, scenario, &traffic, &measured)
}

async fn link_up(monitor: &mut Monitor, plan: &Plan) -> anyhow::Result<()> {
    monitor.say(&format!(
        "\nphase 1/3: links up ({} s). Each node pulls what waits for it; every gate turns normal.",
        plan.link_up.as_secs()
    ))?;
    let connected = monitor.watch_until(CONNECT_LIMIT, |m| m.all_gates("normal")).await?;
    if connected.is_none() {
        bail!("the gates did not turn normal within {CONNECT_LIMIT:?}; see the node logs");
    }
    monitor.watch_for(plan.link_up).await
}

async fn partition(
    monitor: &mut Monitor,
    lab: &Lab,
    plan: &Plan,
    scenario: &Scenario,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    monitor.say(&narration::partition(scenario.kind, plan))?;
    let before = monitor.tallies(false);
    lab.cut(&scenario.cut);
    let cut_links = &scenario.cut_links;
    let detected = monitor
        .watch_until(plan.partition, |m| m.gates_are(cut_links, "autonomous"))
        .await?;
    measured.autonomous_after_cut = detected;
    monitor
        .watch_for(plan.partition.saturating_sub(detected.unwrap_or(plan.partition)))
        .await?;
    measured.acked_during_partition = appended_since(&before, &monitor.tallies(false));
    let gates = match detected {
        Some(after) => format!(
            "the cut link's gates went autonomous {:.1} s after the cut",
            after.as_secs_f64()
        ),
        None => "the cut link's gates did NOT both go autonomous; see the node logs".to_owned(),
    };
    monitor.say(&format!(
        "  {gates}; meanwhile the producers got {} appends acknowledged ({}).",
        join_counts(&measured.acked_during_partition),
        flow_names(scenario)
    ))?;
    hops(monitor, lab, scenario).await
}

async fn heal(
    monitor: &mut Monitor,
    lab: &Lab,
    plan: &Plan,
    scenario: &Scenario,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    monitor.say(&narration::heal(scenario.kind))?;
    let targets: Vec<u64> = monitor.tallies(false).iter().map(|t| t.appended).collect();
    measured.backlog_at_heal = monitor.tallies(false).iter().map(Tally::backlog).collect();
    lab.heal(&scenario.cut);
    let healed_at = Instant::now();
    let (mut normal, mut delivered) = (None, None);
    monitor
        .watch_until(HEAL_LIMIT, |m| {
            if normal.is_none() && m.all_gates("normal") {
                normal = Some(healed_at.elapsed());
            }
            if delivered.is_none() && all_delivered(&m.tallies(false), &targets) {
                delivered = Some(healed_at.elapsed());
            }
            normal.is_some() && delivered.is_some()
        })
        .await?;
    (measured.normal_after_heal, measured.backlog_delivered_after_heal) = (normal, delivered);
    let Some(normal) = normal else {
        bail!("the gates did not return to normal within {HEAL_LIMIT:?} of the heal; see the node logs");
    };
    monitor.say(&format!(
        "  gates normal again {:.1} s after the heal{}.",
        normal.as_secs_f64(),
        delivered.map_or(String::new(), |d| format!(
            "; the partition's backlog was delivered within {:.1} s",
            d.as_secs_f64()
        ))
    ))?;
    // The nodes refresh their backlogs once a second: wait for a refresh after the replay.
    monitor.watch_for(plan.settle.max(STATUS_REFRESH)).await?;
    hops(monitor, lab, scenario).await
}

/// `--ha`: kills the active instance of plant-a and watches the standby take over: when it
/// answers as active, and when plant-a's producer is acknowledged again.
async fn failover(
    monitor: &mut Monitor,
    lab: &mut Lab,
    plan: &Plan,
    scenario: &Scenario,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    monitor.say(&narration::partition(scenario.kind, plan))?;
    let Some(active) = ha::active(lab).await? else {
        bail!("no instance of {HA_ZONE} is active; see the node logs");
    };
    let standby = HA_INSTANCES.into_iter().find(|i| *i != active).unwrap_or_default();
    monitor.say(&format!("  killing {active} (active); {standby} is the standby."))?;
    // plant-a's producer is the second flow's.
    let acked = |m: &Monitor| m.tallies(false).get(1).map_or(0, |t| t.appended);
    let before = acked(monitor);
    lab.kill(active)?;
    let killed_at = Instant::now();
    let takeover = tokio::spawn(ha::until_active(lab.net.node(standby)?.admin, TAKEOVER_LIMIT));
    let mut first_ack = None;
    monitor
        .watch_until(TAKEOVER_LIMIT, |m| {
            if first_ack.is_none() && acked(m) > before {
                first_ack = Some(killed_at.elapsed());
            }
            first_ack.is_some() && takeover.is_finished()
        })
        .await?;
    let active_after = takeover.await?.map(|at| at.saturating_duration_since(killed_at));
    *measured = Measured {
        killed: active.to_owned(),
        promoted: standby.to_owned(),
        active_after_kill: active_after,
        first_ack_after_kill: first_ack,
        ..Measured::default()
    };
    let Some(active_after) = active_after else {
        bail!("{standby} did not become active within {TAKEOVER_LIMIT:?} of the kill; see its log");
    };
    monitor.say(&format!("  {}.", failover_line(measured)))?;
    let took = active_after.max(first_ack.unwrap_or_default());
    monitor.watch_for(plan.partition.saturating_sub(took)).await
}

/// `--ha`'s last phase: enterprise's link to the new active instance comes back and the backlog
/// both ways is delivered.
async fn after_failover(monitor: &mut Monitor, plan: &Plan, scenario: &Scenario) -> anyhow::Result<()> {
    monitor.say(&narration::heal(scenario.kind))?;
    let normal = monitor.watch_until(HEAL_LIMIT, |m| m.all_gates("normal")).await?;
    let Some(normal) = normal else {
        bail!("enterprise's gate toward {HA_ZONE} did not return to normal within {HEAL_LIMIT:?}; see the node logs");
    };
    monitor.say(&format!(
        "  enterprise's gate toward {HA_ZONE} normal again {:.1} s into this phase.",
        normal.as_secs_f64()
    ))?;
    monitor.watch_for(plan.settle).await
}

/// The estate's status per hop, as the nodes report it.
async fn hops(monitor: &mut Monitor, lab: &Lab, scenario: &Scenario) -> anyhow::Result<()> {
    if scenario.kind != Kind::Estate {
        return Ok(());
    }
    monitor.say("  status per hop (each node's gate toward its neighbour, and the facts waiting there for it):")?;
    for line in hop_lines(&lab.net).await? {
        monitor.say(&line)?;
    }
    Ok(())
}

async fn drain(monitor: &mut Monitor, traffic: &mut Traffic) -> anyhow::Result<()> {
    monitor.say("\nStopping the producers; waiting until every acknowledged fact has arrived at its zone.")?;
    traffic.stop_producers().await;
    let targets: Vec<u64> = monitor.tallies(false).iter().map(|t| t.appended).collect();
    monitor
        .watch_until(DRAIN_LIMIT, |m| all_delivered(&m.tallies(false), &targets))
        .await?;
    monitor.watch_for(DUPLICATE_WATCH).await?;
    traffic.stop_consumers().await;
    Ok(())
}

fn appended_since(before: &[Tally], after: &[Tally]) -> Vec<u64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.appended.saturating_sub(b.appended))
        .collect()
}

fn all_delivered(tallies: &[Tally], targets: &[u64]) -> bool {
    tallies.iter().zip(targets).all(|(t, target)| t.delivered >= *target)
}

fn summary(monitor: &mut Monitor, scenario: &Scenario, traffic: &Traffic, measured: &Measured) -> anyhow::Result<()> {
    monitor.say("\nsummary")?;
    let tallies = monitor.tallies(true);
    for (flow, t) in scenario.flows.iter().zip(&tallies) {
        monitor.say(&format!(
            "  {} → {}: appended {}, delivered {}, out of order {}, duplicates {}, lost {}",
            flow.from, flow.to, t.appended, t.delivered, t.out_of_order, t.duplicates, t.missing
        ))?;
    }
    if scenario.kind == Kind::Ha {
        monitor.say(&format!("  failover: {}", failover_line(measured)))?;
    } else {
        monitor.say(&format!("  partition: {}", partition_line(scenario, measured)))?;
        monitor.say(&format!("  heal: {}", heal_line(measured)))?;
    }
    let strays = traffic.strays();
    if scenario.kind == Kind::Estate {
        monitor.say(&format!(
            "  delivered at a zone no flow leads to (the DMZ included): {}",
            strays.facts
        ))?;
    }
    let lost: u64 = tallies.iter().map(|t| t.missing).sum();
    let duplicates: u64 = tallies.iter().map(|t| t.duplicates).sum();
    let strangers: u64 = tallies.iter().map(|t| t.strangers).sum::<u64>() + strays.facts;
    let out_of_order: u64 = tallies.iter().map(|t| t.out_of_order).sum();
    if let Some(failure) = &strays.failure {
        bail!("{failure}");
    }
    if lost + duplicates + strangers + out_of_order > 0 {
        bail!(
            "{lost} acknowledged facts lost, {duplicates} delivered twice, {out_of_order} out of order, \
             {strangers} unexpected"
        );
    }
    monitor.say(&narration::verdict(scenario.kind))
}

fn partition_line(scenario: &Scenario, measured: &Measured) -> String {
    let gates = match measured.autonomous_after_cut {
        Some(after) => format!(
            "the cut link's gates autonomous {:.1} s after the cut",
            after.as_secs_f64()
        ),
        None => "the cut link's gates did not both go autonomous".to_owned(),
    };
    format!(
        "{gates}; {} facts acknowledged meanwhile ({})",
        join_counts(&measured.acked_during_partition),
        flow_names(scenario)
    )
}

fn heal_line(measured: &Measured) -> String {
    let seconds = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    format!(
        "gates normal again after {}; the partition's backlog ({} facts) delivered after {}",
        seconds(measured.normal_after_heal),
        join_counts(&measured.backlog_at_heal),
        seconds(measured.backlog_delivered_after_heal)
    )
}

fn failover_line(measured: &Measured) -> String {
    let seconds = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    format!(
        "{} active {} after {} was killed; plant-a's producer acknowledged again {} after the kill",
        measured.promoted,
        seconds(measured.active_after_kill),
        measured.killed,
        seconds(measured.first_ack_after_kill)
    )
}

/// `2400 + 2398`: one count per flow.
fn join_counts(counts: &[u64]) -> String {
    counts.iter().map(u64::to_string).collect::<Vec<_>>().join(" + ")
}

/// `enterprise→plant-a + plant-a→enterprise`: the flows, in the order of [`join_counts`].
fn flow_names(scenario: &Scenario) -> String {
    let names: Vec<String> = scenario
        .flows
        .iter()
        .map(|flow| format!("{}→{}", flow.from, flow.to))
        .collect();
    names.join(" + ")
}
