//! Damaged storage, said plainly: where the damage is, what kind it is, which facts opening past
//! it would lose, and — once an operator accepted that — the durable record of what was lost.
//!
//! A node never skips damage on its own. A damaged write-ahead log refuses to open (a torn last
//! record, left by a crash during a write that was never acknowledged, is not damage); a damaged
//! table block is met by a read and reported at run time. Either way the way forward is `bsfg
//! storage accept-loss`, which keeps everything still readable, records the lost offset ranges
//! here ([`LossRecord`]) and lets the node start again.

use std::{fmt, path::PathBuf};

use bincode::{Decode, Encode};

/// The first damaged record of one write-ahead log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalDamage {
    pub file: PathBuf,
    /// Byte offset of the damaged record in the file.
    pub offset: u64,
    /// `checksum mismatch`, `bad record length`, `missing start of fragmented record`, ...
    pub kind: &'static str,
    /// Whether whole records follow it (acknowledged writes after the damage).
    pub records_after: bool,
}

/// Offsets of both buffers, as sorted lists (store buffer, forward buffer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct Offsets {
    pub store: Vec<u64>,
    pub forward: Vec<u64>,
}

impl Offsets {
    pub fn is_empty(&self) -> bool {
        self.store.is_empty() && self.forward.is_empty()
    }

    pub fn len(&self) -> usize {
        self.store.len() + self.forward.len()
    }
}

impl fmt::Display for Offsets {
    /// `store offsets 3..=7, 9; forward offsets none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |offsets: &[u64]| match offsets.is_empty() {
            true => "none".to_owned(),
            false => ranges(offsets),
        };
        write!(
            f,
            "store offsets {}; forward offsets {}",
            list(&self.store),
            list(&self.forward)
        )
    }
}

/// Sorted offsets as ranges of consecutive ones: `1..=3, 7`.
pub fn ranges(offsets: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut iter = offsets.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(match start == end {
            true => start.to_string(),
            false => format!("{start}..={end}"),
        });
    }
    parts.join(", ")
}

/// Why a data directory does not open, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageReport {
    pub path: PathBuf,
    /// What RocksDB said.
    pub engine: String,
    pub wal: Vec<WalDamage>,
    /// The facts the damaged log records held, as far as they can be told: what an
    /// `accept-loss` would give up.
    pub lost: Offsets,
}

impl fmt::Display for DamageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the data directory {} is damaged: ", self.path.display())?;
        for damage in &self.wal {
            let after = match damage.records_after {
                true => "records written after it are intact",
                false => "nothing readable follows it",
            };
            write!(
                f,
                "write-ahead log {} has a damaged record at byte {} ({}; {after}); ",
                damage.file.display(),
                damage.offset,
                damage.kind
            )?;
        }
        if self.wal.is_empty() {
            // The logs read whole: the damage is in a table or the manifest, which no replay
            // goes around.
            return write!(
                f,
                "{}; the write-ahead logs are intact, so the damage is in a table file or the manifest (a file \
                 missing or changed), which `bsfg storage accept-loss` cannot go around; nothing was changed. \
                 Restore the data directory from a backup; docs/operations.md, \"Damaged storage\"",
                self.engine
            );
        }
        match self.lost.is_empty() {
            true => write!(f, "the facts in the damaged record cannot be told apart; ")?,
            false => write!(
                f,
                "going on without it loses {} facts: {}; ",
                self.lost.len(),
                self.lost
            )?,
        }
        write!(
            f,
            "nothing was changed. To go on without them, run `bsfg storage accept-loss --config FILE` \
             (it keeps all that is readable and records what was lost); docs/operations.md, \"Damaged storage\""
        )
    }
}

/// A loss an operator accepted, kept in the data directory for good.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LossRecord {
    pub accepted_at_unix_ms: u64,
    /// Who ran the command (`local:<user>`).
    pub accepted_by: String,
    /// What was damaged, in words.
    pub cause: String,
    pub lost: Offsets,
}

impl fmt::Display for LossRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} facts lost ({}), accepted by {}: {}",
            self.lost.len(),
            self.lost,
            self.accepted_by,
            self.cause
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_as_ranges() {
        let lost = Offsets {
            store: vec![3, 4, 5, 7, 9, 10],
            forward: Vec::new(),
        };
        assert_eq!(lost.to_string(), "store offsets 3..=5, 7, 9..=10; forward offsets none");
        assert_eq!(lost.len(), 6);
    }
}
