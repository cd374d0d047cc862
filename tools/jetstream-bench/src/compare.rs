//! `compare`: reads the reports of several setups (bsfg first, then each JetStream setting) and
//! prints them side by side with the ratios of the first column to each other one, the workload
//! they ran and what each one's acknowledgement means. Plain aligned text for the terminal, or a
//! Markdown table for docs/performance.md.

use std::{fmt::Write as _, fs, str::FromStr};

use anyhow::{anyhow, Context as _};

use crate::report::{NodeStats, Report};

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// A column as LABEL=REPORT[,REPORT...] (JSON reports of `bsfg bench` or of `run`); the
    /// first column is the numerator of every ratio.
    #[arg(long = "column", required = true)]
    pub columns: Vec<ColumnSpec>,
    /// Print a Markdown table instead of aligned text.
    #[arg(long)]
    pub markdown: bool,
}

/// A column as given on the command line, before its reports are read.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    label: String,
    paths: Vec<String>,
}

impl FromStr for ColumnSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (label, paths) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("expected LABEL=FILE[,FILE], got {text:?}"))?;
        let paths = paths
            .split(',')
            .filter(|path| !path.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            label: label.to_owned(),
            paths,
        })
    }
}

/// One setup's reports (one per mode).
#[derive(Debug)]
pub struct Column {
    label: String,
    reports: Vec<Report>,
}

impl Column {
    pub fn read(spec: &ColumnSpec) -> anyhow::Result<Self> {
        let reports = spec
            .paths
            .iter()
            .map(|path| {
                let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
                serde_json::from_str(&text).with_context(|| format!("parsing the report {path}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            label: spec.label.clone(),
            reports,
        })
    }

    /// The column's report for `kind`. JetStream publishes one message per call (pipelined on its
    /// connection), so a JetStream column answers the batched rows with its one-message runs.
    fn run(&self, kind: Run) -> Option<&Report> {
        self.find(kind).or_else(|| {
            let unbatched = kind.one_per_call();
            (unbatched != kind && self.publishes_one_at_a_time()).then(|| self.find(unbatched))?
        })
    }

    fn find(&self, kind: Run) -> Option<&Report> {
        self.reports.iter().find(|report| Run::of(report) == Some(kind))
    }

    fn publishes_one_at_a_time(&self) -> bool {
        !self.reports.is_empty() && self.reports.iter().all(|report| report.tool == JETSTREAM)
    }
}

/// The `tool` of the JetStream reports (`run`).
const JETSTREAM: &str = "jetstream";

/// The runs a column is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// `append`, unpaced, one fact per call.
    Append,
    /// `append`, unpaced, several facts per call (bsfg's AppendFacts).
    AppendBatched,
    /// `replicate`, unpaced, one fact per call: the replication throughput.
    Replicate,
    /// `replicate`, unpaced, several facts per call.
    ReplicateBatched,
    /// `replicate` with a rate: the latency at a steady load.
    Paced,
}

impl Run {
    const ALL: [Run; 5] = [
        Run::Append,
        Run::AppendBatched,
        Run::Replicate,
        Run::ReplicateBatched,
        Run::Paced,
    ];

    fn of(report: &Report) -> Option<Self> {
        let batched = report.batch.unwrap_or(1) > 1;
        match (report.mode.as_str(), report.rate_per_second, batched) {
            ("append", _, false) => Some(Self::Append),
            ("append", _, true) => Some(Self::AppendBatched),
            ("replicate", None, false) => Some(Self::Replicate),
            ("replicate", None, true) => Some(Self::ReplicateBatched),
            ("replicate", Some(_), _) => Some(Self::Paced),
            _ => None,
        }
    }

    fn one_per_call(self) -> Self {
        match self {
            Self::AppendBatched => Self::Append,
            Self::ReplicateBatched => Self::Replicate,
            other => other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Append => "append, 1 per call",
            Self::AppendBatched => "append, batched",
            Self::Replicate => "replicate, 1 per call",
            Self::ReplicateBatched => "replicate, batched",
            Self::Paced => "paced replicate",
        }
    }

    /// Whether the run's latency is the append call's round trip rather than end to end.
    fn times_calls(self) -> bool {
        matches!(self, Self::Append | Self::AppendBatched)
    }
}

/// What a row reads from a run's report.
#[derive(Debug, Clone, Copy)]
enum Figure {
    /// Facts per second: replicated in an unpaced replicate run, appended otherwise (in a paced
    /// run, the rate achieved).
    Throughput,
    /// Latency percentiles: of the append call in an append run, end to end otherwise.
    P50,
    P99,
    /// Peak RSS of all the run's nodes together.
    PeakRss,
    /// CPU time of all the run's nodes together, per fact.
    CpuPerFact,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Figure {
    const ALL: [Figure; 5] = [
        Figure::Throughput,
        Figure::P50,
        Figure::P99,
        Figure::PeakRss,
        Figure::CpuPerFact,
    ];

    fn name(self, run: Run) -> &'static str {
        match (self, run) {
            (Self::Throughput, Run::Replicate | Run::ReplicateBatched) => "facts/s replicated",
            (Self::Throughput, Run::Paced) => "facts/s appended",
            (Self::Throughput, _) => "facts/s",
            (Self::P50, run) if run.times_calls() => "call p50, ms",
            (Self::P99, run) if run.times_calls() => "call p99, ms",
            (Self::P50, _) => "end-to-end p50, ms",
            (Self::P99, _) => "end-to-end p99, ms",
            (Self::PeakRss, _) => "peak RSS, all nodes, MiB",
            (Self::CpuPerFact, _) => "CPU per fact, all nodes, us",
        }
    }

    fn read(self, run: Run, report: &Report) -> Option<f64> {
        let nodes = |each: fn(&NodeStats) -> f64| {
            (!report.nodes.is_empty()).then(|| report.nodes.values().map(each).sum::<f64>())
        };
        let appended = report.append.as_ref().map(|a| (a.facts_per_second, a.latency_ms));
        let replicated = report
            .replication
            .as_ref()
            .map(|r| (r.facts_per_second, r.end_to_end_ms));
        let throughput = match run {
            Run::Replicate | Run::ReplicateBatched => replicated,
            Run::Append | Run::AppendBatched | Run::Paced => appended,
        }
        .map(|(throughput, _)| throughput);
        let latency = if run.times_calls() { appended } else { replicated }.map(|(_, latency)| latency);
        match self {
            Self::Throughput => throughput,
            Self::P50 => latency.map(|l| l.p50),
            Self::P99 => latency.map(|l| l.p99),
            Self::PeakRss => nodes(|n| n.peak_rss_bytes as f64 / MIB),
            Self::CpuPerFact => {
                let facts = (report.facts > 0).then_some(report.facts as f64)?;
                nodes(|n| n.cpu_seconds).map(|seconds| seconds * 1e6 / facts)
            }
        }
    }

    fn decimals(self) -> usize {
        match self {
            Self::Throughput => 0,
            Self::PeakRss | Self::CpuPerFact => 1,
            Self::P50 | Self::P99 => 2,
        }
    }
}

/// The whole comparison: table, workload, durability of each column.
pub fn render(columns: &[Column], markdown: bool) -> String {
    let mut out = table(columns).render(markdown);
    if let Some(first) = columns.first() {
        let _ = writeln!(
            out,
            "\nRatios are {} / other: above 1 favours {0} for throughput, below 1 for latency, memory and CPU.",
            first.label
        );
    }
    let batched = columns
        .iter()
        .flat_map(|column| &column.reports)
        .any(|report| matches!(Run::of(report), Some(Run::AppendBatched | Run::ReplicateBatched)));
    let one_at_a_time: Vec<&str> = columns
        .iter()
        .filter(|column| column.publishes_one_at_a_time())
        .map(|column| column.label.as_str())
        .collect();
    if batched && !one_at_a_time.is_empty() {
        let _ = writeln!(
            out,
            "{}: one message per publish, pipelined on the connection; the batched rows repeat the 1-per-call runs.",
            one_at_a_time.join(", ")
        );
    }
    out.push_str(&workloads(columns));
    out.push_str("\nWhat an acknowledgement means:\n");
    for column in columns {
        let mut said: Vec<&str> = column.reports.iter().map(|report| report.durability.as_str()).collect();
        said.dedup();
        let said = if said.is_empty() {
            "no report".to_owned()
        } else {
            said.join(" / ")
        };
        let _ = writeln!(out, "- {}: {said}", column.label);
    }
    out
}

fn table(columns: &[Column]) -> Table {
    let mut header = vec!["metric".to_owned()];
    header.extend(columns.iter().map(|column| column.label.clone()));
    let others = columns.iter().skip(1);
    header.extend(others.map(|other| format!("{} / {}", columns[0].label, other.label)));
    let rows = Run::ALL
        .iter()
        .flat_map(|run| Figure::ALL.iter().map(move |figure| (*run, *figure)))
        .map(|(run, figure)| {
            let values: Vec<Option<f64>> = columns
                .iter()
                .map(|column| figure.read(run, column.run(run)?))
                .collect();
            let mut row = vec![format!("{}: {}", run.name(), figure.name(run))];
            row.extend(values.iter().map(|value| format_figure(*value, figure.decimals())));
            row.extend(values.iter().skip(1).map(|other| ratio(values[0], *other)));
            row
        })
        .collect();
    Table { header, rows }
}

fn format_figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.decimals$}"))
}

fn ratio(first: Option<f64>, other: Option<f64>) -> String {
    match (first, other) {
        (Some(first), Some(other)) if other > 0.0 => format!("{:.2}x", first / other),
        _ => "n/a".to_owned(),
    }
}

/// The workload each mode ran, with a warning when the columns did not run the same one.
fn workloads(columns: &[Column]) -> String {
    let mut out = String::from("\nWorkload:\n");
    for kind in Run::ALL {
        let mode = kind.name();
        let mut described: Vec<String> = columns
            .iter()
            .filter_map(|column| column.run(kind))
            .map(describe)
            .collect();
        described.dedup();
        match described.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(out, "- {mode}: {one}");
            }
            many => {
                let _ = writeln!(
                    out,
                    "- {mode}: WARNING, the columns ran different workloads: {}",
                    many.join(" | ")
                );
            }
        }
    }
    out
}

fn describe(report: &Report) -> String {
    let rate = report
        .rate_per_second
        .map_or_else(|| "unpaced".to_owned(), |rate| format!("paced at {rate:.0}/s"));
    // Facts in flight per producer, however they are grouped into calls (the script says how).
    let in_flight = report.concurrency * report.batch.unwrap_or(1).max(1);
    format!(
        "{} facts of {} bytes, {} producers x {in_flight} in flight, {rate}",
        report.facts, report.payload_bytes, report.producers
    )
}

/// Rows of cells, rendered as aligned text (numbers right-aligned) or as Markdown.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn render(&self, markdown: bool) -> String {
        if markdown {
            return self.markdown();
        }
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| self.lines().map(|line| line[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for line in self.lines() {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (cell, width))| {
                    if i == 0 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        let rule: Vec<&str> = (0..self.header.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "| {} |", rule.join(" | "));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }

    fn lines(&self) -> impl Iterator<Item = &Vec<String>> {
        std::iter::once(&self.header).chain(&self.rows)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::{Append, Percentiles, Replication};

    fn report(tool: &str, mode: &str, throughput: f64, p99: f64, facts: u64) -> Report {
        let latency = Percentiles {
            p50: p99 / 2.0,
            p99,
            p999: p99,
            max: p99,
        };
        Report {
            tool: tool.into(),
            mode: mode.into(),
            facts,
            producers: 4,
            concurrency: 64,
            batch: None,
            payload_bytes: 256,
            rate_per_second: None,
            durability: format!("{tool} durability"),
            append: Some(Append {
                seconds: 1.0,
                facts_per_second: throughput,
                latency_ms: latency,
            }),
            replication: (mode == "replicate").then_some(Replication {
                seconds: 1.0,
                facts_per_second: throughput / 2.0,
                end_to_end_ms: latency,
            }),
            nodes: BTreeMap::from([
                (
                    "a".into(),
                    NodeStats {
                        peak_rss_bytes: 10 * 1024 * 1024,
                        cpu_seconds: 1.0,
                    },
                ),
                (
                    "b".into(),
                    NodeStats {
                        peak_rss_bytes: 20 * 1024 * 1024,
                        cpu_seconds: 2.0,
                    },
                ),
            ]),
        }
    }

    fn columns(jetstream_facts: u64) -> Vec<Column> {
        vec![
            Column {
                label: "bsfg".into(),
                reports: vec![
                    report("bsfg", "append", 200.0, 4.0, 1000),
                    report("bsfg", "replicate", 300.0, 8.0, 1000),
                ],
            },
            Column {
                label: "JetStream".into(),
                reports: vec![report("jetstream", "append", 100.0, 2.0, jetstream_facts)],
            },
        ]
    }

    fn row<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
        let line = text.lines().find(|line| line.starts_with(metric)).expect("metric row");
        line[metric.len()..].split_whitespace().collect()
    }

    #[test]
    fn figures_sit_side_by_side_with_the_ratio_of_the_first_column() {
        let text = render(&columns(1000), false);
        assert_eq!(row(&text, "append, 1 per call: facts/s"), ["200", "100", "2.00x"]);
        assert_eq!(
            row(&text, "append, 1 per call: call p99, ms"),
            ["4.00", "2.00", "2.00x"]
        );
        assert_eq!(
            row(&text, "append, 1 per call: peak RSS, all nodes, MiB"),
            ["30.0", "30.0", "1.00x"]
        );
        // 3 CPU-s over 1000 facts.
        assert_eq!(
            row(&text, "append, 1 per call: CPU per fact, all nodes, us"),
            ["3000.0", "3000.0", "1.00x"]
        );
    }

    #[test]
    fn jetstream_answers_the_batched_rows_with_its_one_message_publishes() {
        let mut columns = columns(1000);
        let mut batched = report("bsfg", "append", 600.0, 9.0, 1000);
        batched.batch = Some(64);
        columns[0].reports.push(batched);
        let text = render(&columns, false);
        assert_eq!(row(&text, "append, batched: facts/s"), ["600", "100", "6.00x"]);
        assert_eq!(row(&text, "append, 1 per call: facts/s"), ["200", "100", "2.00x"]);
        assert!(
            text.contains("JetStream: one message per publish, pipelined on the connection"),
            "{text}"
        );
        // bsfg has no batched replicate run, and nothing stands in for it.
        assert_eq!(
            row(&text, "replicate, batched: facts/s replicated"),
            ["n/a", "n/a", "n/a"]
        );
    }

    #[test]
    fn without_batched_reports_nothing_is_said_about_batches() {
        let text = render(&columns(1000), false);
        assert_eq!(row(&text, "append, batched: facts/s"), ["n/a", "100", "n/a"]);
        assert!(!text.contains("one message per publish"), "{text}");
    }

    #[test]
    fn a_paced_replicate_run_fills_the_paced_rows_only() {
        let mut columns = columns(1000);
        let mut paced = report("jetstream", "replicate", 10.0, 13.0, 1000);
        paced.rate_per_second = Some(10_000.0);
        columns[1].reports.push(paced);
        let text = render(&columns, false);
        assert_eq!(
            row(&text, "paced replicate: end-to-end p99, ms"),
            ["n/a", "13.00", "n/a"]
        );
        // The rate achieved is the append rate, not the replication rate (here half of it).
        assert_eq!(row(&text, "paced replicate: facts/s appended"), ["n/a", "10", "n/a"]);
        assert_eq!(
            row(&text, "replicate, 1 per call: end-to-end p99, ms"),
            ["8.00", "n/a", "n/a"]
        );
        assert!(
            text.contains("- paced replicate: 1000 facts of 256 bytes, 4 producers x 64 in flight, paced at 10000/s\n")
        );
    }

    #[test]
    fn a_mode_a_column_did_not_run_shows_as_missing() {
        let text = render(&columns(1000), false);
        assert_eq!(
            row(&text, "replicate, 1 per call: facts/s replicated"),
            ["150", "n/a", "n/a"]
        );
    }

    #[test]
    fn each_column_states_its_durability_and_the_shared_workload_is_named_once() {
        let text = render(&columns(1000), false);
        assert!(text.contains("- bsfg: bsfg durability\n"), "{text}");
        assert!(text.contains("- JetStream: jetstream durability\n"), "{text}");
        assert!(
            text.contains("- append, 1 per call: 1000 facts of 256 bytes, 4 producers x 64 in flight, unpaced\n"),
            "{text}"
        );
    }

    #[test]
    fn different_workloads_are_called_out() {
        let text = render(&columns(5), false);
        assert!(
            text.contains("append, 1 per call: WARNING, the columns ran different workloads"),
            "{text}"
        );
    }

    #[test]
    fn markdown_has_a_header_rule_and_one_row_per_metric() {
        let text = render(&columns(1000), true);
        let table: Vec<&str> = text.lines().take_while(|line| line.starts_with('|')).collect();
        assert_eq!(table[0], "| metric | bsfg | JetStream | bsfg / JetStream |");
        assert_eq!(table[1], "| --- | ---: | ---: | ---: |");
        assert_eq!(table.len(), 2 + Run::ALL.len() * Figure::ALL.len());
        assert!(
            table.contains(&"| append, 1 per call: facts/s | 200 | 100 | 2.00x |"),
            "{text}"
        );
    }

    #[test]
    fn columns_are_parsed_from_label_and_files() {
        let spec: ColumnSpec = "JetStream default=a.json,b.json".parse().expect("parses");
        assert_eq!(spec.label, "JetStream default");
        assert_eq!(spec.paths, ["a.json", "b.json"]);
        assert!("no-files".parse::<ColumnSpec>().is_err());
    }
}
