//! The record an HA zone's write-ahead log holds (SPEC §15, `design/ha-jetstream.md` §4.3): one
//! per journal group commit, per artifact index write, and one per promotion.
//!
//! A record names its zone and its writer (instance and epoch), and carries `prev`, the chain hash
//! of the record before it. A replica keeps the chain of what it applied beside the sequence
//! (`meta.wal`, written in the same RocksDB batch as the record's effects): applying a record
//! whose `prev` is not the replica's chain would mix two histories, so it is refused
//! ([`WalPosition::follow`]). The chain is `sha256(prev chain ‖ the record's bytes)`, over the
//! exact bytes the log holds, so every replica computes it the same way.
//!
//! Records carry explicit keys and values (offsets, idempotency entries, deletions, usage, gate
//! switches), so applying one is deterministic: followers never re-plan. The encoding is bincode
//! (the wire encoding of `bsfg-proto`), versioned by [`WalRecord::format`].

use bincode::{Decode, Encode};
use bsfg_proto::{codec, ObjectDigest};
use sha2::{Digest as _, Sha256};

use super::{Batch, Digest, ObjectEntry, StorageError};

/// The record format this version writes and reads.
pub const WAL_FORMAT: u8 = 1;

/// One record of the zone's write-ahead log.
#[derive(Debug, Clone, Encode, Decode)]
pub struct WalRecord {
    pub format: u8,
    pub zone: String,
    pub writer: WalWriter,
    /// The chain hash after the previous record (all zeros before the first).
    pub prev: Digest,
    pub body: WalBody,
}

/// Who wrote a record: the instance and the epoch of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WalWriter {
    pub instance: String,
    pub epoch: u64,
}

/// What a record does to a replica.
#[derive(Debug, Clone, Encode, Decode)]
pub enum WalBody {
    /// One journal group commit (appends, inserts, cursors, deletions, usage, gate switches).
    Journal(Batch),
    /// One write of the artifact index.
    Object(ObjectWrite),
    /// Written once by each new writer before anything else: fences every older writer.
    Epoch { lease_revision: u64 },
}

/// An artifact index entry written (`ObjectIndex::write_object`) or removed (`remove_object`,
/// `entry` is `None`), and the blob key counts it changes.
#[derive(Debug, Clone, Encode, Decode)]
pub struct ObjectWrite {
    pub bucket: String,
    pub key: String,
    pub entry: Option<ObjectEntry>,
    pub blob_refs: Vec<(ObjectDigest, u64)>,
}

/// Where a replica stands in the log: the last record it applied, the chain after it, and the
/// epoch of that record's writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalPosition {
    pub seq: u64,
    pub chain: Digest,
    pub epoch: u64,
}

impl WalRecord {
    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        codec::encode_value(self).map_err(|e| StorageError::Engine(format!("WAL record does not encode: {e}")))
    }

    pub fn decode(seq: u64, bytes: &[u8]) -> Result<Self, StorageError> {
        let record: Self = codec::decode_body(bytes).map_err(|e| StorageError::Corrupt {
            what: "WAL record",
            key: seq.to_be_bytes().to_vec(),
            reason: e.to_string(),
        })?;
        if record.format != WAL_FORMAT {
            return Err(StorageError::Corrupt {
                what: "WAL record",
                key: seq.to_be_bytes().to_vec(),
                reason: format!("format {} (this version reads {WAL_FORMAT})", record.format),
            });
        }
        Ok(record)
    }
}

/// Why a record cannot follow a replica's position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    #[error("record {seq} follows chain {found}, but this replica's chain after {applied} is {expected}")]
    Chain {
        seq: u64,
        applied: u64,
        expected: String,
        found: String,
    },
    #[error("record {seq} is not the next one after {applied}")]
    Sequence { seq: u64, applied: u64 },
    #[error("record {seq} belongs to zone {found:?}, not {expected:?}")]
    Zone { seq: u64, expected: String, found: String },
}

impl WalPosition {
    /// The position after appending `bytes` (a record whose `prev` is this chain) at `seq`.
    pub fn after(&self, seq: u64, bytes: &[u8], epoch: u64) -> Self {
        let mut hash = Sha256::new();
        hash.update(self.chain);
        hash.update(bytes);
        Self {
            seq,
            chain: hash.finalize().into(),
            epoch,
        }
    }

    /// The position after `record` (read back as `bytes` at `seq`), if it follows this one.
    pub fn follow(&self, zone: &str, seq: u64, bytes: &[u8], record: &WalRecord) -> Result<Self, Divergence> {
        if seq != self.seq + 1 {
            return Err(Divergence::Sequence { seq, applied: self.seq });
        }
        if record.zone != zone {
            return Err(Divergence::Zone {
                seq,
                expected: zone.to_owned(),
                found: record.zone.clone(),
            });
        }
        if record.prev != self.chain {
            return Err(Divergence::Chain {
                seq,
                applied: self.seq,
                expected: hex(&self.chain),
                found: hex(&record.prev),
            });
        }
        Ok(self.after(seq, bytes, record.writer.epoch))
    }

    /// `seq` ‖ chain ‖ epoch, as `meta.wal` holds it.
    pub fn encode(&self) -> [u8; 48] {
        let mut out = [0; 48];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..40].copy_from_slice(&self.chain);
        out[40..].copy_from_slice(&self.epoch.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 48] = bytes.try_into().ok()?;
        Some(Self {
            seq: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            chain: bytes[8..40].try_into().ok()?,
            epoch: u64::from_be_bytes(bytes[40..].try_into().ok()?),
        })
    }

    /// The first bytes of the chain, for logs.
    pub fn chain_hex(&self) -> String {
        hex(&self.chain)
    }
}

fn hex(digest: &Digest) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{CursorKey, StoreAppend};

    fn record(prev: Digest, offset: u64) -> WalRecord {
        let batch = Batch {
            store: vec![StoreAppend {
                offset,
                appended_at_unix_ms: 7,
                message_id: format!("m{offset}"),
                peer: "plant-a".into(),
                origin: None,
                digest: [offset as u8; 32],
                encoded: vec![1, 2, 3],
            }],
            cursors: vec![(CursorKey::Peer("plant-a".into()), offset)],
            gates: vec![("plant-a".into(), true)],
            ..Batch::default()
        };
        WalRecord {
            format: WAL_FORMAT,
            zone: "enterprise".into(),
            writer: WalWriter {
                instance: "enterprise-a".into(),
                epoch: 3,
            },
            prev,
            body: WalBody::Journal(batch),
        }
    }

    /// The journal sizes an HA zone's groups and in-order calls by `FACT_RECORD_ROOM` per fact
    /// beside their encodings: a record of the most facts a call holds, each with the longest
    /// message id and zone names, stays within it.
    #[test]
    fn each_fact_takes_at_most_its_room_in_a_record_beside_its_encoding() {
        use crate::storage::{FACT_RECORD_ROOM, RECORD_ROOM};
        let zone = "z".repeat(63);
        let facts = bsfg_proto::rpc::MAX_APPEND_BATCH;
        let store = (0..facts)
            .map(|i| StoreAppend {
                offset: u64::MAX - i as u64,
                appended_at_unix_ms: u64::MAX,
                message_id: format!("{i:0>256}"),
                peer: zone.clone(),
                origin: Some(zone.clone()),
                digest: [0xff; 32],
                encoded: vec![7; 100],
            })
            .collect();
        let mut record = record([0; 32], 1);
        record.zone = zone.clone();
        record.body = WalBody::Journal(Batch {
            store,
            ..Batch::default()
        });
        let encoded = record.encode().expect("encodes").len();
        let beside = encoded - facts * 100;
        assert!(
            beside <= facts * FACT_RECORD_ROOM,
            "{beside} bytes beside {facts} facts' encodings: more than {FACT_RECORD_ROOM} a fact"
        );
        assert!(beside < facts * FACT_RECORD_ROOM + RECORD_ROOM);
    }

    #[test]
    fn a_record_reads_back_and_chains_onto_the_position_it_was_written_after() {
        let start = WalPosition::default();
        let bytes = record(start.chain, 1).encode().expect("encodes");
        let read = WalRecord::decode(1, &bytes).expect("decodes");
        let next = start.follow("enterprise", 1, &bytes, &read).expect("follows");
        assert_eq!((next.seq, next.epoch), (1, 3));
        assert_eq!(next, start.after(1, &bytes, 3));
        let WalBody::Journal(batch) = read.body else {
            panic!("a journal record")
        };
        assert_eq!(batch.store[0].message_id, "m1");
        assert_eq!(batch.gates, vec![("plant-a".to_owned(), true)]);
        assert_eq!(WalPosition::decode(&next.encode()), Some(next));
    }

    #[test]
    fn a_record_of_another_history_is_refused() {
        let start = WalPosition::default();
        let first = record(start.chain, 1).encode().expect("encodes");
        let at_one = start.after(1, &first, 3);
        // Written after a different first record: its prev is not this replica's chain.
        let other = start.after(1, b"another first record", 3);
        let bytes = record(other.chain, 2).encode().expect("encodes");
        let read = WalRecord::decode(2, &bytes).expect("decodes");
        assert!(matches!(
            at_one.follow("enterprise", 2, &bytes, &read),
            Err(Divergence::Chain { seq: 2, .. })
        ));
        let ours = record(at_one.chain, 2);
        let bytes = ours.encode().expect("encodes");
        assert!(matches!(
            at_one.follow("enterprise", 3, &bytes, &ours),
            Err(Divergence::Sequence { seq: 3, applied: 1 })
        ));
        assert!(matches!(
            at_one.follow("plant-a", 2, &bytes, &ours),
            Err(Divergence::Zone { .. })
        ));
        assert!(at_one.follow("enterprise", 2, &bytes, &ours).is_ok());
    }

    #[test]
    fn a_record_of_an_unknown_format_is_corrupt_not_applied() {
        let mut newer = record([0; 32], 1);
        newer.format = WAL_FORMAT + 1;
        let bytes = newer.encode().expect("encodes");
        assert!(matches!(
            WalRecord::decode(1, &bytes),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
