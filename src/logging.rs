//! Structured logs (SPEC §12): one JSON object per line on stdout with `timestamp` (RFC 3339, ms),
//! `level`, `zone` and `msg`, or a human text format on request.

use std::io;

use slog::{o, Drain, FnValue, Level, Logger, PushFnValue, Record};

use crate::config::{LogFormat, LogLevel};

/// Builds the node's root logger. Records below `level` are dropped before formatting.
pub fn logger(zone: &str, level: LogLevel, format: LogFormat) -> Logger {
    let level = slog_level(level);
    let drain = match format {
        LogFormat::Json => slog_json::Json::new(io::stdout())
            .add_key_value(o!(
                "timestamp" => FnValue(|_: &Record| timestamp()),
                "level" => FnValue(|r: &Record| level_name(r.level())),
                "msg" => PushFnValue(|r: &Record, ser| ser.emit(r.msg())),
            ))
            .build()
            .fuse()
            .filter_level(level)
            .fuse(),
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(io::stdout());
            return async_logger(
                slog_term::FullFormat::new(decorator)
                    .build()
                    .fuse()
                    .filter_level(level)
                    .fuse(),
                zone,
            );
        }
    };
    async_logger(drain, zone)
}

fn async_logger<D>(drain: D, zone: &str) -> Logger
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let drain = slog_async::Async::new(drain).chan_size(8192).build().fuse();
    Logger::root(drain, o!("zone" => zone.to_owned()))
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
