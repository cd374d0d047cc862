//! Append streams: many `AppendFact` frames pipelined on one bidirectional stream (issue 18).
//!
//! A stream whose first frame is an `AppendFact` may carry more of them: the node reads frames
//! until the caller finishes its side of the stream, and answers each with one response frame
//! (`Append` or `Error`), in the order of the requests, once its fact is durable. A lone
//! `AppendFact` is the stream of one frame, so callers that send one call per stream are served
//! as before.
//!
//! Each frame is a call of its own: admitted (drain, standby), authorised by the client table of
//! the moment, counted and logged — one audit line per fact — exactly as a lone `AppendFact`. What
//! the stream saves is the rest: the frames that arrive while a group is being appended form the
//! next group, one [`store_buffer::Append`](crate::store_buffer::Append) of up to
//! [`MAX_APPEND_BATCH`] facts, so a producer that keeps many facts in flight pays one QUIC stream,
//! one store-buffer hop and one share of a group commit per group instead of per fact. One group
//! is in flight at a time, so the facts of a stream are stored in the order of their frames.
//!
//! A frame that cannot be read (malformed, over `limits.max_frame_bytes`, cut short, or half a
//! frame left for [`framed::REQUEST_TIMEOUT`]) or that is not an `AppendFact` is answered with
//! `INVALID_ARGUMENT` and ends the stream; so does a refusal because the node drains or is an HA
//! standby. Frames read before it are answered first.

use std::{collections::VecDeque, future::Future, pin::Pin, sync::Arc, time::Instant};

use bsfg_proto::{codec, rpc::MAX_APPEND_BATCH, FrameError, Message, Request, Response, RpcError, StreamCode};
use bytes::{Buf, BytesMut};
use quinn::{RecvStream, SendStream};

use super::{
    call::{Answer, Call, Details},
    caller::Caller,
    context::Context,
    dispatch,
    drain::InFlight,
    server,
};
use crate::{journal::AppendMode, store_buffer::Outcomes, transport::framed};

/// Frames read ahead of the group being appended: beyond this the stream is not read, and QUIC
/// flow control holds the producer back.
const READ_AHEAD: usize = 2 * MAX_APPEND_BATCH;
/// Largest piece taken from the stream at once.
const READ_CHUNK: usize = 64 << 10;

type Appending<'c> = Pin<Box<dyn Future<Output = Result<Outcomes, RpcError>> + Send + 'c>>;

/// One frame read: its fact, or why it is refused, and what its call will be logged with.
struct Frame {
    operation: &'static str,
    details: Details,
    read_at: Instant,
    /// Admitted (held as a client call in flight while the node drains), or refused.
    admitted: Result<Option<InFlight>, RpcError>,
    /// The fact of an admitted frame, until its group takes it.
    message: Option<Message>,
}

/// Serves an append stream whose first frame, `first`, was read at `read_at`.
pub(super) async fn serve(
    first: Request,
    read_at: Instant,
    mut send: SendStream,
    mut recv: RecvStream,
    caller: Arc<Caller>,
    ctx: Arc<Context>,
) {
    let mut stream = Stream {
        pending: VecDeque::new(),
        buf: BytesMut::new(),
        partial_since: None,
        ended: false,
        ctx: &ctx,
        caller,
    };
    // The server judged `caller` by the client table when the stream was opened.
    let opened_by = stream.caller.clone();
    stream.take(Ok(first), &opened_by, read_at);
    let mut appending: Option<(Vec<Frame>, Appending<'_>)> = None;
    loop {
        if appending.is_none() && !stream.pending.is_empty() {
            appending = Some(stream.group());
        }
        if appending.is_none() && stream.ended {
            break;
        }
        let timeout = stream.partial_since.map(|since| since + framed::REQUEST_TIMEOUT);
        tokio::select! {
            read = recv.read_chunk(READ_CHUNK, true), if !stream.ended && stream.pending.len() < READ_AHEAD => {
                stream.read(read);
            }
            _ = sleep_until(timeout), if !stream.ended && timeout.is_some() => {
                let error = framed::StreamError::Timeout(framed::REQUEST_TIMEOUT);
                stream.refuse("invalid", error.to_rpc(), Instant::now());
            }
            outcomes = async { match &mut appending { Some((_, f)) => f.await, None => std::future::pending().await } },
                if appending.is_some() =>
            {
                let (frames, _) = appending.take().expect("the branch runs only while a group is appended");
                if stream.answer(frames, outcomes, &mut send).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = recv.stop(StreamCode::Done.code().into());
    let _ = framed::finish(&mut send);
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

struct Stream<'c> {
    /// Frames read and not yet in a group, in their order.
    pending: VecDeque<Frame>,
    /// Bytes read and not yet a whole frame.
    buf: BytesMut,
    /// Since when `buf` has held part of a frame.
    partial_since: Option<Instant>,
    /// No more frames are read: the caller finished, or the stream is being ended.
    ended: bool,
    ctx: &'c Context,
    caller: Arc<Caller>,
}

impl<'c> Stream<'c> {
    /// Takes what a read brought: whole frames go to `pending`.
    fn read(&mut self, read: Result<Option<quinn::Chunk>, quinn::ReadError>) {
        let now = Instant::now();
        match read {
            Ok(Some(chunk)) => {
                self.buf.extend_from_slice(&chunk.bytes);
                // Judged by the client table of the moment: it may have been reloaded.
                let caller = self.ctx.deps.authorisations.refresh(&self.caller);
                while !self.ended {
                    match self.next_frame() {
                        Some(frame) => {
                            let frame = frame.map_err(|e| framed::StreamError::from(e).to_rpc());
                            self.take(frame, &caller, now)
                        }
                        None => break,
                    }
                }
                self.partial_since = match self.buf.is_empty() {
                    true => None,
                    false => self.partial_since.or(Some(now)),
                };
            }
            Ok(None) if self.buf.is_empty() => self.ended = true,
            Ok(None) => {
                let header: Option<[u8; codec::HEADER_LEN]> =
                    self.buf.get(..codec::HEADER_LEN).and_then(|h| h.try_into().ok());
                let body = header.and_then(|h| codec::body_len(h, usize::MAX).ok());
                let cut = FrameError::Truncated {
                    expected: codec::HEADER_LEN + body.unwrap_or(0),
                    got: self.buf.len(),
                };
                self.refuse("invalid", framed::StreamError::from(cut).to_rpc(), now);
            }
            // The caller reset its side or the connection is gone: nothing more will be answered
            // either, but the frames already read were appended and are logged as they finish.
            Err(_) => self.ended = true,
        }
    }

    /// The next whole frame in `buf`, if one is there.
    fn next_frame(&mut self) -> Option<Result<Request, FrameError>> {
        let header: [u8; codec::HEADER_LEN] = self.buf.get(..codec::HEADER_LEN)?.try_into().ok()?;
        let len = match codec::body_len(header, self.ctx.config.max_frame_bytes) {
            Ok(len) => len,
            Err(e) => return Some(Err(e)),
        };
        if self.buf.len() < codec::HEADER_LEN + len {
            return None;
        }
        self.buf.advance(codec::HEADER_LEN);
        Some(codec::decode_body(&self.buf.split_to(len)))
    }

    /// Admits one frame of `caller` read at `read_at`, or refuses it.
    fn take(&mut self, request: Result<Request, RpcError>, caller: &Caller, read_at: Instant) {
        let message = match request {
            Ok(Request::Append(r)) => r.message,
            Ok(other) => {
                let refusal = RpcError::invalid(format!(
                    "an append stream carries only AppendFact frames; got {}",
                    other.operation()
                ));
                return self.refuse(other.operation(), refusal, read_at);
            }
            Err(e) => return self.refuse("invalid", e, read_at),
        };
        let ctx = self.ctx;
        let admitted = server::admit(caller, server::gate_closed(caller, &ctx.deps), ctx);
        // Draining, or no longer the active instance: the caller is to go elsewhere.
        self.ended |= admitted.is_err();
        self.pending.push_back(Frame {
            operation: "append_fact",
            details: Details::capture_append(&message, ctx.config.audit),
            read_at,
            message: admitted.is_ok().then_some(message),
            admitted,
        });
    }

    /// Answers one frame with `refusal` and reads no more.
    fn refuse(&mut self, operation: &'static str, refusal: RpcError, read_at: Instant) {
        self.pending.push_back(Frame {
            operation,
            details: Details::default(),
            read_at,
            admitted: Err(refusal),
            message: None,
        });
        self.ended = true;
        self.partial_since = None;
    }

    /// The next group: the frames pending, up to [`MAX_APPEND_BATCH`], and the append of those
    /// admitted.
    fn group(&mut self) -> (Vec<Frame>, Appending<'c>) {
        let n = self.pending.len().min(MAX_APPEND_BATCH);
        let mut frames: Vec<Frame> = self.pending.drain(..n).collect();
        let messages: Vec<Message> = frames.iter_mut().filter_map(|f| f.message.take()).collect();
        let (ctx, caller) = (self.ctx, self.ctx.deps.authorisations.refresh(&self.caller));
        let appending: Appending<'c> = match messages.is_empty() {
            true => Box::pin(std::future::ready(Ok(Vec::new()))),
            false => Box::pin(async move { dispatch::append(messages, AppendMode::EachAlone, &caller, ctx).await }),
        };
        (frames, appending)
    }

    /// Writes the answers of a group, in order, and logs each frame's call.
    async fn answer(
        &self,
        frames: Vec<Frame>,
        outcomes: Result<Outcomes, RpcError>,
        send: &mut SendStream,
    ) -> Result<(), framed::StreamError> {
        let (deps, config) = (&self.ctx.deps, &self.ctx.config);
        let mut outcomes = outcomes.map(Vec::into_iter);
        let mut bytes = Vec::new();
        let mut answered = Vec::with_capacity(frames.len());
        for frame in frames {
            let response = match (&frame.admitted, &mut outcomes) {
                (Err(refusal), _) => Response::Error(refusal.clone()),
                // Admitted frames took their outcomes in order: a group's are in its frames' order.
                (Ok(_), Err(whole)) => Response::Error(whole.clone()),
                (Ok(_), Ok(each)) => match each.next() {
                    Some(Ok(ack)) => Response::Append(ack),
                    Some(Err(e)) => Response::Error(e),
                    None => Response::Error(RpcError::internal("no outcome")),
                },
            };
            let answer = Answer::from(response);
            if let Err(e) = codec::encode_frame_into(&answer, &mut bytes, config.max_frame_bytes) {
                // An answer always fits; should one not, the stream ends here.
                return Err(e.into());
            }
            answered.push((frame, answer));
        }
        let written = send.write_all(&bytes).await;
        for (frame, answer) in answered {
            let call = Call {
                caller: &self.caller,
                operation: frame.operation,
                facts: 1,
                details: &frame.details,
                answer: &answer,
                took: frame.read_at.elapsed(),
            };
            call.emit(&deps.telemetry, config.audit);
        }
        written.map_err(|e| framed::StreamError::Stream(e.to_string()))
    }
}
