//! Frames on QUIC streams: one request and one response per bidirectional stream (SPEC §3), or
//! many `AppendFact` requests and their responses on an append stream (`rpc::append_stream`).
//!
//! `PutObject` requests and `GetObject` responses are a frame followed on the same stream by a
//! raw body of exactly the announced size. Bodies move in chunks of at most [`BODY_CHUNK`] bytes
//! and are never held whole in memory; QUIC flow control bounds what is buffered in between.

use std::time::Duration;

use bsfg_proto::{codec, ErrorCode, FrameError, Request, Response, RpcError, StreamCode};
use quinn::{Connection, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::pacing::Pacer;

/// Largest piece written at once when writes are paced: a fifth of a second of a 100 KiB/s link.
const PACED_CHUNK: usize = 16 << 10;

/// How long a caller's request may go without a byte (first and between): a large request on a
/// slow link takes as long as it needs while its bytes keep coming.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest piece of a raw body read or written at once.
pub const BODY_CHUNK: usize = 64 << 10;

/// How long a write may wait for the reader to take any byte of it (QUIC flow control holds a
/// writer whose reader does not read): a reader that takes nothing for this long is not reading,
/// and waiting on would hold its answer, and the memory it takes, for as long as the connection
/// lives. As long as the callers wait for an answer's next byte.
pub const WRITE_PATIENCE: Duration = Duration::from_secs(60);

/// Why a frame could not be read or a call could not complete.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("stream closed after {got} of {expected} bytes")]
    Truncated { expected: usize, got: usize },
    /// The stream ended cleanly where a frame could have begun: no frame was cut.
    #[error("stream ended before another frame")]
    Ended,
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream failed: {0}")]
    Stream(String),
    #[error("no data within {0:?}")]
    Timeout(Duration),
    #[error("cannot read the body to send: {0}")]
    Source(std::io::Error),
}

impl StreamError {
    /// The wire error a caller gets when its request could not be read.
    pub fn to_rpc(&self) -> RpcError {
        match self {
            Self::Frame(FrameError::TooLarge { .. }) => RpcError::frame_too_large(self),
            Self::Frame(_) | Self::Truncated { .. } | Self::Ended => RpcError::invalid(self.to_string()),
            // The caller's bytes stopped coming: its link, not its request, is at fault.
            Self::Timeout(_) | Self::Connection(_) | Self::Stream(_) | Self::Source(_) => {
                RpcError::new(ErrorCode::Unavailable, self.to_string())
            }
        }
    }
}

/// Reads one frame and decodes it; a header announcing more than `max_frame_bytes` is refused
/// before any body byte is read.
pub async fn read_frame<T: bincode::Decode<()>>(
    recv: &mut RecvStream,
    max_frame_bytes: usize,
) -> Result<T, StreamError> {
    let mut header = [0u8; codec::HEADER_LEN];
    read_exact(recv, &mut header).await.map_err(|e| match e {
        StreamError::Truncated { got: 0, .. } => StreamError::Ended,
        other => other,
    })?;
    let len = codec::body_len(header, max_frame_bytes)?;
    let mut body = vec![0u8; len];
    read_exact(recv, &mut body).await?;
    Ok(codec::decode_body(&body)?)
}

async fn read_exact(recv: &mut RecvStream, buf: &mut [u8]) -> Result<(), StreamError> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(got) => StreamError::Truncated {
            expected: buf.len(),
            got,
        },
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => StreamError::Connection(c),
        quinn::ReadExactError::ReadError(other) => StreamError::Stream(other.to_string()),
    })
}

/// Encodes `value` as one frame, writes it and finishes the stream.
pub async fn write_frame<T: bincode::Encode>(
    send: &mut SendStream,
    value: &T,
    max_frame_bytes: usize,
) -> Result<(), StreamError> {
    send_frame(send, value, max_frame_bytes).await?;
    finish(send)
}

/// Encodes `value` as one frame and writes it, leaving the stream open for a raw body.
pub async fn send_frame<T: bincode::Encode>(
    send: &mut SendStream,
    value: &T,
    max_frame_bytes: usize,
) -> Result<(), StreamError> {
    send_frame_paced(send, value, max_frame_bytes, &Pacer::default()).await
}

/// [`send_frame`] in pieces at the rate of `pacer`.
pub async fn send_frame_paced<T: bincode::Encode>(
    send: &mut SendStream,
    value: &T,
    max_frame_bytes: usize,
    pacer: &Pacer,
) -> Result<(), StreamError> {
    let frame = codec::encode_frame(value, max_frame_bytes)?;
    write_paced(send, &frame, pacer).await
}

/// Writes `bytes`, giving up with [`StreamError::Timeout`] when the reader takes no byte of it
/// for [`WRITE_PATIENCE`] (the caller then resets the stream with `StreamCode::Unread`).
pub async fn write_bytes(send: &mut SendStream, bytes: &[u8]) -> Result<(), StreamError> {
    write_paced(send, bytes, &Pacer::default()).await
}

/// Writes `bytes` in pieces of at most [`BODY_CHUNK`] (with a limited `pacer`, of
/// [`PACED_CHUNK`], each paced), waiting at most [`WRITE_PATIENCE`] for the reader to take a
/// byte.
async fn write_paced(send: &mut SendStream, bytes: &[u8], pacer: &Pacer) -> Result<(), StreamError> {
    write_patiently(send, bytes, pacer, WRITE_PATIENCE).await
}

/// [`write_paced`], giving up once the reader took no byte at all for `patience`: any byte it
/// takes starts the wait again, so the slowest link that moves never trips it. The pacer's own
/// waits do not count.
async fn write_patiently(
    send: &mut SendStream,
    bytes: &[u8],
    pacer: &Pacer,
    patience: Duration,
) -> Result<(), StreamError> {
    let piece = match pacer.rate() {
        Some(_) => PACED_CHUNK,
        None => BODY_CHUNK,
    };
    for chunk in bytes.chunks(piece) {
        pacer.pace(chunk.len()).await;
        let mut rest = chunk;
        while !rest.is_empty() {
            let written = tokio::time::timeout(patience, send.write(rest))
                .await
                .map_err(|_| StreamError::Timeout(patience))?;
            let taken = written.map_err(|e| match e {
                // The connection's own error, so a refusal of our certificate (a TLS alert the
                // node sends after we think the handshake done) is told from a lost link.
                quinn::WriteError::ConnectionLost(c) => StreamError::Connection(c),
                other => StreamError::Stream(other.to_string()),
            })?;
            rest = &rest[taken..];
        }
    }
    Ok(())
}

pub fn finish(send: &mut SendStream) -> Result<(), StreamError> {
    send.finish().map_err(|e| StreamError::Stream(e.to_string()))
}

/// Writes exactly `size` bytes read from `source`, chunk by chunk, at the rate of `pacer`;
/// `progress` is told the length of every chunk sent. A source that ends early is an error.
pub async fn send_body(
    send: &mut SendStream,
    source: &mut (impl AsyncRead + Unpin),
    size: u64,
    mut progress: impl FnMut(usize),
    pacer: &Pacer,
) -> Result<(), StreamError> {
    let mut buf = vec![0u8; BODY_CHUNK];
    let mut remaining = size;
    while remaining > 0 {
        let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let got = source.read(&mut buf[..want]).await.map_err(StreamError::Source)?;
        if got == 0 {
            let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{remaining} bytes short"));
            return Err(StreamError::Source(eof));
        }
        write_paced(send, &buf[..got], pacer).await?;
        remaining -= got as u64;
        progress(got);
    }
    Ok(())
}

/// Reads the raw body that follows a frame: exactly the announced size, in chunks of at most
/// [`BODY_CHUNK`] bytes.
#[derive(Debug)]
pub struct BodyReader {
    size: u64,
    remaining: u64,
    /// How long a read may bring no byte before the body counts as stalled.
    between: Duration,
}

impl BodyReader {
    /// A body of `size` bytes, each read of which may wait at most `between` for a byte.
    pub fn new(size: u64, between: Duration) -> Self {
        Self {
            size,
            remaining: size,
            between,
        }
    }

    /// The next chunk, or `None` once the whole body was read. A stream that ends early is
    /// [`StreamError::Truncated`]; one that brings nothing for `between`, [`StreamError::Timeout`].
    pub async fn next(&mut self, recv: &mut RecvStream) -> Result<Option<Vec<u8>>, StreamError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let want = BODY_CHUNK.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = tokio::time::timeout(self.between, recv.read_chunk(want, true))
            .await
            .map_err(|_| StreamError::Timeout(self.between))?;
        let chunk = read.map_err(|e| match e {
            quinn::ReadError::ConnectionLost(c) => StreamError::Connection(c),
            other => StreamError::Stream(other.to_string()),
        })?;
        let Some(chunk) = chunk else {
            return Err(StreamError::Truncated {
                expected: usize::try_from(self.size).unwrap_or(usize::MAX),
                got: usize::try_from(self.size - self.remaining).unwrap_or(usize::MAX),
            });
        };
        self.remaining -= chunk.bytes.len() as u64;
        Ok(Some(chunk.bytes.to_vec()))
    }
}

/// How long a caller waits on an answer that makes no progress: `first` for its first byte (the
/// node may long-poll before answering), `between` for each later byte. An answer whose bytes
/// keep arriving is waited for however long it takes, so a slow link is never mistaken for a
/// dead one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    pub first: Duration,
    pub between: Duration,
}

/// A response, and the size of its frame on the wire.
#[derive(Debug)]
pub struct Answered {
    pub response: Response,
    pub frame_bytes: usize,
}

/// [`call_for_body`] that waits on the answer with `patience` instead of without limit, and on
/// its stream for `patience.first`: a peer that holds as many calls as it lets stream open
/// grants no more until it answers one.
pub async fn patient_call(
    conn: &Connection,
    request: &Request,
    max_frame_bytes: usize,
    patience: Patience,
) -> Result<(Answered, RecvStream), StreamError> {
    let opened = tokio::time::timeout(patience.first, conn.open_bi()).await;
    let (mut send, mut recv) = opened.map_err(|_| StreamError::Timeout(patience.first))??;
    let sent = write_frame(&mut send, request, max_frame_bytes).await;
    match (sent, read_patiently(&mut recv, max_frame_bytes, patience).await) {
        (_, Ok(answered)) => Ok((answered, recv)),
        (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
    }
}

async fn read_patiently(
    recv: &mut RecvStream,
    max_frame_bytes: usize,
    patience: Patience,
) -> Result<Answered, StreamError> {
    let (response, frame_bytes) = read_frame_patiently(recv, max_frame_bytes, patience).await?;
    Ok(Answered { response, frame_bytes })
}

/// Reads one frame and decodes it, waiting `patience.first` for its first byte and
/// `patience.between` for each later one (a large frame on a slow link takes as long as it takes
/// while bytes keep coming); returns it with its size on the wire.
pub async fn read_frame_patiently<T: bincode::Decode<()>>(
    recv: &mut RecvStream,
    max_frame_bytes: usize,
    patience: Patience,
) -> Result<(T, usize), StreamError> {
    let mut wait = patience.first;
    let mut header = [0u8; codec::HEADER_LEN];
    fill_patiently(recv, &mut header, &mut wait, patience.between).await?;
    let len = codec::body_len(header, max_frame_bytes)?;
    let mut body = vec![0u8; len];
    fill_patiently(recv, &mut body, &mut wait, patience.between).await?;
    Ok((codec::decode_body(&body)?, codec::HEADER_LEN + len))
}

async fn fill_patiently(
    recv: &mut RecvStream,
    buf: &mut [u8],
    wait: &mut Duration,
    between: Duration,
) -> Result<(), StreamError> {
    let mut filled = 0;
    while filled < buf.len() {
        let read = tokio::time::timeout(*wait, recv.read(&mut buf[filled..]))
            .await
            .map_err(|_| StreamError::Timeout(*wait))?;
        match read {
            Ok(Some(n)) => filled += n,
            Ok(None) => {
                return Err(StreamError::Truncated {
                    expected: buf.len(),
                    got: filled,
                })
            }
            Err(quinn::ReadError::ConnectionLost(c)) => return Err(StreamError::Connection(c)),
            Err(other) => return Err(StreamError::Stream(other.to_string())),
        }
        *wait = between;
    }
    Ok(())
}

/// A call whose response may be followed by a raw body (`GetObject`): the stream is returned
/// so the caller can read it with a [`BodyReader`]. The answer is waited for with `patience`.
pub async fn call_for_body(
    conn: &Connection,
    request: &Request,
    max_frame_bytes: usize,
    patience: Patience,
) -> Result<(Response, RecvStream), StreamError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let sent = write_frame(&mut send, request, max_frame_bytes).await;
    let response = answer(sent, &mut recv, max_frame_bytes, patience).await?;
    Ok((response, recv))
}

/// A call whose request frame is followed by a raw body of `size` bytes read from `source`
/// (`PutObject`). A node that refuses the call before the body is through still gets its answer
/// read; the answer is waited for with `patience`.
pub async fn call_with_body(
    conn: &Connection,
    request: &Request,
    source: &mut (impl AsyncRead + Unpin),
    size: u64,
    progress: impl FnMut(usize),
    max_frame_bytes: usize,
    patience: Patience,
) -> Result<Response, StreamError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let sent = async {
        send_frame(&mut send, request, max_frame_bytes).await?;
        send_body(&mut send, source, size, progress, &Pacer::default()).await?;
        finish(&mut send)
    }
    .await;
    if let Err(unread @ StreamError::Source(_)) = sent {
        // The body could not be read whole (the file shrank, a read failed): the node hears it at
        // once and drops what it received, instead of waiting for bytes that never come.
        let _ = send.reset(StreamCode::BodyFailed.code().into());
        return Err(unread);
    }
    answer(sent, &mut recv, max_frame_bytes, patience).await
}

/// The node's response; when it cannot be read, the error of the sending side comes first.
async fn answer(
    sent: Result<(), StreamError>,
    recv: &mut RecvStream,
    max_frame_bytes: usize,
    patience: Patience,
) -> Result<Response, StreamError> {
    let read = read_frame_patiently(recv, max_frame_bytes, patience).await;
    match (sent, read) {
        (_, Ok((response, _))) => Ok(response),
        (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::transport::test_ca::{connected, TestCa, TestResult};

    /// A stream the client opened (with one byte, so the node sees it): (node's send, client's recv).
    async fn stream(at_node: &Connection, at_client: &Connection) -> TestResult<(SendStream, RecvStream)> {
        let (mut request, answer) = at_client.open_bi().await?;
        request.write_all(b"?").await?;
        let (node_send, _) = at_node.accept_bi().await?;
        Ok((node_send, answer))
    }

    /// A caller that reads nothing is given up after the patience, whatever the answer's size;
    /// one that keeps reading, however slowly, gets the whole answer even when it takes longer.
    #[tokio::test]
    async fn a_write_waits_for_a_reader_that_reads_and_gives_up_on_one_that_does_not() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let (node, client) = (ca.material("plant-a", &[])?, ca.material("mes-line-1", &[])?);
        let ((at_node, at_client), _endpoints) = connected(&node, &client, "plant-a").await?;
        let patience = Duration::from_secs(1);
        let answer = vec![7u8; 8 << 20];

        let (mut send, unread) = stream(&at_node, &at_client).await?;
        let unpaced = Pacer::default();
        let writing = write_patiently(&mut send, &answer, &unpaced, patience);
        let given_up = tokio::time::timeout(patience * 5, writing).await?;
        assert!(
            matches!(given_up, Err(StreamError::Timeout(p)) if p == patience),
            "{given_up:?}"
        );
        send.reset(StreamCode::Unread.code().into())?;
        drop(unread);

        let (mut send, mut recv) = stream(&at_node, &at_client).await?;
        let reader = tokio::spawn(async move {
            let (mut got, mut buf) = (0, vec![0u8; BODY_CHUNK]);
            while let Some(read) = recv.read(&mut buf).await? {
                got += read;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, quinn::ReadError>(got)
        });
        let started = Instant::now();
        write_patiently(&mut send, &answer, &Pacer::default(), patience).await?;
        finish(&mut send)?;
        assert_eq!(reader.await??, answer.len());
        assert!(
            started.elapsed() > patience,
            "the slow reader took {:?}",
            started.elapsed()
        );
        Ok(())
    }
}
