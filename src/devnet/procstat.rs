//! What a process costs, read from Linux's `/proc/<pid>`: resident memory now (`VmRSS`), its
//! high-water mark (`VmHWM`) and the CPU time it has used (`utime + stime` of `/proc/<pid>/stat`,
//! in clock ticks). Used by `bsfg bench` to report each node's footprint; Linux only.

use std::{fs, io, process::Command, sync::OnceLock};

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    /// Peak resident memory since the process started.
    pub peak_rss_bytes: u64,
    /// User plus system CPU time since the process started.
    pub cpu_seconds: f64,
}

/// Reads `pid` now; `"self"` reads the calling process.
pub fn read(pid: &str) -> io::Result<ProcessStats> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}: no {what}"));
    Ok(ProcessStats {
        rss_bytes: status_kib(&status, "VmRSS:").ok_or_else(|| invalid("VmRSS"))? * 1024,
        peak_rss_bytes: status_kib(&status, "VmHWM:").ok_or_else(|| invalid("VmHWM"))? * 1024,
        cpu_seconds: cpu_ticks(&stat).ok_or_else(|| invalid("CPU times"))? as f64 / clock_ticks_per_second(),
    })
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(name))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `utime + stime` (fields 14 and 15) of `/proc/<pid>/stat`. The command name in field 2 may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `USER_HZ`, asked of `getconf` once; 100 (its value on every mainstream Linux) if that fails.
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_are_counted_after_the_command_name() {
        let stat = "42 (bsfg (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn status_sizes_are_read_in_kib() {
        let status = "Name:\tbsfg\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let stats = read("self").expect("/proc/self");
        assert!(stats.rss_bytes > 0 && stats.peak_rss_bytes >= stats.rss_bytes);
    }
}
