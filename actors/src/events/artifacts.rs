//! Artifacts pulled from peers before their facts are inserted (SPEC §3): each retrieval is
//! counted; a failed one is logged at ERROR (the page is retried later), and a fact skipped
//! because its artifact conflicts with a referenced local object, or its reference does not
//! parse, is logged and counted as a failure too. The sweep's deletions of artifacts past
//! `[objects] retention` are logged and counted one by one; a failed sweep is logged. A blob met
//! damaged while served is logged at ERROR (`artifact_damaged`).

use std::fmt::Display;

use std::time::Duration;

use bsfg_proto::ObjectDigest;
use slog::{debug, error, info, warn};

use super::{facts::Rejection, Event, Telemetry};
use crate::metrics::Counted;

pub const ARTIFACT_RETRIEVAL_FAILED: &str = "artifact_retrieval_failed";
pub const ARTIFACT_DAMAGED: &str = "artifact_damaged";
pub const ARTIFACT_PULL_DEFERRED: &str = "artifact_pull_deferred";
pub const ARTIFACT_PULL_RESUMED: &str = "artifact_pull_resumed";
pub const ARTIFACT_CONFLICT: &str = "artifact_conflict";
pub const ARTIFACT_REJECTED: &str = "artifact_rejected";
pub const ARTIFACT_EXPIRED: &str = "artifact_expired";
pub const ARTIFACT_SWEEP_DONE: &str = "artifact_sweep_done";
pub const ARTIFACT_SWEEP_FAILED: &str = "artifact_sweep_failed";

/// An artifact was pulled from a peer and stored.
pub struct ArtifactRetrieved;

impl Event for ArtifactRetrieved {
    fn emit(self, t: &Telemetry) {
        t.metrics.artifact_retrieval_total.inc();
    }
}

/// Pulling the artifact of a fact from `peer` failed; the session fails and the page is retried.
pub struct ArtifactRetrievalFailed<'a> {
    pub peer: &'a str,
    pub message_id: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub digest: &'a ObjectDigest,
    pub reason: &'a dyn Display,
}

impl Event for ArtifactRetrievalFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics.artifact_retrieval_failures.inc();
        error!(t.log, "{}", ARTIFACT_RETRIEVAL_FAILED; "peer" => self.peer, "message_id" => self.message_id,
            "bucket" => self.bucket, "key" => self.key, "digest" => %self.digest, "reason" => %self.reason);
    }
}

/// A blob being served turned out not to hold its digest's content (damaged in place, behind the
/// node's back): the reader's stream was reset before the body's end. Counted as corruption in
/// `bsfg_storage_errors_total`; logged at every serve that meets it (a peer tries again at most
/// every 30 s).
pub struct ArtifactDamaged<'a> {
    pub error: &'a dyn Display,
}

impl Event for ArtifactDamaged<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics
            .storage_errors
            .with_label_values(&[super::storage::CORRUPTION])
            .inc();
        error!(t.log, "{}", ARTIFACT_DAMAGED; "reason" => %self.error);
    }
}

/// The disk cannot spare a pulled fact's artifact yet: the pull waits for room (its page is held
/// and the link stays up), as pulls pause while the disk is low. Logged once per wait, and
/// counted in `bsfg_artifact_pulls_waiting` until the [`Counted`] it returns is dropped (room
/// found, or the connection lost).
pub struct ArtifactPullDeferred<'a> {
    pub peer: &'a str,
    pub message_id: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub size: u64,
    pub reason: &'a str,
}

impl ArtifactPullDeferred<'_> {
    pub fn begin(self, t: &Telemetry) -> Counted {
        warn!(t.log, "{}", ARTIFACT_PULL_DEFERRED; "peer" => self.peer, "message_id" => self.message_id,
            "bucket" => self.bucket, "key" => self.key, "size" => self.size, "reason" => self.reason);
        Counted::new(t.metrics.artifact_pulls_waiting.clone())
    }
}

/// A pull from `peer` asks for an artifact's bytes from `offset` on: an earlier transfer of it
/// broke off there, and what had arrived was kept.
pub struct ArtifactPullResumed<'a> {
    pub peer: &'a str,
    pub message_id: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub offset: u64,
    pub size: u64,
}

impl Event for ArtifactPullResumed<'_> {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", ARTIFACT_PULL_RESUMED; "peer" => self.peer, "message_id" => self.message_id,
            "bucket" => self.bucket, "key" => self.key, "offset" => self.offset, "size" => self.size);
    }
}

/// Why a pulled fact was skipped for its artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Its key holds a referenced local object with other content.
    Conflict,
    /// Its artifact reference does not parse.
    Rejected,
}

/// A pulled fact was skipped (and is confirmed with its page) because of its artifact: a failed
/// retrieval and a rejected fact alike.
pub struct ArtifactSkipped<'a> {
    pub peer: &'a str,
    pub message_id: &'a str,
    pub skip: Skip,
    pub reason: &'a str,
}

impl Event for ArtifactSkipped<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics.artifact_retrieval_failures.inc();
        let (event, rejection) = match self.skip {
            Skip::Conflict => (ARTIFACT_CONFLICT, Rejection::ArtifactConflict),
            Skip::Rejected => (ARTIFACT_REJECTED, Rejection::BadArtifactReference),
        };
        rejection.count(&t.metrics, 1);
        error!(t.log, "{}", event; "peer" => self.peer, "message_id" => self.message_id, "reason" => self.reason);
    }
}

/// The sweep deleted an artifact no retained fact references, past `[objects] retention`.
pub struct ArtifactExpired<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub digest: &'a ObjectDigest,
    pub size: u64,
    pub age: Duration,
    pub was_referenced: bool,
}

impl Event for ArtifactExpired<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics.artifacts_expired.inc();
        info!(t.log, "{}", ARTIFACT_EXPIRED; "bucket" => self.bucket, "key" => self.key, "digest" => %self.digest,
            "size" => self.size, "age_seconds" => self.age.as_secs(), "was_referenced" => self.was_referenced);
    }
}

/// A sweep finished: how many artifacts it deleted, how many blob files no key named (left by a
/// crash between an index write and a file removal), and whether it had to read the logs. At
/// info when it removed such files, else at debug.
pub struct ArtifactSweepDone {
    pub expired: usize,
    pub orphans: usize,
    pub scanned: bool,
}

impl Event for ArtifactSweepDone {
    fn emit(self, t: &Telemetry) {
        let (expired, orphans, scanned) = (self.expired, self.orphans, self.scanned);
        match orphans {
            0 => debug!(t.log, "{}", ARTIFACT_SWEEP_DONE; "expired" => expired, "orphan_blobs" => orphans,
                "scanned_logs" => scanned),
            _ => info!(t.log, "{}", ARTIFACT_SWEEP_DONE; "expired" => expired, "orphan_blobs" => orphans,
                "scanned_logs" => scanned),
        }
    }
}

/// A sweep failed (nothing it had not finished was deleted); the next one tries again.
pub struct ArtifactSweepFailed<'a> {
    pub reason: &'a dyn Display,
}

impl Event for ArtifactSweepFailed<'_> {
    fn emit(self, t: &Telemetry) {
        error!(t.log, "{}", ARTIFACT_SWEEP_FAILED; "reason" => %self.reason);
    }
}
