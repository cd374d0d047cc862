//! Serving a blob checked against its digest ([`VerifiedBlob`]): a file damaged in place (same
//! size, other bytes) behind the node's back would otherwise be served as whole, and a peer's
//! digest check would refuse it at every retry while this node logged a success. The bytes are
//! hashed as they are read, and the read that reaches the end fails instead of returning its
//! bytes when the digest does not match: the reader gets a reset stream (`BodyFailed`), never a
//! whole body.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bsfg_proto::{ObjectDigest, ObjectHasher};
use tokio::io::{AsyncRead, ReadBuf};

/// The bytes of a blob from some offset to its end, hashed on the way (the bytes before the
/// offset were hashed when it was opened).
#[derive(Debug)]
pub struct VerifiedBlob {
    file: tokio::fs::File,
    hasher: Option<ObjectHasher>,
    /// Bytes still to read before the end.
    left: u64,
    expected: ObjectDigest,
    /// The blob's file and name, for the error.
    what: String,
}

/// The error a [`VerifiedBlob`] fails with at its end when its bytes are not its digest's.
#[derive(Debug, thiserror::Error)]
#[error("{what} does not hold the content of {expected} (damaged in place); put the original again to repair it")]
pub struct BlobDamaged {
    pub what: String,
    pub expected: ObjectDigest,
}

impl VerifiedBlob {
    /// `file` positioned at the offset, `hasher` holding the bytes before it, `left` the bytes
    /// from there to the end.
    pub(super) fn new(
        file: tokio::fs::File,
        hasher: ObjectHasher,
        left: u64,
        expected: ObjectDigest,
        what: String,
    ) -> Self {
        Self {
            file,
            hasher: Some(hasher),
            left,
            expected,
            what,
        }
    }
}

/// Whether `error` is a [`VerifiedBlob`]'s verdict that its bytes are damaged.
pub fn is_damaged(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<BlobDamaged>())
}

impl AsyncRead for VerifiedBlob {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.file).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let Some(hasher) = this.hasher.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let read = &buf.filled()[before..];
        hasher.update(read);
        // The file was opened at its stored size: more than that is damage too.
        this.left = this.left.saturating_sub(read.len() as u64);
        if this.left == 0 && !read.is_empty() {
            let digest = this.hasher.take().map(ObjectHasher::finish);
            if digest != Some(this.expected) {
                buf.set_filled(before);
                let damaged = BlobDamaged {
                    what: this.what.clone(),
                    expected: this.expected,
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, damaged)));
            }
        }
        Poll::Ready(Ok(()))
    }
}
