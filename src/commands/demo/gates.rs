//! Gate states as the nodes report them. A node logs one JSON line per change of a peer's gate,
//! `{"msg":"gate_transition","peer":..,"previous":..,"new":..,"reason":..}`, to
//! `<dir>/<zone>.log`; a [`GateLog`] reads what was appended since its last look and remembers
//! the latest state per peer. (An admin API will be the better source once it exists.)

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
};

use anyhow::Context;

/// Every gate starts `autonomous` (nothing is known about the link yet), without a log line.
const INITIAL: &str = "autonomous";

/// One `gate_transition` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub zone: String,
    pub peer: String,
    pub previous: String,
    pub new: String,
    pub reason: String,
}

/// Follows one node's log file.
pub struct GateLog {
    zone: String,
    path: PathBuf,
    /// Bytes of the file consumed so far.
    read: u64,
    /// The start of a line whose end was not written yet.
    partial: Vec<u8>,
    states: BTreeMap<String, String>,
}

impl GateLog {
    pub fn new(zone: &str, path: PathBuf) -> Self {
        Self {
            zone: zone.to_owned(),
            path,
            read: 0,
            partial: Vec::new(),
            states: BTreeMap::new(),
        }
    }

    /// The gate state toward `peer`, as of the last [`GateLog::poll`].
    pub fn state(&self, peer: &str) -> &str {
        self.states.get(peer).map_or(INITIAL, String::as_str)
    }

    /// The transitions logged since the last call, in order; updates the states.
    pub fn poll(&mut self) -> anyhow::Result<Vec<Transition>> {
        let fresh = self.read_new()?;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let transitions: Vec<Transition> = complete
            .split(|&b| b == b'\n')
            .filter_map(|line| parse(&self.zone, line))
            .collect();
        for transition in &transitions {
            self.states.insert(transition.peer.clone(), transition.new.clone());
        }
        Ok(transitions)
    }

    fn read_new(&mut self) -> anyhow::Result<Vec<u8>> {
        let context = || format!("reading {}", self.path.display());
        let mut file = File::open(&self.path).with_context(context)?;
        file.seek(SeekFrom::Start(self.read)).with_context(context)?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh).with_context(context)?;
        self.read += fresh.len() as u64;
        Ok(fresh)
    }
}

/// A transition if `line` is a `gate_transition` record; any other line is not our business.
fn parse(zone: &str, line: &[u8]) -> Option<Transition> {
    let record: serde_json::Value = serde_json::from_slice(line).ok()?;
    if record.get("msg")?.as_str()? != "gate_transition" {
        return None;
    }
    let field = |name: &str| record.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Some(Transition {
        zone: zone.to_owned(),
        peer: field("peer")?,
        previous: field("previous").unwrap_or_default(),
        new: field("new")?,
        reason: field("reason").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const DOWN: &str = r#"{"msg":"gate_transition","level":"info","zone":"plant-a","reason":"link down: timed out","new":"autonomous","previous":"normal","peer":"enterprise"}"#;
    const UP: &str = r#"{"msg":"gate_transition","zone":"plant-a","reason":"link up, caught up","new":"normal","previous":"autonomous","peer":"enterprise"}"#;
    const OTHER: &str = r#"{"msg":"fact_appended","zone":"plant-a","new":"x","peer":"enterprise"}"#;

    fn append(path: &std::path::Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open log");
        file.write_all(text.as_bytes()).expect("write log");
    }

    #[test]
    fn parses_only_gate_transitions() {
        let t = parse("plant-a", DOWN.as_bytes()).expect("a transition");
        assert_eq!(
            (t.peer.as_str(), t.previous.as_str(), t.new.as_str(), t.reason.as_str()),
            ("enterprise", "normal", "autonomous", "link down: timed out")
        );
        assert_eq!(parse("plant-a", OTHER.as_bytes()), None);
        assert_eq!(parse("plant-a", b"not json"), None);
    }

    #[test]
    fn poll_reads_only_new_complete_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plant-a.log");
        append(&path, "");
        let mut log = GateLog::new("plant-a", path.clone());
        assert_eq!(log.state("enterprise"), "autonomous");

        append(&path, &format!("{OTHER}\n{UP}\n{}", &DOWN[..20]));
        let seen: Vec<_> = log.poll().expect("poll").into_iter().map(|t| t.new).collect();
        assert_eq!(seen, ["normal"]);
        assert_eq!(log.state("enterprise"), "normal");

        append(&path, &format!("{}\n", &DOWN[20..]));
        let seen: Vec<_> = log.poll().expect("poll").into_iter().map(|t| t.new).collect();
        assert_eq!(seen, ["autonomous"], "the line split across two reads is parsed once");
        assert!(log.poll().expect("poll").is_empty());
        assert_eq!(log.state("enterprise"), "autonomous");
    }
}
