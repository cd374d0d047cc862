//! The process metrics (`process_resident_memory_bytes`, `process_open_fds`, ...) from the
//! `prometheus` crate's collector, read from `/proc` at each scrape, with one replaced:
//! `process_cpu_seconds_total`, which the crate keeps as an integer of whole seconds (ticks
//! divided by `CLK_TCK` and truncated). `rate()` over that is a staircase on a mostly idle
//! gateway; here it is the process's CPU clock, to the nanosecond.

use std::sync::{Mutex, PoisonError};

use prometheus::{
    core::{Collector, Desc},
    process_collector::ProcessCollector,
    proto::MetricFamily,
    Counter, Opts,
};

const CPU_SECONDS: &str = "process_cpu_seconds_total";

pub(super) struct ProcessMetrics {
    process: ProcessCollector,
    cpu: Counter,
    /// Held while the counter catches up with the clock: two scrapes at once must not both add.
    catching_up: Mutex<()>,
}

impl ProcessMetrics {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        let cpu = Counter::with_opts(Opts::new(
            CPU_SECONDS,
            "Total user and system CPU time spent in seconds.",
        ))?;
        Ok(Self {
            process: ProcessCollector::for_self(),
            cpu,
            catching_up: Mutex::new(()),
        })
    }

    /// User and system CPU time of every thread of this process, in seconds.
    fn cpu_seconds() -> f64 {
        let spent = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        spent.tv_sec as f64 + spent.tv_nsec as f64 / 1e9
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.process.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        {
            let _held = self.catching_up.lock().unwrap_or_else(PoisonError::into_inner);
            let behind = Self::cpu_seconds() - self.cpu.get();
            if behind > 0.0 {
                self.cpu.inc_by(behind);
            }
        }
        let mut families = self.process.collect();
        families.retain(|family| family.name() != CPU_SECONDS);
        families.extend(self.cpu.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's collector reported 1 after 1.47 s of CPU, and 0 for the first second.
    #[test]
    fn cpu_seconds_are_not_truncated_to_whole_seconds() {
        let metrics = ProcessMetrics::new().expect("collector");
        let spin = std::time::Instant::now();
        while ProcessMetrics::cpu_seconds() < 0.05 && spin.elapsed() < std::time::Duration::from_secs(10) {
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
        let families = metrics.collect();
        let cpu: Vec<_> = families.iter().filter(|f| f.name() == CPU_SECONDS).collect();
        assert_eq!(cpu.len(), 1, "one {CPU_SECONDS}");
        let value = cpu[0].get_metric()[0].get_counter().get_value();
        assert!(value >= 0.05, "{value}");
        assert!(value.fract() != 0.0, "a fraction of a second: {value}");
        for name in ["process_resident_memory_bytes", "process_open_fds"] {
            assert!(families.iter().any(|f| f.name() == name), "{name} is kept");
        }
    }
}
