//! The object index port: which content each `(bucket, key)` names, whether a fact references it,
//! and how many keys share each blob. The blobs themselves live in files (see `crate::objects`).
//!
//! # Format (column family `objects`)
//!
//! | key | value |
//! |---|---|
//! | `o` ‖ bucket ‖ `0x00` ‖ key | format `1` ‖ encoded [`ObjectEntry`] |
//! | `b` ‖ sha256 (32 bytes) | keys naming this blob, `u64` big-endian (absent = 0) |
//!
//! Bucket names never contain `0x00`. Each [`ObjectIndex::write_object`] and
//! [`ObjectIndex::remove_object`] is one synced write batch: the entry and the blob counts it
//! changes land together or not at all.

use std::collections::{BTreeMap, BTreeSet};

use bincode::{Decode, Encode};
use bsfg_proto::ObjectDigest;

use super::StorageError;

/// What the index knows of one `(bucket, key)`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ObjectEntry {
    pub digest: ObjectDigest,
    pub size: u64,
    pub media_type: Option<String>,
    /// A fact references this object: its content can never change again.
    pub referenced: bool,
    /// Peer zones whose facts reference it: only they may `GetObject` it from this node.
    pub referenced_by: BTreeSet<String>,
    pub stored_at_unix_ms: u64,
}

/// Durable index of the artifact store. Writes are atomic and synced before they return.
pub trait ObjectIndex: Send + Sync + 'static {
    fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectEntry>, StorageError>;
    /// How many keys name the blob with this digest.
    fn blob_refs(&self, digest: &ObjectDigest) -> Result<u64, StorageError>;
    /// Writes `entry` for `(bucket, key)` and the new key counts of the blobs it changes
    /// (0 removes a count), in one synced batch.
    fn write_object(
        &self,
        bucket: &str,
        key: &str,
        entry: &ObjectEntry,
        blob_refs: &[(ObjectDigest, u64)],
    ) -> Result<(), StorageError>;
    /// Deletes the entry of `(bucket, key)` and writes the new key counts of the blobs it changes
    /// (0 removes a count), in one synced batch.
    fn remove_object(&self, bucket: &str, key: &str, blob_refs: &[(ObjectDigest, u64)]) -> Result<(), StorageError>;
    /// Bytes named per bucket (an object's size counts once per key naming it).
    fn usage_by_bucket(&self) -> Result<BTreeMap<String, u64>, StorageError>;
    /// Calls `visit(bucket, key, entry)` for every entry, in key order (the sweep and the recount
    /// of the store's usage; nothing is collected here, so memory stays flat).
    fn visit_objects(&self, visit: &mut dyn FnMut(&str, &str, ObjectEntry)) -> Result<(), StorageError>;
}
