//! The scripted tour, narrated for a newcomer: link up, partition, heal, then the proof that every
//! acknowledged fact arrived exactly once and in order, and a summary.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;

use super::{
    lab::{Lab, ZONES},
    monitor::Monitor,
    traffic::{Flow, Tally, Traffic},
};

/// How long the nodes may take to connect at start.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// How long the nodes may take to reconnect and replay after the heal.
const HEAL_LIMIT: Duration = Duration::from_secs(60);
/// How long the last facts may take to arrive once the producers stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// After the last fact arrived, consumers keep reading this long to catch a late duplicate.
const DUPLICATE_WATCH: Duration = Duration::from_secs(1);
/// The nodes' `replication.batch_limit` (the default), for the narration.
const BATCH_LIMIT: u32 = 1000;

/// The length of each phase and the traffic.
pub struct Plan {
    link_up: Duration,
    partition: Duration,
    /// Normal traffic after the heal, before the producers stop.
    settle: Duration,
    rate: u32,
    link_timeout: Duration,
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
struct Measured {
    autonomous_after_cut: Option<Duration>,
    acked_during_partition: Vec<u64>,
    backlog_at_heal: Vec<u64>,
    normal_after_heal: Option<Duration>,
    backlog_delivered_after_heal: Option<Duration>,
}

pub async fn tour(lab: &Lab, plan: &Plan) -> anyhow::Result<()> {
    let flows = vec![
        Arc::new(Flow::new(ZONES[0], ZONES[1])),
        Arc::new(Flow::new(ZONES[1], ZONES[0])),
    ];
    let mut monitor = Monitor::new(lab.dir(), &flows);
    introduce(&mut monitor, plan)?;
    let mut traffic = Traffic::start(&lab.net, &flows, plan.rate).await?;
    let mut measured = Measured::default();
    let story = async {
        link_up(&mut monitor, plan).await?;
        partition(&mut monitor, lab, plan, &mut measured).await?;
        heal(&mut monitor, lab, plan, &mut measured).await?;
        drain(&mut monitor, &mut traffic).await
    }
    .await;
    // Idempotent: after a failure, the traffic still has to stop.
    traffic.stop_producers().await;
    traffic.stop_consumers().await;
    monitor.finish()?;
    story?;
    summary(&mut monitor, &flows, &measured)
}

fn introduce(monitor: &mut Monitor, plan: &Plan) -> anyhow::Result<()> {
    monitor.say(&format!(
        "\nIn each zone a producer appends {} facts/s addressed to the other zone; each is acknowledged as soon\n\
         as it is durable on its own zone's node. A consumer in each zone fetches and confirms what arrives.\n\
         The status shows, per zone: its gate toward the peer, its backlog (acknowledged there, not\n\
         yet received by the peer) and the facts delivered to the peer per second.",
        plan.rate
    ))
}

async fn link_up(monitor: &mut Monitor, plan: &Plan) -> anyhow::Result<()> {
    monitor.say(&format!(
        "\nphase 1/3: link up ({} s). Each node pulls what is addressed to its zone; both gates turn normal.",
        plan.link_up.as_secs()
    ))?;
    let connected = monitor.watch_until(CONNECT_LIMIT, |m| m.all_gates("normal")).await?;
    if connected.is_none() {
        bail!("the gates did not turn normal within {CONNECT_LIMIT:?}; see the node logs");
    }
    monitor.watch_for(plan.link_up).await
}

async fn partition(monitor: &mut Monitor, lab: &Lab, plan: &Plan, measured: &mut Measured) -> anyhow::Result<()> {
    monitor.say(&format!(
        "\nphase 2/3: partition ({} s). Both proxies now drop every datagram, as if the cable between the zones\n\
         were cut. Producers keep appending to their own node and keep getting acknowledgements: the\n\
         backlogs grow. Each node declares the link dead after replication.link_timeout ({} s here),\n\
         and its gate goes autonomous.",
        plan.partition.as_secs(),
        plan.link_timeout.as_secs()
    ))?;
    let before = monitor.tallies(false);
    lab.cut();
    let detected = monitor
        .watch_until(plan.partition, |m| m.all_gates("autonomous"))
        .await?;
    measured.autonomous_after_cut = detected;
    monitor
        .watch_for(plan.partition.saturating_sub(detected.unwrap_or(plan.partition)))
        .await?;
    measured.acked_during_partition = appended_since(&before, &monitor.tallies(false));
    let gates = match detected {
        Some(after) => format!("both gates went autonomous {:.1} s after the cut", after.as_secs_f64()),
        None => "the gates did NOT both go autonomous; see the node logs".to_owned(),
    };
    monitor.say(&format!(
        "  {gates}; meanwhile the producers got {} appends acknowledged ({} + {}).",
        join_counts(&measured.acked_during_partition),
        ZONES[0],
        ZONES[1]
    ))
}

async fn heal(monitor: &mut Monitor, lab: &Lab, plan: &Plan, measured: &mut Measured) -> anyhow::Result<()> {
    monitor.say(&format!(
        "\nphase 3/3: heal. The proxies relay again. The nodes reconnect (with backoff: it may take a few\n\
         seconds) and replay the backlog in pages of up to batch_limit = {BATCH_LIMIT} facts: while pages\n\
         come back full the gate is reconciliation; once caught up it is normal again."
    ))?;
    let targets: Vec<u64> = monitor.tallies(false).iter().map(|t| t.appended).collect();
    measured.backlog_at_heal = monitor.tallies(false).iter().map(Tally::backlog).collect();
    lab.heal();
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
    monitor.watch_for(plan.settle).await
}

async fn drain(monitor: &mut Monitor, traffic: &mut Traffic) -> anyhow::Result<()> {
    monitor.say("\nStopping the producers; waiting until every acknowledged fact has arrived on the other side.")?;
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

fn summary(monitor: &mut Monitor, flows: &[Arc<Flow>], measured: &Measured) -> anyhow::Result<()> {
    monitor.say("\nsummary")?;
    let tallies = monitor.tallies(true);
    for (flow, t) in flows.iter().zip(&tallies) {
        monitor.say(&format!(
            "  {} → {}: appended {}, delivered {}, out of order {}, duplicates {}, lost {}",
            flow.from, flow.to, t.appended, t.delivered, t.out_of_order, t.duplicates, t.missing
        ))?;
    }
    monitor.say(&format!("  partition: {}", partition_line(measured)))?;
    monitor.say(&format!("  heal: {}", heal_line(measured)))?;
    let lost: u64 = tallies.iter().map(|t| t.missing).sum();
    let duplicates: u64 = tallies.iter().map(|t| t.duplicates).sum();
    let strangers: u64 = tallies.iter().map(|t| t.strangers).sum();
    let out_of_order: u64 = tallies.iter().map(|t| t.out_of_order).sum();
    if lost + duplicates + strangers + out_of_order > 0 {
        bail!(
            "{lost} acknowledged facts lost, {duplicates} delivered twice, {out_of_order} out of order, \
             {strangers} unexpected"
        );
    }
    monitor.say("every acknowledged fact arrived exactly once, in the order it was appended.")
}

fn partition_line(measured: &Measured) -> String {
    let gates = match measured.autonomous_after_cut {
        Some(after) => format!("both gates autonomous {:.1} s after the cut", after.as_secs_f64()),
        None => "the gates did not both go autonomous".to_owned(),
    };
    format!(
        "{gates}; {} facts acknowledged meanwhile",
        join_counts(&measured.acked_during_partition)
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

/// `2400 + 2398`: one count per direction.
fn join_counts(counts: &[u64]) -> String {
    counts.iter().map(u64::to_string).collect::<Vec<_>>().join(" + ")
}
