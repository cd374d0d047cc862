//! Structured logs (SPEC §12): one JSON object per line on stdout with `timestamp` (RFC 3339, ms),
//! `level`, `zone` and `msg`, or a human text format on request.
//!
//! **Nothing is dropped.** Records are formatted and written by one logging thread, fed through a
//! bounded channel; when the sink (a pipe, journald) falls behind and the channel is full, the
//! thread that logs waits until there is room ([`OverflowStrategy::Block`]) instead of dropping
//! the record (slog-async's default), so every audit line reaches the sink and a slow sink slows
//! the calls down. The records still queued are written before the process exits: [`logger`]
//! returns a [`LogFlush`] that the process drops last, which writes them and ends the logging
//! thread. (Waiting for the last logger to drop is not enough: a thread that outlives `main`, such
//! as one of RocksDB's or tokio's, may hold one, and the process then exited in the middle of its
//! last line.)
//!
//! **Priorities for journald.** When stdout is the journal's stream (systemd sets
//! `JOURNAL_STREAM` to its device and inode, sd-daemon(3)), every line starts with the syslog
//! priority of its level, `<N>` — critical 2, error 3, warning 4, info 6, debug and trace 7 —
//! which journald strips and stores as the entry's `PRIORITY`: `journalctl -p err` shows errors
//! and `journalctl -o cat` prints the bare JSON. Anywhere else (a file, a pipe, a terminal) lines
//! are plain JSON.
//!
//! **The level quiets the node, not the audit trail.** Audit lines (the calls under `log.audit`,
//! every `admin_action`) carry the tag `audit` and pass `log.level` whatever it is.

use std::{
    io::{self, Write},
    path::Path,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
};

use slog::{o, Drain, FnValue, Level, Logger, OwnedKVList, PushFnValue, Record};
use slog_async::OverflowStrategy;

use bsfg_actors::AUDIT;

use crate::config::{LogFormat, LogLevel};

/// Records queued for the logging thread before loggers wait.
const CHANNEL: usize = 4096;

/// Ends the logging thread once every record logged before it is written: drop it last. A record
/// logged after it is dropped, never half-written.
pub struct LogFlush {
    _guard: slog_async::AsyncGuard,
}

/// Builds the node's root logger, and what writes its last records (see [`LogFlush`]). Records
/// below `level` are dropped before formatting, audit lines aside ([`audit_or`]).
pub fn logger(zone: &str, level: LogLevel, format: LogFormat) -> (Logger, LogFlush) {
    let level = slog_level(level);
    let priority = Arc::new(AtomicU8::new(6));
    let out = Prefixed {
        inner: io::stdout(),
        priority: is_journal_stream(Path::new("/proc/self/fd/1")).then(|| priority.clone()),
        at_line_start: true,
    };
    match format {
        LogFormat::Json => {
            let json = slog_json::Json::new(out)
                .add_key_value(o!(
                    "timestamp" => FnValue(|_: &Record| timestamp()),
                    "level" => FnValue(|r: &Record| level_name(r.level())),
                    "msg" => PushFnValue(|r: &Record, ser| ser.emit(r.msg())),
                ))
                .build()
                .fuse();
            async_logger(
                Prioritised { inner: json, priority }.filter(audit_or(level)).fuse(),
                zone,
            )
        }
        LogFormat::Text => {
            let text = slog_term::FullFormat::new(slog_term::PlainDecorator::new(out))
                .build()
                .fuse();
            async_logger(
                Prioritised { inner: text, priority }.filter(audit_or(level)).fuse(),
                zone,
            )
        }
    }
}

fn async_logger<D>(drain: D, zone: &str) -> (Logger, LogFlush)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(CHANNEL)
        .overflow_strategy(OverflowStrategy::Block)
        .thread_name("bsfg-log".into())
        .build_with_guard();
    // Once the thread has ended (the flush), sending fails: such a record is dropped, not a panic.
    let root = Logger::root(drain.ignore_res(), o!("zone" => zone.to_owned()));
    (root, LogFlush { _guard: guard })
}

/// The level filter: a record at `level` or above, or an audit line (tagged [`AUDIT`]) at any
/// level. `log.level = "warning"` quiets the node's own info lines, never the audit trail.
fn audit_or(level: Level) -> impl Fn(&Record) -> bool + Send + Sync + 'static {
    move |record| record.level().is_at_least(level) || record.tag() == AUDIT
}

/// Whether the file descriptor at `fd` (e.g. `/proc/self/fd/2`) is the journal stream systemd
/// connected (`JOURNAL_STREAM=<device>:<inode>`).
pub fn is_journal_stream(fd: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(expected) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    std::fs::metadata(fd).is_ok_and(|m| expected == format!("{}:{}", m.dev(), m.ino()))
}

/// The syslog priority of a level (sd-daemon(3)'s `<N>` prefixes).
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Critical => 2,
        Level::Error => 3,
        Level::Warning => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Tells the writer the priority of the record being formatted (both run on the logging thread).
struct Prioritised<D> {
    inner: D,
    priority: Arc<AtomicU8>,
}

impl<D: Drain> Drain for Prioritised<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        self.priority.store(syslog_priority(record.level()), Ordering::Relaxed);
        self.inner.log(record, values)
    }
}

/// A writer that starts every line with `<N>` when it writes to the journal.
struct Prefixed<W> {
    inner: W,
    /// The current record's priority; `None` when the sink is not the journal.
    priority: Option<Arc<AtomicU8>>,
    at_line_start: bool,
}

impl<W: Write> Write for Prefixed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(priority) = &self.priority else {
            return self.inner.write(buf);
        };
        if self.at_line_start && !buf.is_empty() {
            write!(self.inner, "<{}>", priority.load(Ordering::Relaxed))?;
            self.at_line_start = false;
        }
        // Up to and including the first newline: the next byte starts a line.
        let end = buf.iter().position(|b| *b == b'\n').map_or(buf.len(), |i| i + 1);
        let written = self.inner.write(&buf[..end])?;
        self.at_line_start = written == end && buf[end - 1] == b'\n';
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn slog_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Trace => Level::Trace,
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warning => Level::Warning,
        LogLevel::Error => Level::Error,
        LogLevel::Critical => Level::Critical,
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_to_the_journal_start_with_their_priority() {
        let priority = Arc::new(AtomicU8::new(6));
        let mut out = Prefixed {
            inner: Vec::new(),
            priority: Some(priority.clone()),
            at_line_start: true,
        };
        out.write_all(b"{\"level\":\"info\"")
            .and_then(|()| out.write_all(b"}\n"))
            .expect("write");
        priority.store(syslog_priority(Level::Error), Ordering::Relaxed);
        out.write_all(b"{\"level\":\"error\"}\n{\"x\":1}\n").expect("write");
        let text = String::from_utf8(out.inner).expect("utf-8");
        assert_eq!(
            text,
            "<6>{\"level\":\"info\"}\n<3>{\"level\":\"error\"}\n<3>{\"x\":1}\n"
        );
        let mut plain = Prefixed {
            inner: Vec::new(),
            priority: None,
            at_line_start: true,
        };
        plain.write_all(b"{}\n").expect("write");
        assert_eq!(plain.inner, b"{}\n", "elsewhere lines stay plain JSON");
        let levels = [Level::Critical, Level::Error, Level::Warning, Level::Info, Level::Debug];
        assert_eq!(levels.map(syslog_priority), [2, 3, 4, 6, 7]);
    }
}
