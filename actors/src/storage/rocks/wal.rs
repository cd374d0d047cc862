//! Reading RocksDB's write-ahead logs ourselves, only to say where they are damaged: RocksDB
//! refuses to replay a damaged log (we open it with `TolerateCorruptedTailRecords`) with a bare
//! "Corruption: checksum mismatch", naming neither the file nor the place.
//!
//! The format is RocksDB's `db/log_format.h`: 32 KiB blocks of records, each a header — masked
//! crc32c (of the type, the log number for recyclable records, and the payload), payload length,
//! type — and the payload; a write batch longer than a block is split into first, middle and last
//! fragments. Zeros where a header should be are the preallocated, never written end of a log.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::storage::WalDamage;

const BLOCK: usize = 32 * 1024;
const HEADER: usize = 7;
const RECYCLABLE_HEADER: usize = 11;
const MASK_DELTA: u32 = 0xa282_ead8;

/// The write-ahead logs of `dir` (files `NNNNNN.log`), oldest first.
fn logs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.len() > 4 && name.ends_with(".log") && name[..name.len() - 4].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    logs.sort();
    Ok(logs)
}

/// Every write-ahead log of `dir` with the first damage in each that has any.
pub(super) fn inspect(dir: &Path) -> std::io::Result<Vec<WalDamage>> {
    let mut damaged = Vec::new();
    for log in logs(dir)? {
        let walked = walk(&fs::read(&log)?);
        let Some(first) = walked.iter().position(|w| matches!(w, Walked::Damaged { .. })) else {
            continue;
        };
        if let Walked::Damaged { offset, kind } = walked[first] {
            let records_after = walked[first..].iter().any(|w| matches!(w, Walked::Batch(_)));
            damaged.push(WalDamage {
                file: log,
                offset: offset as u64,
                kind,
                records_after,
            });
        }
    }
    Ok(damaged)
}

/// The write batches (RocksDB's serialized `WriteBatch`es) written after the first damage, in
/// the order written: what a replay that stops at the damage leaves out, less the damaged ones.
pub(super) fn batches_after_damage(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut batches = Vec::new();
    let mut damaged = false;
    for log in logs(dir)? {
        for walked in walk(&fs::read(&log)?) {
            match walked {
                Walked::Damaged { .. } => damaged = true,
                Walked::Batch(batch) if damaged => batches.push(batch),
                Walked::Batch(_) => {}
            }
        }
    }
    Ok(batches)
}

/// What a log holds, in order.
#[derive(Debug, PartialEq, Eq)]
enum Walked {
    /// A whole write batch (its fragments put together).
    Batch(Vec<u8>),
    /// A record that cannot be read; reading goes on at the next block.
    Damaged { offset: usize, kind: &'static str },
}

fn walk(bytes: &[u8]) -> Vec<Walked> {
    let (mut walked, mut pos) = (Vec::new(), 0);
    let mut fragments: Option<(usize, Vec<u8>)> = None;
    while pos < bytes.len() {
        let block_end = (pos / BLOCK + 1) * BLOCK;
        if block_end - pos < HEADER {
            pos = block_end;
            continue;
        }
        let (next, fragment, payload) = match record(bytes, pos, block_end) {
            Record::End => break,
            Record::Damaged(kind) => {
                walked.push(Walked::Damaged { offset: pos, kind });
                fragments = None;
                pos = block_end;
                continue;
            }
            Record::Valid { next, kind, payload } => (next, kind, payload),
        };
        let payload = &bytes[payload];
        match (fragment, fragments.take()) {
            (Fragment::Other, pending) => fragments = pending,
            (Fragment::Full | Fragment::First, Some((start, _))) => {
                walked.push(Walked::Damaged {
                    offset: start,
                    kind: "partial record without end",
                });
                start_record(&mut walked, &mut fragments, fragment, pos, payload);
            }
            (Fragment::Full | Fragment::First, None) => {
                start_record(&mut walked, &mut fragments, fragment, pos, payload);
            }
            (Fragment::Middle | Fragment::Last, None) => {
                walked.push(Walked::Damaged {
                    offset: pos,
                    kind: "missing start of fragmented record",
                });
            }
            (Fragment::Middle, Some((start, mut batch))) => {
                batch.extend_from_slice(payload);
                fragments = Some((start, batch));
            }
            (Fragment::Last, Some((_, mut batch))) => {
                batch.extend_from_slice(payload);
                walked.push(Walked::Batch(batch));
            }
        }
        pos = next;
    }
    walked
}

fn start_record(
    walked: &mut Vec<Walked>,
    fragments: &mut Option<(usize, Vec<u8>)>,
    fragment: Fragment,
    pos: usize,
    payload: &[u8],
) {
    match fragment {
        Fragment::First => *fragments = Some((pos, payload.to_vec())),
        _ => walked.push(Walked::Batch(payload.to_vec())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragment {
    Full,
    First,
    Middle,
    Last,
    /// Records that hold no write batch (compression type, timestamp sizes, predecessor info).
    Other,
}

enum Record {
    Valid {
        next: usize,
        kind: Fragment,
        payload: std::ops::Range<usize>,
    },
    Damaged(&'static str),
    /// Zeros or the end of the file: nothing more was written.
    End,
}

fn record(bytes: &[u8], pos: usize, block_end: usize) -> Record {
    let Some(header) = bytes.get(pos..pos + HEADER) else {
        return Record::End;
    };
    let stored = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let kind = header[6];
    if kind == 0 && len == 0 && stored == 0 {
        return Record::End;
    }
    let header_len = match kind {
        5..=8 | 11 | 131 => RECYCLABLE_HEADER,
        _ => HEADER,
    };
    let end = pos + header_len + len;
    if end > block_end {
        return Record::Damaged("bad record length");
    }
    let Some(record) = bytes.get(pos + 6..end) else {
        // Cut short at the end of the file: a write that never completed.
        return Record::End;
    };
    if mask(crc32c(record)) != stored {
        return Record::Damaged("checksum mismatch");
    }
    let fragment = match kind {
        1 | 5 => Fragment::Full,
        2 | 6 => Fragment::First,
        3 | 7 => Fragment::Middle,
        4 | 8 => Fragment::Last,
        _ => Fragment::Other,
    };
    Record::Valid {
        next: end,
        kind: fragment,
        payload: pos + header_len..end,
    }
}

fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// CRC-32C (Castagnoli), bit by bit: logs are read only when RocksDB refused one.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82f6_3b78 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as RocksDB writes it (legacy format).
    fn record_bytes(kind: u8, payload: &[u8]) -> Vec<u8> {
        let crc = mask(crc32c(&[&[kind][..], payload].concat()));
        let len = u16::try_from(payload.len()).expect("short payload").to_le_bytes();
        [&crc.to_le_bytes()[..], &len, &[kind], payload].concat()
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    fn first_damage(bytes: &[u8]) -> Option<(usize, &'static str)> {
        walk(bytes).into_iter().find_map(|w| match w {
            Walked::Damaged { offset, kind } => Some((offset, kind)),
            Walked::Batch(_) => None,
        })
    }

    #[test]
    fn a_whole_log_a_torn_tail_and_preallocated_zeros_are_not_damage() {
        let mut log = [record_bytes(1, b"first batch"), record_bytes(1, b"second batch")].concat();
        assert_eq!(first_damage(&log), None);
        let torn = record_bytes(1, b"third batch, cut short");
        log.extend_from_slice(&torn[..torn.len() - 5]);
        assert_eq!(first_damage(&log), None, "a write cut short at the end never completed");
        log.extend_from_slice(&[0; 100]);
        assert_eq!(first_damage(&[&record_bytes(1, b"x")[..], &[0; 64]].concat()), None);
    }

    #[test]
    fn changed_bytes_in_the_middle_are_found_with_what_follows() {
        let records: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| record_bytes(1, &[7; 40][..(i % 40) as usize]))
            .collect();
        let mut log = Vec::new();
        for record in records {
            if BLOCK - log.len() % BLOCK < HEADER + record.len() {
                log.resize((log.len() / BLOCK + 1) * BLOCK, 0);
            }
            log.extend_from_slice(&record);
        }
        assert_eq!(first_damage(&log), None);
        let middle = log.len() / 2;
        log[middle..middle + 16].copy_from_slice(&[0xde; 16]);
        let (offset, kind) = first_damage(&log).expect("damage");
        assert!(offset <= middle && middle - offset < 64, "{offset} near {middle}");
        assert!(["checksum mismatch", "bad record length"].contains(&kind), "{kind}");
        let walked = walk(&log);
        let damage = walked
            .iter()
            .position(|w| matches!(w, Walked::Damaged { .. }))
            .expect("damage");
        assert!(
            matches!(walked.last(), Some(Walked::Batch(_))),
            "later blocks still hold records"
        );
        let read = walked.len() - 1;
        assert!(damage > 900, "the damage is in the middle: {damage}");
        assert!(
            2000 - read <= BLOCK / HEADER,
            "at most the rest of one block is lost: {read} read"
        );
    }

    #[test]
    fn fragments_make_one_batch_and_damage_drops_its_batch_and_the_rest_of_its_block() {
        let batch = |text: &str| Walked::Batch(text.as_bytes().to_vec());
        let log = [
            record_bytes(1, b"a"),
            record_bytes(2, b"b1"),
            record_bytes(3, b"b2"),
            record_bytes(4, b"b3"),
            record_bytes(1, b"c"),
        ]
        .concat();
        assert_eq!(walk(&log), [batch("a"), batch("b1b2b3"), batch("c")]);
        let mut damaged = log.clone();
        let middle = record_bytes(1, b"a").len() + record_bytes(2, b"b1").len() + HEADER;
        damaged[middle] ^= 0xff;
        let walked = walk(&damaged);
        assert_eq!(walked[0], batch("a"));
        assert!(matches!(
            walked[1],
            Walked::Damaged {
                kind: "checksum mismatch",
                ..
            }
        ));
        assert_eq!(
            walked.len(),
            2,
            "what follows in the block is not trusted: its lengths may be off"
        );
        let mut next_block = damaged.clone();
        next_block.resize(BLOCK, 0);
        next_block.extend_from_slice(&record_bytes(1, b"d"));
        assert_eq!(
            walk(&next_block).last(),
            Some(&batch("d")),
            "reading goes on at the next block"
        );
    }

    #[test]
    fn a_fragment_without_its_start_is_damage() {
        let log = [record_bytes(1, b"whole"), record_bytes(3, b"middle of nothing")].concat();
        assert_eq!(
            first_damage(&log).map(|(_, kind)| kind),
            Some("missing start of fragmented record")
        );
    }
}
