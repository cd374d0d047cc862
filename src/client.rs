//! Client library: one QUIC connection with mutual TLS to a node, and the calls of SPEC §3.
//! Used by the CLI commands, the demo and the end-to-end tests.
//!
//! The client never retries by itself. A producer that retries sends the same message again: the
//! same `message_id` and content is a duplicate that answers the original offset, whatever its
//! `produced_at_unix_ms` (the send time is not content, see `bsfg_proto::content`).

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
};

use bsfg_actors::transport::{
    framed::{self, StreamError},
    tls::{self, TlsError, TlsMaterial, DEFAULT_IDLE_TIMEOUT},
};
use bsfg_proto::{
    AppendBatchRequest, AppendRequest, AppendResponse, CloseCode, ConfirmRequest, ErrorCode, FetchRequest,
    FetchResponse, GetObjectRequest, Message, ObjectDigest, ObjectHasher, ObjectMeta, PutObjectRequest, Request,
    Response, RpcError,
};
use quinn::{Connection, Endpoint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Frames a client accepts; pages are bounded by the node's own limit, which is at most this.
const CLIENT_MAX_FRAME: usize = 1 << 30;

/// The outcome of each message of an AppendFacts call, in its order.
pub type Outcomes = Vec<Result<AppendResponse, RpcError>>;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `HOST:PORT` of the node's QUIC listener.
    pub node: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The node's zone: its certificate CN must equal it.
    pub server_name: String,
}

/// Why a call failed; every variant maps onto a wire code and a retryable flag.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("cannot resolve node address {0:?}")]
    Resolve(String),
    #[error("cannot connect to {node}: {reason}")]
    Connect { node: String, reason: String, tls: bool },
    #[error("{}", .0.message)]
    Rpc(RpcError),
    #[error("{0}")]
    Stream(#[from] StreamError),
    #[error("node answered with an unexpected response kind")]
    Unexpected,
    #[error("cannot write the artifact: {0}")]
    Sink(std::io::Error),
    #[error("artifact received with digest {actual}, but the node announced {expected}")]
    Corrupt {
        expected: ObjectDigest,
        actual: ObjectDigest,
    },
}

impl ClientError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Rpc(e) => e.code,
            Self::Connect { tls: true, .. } | Self::Tls(_) => ErrorCode::Unauthenticated,
            // In TLS 1.3 the node checks our certificate after we think the handshake is done, so
            // its refusal can arrive as the close of the connection during the first call.
            Self::Stream(StreamError::Connection(e)) if tls::handshake_alert(e).is_some() => ErrorCode::Unauthenticated,
            Self::Connect { .. } | Self::Stream(_) => ErrorCode::Unavailable,
            Self::Resolve(_) | Self::Sink(_) => ErrorCode::InvalidArgument,
            Self::Unexpected | Self::Corrupt { .. } => ErrorCode::Internal,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            Self::Rpc(e) => e.retryable,
            other => other.code().is_retryable(),
        }
    }
}

/// A connected client.
pub struct Client {
    endpoint: Endpoint,
    conn: Connection,
}

impl Client {
    pub async fn connect(options: &ClientOptions) -> Result<Self, ClientError> {
        let tls = TlsMaterial::load(&options.ca, &options.cert, &options.key)?;
        let addr = resolve(&options.node)?;
        let bind: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
            .parse()
            .map_err(|_| ClientError::Resolve(options.node.clone()))?;
        let mut endpoint = Endpoint::client(bind).map_err(|e| connect_error(options, e.to_string(), false))?;
        endpoint.set_default_client_config(tls.quic_client_config(DEFAULT_IDLE_TIMEOUT)?);
        let connecting = endpoint
            .connect(addr, &options.server_name)
            .map_err(|e| connect_error(options, e.to_string(), false))?;
        let conn = connecting
            .await
            .map_err(|e| connect_error(options, e.to_string(), tls::handshake_alert(&e).is_some()))?;
        Ok(Self { endpoint, conn })
    }

    pub async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        match framed::call(&self.conn, request, CLIENT_MAX_FRAME).await? {
            Response::Error(e) => Err(ClientError::Rpc(e)),
            response => Ok(response),
        }
    }

    pub async fn append(&self, message: Message) -> Result<AppendResponse, ClientError> {
        match self.call(&Request::Append(AppendRequest { message })).await? {
            Response::Append(r) => Ok(r),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// `AppendFacts`: the messages in order, each with its own outcome (see [`AppendBatchRequest`]).
    pub async fn append_batch(&self, messages: Vec<Message>) -> Result<Outcomes, ClientError> {
        self.append_facts(Request::AppendBatch(AppendBatchRequest { messages }))
            .await
    }

    /// `AppendFacts` that stops at its first failed message: the outcomes end with the first
    /// error, and nothing after it was stored, so the facts stored are a prefix of `messages`.
    /// What a producer that keeps its order needs: resend the rest once the failure is dealt with.
    pub async fn append_in_order(&self, messages: Vec<Message>) -> Result<Outcomes, ClientError> {
        self.append_facts(Request::AppendInOrder(AppendBatchRequest { messages }))
            .await
    }

    async fn append_facts(&self, request: Request) -> Result<Outcomes, ClientError> {
        match self.call(&request).await? {
            Response::AppendBatch(r) => Ok(r.results),
            _ => Err(ClientError::Unexpected),
        }
    }

    pub async fn fetch(
        &self,
        consumer: &str,
        limit: u32,
        max_wait_ms: u32,
        after: Option<u64>,
    ) -> Result<FetchResponse, ClientError> {
        let request = FetchRequest {
            consumer: consumer.to_owned(),
            limit,
            max_wait_ms,
            after,
        };
        match self.call(&Request::Fetch(request)).await? {
            Response::Fetch(r) => Ok(r),
            _ => Err(ClientError::Unexpected),
        }
    }

    pub async fn confirm(&self, consumer: &str, offset: u64) -> Result<u64, ClientError> {
        let request = ConfirmRequest {
            consumer: consumer.to_owned(),
            offset,
        };
        match self.call(&Request::Confirm(request)).await? {
            Response::Confirm(r) => Ok(r.cursor),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Stores `request.size` bytes read from `source` as an artifact (`PutObject`); `progress` is
    /// told the length of every chunk sent. The body streams: it is never held whole in memory.
    pub async fn put_object(
        &self,
        request: PutObjectRequest,
        source: &mut (impl AsyncRead + Unpin),
        progress: impl FnMut(usize),
    ) -> Result<ObjectMeta, ClientError> {
        let size = request.size;
        let request = Request::PutObject(request);
        match framed::call_with_body(&self.conn, &request, source, size, progress, CLIENT_MAX_FRAME).await? {
            Response::PutObject(meta) => Ok(meta),
            Response::Error(e) => Err(ClientError::Rpc(e)),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Streams an artifact into `sink` (`GetObject`) and verifies its digest once it is through;
    /// `progress` is told the length of every chunk received. On [`ClientError::Corrupt`] the sink
    /// already holds the bytes: write to a temporary place when that matters.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        sink: &mut (impl AsyncWrite + Unpin),
        mut progress: impl FnMut(usize),
    ) -> Result<ObjectMeta, ClientError> {
        let request = Request::GetObject(GetObjectRequest {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        });
        let meta = match framed::call_for_body(&self.conn, &request, CLIENT_MAX_FRAME).await? {
            (Response::GetObject(meta), mut recv) => {
                let actual = receive_body(&mut recv, meta.size, sink, &mut progress).await?;
                if actual != meta.digest {
                    return Err(ClientError::Corrupt {
                        expected: meta.digest,
                        actual,
                    });
                }
                meta
            }
            (Response::Error(e), _) => return Err(ClientError::Rpc(e)),
            _ => return Err(ClientError::Unexpected),
        };
        Ok(meta)
    }

    /// Closes the connection and waits briefly for the close to reach the node.
    pub async fn close(self) {
        self.conn.close(CloseCode::Shutdown.code().into(), b"done");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Copies a body of `size` bytes into `sink`, returning the digest of what arrived.
async fn receive_body(
    recv: &mut quinn::RecvStream,
    size: u64,
    sink: &mut (impl AsyncWrite + Unpin),
    progress: &mut impl FnMut(usize),
) -> Result<ObjectDigest, ClientError> {
    let mut body = framed::BodyReader::new(size);
    let mut hasher = ObjectHasher::default();
    while let Some(chunk) = body.next(recv).await? {
        hasher.update(&chunk);
        sink.write_all(&chunk).await.map_err(ClientError::Sink)?;
        progress(chunk.len());
    }
    sink.flush().await.map_err(ClientError::Sink)?;
    Ok(hasher.finish())
}

fn resolve(node: &str) -> Result<SocketAddr, ClientError> {
    node.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ClientError::Resolve(node.to_owned()))
}

fn connect_error(options: &ClientOptions, reason: String, tls: bool) -> ClientError {
    ClientError::Connect {
        node: options.node.clone(),
        reason,
        tls,
    }
}
