//! What each nats-server process cost, read from /proc the way `bsfg bench` samples its nodes:
//! peak resident memory (`VmHWM` in /proc/<pid>/status) and CPU time (utime + stime in
//! /proc/<pid>/stat, in clock ticks of 1/100 s, Linux's USER_HZ).

use std::{fs, str::FromStr};

use anyhow::{anyhow, Context};

use crate::report::NodeStats;

/// Linux reports utime and stime in USER_HZ ticks, 100 per second on every supported platform.
const TICKS_PER_SECOND: f64 = 100.0;

/// A server to sample: its report name and its process id (`--server name=pid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub pid: u32,
}

impl FromStr for Server {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (name, pid) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("expected name=pid, got {text:?}"))?;
        let pid = pid.parse().with_context(|| format!("bad pid in {text:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            pid,
        })
    }
}

/// Reads the server's figures now (the process must still be running).
pub fn sample(server: &Server) -> anyhow::Result<NodeStats> {
    let read = |file: &str| {
        let path = format!("/proc/{}/{file}", server.pid);
        fs::read_to_string(&path).with_context(|| format!("reading {path} for {}", server.name))
    };
    Ok(NodeStats {
        peak_rss_bytes: peak_rss_bytes(&read("status")?)?,
        cpu_seconds: cpu_seconds(&read("stat")?)?,
    })
}

/// `VmHWM` of a /proc/<pid>/status text, in bytes.
fn peak_rss_bytes(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .ok_or_else(|| anyhow!("no VmHWM line"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    Ok(kib.parse::<u64>().with_context(|| format!("bad VmHWM {line:?}"))? * 1024)
}

/// utime + stime of a /proc/<pid>/stat text, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let after_name = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("no command name in stat"))?
        .1;
    // After the name come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        let field = fields.get(index).ok_or_else(|| anyhow!("stat has too few fields"))?;
        field.parse().with_context(|| format!("bad tick count {field:?}"))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_comes_from_vmhwm_in_bytes() {
        let status = "Name:\tnats-server\nVmPeak:\t  900 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 10240 kB\n";
        assert_eq!(peak_rss_bytes(status).expect("parses"), 20480 * 1024);
        assert!(peak_rss_bytes("Name:\tx\n").is_err());
    }

    #[test]
    fn cpu_time_adds_user_and_system_ticks_even_with_odd_command_names() {
        let stat = "1234 (nats (x) server) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 2 3";
        assert_eq!(cpu_seconds(stat).expect("parses"), 3.0);
        assert!(cpu_seconds("1234 (x) S 1").is_err());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = Server {
            name: "me".into(),
            pid: std::process::id(),
        };
        let stats = sample(&me).expect("own /proc entry");
        assert!(stats.peak_rss_bytes > 0);
    }

    #[test]
    fn servers_are_named_on_the_command_line() {
        let server: Server = "zonea=42".parse().expect("parses");
        assert_eq!(
            server,
            Server {
                name: "zonea".into(),
                pid: 42
            }
        );
        assert!("zonea".parse::<Server>().is_err());
        assert!("zonea=x".parse::<Server>().is_err());
    }
}
