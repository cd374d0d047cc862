//! `--mode startup`: fills the source node with the planned facts (its peer never runs, so all of
//! them stay retained and unconfirmed), then times `bsfg serve` from spawning the process to
//! `/readyz` 200 twice: after kill -9 (RocksDB recovers its write-ahead log) and after a clean
//! SIGTERM stop (a stop that does not end in exit 0 is reported on stderr). The footprints are
//! those of the fill.

use super::{
    lab::{Lab, SOURCE},
    report::{Report, Startup},
    warn_if_unclean, Bench,
};

pub(super) fn run(bench: &Bench, lab: &mut Lab, report: &mut Report) -> anyhow::Result<()> {
    lab.start(SOURCE)?;
    let appended = bench.sampled(lab, report, bench.append(lab, "filling"))?;
    report.appended(&appended);
    lab.kill(SOURCE)?;
    let after_kill = lab.start(SOURCE)?;
    warn_if_unclean(lab.stop(SOURCE));
    let clean = lab.start(SOURCE)?;
    report.startup = Some(Startup {
        retained_facts: appended.facts,
        clean_seconds: clean.as_secs_f64(),
        after_kill_seconds: after_kill.as_secs_f64(),
    });
    Ok(())
}
