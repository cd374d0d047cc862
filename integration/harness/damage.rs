//! Damaged storage for the corruption tests: bytes changed in a node's files, the operator's
//! `bsfg storage accept-loss`, and the offset ranges its reports use (`3..=5, 7`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use super::{bin, json_lines, padded_message, stderr, Cluster};

/// Appends `facts` facts of about `pad` bytes from enterprise to plant-a, `batch` per
/// AppendFacts call, each acknowledged; their ids by offset.
pub async fn fill(cluster: &Cluster, facts: usize, batch: usize, pad: usize) -> BTreeMap<u64, String> {
    let producer = cluster.client("enterprise").await;
    let mut acked = BTreeMap::new();
    for call in 0..facts / batch {
        let ids: Vec<String> = (0..batch).map(|i| format!("fact-{}", call * batch + i)).collect();
        let messages = ids
            .iter()
            .map(|id| padded_message("enterprise", "plant-a", id, pad))
            .collect();
        let results = producer.append_batch(messages).await.expect("append");
        for (id, result) in ids.into_iter().zip(results) {
            acked.insert(result.expect("acknowledged").offset, id);
        }
    }
    producer.close().await;
    acked
}

/// Changes 16 bytes in the middle of the largest file of `dir` whose name ends with `extension`
/// (`log`: the newest write-ahead log is the largest after a burst of appends; `sst`: the table
/// file holding the store log); returns its name.
pub fn damage_largest(dir: &Path, extension: &str) -> String {
    let largest = fs::read_dir(dir)
        .expect("data directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .max_by_key(|p| fs::metadata(p).map_or(0, |m| m.len()))
        .unwrap_or_else(|| panic!("no .{extension} file in {}", dir.display()));
    let mut bytes = fs::read(&largest).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 16].copy_from_slice(&[0xde; 16]);
    fs::write(&largest, bytes).expect("write");
    largest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `3..=5, 7` as `{3, 4, 5, 7}`; `none` or empty as `{}`.
pub fn offsets(ranges: &str) -> BTreeSet<u64> {
    let parse = |n: &str| n.trim().parse::<u64>().unwrap_or_else(|e| panic!("{ranges:?}: {e}"));
    let mut set = BTreeSet::new();
    for part in ranges
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "none")
    {
        match part.split_once("..=") {
            Some((start, end)) => set.extend(parse(start)..=parse(end)),
            None => {
                set.insert(parse(part));
            }
        }
    }
    set
}

impl Cluster {
    /// `bsfg storage accept-loss --config <zone's config>` (the node must be stopped): its one
    /// JSON line.
    pub fn accept_loss(&self, zone: &str) -> serde_json::Value {
        let config = &self.net.node(zone).expect("zone").config;
        let output = std::process::Command::new(bin())
            .args(["storage", "accept-loss", "--config"])
            .arg(config)
            .output()
            .expect("run bsfg");
        assert!(output.status.success(), "accept-loss failed: {}", stderr(&output));
        let mut lines = json_lines(&output);
        assert_eq!(lines.len(), 1, "one audit line");
        lines.remove(0)
    }
}
