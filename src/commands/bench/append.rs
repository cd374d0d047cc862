//! `--mode append`: durable appends into the source node alone. Its peer is configured (so the
//! facts have a valid `to_zone`) but never started, so nothing but appending costs the node
//! anything: the figure is AppendFact's throughput and call latency with fsync'd group commit.

use super::{
    lab::{Lab, SOURCE},
    report::Report,
    Bench,
};

pub(super) fn run(bench: &Bench, lab: &mut Lab, report: &mut Report) -> anyhow::Result<()> {
    lab.start(SOURCE)?;
    let appended = bench.sampled(lab, report, bench.append(lab, "appended"))?;
    report.appended(&appended);
    Ok(())
}
