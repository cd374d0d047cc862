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
//! one store-buffer hop and one share of a group commit per group instead of per fact. A group is
//! formed once the group before it is queued on the journal, which plans commands in the order
//! they were queued, so the facts of a stream are stored in the order of their frames; up to
//! [`IN_FLIGHT`] groups wait for their commits at once, and are answered in order.
//!
//! A frame the node cannot take — not an `AppendFact`, undecodable, or over
//! `limits.max_frame_bytes` (its body is skipped) — is answered with `INVALID_ARGUMENT` on its own,
//! and the frames after it are served. What ends the stream early: a frame cut short by the end of
//! the stream, part of a frame left without a byte for [`framed::REQUEST_TIMEOUT`], and a refusal
//! because the node drains or is an HA standby (the caller is to go elsewhere or later); frames
//! read before it are answered first. A caller that takes none of its answers for
//! [`framed::WRITE_PATIENCE`] has its stream reset (`StreamCode::Unread`): the facts stay
//! appended, and each is logged. Read-ahead and groups are bounded in frames and in bytes
//! (`limits.max_frame_bytes`, what one `AppendFacts` frame may carry), so a stream holds no more
//! than a call could.
//!
//! A drain ends every open stream: no more frames are read (those the caller sent meanwhile go
//! unanswered, and it sends them again elsewhere or later), the groups read are answered, and the
//! stream is finished. The drain waits until the caller acknowledged that end, so a node stopping
//! after its drain does not discard answers still on their way (as a lone call's answer).

use std::{collections::VecDeque, future::Future, pin::Pin, sync::Arc, time::Instant};

use bsfg_proto::{codec, rpc::MAX_APPEND_BATCH, FrameError, Message, Request, Response, RpcError, StreamCode};
use bytes::{Buf, BytesMut};
use futures::{stream::FuturesOrdered, StreamExt};
use quinn::{RecvStream, SendStream};

use super::{
    call::{Answer, Call, Details},
    caller::Caller,
    context::Context,
    dispatch,
    drain::InFlight,
    server,
};
use crate::{
    journal::AppendMode,
    store_buffer::{Outcomes, QueuedAppend},
    transport::framed,
};

/// Frames a stream holds, read ahead or in the groups being appended: beyond this (or
/// `limits.max_frame_bytes` of them) the stream is not read, and QUIC flow control holds the
/// producer back.
const READ_AHEAD: usize = 2 * MAX_APPEND_BATCH;
/// Largest piece taken from the stream at once.
const READ_CHUNK: usize = 64 << 10;
/// Groups of one stream queued on the journal and not yet answered. More than one, so that the
/// frames read while a group commits are queued at once and join the journal's next group commit
/// (with the other streams' groups) instead of waiting for this stream's turn (docs/performance.md).
const IN_FLIGHT: usize = 4;

/// A group on its way into the journal's queue.
type Queuing<'c> = Pin<Box<dyn Future<Output = Result<QueuedAppend, RpcError>> + Send + 'c>>;
/// A queued group, until its outcomes come.
type Answering<'c> = Pin<Box<dyn Future<Output = (Vec<Frame>, Result<Outcomes, RpcError>)> + Send + 'c>>;

/// One frame read: its fact, or why it is refused, and what its call will be logged with.
struct Frame {
    operation: &'static str,
    /// The frame's body length: what it holds of the read-ahead and of its group's budget.
    bytes: usize,
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
        pending_bytes: 0,
        held: 0,
        held_bytes: 0,
        buf: BytesMut::new(),
        skip: 0,
        stalled_since: None,
        ended: false,
        ctx: &ctx,
        caller,
    };
    // Counted before its first call is admitted: a drain raised meanwhile counts one or both.
    let open = ctx.deps.drain.open_stream();
    let drained = ctx.deps.drain.raised();
    tokio::pin!(drained);
    // The server judged `caller` by the client table when the stream was opened.
    let opened_by = stream.caller.clone();
    stream.take(Ok(first), 0, &opened_by, read_at);
    let mut queuing: Option<(Vec<Frame>, Queuing<'_>)> = None;
    let mut answering: FuturesOrdered<Answering<'_>> = FuturesOrdered::new();
    // Whether the caller stopped reading the answers (the stream is then reset, not finished).
    let mut unread = false;
    loop {
        if queuing.is_none() && answering.len() < IN_FLIGHT && !stream.pending.is_empty() {
            queuing = Some(stream.group());
        }
        if queuing.is_none() && answering.is_empty() && stream.ended {
            break;
        }
        let reading = !stream.ended && stream.has_room();
        let timeout = stream.stalled_since.map(|since| since + framed::REQUEST_TIMEOUT);
        tokio::select! {
            read = recv.read_chunk(READ_CHUNK, true), if reading => stream.read(read),
            () = &mut drained, if !stream.ended => {
                stream.ended = true;
                stream.stalled_since = None;
            }
            () = sleep_until(timeout), if reading && timeout.is_some() => {
                let error = framed::StreamError::Timeout(framed::REQUEST_TIMEOUT);
                stream.end_with(error.to_rpc(), Instant::now());
            }
            queued = async { match &mut queuing { Some((_, f)) => f.await, None => std::future::pending().await } },
                if queuing.is_some() =>
            {
                let (frames, _) = queuing.take().expect("the branch runs only while a group is queued");
                answering.push_back(answer_of(frames, queued));
            }
            Some((frames, outcomes)) = answering.next(), if !answering.is_empty() => {
                if let Err(e) = stream.answer(frames, outcomes, &mut send).await {
                    unread = matches!(e, framed::StreamError::Timeout(_));
                    break;
                }
                // Reading may resume: a partial frame's wait starts again, since it was not read meanwhile.
                stream.stalled_since = stream.stalled_since.map(|_| Instant::now());
            }
        }
    }
    // The connection is gone, or the caller stopped reading. The groups queued will still be
    // answered by the journal: each frame is logged with its outcome; what was read and never
    // appended is logged as failed, so no call goes unlogged.
    if let Some((frames, queuing)) = queuing {
        answering.push_back(answer_of(frames, queuing.await));
    }
    while let Some((frames, outcomes)) = answering.next().await {
        for (frame, answer) in stream.responses(frames, outcomes) {
            stream.log(&frame, &answer);
        }
    }
    stream.abandon();
    let _ = recv.stop(StreamCode::Done.code().into());
    if unread {
        // What the caller did not read would stay buffered for as long as the connection lives.
        let _ = send.reset(StreamCode::Unread.code().into());
    } else if framed::finish(&mut send).is_ok() {
        // Written is not delivered: the stream counts as open until the caller has it all.
        let _ = tokio::time::timeout(server::ANSWER_DELIVERY, send.stopped()).await;
    }
    drop(open);
}

/// The outcomes of a group, once the journal has answered it (or at once, if it was refused).
fn answer_of<'c>(frames: Vec<Frame>, queued: Result<QueuedAppend, RpcError>) -> Answering<'c> {
    Box::pin(async move {
        let outcomes = match queued {
            Ok(queued) => queued.outcomes().await,
            Err(refused) => Err(refused),
        };
        (frames, outcomes)
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

struct Stream<'c> {
    /// Frames read and not yet in a group, in their order, and their bytes.
    pending: VecDeque<Frame>,
    pending_bytes: usize,
    /// Frames of the groups being appended, and their bytes.
    held: usize,
    held_bytes: usize,
    /// Bytes read and not yet a whole frame.
    buf: BytesMut,
    /// Body bytes of a refused oversized frame still to be read and dropped.
    skip: usize,
    /// Since when `buf` (or a refused frame's body) has been waiting for bytes that do not come:
    /// the last read while part of a frame was held. Any bytes read are progress, so a large frame
    /// on a slow link is not taken for a caller that stopped.
    stalled_since: Option<Instant>,
    /// No more frames are read: the caller finished, or the stream is being ended.
    ended: bool,
    ctx: &'c Context,
    caller: Arc<Caller>,
}

impl<'c> Stream<'c> {
    /// Whether more frames may be read ahead of the groups being appended: those count too.
    fn has_room(&self) -> bool {
        self.pending.len() + self.held < READ_AHEAD
            && self.pending_bytes + self.held_bytes < self.ctx.config.max_frame_bytes
    }

    /// Takes what a read brought: whole frames go to `pending`.
    fn read(&mut self, read: Result<Option<quinn::Chunk>, quinn::ReadError>) {
        let now = Instant::now();
        match read {
            Ok(Some(mut chunk)) => {
                let skipped = self.skip.min(chunk.bytes.len());
                self.skip -= skipped;
                chunk.bytes.advance(skipped);
                self.buf.extend_from_slice(&chunk.bytes);
                // Judged by the client table of the moment: it may have been reloaded.
                let caller = self.ctx.deps.authorisations.refresh(&self.caller);
                while !self.ended {
                    let Some((frame, bytes)) = self.next_frame() else { break };
                    self.take(frame, bytes, &caller, now);
                }
                let partial = !self.buf.is_empty() || self.skip > 0;
                self.stalled_since = partial.then_some(now);
            }
            Ok(None) if self.buf.is_empty() && self.skip == 0 => self.ended = true,
            Ok(None) => {
                let header: Option<[u8; codec::HEADER_LEN]> =
                    self.buf.get(..codec::HEADER_LEN).and_then(|h| h.try_into().ok());
                let body = header.map_or(self.skip, |h| u32::from_be_bytes(h) as usize);
                let cut = FrameError::Truncated {
                    expected: codec::HEADER_LEN + body,
                    got: self.buf.len(),
                };
                self.end_with(framed::StreamError::from(cut).to_rpc(), now);
            }
            // The caller reset its side or the connection is gone: nothing more will be answered
            // either; the group being appended is logged as it finishes, the rest by `abandon`.
            Err(_) => self.ended = true,
        }
    }

    /// The next whole frame in `buf`, if one is there, and its body length. A frame over
    /// `limits.max_frame_bytes` is refused from its header alone, and its body is skipped.
    fn next_frame(&mut self) -> Option<(Result<Request, RpcError>, usize)> {
        let header: [u8; codec::HEADER_LEN] = self.buf.get(..codec::HEADER_LEN)?.try_into().ok()?;
        let len = match codec::body_len(header, self.ctx.config.max_frame_bytes) {
            Ok(len) => len,
            Err(e) => {
                let announced = u32::from_be_bytes(header) as usize;
                self.buf.advance(codec::HEADER_LEN);
                let here = announced.min(self.buf.len());
                self.buf.advance(here);
                self.skip = announced - here;
                return Some((Err(framed::StreamError::from(e).to_rpc()), 0));
            }
        };
        if self.buf.len() < codec::HEADER_LEN + len {
            return None;
        }
        self.buf.advance(codec::HEADER_LEN);
        let body = self.buf.split_to(len);
        let request = codec::decode_body(&body).map_err(|e| framed::StreamError::from(e).to_rpc());
        Some((request, len))
    }

    /// Admits one frame of `bytes` bytes of `caller` read at `read_at`, or refuses it.
    fn take(&mut self, request: Result<Request, RpcError>, bytes: usize, caller: &Caller, read_at: Instant) {
        let message = match request {
            Ok(Request::Append(r)) => r.message,
            Ok(other) => {
                let refusal = RpcError::invalid(format!(
                    "an append stream carries only AppendFact frames; got {}",
                    other.operation()
                ));
                return self.push(Frame::refused(refusal, read_at));
            }
            Err(e) => return self.push(Frame::refused(e, read_at)),
        };
        let ctx = self.ctx;
        let admitted = server::admit(caller, server::gate_closed(caller, &ctx.deps), ctx);
        // Draining, or no longer the active instance: the caller is to go elsewhere.
        self.ended |= admitted.is_err();
        self.push(Frame {
            operation: "append_fact",
            bytes,
            details: Details::capture_append(&message, ctx.config.audit),
            read_at,
            message: admitted.is_ok().then_some(message),
            admitted,
        });
    }

    fn push(&mut self, frame: Frame) {
        self.pending_bytes += frame.bytes;
        self.pending.push_back(frame);
    }

    /// Answers one frame with `refusal` and reads no more.
    fn end_with(&mut self, refusal: RpcError, read_at: Instant) {
        self.push(Frame::refused(refusal, read_at));
        self.ended = true;
        self.stalled_since = None;
    }

    /// Logs the frames read and never appended as failed calls.
    fn abandon(&mut self) {
        let lost = RpcError::unavailable("the append stream ended before this fact was appended");
        for frame in std::mem::take(&mut self.pending) {
            let answer = Answer::from(Response::Error(lost.clone()));
            self.log(&frame, &answer);
        }
    }

    fn log(&self, frame: &Frame, answer: &Answer) {
        let call = Call {
            caller: &self.caller,
            operation: frame.operation,
            facts: usize::from(frame.operation == "append_fact"),
            details: &frame.details,
            answer,
            took: frame.read_at.elapsed(),
        };
        call.emit(&self.ctx.deps.telemetry, self.ctx.config.audit);
    }

    /// The next group: the frames pending, up to [`MAX_APPEND_BATCH`] and `limits.max_frame_bytes`
    /// (at least one), and the queuing of those admitted on the journal.
    fn group(&mut self) -> (Vec<Frame>, Queuing<'c>) {
        let (mut n, mut bytes) = (0, 0);
        for frame in &self.pending {
            if n == MAX_APPEND_BATCH || (n > 0 && bytes + frame.bytes > self.ctx.config.max_frame_bytes) {
                break;
            }
            n += 1;
            bytes += frame.bytes;
        }
        self.pending_bytes -= bytes;
        (self.held, self.held_bytes) = (self.held + n, self.held_bytes + bytes);
        let mut frames: Vec<Frame> = self.pending.drain(..n).collect();
        let messages: Vec<Message> = frames.iter_mut().filter_map(|f| f.message.take()).collect();
        let (ctx, caller) = (self.ctx, self.ctx.deps.authorisations.refresh(&self.caller));
        let queuing: Queuing<'c> = match messages.is_empty() {
            true => Box::pin(std::future::ready(Ok(QueuedAppend::empty()))),
            false => {
                Box::pin(async move { dispatch::queue_append(messages, AppendMode::EachAlone, &caller, ctx).await })
            }
        };
        (frames, queuing)
    }

    /// Writes the answers of a group, in order, and logs each frame's call.
    async fn answer(
        &mut self,
        frames: Vec<Frame>,
        outcomes: Result<Outcomes, RpcError>,
        send: &mut SendStream,
    ) -> Result<(), framed::StreamError> {
        let answered = self.responses(frames, outcomes);
        let mut bytes = Vec::new();
        let mut encoded = Ok(());
        for (_, answer) in &answered {
            encoded = codec::encode_frame_into(answer, &mut bytes, self.ctx.config.max_frame_bytes);
            if encoded.is_err() {
                break;
            }
        }
        // An answer always fits; should one not, the stream ends here.
        let written = match encoded {
            Ok(()) => framed::write_bytes(send, &bytes).await,
            Err(e) => Err(e.into()),
        };
        for (frame, answer) in &answered {
            self.log(frame, answer);
        }
        written
    }

    /// The answer of each frame of a group, in order; the group no longer counts as held.
    fn responses(&mut self, frames: Vec<Frame>, outcomes: Result<Outcomes, RpcError>) -> Vec<(Frame, Answer)> {
        self.held -= frames.len();
        self.held_bytes -= frames.iter().map(|f| f.bytes).sum::<usize>();
        let mut outcomes = outcomes.map(Vec::into_iter);
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
            answered.push((frame, Answer::from(response)));
        }
        answered
    }
}

impl Frame {
    /// A frame refused before it was admitted, logged as an invalid call.
    fn refused(refusal: RpcError, read_at: Instant) -> Self {
        Self {
            operation: "invalid",
            bytes: 0,
            details: Details::default(),
            read_at,
            admitted: Err(refusal),
            message: None,
        }
    }
}
