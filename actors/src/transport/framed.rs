//! Frames on QUIC streams: one request and one response per bidirectional stream (SPEC §3).

use std::time::Duration;

use bsfg_proto::{codec, ErrorCode, FrameError, Request, Response, RpcError};
use quinn::{Connection, RecvStream, SendStream};

/// How long a caller may take to send its request once it opened a stream.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a frame could not be read or a call could not complete.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("stream closed after {got} of {expected} bytes")]
    Truncated { expected: usize, got: usize },
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream failed: {0}")]
    Stream(String),
    #[error("no request within {0:?}")]
    Timeout(Duration),
}

impl StreamError {
    /// The wire error a caller gets when its request could not be read.
    pub fn to_rpc(&self) -> RpcError {
        match self {
            Self::Frame(_) | Self::Truncated { .. } | Self::Timeout(_) => RpcError::invalid(self.to_string()),
            Self::Connection(_) | Self::Stream(_) => RpcError::new(ErrorCode::Unavailable, self.to_string()),
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
    read_exact(recv, &mut header).await?;
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
    let frame = codec::encode_frame(value, max_frame_bytes)?;
    send.write_all(&frame)
        .await
        .map_err(|e| StreamError::Stream(e.to_string()))?;
    send.finish().map_err(|e| StreamError::Stream(e.to_string()))
}

/// One call: opens a stream, sends the request, reads the response. When the node stops
/// reading early (a request it refuses, such as one over its frame limit) its answer is still
/// read and returned.
pub async fn call(conn: &Connection, request: &Request, max_frame_bytes: usize) -> Result<Response, StreamError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let sent = write_frame(&mut send, request, max_frame_bytes).await;
    match (sent, read_frame(&mut recv, max_frame_bytes).await) {
        (_, Ok(response)) => Ok(response),
        (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
    }
}
