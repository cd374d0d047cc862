//! The artifact pull before insertion (SPEC §3, §4a): before a page is stored, every artifact its
//! facts reference is made local — pulled from the peer with `GetObject` on the link's connection,
//! streamed into the local store with its digest and size verified, and marked referenced — so
//! consumers here read artifacts locally even when the link is down again, and a relayed fact's
//! artifact travels hop by hop: it is readable by the fact's next hop, which pulls it from here.
//!
//! - A failed retrieval is never skipped: that would deliver a fact whose artifact cannot be
//!   read here. The page is not inserted. A broken or stalled transfer fails the session like
//!   any lost call; a refusal or wrong content from a peer whose connection works, or a local
//!   store that refuses the artifact, is [`PullError::Unretrievable`]: the session keeps the
//!   link up and tries the page again after a wait.
//! - An artifact the disk cannot spare is not pulled until it can: the disk guard that refuses a
//!   producer's `PutObject` (`Admission::check_upload`) also stands between a page and the room
//!   storage keeps for its own writes. Pulls already pause while the disk is low, but a page's
//!   artifacts can be larger than what is left: the pull waits (logged once,
//!   `artifact_pull_deferred`) with the link up, as a full forward buffer makes it wait.
//! - A fact whose key holds a *referenced* local object with another digest is skipped and
//!   confirmed with its page, like a `fact_conflict`: the local object is immutable and the link
//!   must not block on it.
//! - Pages without artifact references pass straight through.
//! - Every artifact of the page is held (`objects::Hold`) from before it is looked up until the
//!   page is inserted, so the local sweep cannot delete it in between.

use bsfg_proto::{
    ArtifactRef, FetchedFact, GetObjectFromRequest, GetObjectRequest, Message, ObjectMeta, Request, Response,
    StreamCode,
};
use quinn::Connection;

use super::{session::Session, PullError};
use crate::{
    backpressure::UploadRoom,
    events::{
        ArtifactPullDeferred, ArtifactPullResumed, ArtifactRetrievalFailed, ArtifactRetrieved, ArtifactSkipped, Skip,
    },
    objects::{Hold, ObjectError, Origin, PutSpec},
    relay::{Relayed, Sorted},
    transport::{framed, pacing::PacedRead},
};

/// How often a pull waiting for disk room looks again (the disk is measured once a second).
const DISK_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the artifact of a fact stands locally.
enum Local {
    /// Stored with the referenced digest and size, and marked referenced.
    Present,
    /// A referenced object with other content holds the key.
    Conflict(ObjectMeta),
    Missing,
}

/// A fact of a sorted page: delivered here, or relayed onward.
enum Bound {
    Here(FetchedFact),
    Onward(Relayed),
}

impl Bound {
    /// Its offset in the page.
    fn offset(&self) -> u64 {
        match self {
            Self::Here(fact) => fact.offset,
            Self::Onward(relayed) => relayed.offset,
        }
    }
}

/// A sorted page with the artifacts of its facts local, up to where that failed.
pub(super) struct Ready {
    /// The facts to store: those before `cut`, less the ones skipped for their artifact.
    pub(super) sorted: Sorted,
    /// Holds on their artifacts: keep them until the facts are stored.
    pub(super) holds: Vec<Hold>,
    /// The offset of the first fact whose artifact could not be made local while the link
    /// works ([`PullError::Unretrievable`]), and why: that fact and the ones after it wait.
    pub(super) cut: Option<(u64, PullError)>,
}

impl Session {
    /// Makes local, in the page's order, every artifact the sorted page's facts reference. A
    /// fact whose artifact cannot be stored here is skipped; at the first one that cannot be
    /// made local now (the peer lost it, the artifact store is full until the next hops have
    /// pulled what it holds) the page is cut, so that the facts before it are stored and
    /// confirmed, and their artifacts can go, rather than wait with it.
    pub(super) async fn with_artifacts(&self, conn: &Connection, sorted: Sorted) -> Result<Ready, PullError> {
        let references = |m: &Message| m.envelope.object_media_type.is_some();
        if !sorted.deliver.iter().any(|f| references(&f.message))
            && !sorted.relay.iter().any(|r| references(&r.message))
        {
            let (holds, cut) = (Vec::new(), None);
            return Ok(Ready { sorted, holds, cut });
        }
        let Sorted {
            deliver,
            relay,
            rejected,
            refused,
        } = sorted;
        let mut order: Vec<Bound> = deliver
            .into_iter()
            .map(Bound::Here)
            .chain(relay.into_iter().map(Bound::Onward))
            .collect();
        order.sort_by_key(Bound::offset);
        let mut ready = Ready {
            sorted: Sorted {
                rejected,
                refused,
                ..Sorted::default()
            },
            holds: Vec::new(),
            cut: None,
        };
        for fact in order {
            let (message, next_hop) = match &fact {
                Bound::Here(fact) => (&fact.message, None),
                Bound::Onward(relayed) => (&relayed.message, Some(relayed.next_hop.as_str())),
            };
            match self.artifact_ready(conn, message, next_hop, &mut ready.holds).await {
                Ok(true) => match fact {
                    Bound::Here(fact) => ready.sorted.deliver.push(fact),
                    Bound::Onward(relayed) => ready.sorted.relay.push(relayed),
                },
                Ok(false) => {}
                Err(e @ PullError::Unretrievable(_)) => {
                    ready.cut = Some((fact.offset(), e));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ready)
    }

    /// Makes the artifact `message` references (if any) local, readable by the peer
    /// `readable_by` when given, and holds it in `holds`; `false` when the fact must be skipped
    /// instead.
    async fn artifact_ready(
        &self,
        conn: &Connection,
        message: &Message,
        readable_by: Option<&str>,
        holds: &mut Vec<Hold>,
    ) -> Result<bool, PullError> {
        let artifact = match message.artifact() {
            Ok(Some(artifact)) => artifact,
            Ok(None) => return Ok(true),
            Err(e) => {
                self.skip(message, Skip::Rejected, &e.to_string());
                return Ok(false);
            }
        };
        holds.push(self.deps.objects.hold(&artifact.bucket, &artifact.key));
        match self.local(&artifact).await.map_err(PullError::Objects)? {
            Local::Present => {}
            Local::Conflict(stored) => {
                let reason = format!(
                    "artifact {}/{} is referenced here with digest {}, the fact references {}",
                    stored.bucket, stored.key, stored.digest, artifact.digest
                );
                self.skip(message, Skip::Conflict, &reason);
                return Ok(false);
            }
            Local::Missing => self.retrieve(conn, message, &artifact).await?,
        }
        if let Some(next_hop) = readable_by {
            let objects = &self.deps.objects;
            let zone = Some(next_hop.to_owned());
            objects.reference(artifact, zone).await.map_err(PullError::Objects)?;
        }
        Ok(true)
    }

    async fn local(&self, artifact: &ArtifactRef) -> Result<Local, ObjectError> {
        let objects = &self.deps.objects;
        Ok(match objects.lookup(&artifact.bucket, &artifact.key).await? {
            Some(stored) if stored.digest == artifact.digest && stored.size == artifact.size => {
                objects.reference(artifact.clone(), None).await?;
                Local::Present
            }
            Some(stored) if stored.referenced => Local::Conflict(ObjectMeta {
                bucket: artifact.bucket.clone(),
                key: artifact.key.clone(),
                digest: stored.digest,
                size: stored.size,
                media_type: stored.media_type,
            }),
            _ => Local::Missing,
        })
    }

    /// Pulls one artifact from the peer into the local store, counting and logging the outcome.
    async fn retrieve(&self, conn: &Connection, message: &Message, artifact: &ArtifactRef) -> Result<(), PullError> {
        let telemetry = &self.deps.telemetry;
        match self.get_object(conn, message, artifact).await {
            Ok(()) => {
                telemetry.emit(ArtifactRetrieved);
                Ok(())
            }
            Err(e) => {
                telemetry.emit(ArtifactRetrievalFailed {
                    peer: &self.config.peer,
                    message_id: &message.envelope.message_id,
                    bucket: &artifact.bucket,
                    key: &artifact.key,
                    digest: &artifact.digest,
                    reason: &e,
                });
                let link_works = conn.close_reason().is_none() && !lost_in_transfer(&e);
                Err(if link_works {
                    PullError::Unretrievable(Box::new(e))
                } else {
                    e
                })
            }
        }
    }

    async fn get_object(&self, conn: &Connection, message: &Message, artifact: &ArtifactRef) -> Result<(), PullError> {
        // One over this node's limits never fits: said so at once (and at each retry), rather
        // than after a wait for disk room that would not help.
        let objects = &self.deps.objects;
        objects.check_size(artifact.size).map_err(PullError::Objects)?;
        // Held until the artifact is stored, so artifacts pulled at once count against the room.
        let _room = self.room_for(conn, message, artifact).await?;
        let peer = &self.config.peer;
        let offset = objects
            .resumable(peer, artifact.digest)
            .await
            .map_err(PullError::Objects)?;
        let (bucket, key) = (artifact.bucket.clone(), artifact.key.clone());
        let request = match offset {
            0 => Request::GetObject(GetObjectRequest { bucket, key }),
            offset => Request::GetObjectFrom(GetObjectFromRequest { bucket, key, offset }),
        };
        let max_frame_bytes = self.config.max_frame_bytes;
        let call = framed::patient_call(conn, &request, max_frame_bytes, self.patience());
        let (answered, mut recv) = self.watched(conn, call).await?;
        let spec = match answered.response {
            Response::GetObject(meta) => put_spec(artifact, meta).map_err(PullError::Objects),
            Response::Error(e) => Err(PullError::Remote(e)),
            _ => Err(PullError::Protocol("get_object")),
        };
        let spec = match spec {
            Ok(spec) => spec,
            Err(e) => {
                if offset > 0 {
                    // Not resumed (a peer of an older version refuses `GetObjectFrom` as
                    // malformed): the next attempt starts from the first byte.
                    objects.forget_pull(peer).await.map_err(PullError::Objects)?;
                }
                return Err(e);
            }
        };
        if offset > 0 {
            self.deps.telemetry.emit(ArtifactPullResumed {
                peer,
                message_id: &message.envelope.message_id,
                bucket: &artifact.bucket,
                key: &artifact.key,
                offset,
                size: artifact.size,
            });
        }
        // At this link's pace, as its pages are: a cap on this side alone holds artifacts too.
        let mut body = PacedRead::new(&mut recv, &self.ingress);
        objects
            .receive_pulled(spec, peer, offset, &mut body, self.patience().between)
            .await
            .map_err(PullError::Objects)?;
        Ok(())
    }

    /// The disk's room for `artifact`, once it has it; until then the pull waits, rechecking
    /// every [`DISK_RECHECK`], and ends only with the connection.
    async fn room_for(
        &self,
        conn: &Connection,
        message: &Message,
        artifact: &ArtifactRef,
    ) -> Result<UploadRoom, PullError> {
        let mut waiting = None;
        loop {
            let refusal = match self.deps.admission.check_upload(artifact.size) {
                Ok(room) => return Ok(room),
                Err(refusal) => refusal,
            };
            if waiting.is_none() {
                let deferred = ArtifactPullDeferred {
                    peer: &self.config.peer,
                    message_id: &message.envelope.message_id,
                    bucket: &artifact.bucket,
                    key: &artifact.key,
                    size: artifact.size,
                    reason: &refusal.message,
                };
                waiting = Some(deferred.begin(&self.deps.telemetry));
            }
            tokio::select! {
                () = tokio::time::sleep(DISK_RECHECK) => {}
                lost = conn.closed() => return Err(PullError::Stream(framed::StreamError::Connection(lost))),
            }
        }
    }

    fn skip(&self, message: &Message, skip: Skip, reason: &str) {
        self.deps.telemetry.emit(ArtifactSkipped {
            peer: &self.config.peer,
            message_id: &message.envelope.message_id,
            skip,
            reason,
        });
    }
}

/// Where a pulled artifact is stored: under the name the fact references. A reply about another
/// object, or with other content, is refused.
fn put_spec(artifact: &ArtifactRef, meta: ObjectMeta) -> Result<PutSpec, ObjectError> {
    let named = meta.bucket == artifact.bucket && meta.key == artifact.key;
    if !named || meta.digest != artifact.digest || meta.size != artifact.size {
        return Err(ObjectError::BadReference(format!(
            "asked for {}/{}, the peer answered {}/{} as {} ({} bytes); the fact references {} ({} bytes)",
            artifact.bucket,
            artifact.key,
            meta.bucket,
            meta.key,
            meta.digest,
            meta.size,
            artifact.digest,
            artifact.size
        )));
    }
    Ok(PutSpec {
        bucket: artifact.bucket.clone(),
        key: artifact.key.clone(),
        size: meta.size,
        media_type: meta.media_type.or_else(|| Some(artifact.media_type.clone())),
        origin: Origin::Peer {
            digest: artifact.digest,
        },
    })
}

/// Whether a failed retrieval is the link's doing: the call or the body's transfer broke or
/// stalled, rather than an answer or content the link carried intact. A body the peer itself
/// gave up on (`StreamCode::BodyFailed`: its blob could not be read whole) is the peer's.
fn lost_in_transfer(error: &PullError) -> bool {
    match error {
        PullError::Objects(ObjectError::Body(e)) => !failed_at_the_source(e),
        PullError::Stream(_) | PullError::Objects(ObjectError::Stalled(_) | ObjectError::Truncated { .. }) => true,
        _ => false,
    }
}

/// Whether a body's read failed because the sender reset the stream with `BodyFailed`.
fn failed_at_the_source(error: &std::io::Error) -> bool {
    let body_failed = quinn::VarInt::from_u32(StreamCode::BodyFailed.code());
    matches!(
        error.get_ref().and_then(|inner| inner.downcast_ref::<quinn::ReadError>()),
        Some(quinn::ReadError::Reset(code)) if *code == body_failed
    )
}

#[cfg(test)]
mod tests {
    use bsfg_proto::{ArtifactRef, ObjectDigest, ObjectMeta, StreamCode};

    use super::{lost_in_transfer, put_spec, PullError};
    use crate::objects::{ObjectError, Origin};

    /// What reading a body reports when the sender reset its stream with `code`.
    fn reset_with(code: u32) -> PullError {
        let reset = quinn::ReadError::Reset(quinn::VarInt::from_u32(code));
        PullError::Objects(ObjectError::Body(std::io::Error::from(reset)))
    }

    #[test]
    fn a_body_the_sender_gave_up_on_is_the_senders_failure_not_the_links() {
        assert!(!lost_in_transfer(&reset_with(StreamCode::BodyFailed.code())));
        assert!(
            lost_in_transfer(&reset_with(StreamCode::Unread.code())),
            "another reason"
        );
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(lost_in_transfer(&PullError::Objects(ObjectError::Body(broken))));
        assert!(lost_in_transfer(&PullError::Objects(ObjectError::Stalled(
            std::time::Duration::from_secs(30)
        ))));
        let refused = bsfg_proto::RpcError::new(bsfg_proto::ErrorCode::NotFound, "gone");
        assert!(!lost_in_transfer(&PullError::Remote(refused)), "an answer came");
    }

    fn artifact() -> ArtifactRef {
        ArtifactRef {
            bucket: "coa".into(),
            key: "batch-42.pdf".into(),
            digest: ObjectDigest::of(b"certificate"),
            size: 11,
            media_type: "application/pdf".into(),
            file_name: None,
        }
    }

    fn answer(bucket: &str, key: &str, content: &[u8]) -> ObjectMeta {
        ObjectMeta {
            bucket: bucket.into(),
            key: key.into(),
            digest: ObjectDigest::of(content),
            size: content.len() as u64,
            media_type: None,
        }
    }

    #[test]
    fn a_pulled_artifact_is_stored_under_the_referenced_name() {
        let spec = put_spec(&artifact(), answer("coa", "batch-42.pdf", b"certificate")).expect("accepted");
        assert_eq!(
            (spec.bucket.as_str(), spec.key.as_str(), spec.size),
            ("coa", "batch-42.pdf", 11)
        );
        assert_eq!(spec.media_type.as_deref(), Some("application/pdf"));
        assert!(matches!(spec.origin, Origin::Peer { digest } if digest == artifact().digest));
    }

    #[test]
    fn a_reply_about_another_object_or_other_content_is_refused() {
        for (bucket, key, content) in [
            ("coa", "other.pdf", &b"certificate"[..]),
            ("images", "batch-42.pdf", b"certificate"),
            ("coa", "batch-42.pdf", b"forged cert"),
            ("coa", "batch-42.pdf", b"certificate, longer"),
        ] {
            let refused = put_spec(&artifact(), answer(bucket, key, content));
            assert!(matches!(refused, Err(ObjectError::BadReference(_))), "{bucket}/{key}");
        }
    }
}
