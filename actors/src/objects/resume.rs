//! Pulls from peers that broke off part way through an artifact's body: the bytes that arrived
//! are kept, so the link's next attempt asks only for the rest (`GetObjectFrom`) instead of
//! starting again from the first byte — on a link that drops every few minutes, a large artifact
//! would otherwise never get across.
//!
//! - One broken transfer is kept per peer (a link pulls one artifact at a time), in memory with
//!   its open temporary file, its hasher's state and its room in the store, so a resumed body is
//!   hashed and checked as one whole.
//! - It is dropped when a pull from that peer starts on other content, when a pull of it
//!   completes or fails for any reason but a broken or stalled body, and by the sweep once it
//!   has waited `[objects] retention`.
//! - A restart starts over: the files of uploads in progress are deleted when the store opens.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use bsfg_proto::ObjectDigest;

use super::{blobs::TempBlob, space::Reservation};

/// An upload's file and its room in the store, from its first byte until it is installed.
pub(super) struct Upload {
    pub(super) temp: TempBlob,
    pub(super) room: Reservation,
}

/// A pulled body that broke off.
struct Broken {
    digest: ObjectDigest,
    upload: Upload,
    since: Instant,
}

/// The broken transfers kept, by peer.
#[derive(Default)]
pub(super) struct Kept {
    by_peer: Mutex<HashMap<String, Broken>>,
}

impl Kept {
    /// Bytes of `digest` received from `peer` before its transfer broke off (0 when none); a
    /// transfer of other content kept for `peer` is dropped.
    pub(super) fn received(&self, peer: &str, digest: &ObjectDigest) -> u64 {
        let mut by_peer = self.lock();
        match by_peer.get(peer) {
            Some(broken) if broken.digest == *digest => broken.upload.temp.written(),
            Some(_) => {
                by_peer.remove(peer);
                0
            }
            None => 0,
        }
    }

    /// The kept transfer of `digest` from `peer`, if it holds exactly `offset` bytes.
    pub(super) fn take(&self, peer: &str, digest: &ObjectDigest, offset: u64) -> Option<Upload> {
        let mut by_peer = self.lock();
        let broken = by_peer.remove(peer)?;
        (broken.digest == *digest && broken.upload.temp.written() == offset).then_some(broken.upload)
    }

    /// Keeps what arrived of `digest` from `peer`, in place of any transfer kept for it before.
    pub(super) fn keep(&self, peer: &str, digest: ObjectDigest, upload: Upload) {
        let broken = Broken {
            digest,
            upload,
            since: Instant::now(),
        };
        self.lock().insert(peer.to_owned(), broken);
    }

    /// Drops what is kept for `peer`.
    pub(super) fn forget(&self, peer: &str) {
        self.lock().remove(peer);
    }

    /// Drops the transfers kept for longer than `limit`.
    pub(super) fn expire(&self, limit: Duration) {
        self.lock().retain(|_, broken| broken.since.elapsed() < limit);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Broken>> {
        self.by_peer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, time::Duration};

    use bsfg_proto::ObjectDigest;
    use tokio::sync::mpsc;

    use super::super::{
        bounds_tests::bytes_on_disk,
        catalog::Pull,
        tests::{files_in, open_with, put, spec, store_in, Fixture, READ_TIMEOUT, ROOMY},
        ObjectError, ObjectsConfig, Origin, CHUNK,
    };
    use crate::storage::Storage;

    const PEER: &str = "enterprise";

    fn body() -> Vec<u8> {
        (0..3 * CHUNK + 7).map(|i| (i % 251) as u8).collect()
    }

    fn pulled(body: &[u8]) -> Origin {
        Origin::Peer {
            digest: ObjectDigest::of(body),
        }
    }

    /// Feeds `part` (the bytes from `offset` on) to the catalog's writer as a pull from `PEER`.
    fn pull_part(f: &Fixture, whole: &[u8], offset: u64, part: &[u8]) -> Result<bsfg_proto::ObjectMeta, ObjectError> {
        let (tx, rx) = mpsc::channel(part.len().div_ceil(CHUNK).max(1));
        for piece in part.chunks(CHUNK) {
            tx.try_send(piece.to_vec()).expect("channel has room");
        }
        drop(tx);
        let pull = Pull {
            peer: PEER.into(),
            offset,
        };
        f.catalog
            .receive(&spec("batch.bin", whole, pulled(whole)), Some(&pull), rx)
    }

    fn temp_files(f: &Fixture) -> usize {
        files_in(&f.dir.path().join("objects/tmp"))
    }

    #[test]
    fn a_pulled_body_that_breaks_off_is_kept_and_the_rest_completes_it() {
        let f = open_with(tempfile::tempdir().expect("tempdir"), ROOMY);
        let body = body();
        let digest = ObjectDigest::of(&body);
        let cut = CHUNK + 100;
        let broken = pull_part(&f, &body, 0, &body[..cut]);
        assert!(
            matches!(broken, Err(ObjectError::Truncated { got, .. }) if got == cut as u64),
            "{broken:?}"
        );
        assert_eq!(f.catalog.kept.received(PEER, &digest), cut as u64);
        assert_eq!(f.catalog.kept.received("plant-b", &digest), 0, "kept for its peer only");
        assert_eq!(temp_files(&f), 1, "what arrived stays on disk");

        let meta = pull_part(&f, &body, cut as u64, &body[cut..]).expect("completed");
        assert_eq!((meta.digest, meta.size), (digest, body.len() as u64));
        assert_eq!(fs::read(f.catalog.blobs().path(&digest)).expect("blob"), body);
        let entry = f.catalog.lookup("coa", "batch.bin").expect("lookup").expect("stored");
        assert!(entry.referenced, "stored as any pull is");
        assert_eq!((f.catalog.kept.received(PEER, &digest), temp_files(&f)), (0, 0));
        assert_eq!(bytes_on_disk(f.dir.path()), body.len() as u64);
    }

    #[test]
    fn a_resumed_body_of_other_content_is_refused_and_the_next_pull_starts_over() {
        let f = open_with(tempfile::tempdir().expect("tempdir"), ROOMY);
        let body = body();
        let digest = ObjectDigest::of(&body);
        let cut = 2 * CHUNK;
        assert!(pull_part(&f, &body, 0, &body[..cut]).is_err());
        let mut forged = body[cut..].to_vec();
        forged[0] ^= 1;
        let refused = pull_part(&f, &body, cut as u64, &forged);
        assert!(
            matches!(refused, Err(ObjectError::DigestMismatch { .. })),
            "{refused:?}"
        );
        assert_eq!((f.catalog.kept.received(PEER, &digest), temp_files(&f)), (0, 0));
        let lost = pull_part(&f, &body, cut as u64, &body[cut..]);
        assert!(
            matches!(lost, Err(ObjectError::ResumeLost { offset }) if offset == cut as u64),
            "{lost:?}"
        );
        pull_part(&f, &body, 0, &body).expect("from the first byte");
    }

    #[test]
    fn what_is_kept_goes_when_the_peer_pulls_other_content_when_forgotten_and_after_retention() {
        let body = body();
        let config = ObjectsConfig {
            retention: Duration::from_millis(200),
            capacity_bytes: 2 * body.len() as u64 - 1,
            ..ROOMY
        };
        let f = open_with(tempfile::tempdir().expect("tempdir"), config);
        let digest = ObjectDigest::of(&body);
        let keep = || {
            assert!(pull_part(&f, &body, 0, &body[..CHUNK]).is_err());
            assert_eq!(
                (f.catalog.kept.received(PEER, &digest), temp_files(&f)),
                (CHUNK as u64, 1)
            );
        };
        keep();
        assert_eq!(f.catalog.kept.received(PEER, &ObjectDigest::of(b"other")), 0);
        assert_eq!((f.catalog.kept.received(PEER, &digest), temp_files(&f)), (0, 0));

        keep();
        let logs: &dyn Storage = f.storage.as_ref();
        f.catalog.sweep(logs, bsfg_proto::model::now_unix_ms()).expect("sweep");
        assert_eq!(temp_files(&f), 1, "younger than the retention");
        std::thread::sleep(Duration::from_millis(250));
        f.catalog.sweep(logs, bsfg_proto::model::now_unix_ms()).expect("sweep");
        assert_eq!((f.catalog.kept.received(PEER, &digest), temp_files(&f)), (0, 0));

        keep();
        let other = vec![7; body.len()];
        let full = put(&f.catalog, "other.bin", &other);
        assert!(
            matches!(full, Err(ObjectError::Full { .. })),
            "a kept transfer keeps its room: {full:?}"
        );
        f.catalog.kept.forget(PEER);
        assert_eq!((f.catalog.kept.received(PEER, &digest), temp_files(&f)), (0, 0));
        put(&f.catalog, "other.bin", &other).expect("its room is given back");
    }

    /// The store's reader hands the writer's outcome back only once the writer has kept what
    /// arrived: the link's next attempt, which may come at once, finds it.
    #[tokio::test]
    async fn a_broken_pull_is_resumable_as_soon_as_its_receive_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), 1 << 20);
        let body = body();
        let digest = ObjectDigest::of(&body);
        let cut = 2 * CHUNK + 5;
        let spec = spec("batch.bin", &body, pulled(&body));
        let broken = store
            .receive_pulled(spec.clone(), PEER, 0, &mut &body[..cut], READ_TIMEOUT)
            .await;
        assert!(matches!(broken, Err(ObjectError::Truncated { .. })), "{broken:?}");
        let offset = store.resumable(PEER, digest).await.expect("resumable");
        assert_eq!(offset, cut as u64);
        let meta = store
            .receive_pulled(spec, PEER, offset, &mut &body[cut..], READ_TIMEOUT)
            .await
            .expect("completed");
        assert_eq!(meta.digest, digest);

        // What the sending side reads for a `GetObjectFrom`: the bytes from the offset on.
        let size = body.len() as u64;
        let (_, _, mut file) = store.open_blob("coa", "batch.bin", cut as u64).await.expect("open");
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut file, &mut rest)
            .await
            .expect("read");
        assert_eq!(rest, body[cut..]);
        let beyond = store.open_blob("coa", "batch.bin", size + 1).await;
        assert!(
            matches!(beyond, Err(ObjectError::BeyondEnd { offset, size: s }) if offset == size + 1 && s == size),
            "{:?}",
            beyond.err()
        );
    }
}
