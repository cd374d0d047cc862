//! The JSON report, field for field the schema of `bsfg bench --json`, so one reader
//! (`compare`) handles both tools. Latencies are recorded in microseconds and reported in
//! milliseconds.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub mode: String,
    pub facts: u64,
    pub producers: u64,
    pub concurrency: u64,
    /// Facts per call (bsfg's AppendFacts); absent or 1 for one fact per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    pub payload_bytes: u64,
    pub rate_per_second: Option<f64>,
    pub durability: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<Append>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeStats>,
}

/// Producers' view: how fast facts were acknowledged as stored, and each call's round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Append {
    pub seconds: f64,
    pub facts_per_second: f64,
    pub latency_ms: Percentiles,
}

/// Consumer's view in the other zone: from the first append to the last fact received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    pub seconds: f64,
    pub facts_per_second: f64,
    pub end_to_end_ms: Percentiles,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// One server process, sampled from /proc at the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    pub peak_rss_bytes: u64,
    pub cpu_seconds: f64,
}

impl Report {
    /// A few lines for a person at a terminal (`--json` prints the whole report instead).
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "{} {}: {} facts, durability: {}",
            self.tool, self.mode, self.facts, self.durability
        )];
        if let Some(append) = &self.append {
            lines.push(format!(
                "append: {:.0} facts/s over {:.2} s; ack latency {}",
                append.facts_per_second, append.seconds, append.latency_ms
            ));
        }
        if let Some(replication) = &self.replication {
            lines.push(format!(
                "replication: {:.0} facts/s over {:.2} s; end to end {}",
                replication.facts_per_second, replication.seconds, replication.end_to_end_ms
            ));
        }
        for (name, node) in &self.nodes {
            let mib = node.peak_rss_bytes as f64 / (1024.0 * 1024.0);
            lines.push(format!("{name}: peak RSS {mib:.1} MiB, CPU {:.2} s", node.cpu_seconds));
        }
        lines.join("\n") + "\n"
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.p50, self.p99, self.p999, self.max
        )
    }
}

impl Percentiles {
    /// Summarises a histogram of microseconds in milliseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

/// `facts` per second over `elapsed` (0 when nothing was timed).
pub fn per_second(facts: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        facts as f64 / seconds
    } else {
        0.0
    }
}

/// A histogram for latencies in microseconds, up to an hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_reported_in_milliseconds() {
        let mut histogram = latency_histogram();
        for micros in 1..=1000u64 {
            histogram.record(micros * 10).expect("in range");
        }
        let summary = Percentiles::from_micros(&histogram);
        assert!((summary.p50 - 5.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p99 - 9.9).abs() < 0.01, "{summary:?}");
        assert!((summary.p999 - 9.99).abs() < 0.01, "{summary:?}");
        assert!((summary.max - 10.0).abs() < 0.01, "{summary:?}");
    }

    #[test]
    fn throughput_over_nothing_is_zero() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(10, Duration::from_millis(500)), 20.0);
    }

    #[test]
    fn the_report_uses_the_field_names_of_bsfg_bench() {
        let report = Report {
            tool: "jetstream".into(),
            mode: "replicate".into(),
            facts: 10,
            producers: 2,
            concurrency: 4,
            batch: None,
            payload_bytes: 256,
            rate_per_second: None,
            durability: "d".into(),
            append: Some(Append {
                seconds: 1.0,
                facts_per_second: 10.0,
                latency_ms: Percentiles {
                    p50: 1.0,
                    p99: 2.0,
                    p999: 3.0,
                    max: 4.0,
                },
            }),
            replication: Some(Replication {
                seconds: 2.0,
                facts_per_second: 5.0,
                end_to_end_ms: Percentiles {
                    p50: 1.0,
                    p99: 2.0,
                    p999: 3.0,
                    max: 4.0,
                },
            }),
            nodes: BTreeMap::from([(
                "zonea".into(),
                NodeStats {
                    peak_rss_bytes: 1,
                    cpu_seconds: 0.5,
                },
            )]),
        };
        let json = serde_json::to_value(&report).expect("serialises");
        for pointer in [
            "/tool",
            "/mode",
            "/facts",
            "/producers",
            "/concurrency",
            "/payload_bytes",
            "/rate_per_second",
            "/durability",
            "/append/seconds",
            "/append/facts_per_second",
            "/append/latency_ms/p50",
            "/append/latency_ms/p99",
            "/append/latency_ms/p999",
            "/append/latency_ms/max",
            "/replication/seconds",
            "/replication/facts_per_second",
            "/replication/end_to_end_ms/p999",
            "/nodes/zonea/peak_rss_bytes",
            "/nodes/zonea/cpu_seconds",
        ] {
            assert!(json.pointer(pointer).is_some(), "missing {pointer} in {json}");
        }
        assert_eq!(serde_json::from_value::<Report>(json).expect("reads back"), report);
    }

    #[test]
    fn a_bsfg_report_with_extra_sections_and_integer_figures_is_read() {
        let json = r#"{"tool":"bsfg","mode":"append","facts":1000,"producers":4,"concurrency":64,
            "payload_bytes":256,"rate_per_second":null,"durability":"fsync before ack (group commit)",
            "append":{"seconds":1,"facts_per_second":1000,"latency_ms":{"p50":1,"p99":2,"p999":3,"max":4}},
            "nodes":{"enterprise":{"peak_rss_bytes":1000,"cpu_seconds":1}},
            "machine":{"cpus":2,"model":"x"}}"#;
        let report: Report = serde_json::from_str(json).expect("reads");
        assert_eq!(report.append.expect("append").latency_ms.p99, 2.0);
        assert!(report.replication.is_none());
    }
}
