//! Every command block of docs/operations.md is a step some drill runs, or is listed here with
//! why it is not (yet). A runbook step that no test runs is a defect: this list is the record of
//! those defects, and a new untested block fails this test until it is drilled or listed.

use crate::harness;

use harness::drill::blocks;

/// The first line of each block no drill runs, and why.
const NOT_DRILLED: [(&str, &str); 9] = [
    (
        "sudo apt install ./bsfg_",
        "installation: needs root and systemd as PID 1; integration/packaging.rs installs the package in a throwaway root (user, owners, modes, purge) and integration/systemd.rs covers readiness and the unit",
    ),
    (
        "promtool check rules",
        "run by scripts/test.sh itself, before the cargo tests",
    ),
    (
        "bsfg status                                    # every gate normal",
        "rolling upgrade: not drilled yet (integration/rolling_restart.rs covers the behaviour, not the commands)",
    ),
    (
        "sudo dpkg -i bsfg_NEW_amd64.deb",
        "rolling upgrade: not drilled yet (integration/packaging.rs installs the package in a throwaway root)",
    ),
    (
        "ss -uapn | grep 9443",
        "packet capture needs privileges and the production port",
    ),
    (
        "journalctl -u bsfg -b -n 20 -o cat | grep -F 'is damaged'",
        "damaged storage: not drilled yet (integration/damaged_wal.rs and damaged_table.rs cover refusal and accept-loss, not the commands)",
    ),
    (
        "sudo systemctl stop bsfg",
        "damaged storage, accept-loss: not drilled yet (the same tests run `bsfg storage accept-loss` itself)",
    ),
    (
        "bsfg status                                             # gate state, backlog and lag per peer",
        "lossy link: not drilled yet (integration/lossy_link.rs covers the behaviour through the fault proxy)",
    ),
    (
        "sudo -e /etc/bsfg/bsfg.toml                             # [[peers]] ... max_bytes_per_second",
        "bandwidth cap: not drilled yet (integration/bandwidth_cap.rs covers the behaviour)",
    ),
];

#[test]
fn every_runbook_block_is_drilled_or_listed_with_a_reason() {
    let untested: Vec<String> = blocks()
        .into_iter()
        .filter(|(_, block)| block.is_none())
        .map(|(body, _)| body.lines().next().unwrap_or_default().trim().to_owned())
        .collect();
    let unlisted: Vec<&String> = untested
        .iter()
        .filter(|first| !NOT_DRILLED.iter().any(|(start, _)| first.starts_with(start)))
        .collect();
    assert!(unlisted.is_empty(), "runbook blocks no drill runs: {unlisted:#?}");
    let stale: Vec<&str> = NOT_DRILLED
        .iter()
        .map(|(start, _)| *start)
        .filter(|start| !untested.iter().any(|first| first.starts_with(start)))
        .collect();
    assert!(
        stale.is_empty(),
        "listed as not drilled, but drilled or gone: {stale:?}"
    );
}
