//! `PutObject` and `GetObject` calls: who may make them, and the raw bodies that travel around
//! their frames (after the request for a put, after the response for a get).

use bsfg_proto::{object, GetObjectFromRequest, PutObjectRequest, Response, RpcError, StreamCode};
use quinn::{RecvStream, SendStream};

use super::{
    call::Answer,
    caller::{authorise, Caller, Role},
    context::Context,
};
use crate::{
    events::{ArtifactDamaged, Telemetry},
    objects::{is_damaged, ObjectError, Origin, PutSpec, VerifiedBlob},
    transport::{framed, pacing::Pacer},
};

/// The blob streamed after a `GetObject` response.
pub(super) struct Body {
    file: VerifiedBlob,
    size: u64,
}

/// Needs the `produce` role, and room on the disk beside what storage needs. The body is read
/// from the caller's stream while it is stored.
pub(super) async fn put(
    r: PutObjectRequest,
    caller: &Caller,
    ctx: &Context,
    recv: &mut RecvStream,
) -> Result<Response, RpcError> {
    authorise(caller, Role::Produce, &ctx.config.zone)?;
    let spec = PutSpec {
        bucket: r.bucket,
        key: r.key,
        size: r.size,
        media_type: r.media_type,
        origin: Origin::Producer,
    };
    // An object that can never be stored is refused as such before the disk's room is asked
    // about: that refusal is retryable, and a retry would never succeed.
    ctx.deps.objects.check(&spec)?;
    let _room = ctx.deps.admission.check_upload(spec.size)?;
    let meta = ctx.deps.objects.receive(spec, recv, framed::REQUEST_TIMEOUT).await?;
    Ok(Response::PutObject(meta))
}

/// Needs the `consume` role, or is a peer whose zone a fact referencing the object is addressed
/// to: a peer never reads artifacts of facts addressed to another zone. The body is the blob's
/// bytes from `r.offset` on; the answer names the whole artifact. A blob found damaged is logged
/// (`artifact_damaged`) as well as refused.
pub(super) async fn get(r: GetObjectFromRequest, caller: &Caller, ctx: &Context) -> Result<(Response, Body), RpcError> {
    if !matches!(caller, Caller::Peer(_)) {
        authorise(caller, Role::Consume, &ctx.config.zone)?;
    }
    object::check_bucket(&r.bucket).map_err(|e| RpcError::invalid(e.to_string()))?;
    object::check_key(&r.key).map_err(|e| RpcError::invalid(e.to_string()))?;
    let opened = ctx.deps.objects.open_blob(&r.bucket, &r.key, r.offset).await;
    if let Err(damaged @ ObjectError::Damaged { .. }) = &opened {
        // Missing, of another size, or (from an offset at its end) of other content.
        ctx.deps.telemetry.emit(ArtifactDamaged { error: damaged });
    }
    let (meta, entry, file) = opened?;
    if let Caller::Peer(zone) = caller {
        if !entry.referenced_by.contains(zone) {
            return Err(RpcError::denied(format!(
                "object {}/{} is not referenced by a fact addressed to zone {zone:?}",
                r.bucket, r.key
            )));
        }
    }
    let size = meta.size - r.offset;
    Ok((Response::GetObject(meta), Body { file, size }))
}

/// Writes the response frame, then the body if there is one, at the rate of `pacer` (a peer's
/// `max_bytes_per_second`), and finishes the stream; `false` if it could not (the stream is
/// then left unfinished or reset, and no acknowledgement of the answer will come). A caller
/// that stops reading for [`framed::WRITE_PATIENCE`] gets its stream reset (`Unread`), so the
/// answer is not held for as long as its connection lives. A blob whose bytes turn out not to be
/// its digest's is reset before its last bytes (`BodyFailed`) and logged (`artifact_damaged`).
pub(super) async fn respond(
    send: &mut SendStream,
    answer: &Answer,
    body: Option<Body>,
    (max_frame_bytes, pacer): (usize, &Pacer),
    telemetry: &Telemetry,
) -> bool {
    match framed::send_frame_paced(send, answer, max_frame_bytes, pacer).await {
        Ok(()) => {}
        Err(framed::StreamError::Timeout(_)) => {
            let _ = send.reset(StreamCode::Unread.code().into());
            return false;
        }
        Err(e) => {
            let fallback = Response::Error(RpcError::internal(format!("response could not be sent: {e}")));
            let _ = framed::write_frame(send, &fallback, max_frame_bytes).await;
            return false;
        }
    }
    if let Some(mut body) = body {
        if let Err(e) = framed::send_body(send, &mut body.file, body.size, |_| {}, pacer).await {
            // The reader sees a reset stream, never a short body it could take for a whole one.
            let code = match e {
                framed::StreamError::Timeout(_) => StreamCode::Unread,
                framed::StreamError::Source(e) if is_damaged(&e) => {
                    telemetry.emit(ArtifactDamaged { error: &e });
                    StreamCode::BodyFailed
                }
                _ => StreamCode::BodyFailed,
            };
            let _ = send.reset(code.code().into());
            return false;
        }
    }
    framed::finish(send).is_ok()
}
