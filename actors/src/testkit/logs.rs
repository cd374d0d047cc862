//! A slog drain that keeps every record, as text fields, for assertions on log lines.

use std::sync::{Arc, Mutex, PoisonError};

use slog::{Drain, Logger, OwnedKVList, Record, Serializer, KV};

/// A record as text: its fields, then `msg`.
pub type Line = Vec<(String, String)>;

/// Keeps each record as a [`Line`].
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<Line>>>);

impl Capture {
    /// A logger whose records this capture keeps.
    pub fn logger(&self) -> Logger {
        Logger::root(self.clone(), slog::o!())
    }

    /// Every record so far.
    pub fn lines(&self) -> Vec<Line> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The value of `key` in `line`.
pub fn field<'a>(line: &'a [(String, String)], key: &str) -> Option<&'a str> {
    line.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

struct Fields(Line);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        self.0.push((key.to_string(), val.to_string()));
        Ok(())
    }
}

impl Drain for Capture {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(Vec::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        fields.0.push(("msg".into(), record.msg().to_string()));
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(fields.0);
        Ok(())
    }
}
