//! The client's append stream: concurrent [`Client::append`](super::Client::append) calls go as
//! `AppendFact` frames pipelined on one QUIC stream per connection, so a producer that keeps
//! many single facts in flight pays neither a stream per fact nor any change to its code. The
//! node answers each frame in order, once its fact is durable (the wire contract:
//! docs/architecture.md, "Append streams").
//!
//! A writer task takes the frames waiting, as many as there are, and writes them at once; a
//! reader task hands each answer frame to the caller of the frame it answers, in order. When the
//! stream fails (a lost connection, a reset), every call waiting on it gets that error —
//! `UNAVAILABLE`, so a caller may send again, and an append is safe to send again (its
//! `message_id`) — and the next call opens a new stream. When the node ends the stream cleanly
//! (it drains, it refused a frame, it is an HA standby), it has answered every frame it read, so
//! the frames still waiting were not taken: they go again on a new stream, where the node says
//! why (`node is draining`) or serves them. So does a stream on which answers are owed but none has come for the client's answer
//! timeout (a node that holds its calls while the connection stays up): the reader looks a few
//! times per timeout, with one timer per stream, and only counts the time while an answer is owed.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use bsfg_actors::transport::framed::{self, StreamError};
use bsfg_proto::Response;
use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot};

/// Frames written at once, at most.
const WRITE_BATCH: usize = 256;
/// Frames waiting for the writer, at most; further callers wait for room.
const QUEUE: usize = 4096;
/// Streams a frame is offered to when each ended before writing it.
const UNSENT_TRIES: usize = 3;

type Answer = oneshot::Sender<Result<Response, StreamError>>;

/// One frame to write, and where its answer goes.
struct Pending {
    frame: Bytes,
    answer: Answer,
}

/// The append stream of the connection in use, opened at the first append on it.
pub(super) struct AppendStreams {
    current: Mutex<Option<Handle>>,
    /// How long answers may be owed without one coming before the stream is given up.
    answer_timeout: Duration,
}

struct Handle {
    /// The `stable_id` of the connection the stream is on.
    connection: usize,
    frames: mpsc::Sender<Pending>,
}

impl AppendStreams {
    pub(super) fn new(answer_timeout: Duration) -> Self {
        Self {
            current: Mutex::default(),
            answer_timeout,
        }
    }

    /// Sends one encoded `AppendFact` frame on `conn`'s append stream and waits for its answer.
    /// A frame that never left because its stream had just ended goes on a new stream.
    pub(super) async fn call(&self, conn: Connection, frame: Bytes) -> Result<Response, StreamError> {
        for _ in 0..UNSENT_TRIES {
            let (answer, answered) = oneshot::channel();
            let pending = Pending {
                frame: frame.clone(),
                answer,
            };
            if self.frames(&conn).send(pending).await.is_err() {
                continue;
            }
            // Dropped unanswered: the writer stopped before writing it.
            if let Ok(answer) = answered.await {
                return answer;
            }
        }
        Err(ended(&conn))
    }

    /// The writer of `conn`'s stream, started if there is none or the last one ended.
    fn frames(&self, conn: &Connection) -> mpsc::Sender<Pending> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = &*current {
            if handle.connection == conn.stable_id() && !handle.frames.is_closed() {
                return handle.frames.clone();
            }
        }
        let (frames, queued) = mpsc::channel(QUEUE);
        *current = Some(Handle {
            connection: conn.stable_id(),
            frames: frames.clone(),
        });
        tokio::spawn(run(conn.clone(), queued, self.answer_timeout));
        frames
    }
}

/// Opens the stream and writes what is queued until every sender is gone; the answers are read
/// by a task of their own. A stream the node does not let open within the answer timeout (it
/// holds as many calls as it lets streams open) fails the calls queued for it.
async fn run(conn: Connection, mut queued: mpsc::Receiver<Pending>, answer_timeout: Duration) {
    let opened = tokio::time::timeout(answer_timeout, conn.open_bi()).await;
    let (send, recv) = match opened {
        Ok(Ok(stream)) => stream,
        failed => {
            let error = match failed {
                Ok(Err(e)) => StreamError::from(e),
                _ => StreamError::Timeout(answer_timeout),
            };
            queued.close();
            while let Some(pending) = queued.recv().await {
                let _ = pending.answer.send(Err(again(&error)));
            }
            return;
        }
    };
    let (waiting, answers) = mpsc::unbounded_channel();
    tokio::spawn(read_answers(recv, answers, answer_timeout));
    write_frames(send, queued, waiting).await;
}

async fn write_frames(
    mut send: SendStream,
    mut queued: mpsc::Receiver<Pending>,
    waiting: mpsc::UnboundedSender<Answer>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut frames = Vec::with_capacity(WRITE_BATCH);
    loop {
        tokio::select! {
            taken = queued.recv_many(&mut batch, WRITE_BATCH) => if taken == 0 {
                let _ = framed::finish(&mut send);
                return;
            },
            // The reader is done: the node ended the stream, or it failed. The frames still
            // queued are dropped unwritten, and their callers offer them to a new stream.
            () = waiting.closed() => return,
        }
        for Pending { frame, answer } in batch.drain(..) {
            // Queued before the frame is written, so its answer always finds it.
            if waiting.send(answer).is_err() {
                return;
            }
            frames.push(frame);
        }
        if send.write_all_chunks(&mut frames).await.is_err() {
            // The reader learns what happened from its side of the stream and answers the
            // frames written.
            return;
        }
        frames.clear();
    }
}

/// Matches answer frames to the frames' callers in order; when the stream ends or fails, or
/// answers are owed and none comes for `timeout`, every caller still waiting gets the reason.
async fn read_answers(mut recv: RecvStream, mut answers: mpsc::UnboundedReceiver<Answer>, timeout: Duration) {
    let mut looks = tokio::time::interval((timeout / 4).max(Duration::from_millis(10)));
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let error = loop {
        let read = framed::read_frame::<Response>(&mut recv, super::CLIENT_MAX_FRAME);
        tokio::pin!(read);
        // Since when an answer has been owed without one coming.
        let mut owed_since = None;
        let read = loop {
            tokio::select! {
                read = &mut read => break read,
                _ = looks.tick() => {
                    let since = match answers.is_empty() {
                        true => None,
                        false => Some(*owed_since.get_or_insert_with(Instant::now)),
                    };
                    owed_since = since;
                    if since.is_some_and(|since| since.elapsed() >= timeout) {
                        break Err(StreamError::Timeout(timeout));
                    }
                }
            }
        };
        let response = match read {
            Ok(response) => response,
            Err(e) => break e,
        };
        match answers.recv().await {
            Some(answer) => {
                let _ = answer.send(Ok(response));
            }
            None => break StreamError::Stream("the node answered a frame that was never sent".into()),
        }
    };
    answers.close();
    // The node answers every frame it read before it ends a stream (it drains, it refused one,
    // it is a standby): a clean end between frames means it took none of the frames still
    // waiting. Their callers send them again on a new stream, and learn there why (or are
    // served). A frame it may have taken (a lost connection, a reset) fails with the reason.
    // Should a stopping node's task be cut off after a drain's grace (its stream then ends as
    // if cleanly), a frame it took is answered again on the new stream, as a duplicate.
    let untaken = matches!(error, StreamError::Ended);
    while let Some(answer) = answers.recv().await {
        if !untaken {
            let _ = answer.send(Err(again(&error)));
        }
    }
}

/// The error a caller gets when its frame was queued on streams that each ended first: the
/// connection's own reason when it is closed (a certificate the node refused after the handshake
/// arrives so, and must read as that, not as a stream that went away), else that the streams ended.
fn ended(conn: &Connection) -> StreamError {
    match conn.close_reason() {
        Some(reason) => StreamError::Connection(reason),
        None => StreamError::Stream("the append stream ended before this fact was answered".into()),
    }
}

/// `error` again, for the next caller: a lost connection stays one (its TLS alert, if any, tells
/// a refused certificate), anything else keeps its text.
fn again(error: &StreamError) -> StreamError {
    match error {
        StreamError::Connection(e) => StreamError::Connection(e.clone()),
        other => StreamError::Stream(other.to_string()),
    }
}
