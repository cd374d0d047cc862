//! Samples processes on a thread of its own while a mode measures: resident memory every 100 ms
//! (the highest reading is kept) and, at the end, the kernel's high-water mark and the CPU time
//! used since sampling started. Reading `/proc` is file I/O, so it stays off the runtime.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use serde::Serialize;

use crate::devnet::procstat::{self, ProcessStats};

const PERIOD: Duration = Duration::from_millis(100);

/// One process's footprint over the measured phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Footprint {
    /// The most resident memory the process ever had: `VmHWM`, or a higher sampled `VmRSS`
    /// (the kernel updates both lazily, so either may lag the other a little).
    pub peak_rss_bytes: u64,
    /// The highest `VmRSS` seen in the 100 ms samples of the measured phase.
    pub max_sampled_rss_bytes: u64,
    /// User + system CPU time used during the measured phase.
    pub cpu_seconds: f64,
}

struct Watched {
    name: String,
    /// A pid, or `"self"`.
    pid: String,
    first: Option<ProcessStats>,
    last: Option<ProcessStats>,
    max_rss: u64,
}

impl Watched {
    fn sample(&mut self) {
        // A process that is gone keeps its last reading.
        if let Ok(stats) = procstat::read(&self.pid) {
            self.first.get_or_insert(stats);
            self.max_rss = self.max_rss.max(stats.rss_bytes);
            self.last = Some(stats);
        }
    }

    fn footprint(&self) -> anyhow::Result<Footprint> {
        let (first, last) = self
            .first
            .zip(self.last)
            .with_context(|| format!("could not read /proc/{} ({})", self.pid, self.name))?;
        Ok(Footprint {
            peak_rss_bytes: last.peak_rss_bytes.max(self.max_rss),
            max_sampled_rss_bytes: self.max_rss,
            // Clock ticks are 10 ms; milliseconds keep the float noise out of the report.
            cpu_seconds: ((last.cpu_seconds - first.cpu_seconds) * 1000.0).round() / 1000.0,
        })
    }
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Watched>>,
}

impl Sampler {
    /// Starts sampling `(name, pid)` pairs; a pid of `"self"` is this process.
    pub fn start(targets: Vec<(String, String)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut watched: Vec<Watched> = targets
            .into_iter()
            .map(|(name, pid)| Watched {
                name,
                pid,
                first: None,
                last: None,
                max_rss: 0,
            })
            .collect();
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || loop {
            watched.iter_mut().for_each(Watched::sample);
            if stopping.load(Ordering::SeqCst) {
                return watched;
            }
            std::thread::park_timeout(PERIOD);
        });
        Self { stop, thread }
    }

    /// Takes a last sample and returns each process's footprint by name.
    pub fn finish(self) -> anyhow::Result<BTreeMap<String, Footprint>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        let watched = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the sampling thread panicked"))?;
        watched.iter().map(|w| Ok((w.name.clone(), w.footprint()?))).collect()
    }
}
