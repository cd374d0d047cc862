//! Client library: one QUIC connection with mutual TLS to a node, and the calls of SPEC §3.
//! Used by the CLI commands, the demo and the end-to-end tests.
//!
//! A producer that retries sends the same message again: the same `message_id` and content is a
//! duplicate that answers the original offset, whatever its `produced_at_unix_ms` (the send time
//! is not content, see `bsfg_proto::content`).
//!
//! `node` may list the instances of an HA zone (`a:9443,b:9443`, SPEC §15): the client connects
//! to the first that answers, and a call that fails with `UNAVAILABLE` (a standby names the
//! active instance; a connection lost to an instance that died or stepped down) moves on to the
//! next address and is sent again, round after round, for up to [`FAILOVER_BUDGET`]: long enough
//! for a standby to take over. Every call is safe to send again (appends carry their
//! `message_id`, confirms only move forward). With one address nothing is retried, but for a
//! get whose body broke off part way: it resumes where it stopped ([`Client::get_object`]).
//!
//! [`Client::append`] calls share one append stream per connection (`append_stream`): each is
//! its own `AppendFact` with its own answer, pipelined with the others in flight.
//!
//! Every other call waits for its answer only while the answer makes progress: a fetch's long-poll
//! wait plus [`ANSWER_TIMEOUT`] for its first byte, [`ANSWER_TIMEOUT`] between any two later
//! ones; then it fails `UNAVAILABLE` (retryable), so a node that holds a call without answering
//! it (while its connection stays up) does not hold the caller for ever. The append stream gives
//! up once answers have been owed for [`ANSWER_TIMEOUT`] without one coming. A node whose disk
//! hangs answers first, after its `node.write_stall_timeout`.

mod append_stream;

use std::{
    collections::VecDeque,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use bsfg_actors::transport::{
    addresses::Addresses,
    framed::{self, Patience, StreamError},
    tls::{self, TlsError, TlsMaterial, DEFAULT_IDLE_TIMEOUT},
};
use bsfg_proto::{
    codec, AppendBatchRequest, AppendRequest, AppendResponse, CloseCode, ConfirmRequest, ErrorCode, FetchRequest,
    FetchResponse, GetObjectFromRequest, GetObjectRequest, Message, ObjectDigest, ObjectHasher, ObjectMeta,
    PutObjectRequest, Request, Response, RpcError,
};
use bytes::Bytes;
use quinn::{Connection, Endpoint};
use tokio::io::{AsyncRead, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use self::append_stream::AppendStreams;

/// Frames a client accepts; pages are bounded by the node's own limit, which is at most this.
const CLIENT_MAX_FRAME: usize = 1 << 30;
/// How long a client with several addresses keeps moving on after `UNAVAILABLE`: an HA zone's
/// standby takes over within its lease TTL (5 s by default) plus a few seconds.
pub const FAILOVER_BUDGET: Duration = Duration::from_secs(15);
/// How long a client with several addresses waits for one handshake: a dead instance's port
/// answers nothing, and the next address may be the active one.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after every address of the list refused a call in turn.
const FAILOVER_PAUSE: Duration = Duration::from_millis(100);
/// How long a call's answer may make no progress (beyond a fetch's long-poll wait): longer than
/// a node's default `write_stall_timeout` (30 s), after which the node answers by itself.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `PutObject`'s answer may take beyond [`ANSWER_TIMEOUT`] per whole MB of its
/// artifact: an HA node answers once the artifact is in its engine too (1 MB/s, far below any
/// engine's link).
const ENGINE_UPLOAD: Duration = Duration::from_secs(1);
/// How long beyond [`ANSWER_TIMEOUT`] a `GetObject`'s answer may take to begin: an HA node may
/// first fetch an artifact of up to `limits.max_object_bytes` from its engine.
const GET_AHEAD: Duration = Duration::from_secs(20 * 60);

/// The outcome of each message of an AppendFacts call, in its order.
pub type Outcomes = Vec<Result<AppendResponse, RpcError>>;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `HOST:PORT` of the node's QUIC listener, or of each instance of an HA zone, comma-separated.
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
    /// The node's address (or the server name) can never be dialled as written.
    #[error("{0}")]
    Address(String),
    /// The name did not resolve now (DNS down, or a name that does not exist).
    #[error("cannot resolve node address {node:?}: {reason}")]
    Resolve { node: String, reason: String },
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
    /// The key's content was replaced while a get resumed part way: read it again.
    #[error("artifact {bucket}/{key} changed while it was read (it was {before}, it is {now}); read it again")]
    Changed {
        bucket: String,
        key: String,
        before: ObjectDigest,
        now: ObjectDigest,
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
            // The node closed a live connection whose certificate it no longer trusts (revoked,
            // expired): the next handshake would be refused too.
            Self::Stream(StreamError::Connection(quinn::ConnectionError::ApplicationClosed(close)))
                if CloseCode::from_code(close.error_code.into_inner()) == Some(CloseCode::Untrusted) =>
            {
                ErrorCode::Unauthenticated
            }
            Self::Connect { .. } | Self::Stream(_) => ErrorCode::Unavailable,
            Self::Address(_) | Self::Sink(_) => ErrorCode::InvalidArgument,
            // A name server that is down now may answer later.
            Self::Resolve { .. } | Self::Changed { .. } => ErrorCode::Unavailable,
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
    conn: Mutex<Connection>,
    addresses: Addresses,
    /// The address `conn` goes to (an index into `addresses`).
    current: AtomicUsize,
    server_name: String,
    appends: AppendStreams,
    /// See [`ANSWER_TIMEOUT`].
    answer_timeout: Duration,
}

impl Client {
    pub async fn connect(options: &ClientOptions) -> Result<Self, ClientError> {
        let tls = TlsMaterial::load(&options.ca, &options.cert, &options.key)?;
        let addresses = Addresses::parse(&options.node).map_err(|e| ClientError::Address(e.to_string()))?;
        // The endpoint is bound to the family of the first address that resolves; an entry that
        // does not resolve is skipped like one that does not answer.
        let mut last = None;
        let mut bound = None;
        for i in 0..addresses.len() {
            let endpoint = match &bound {
                Some(endpoint) => endpoint,
                None => match endpoint_for(&addresses, i, &tls).await {
                    Ok(endpoint) => bound.insert(endpoint),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            match dial(endpoint, &addresses, i, &options.server_name).await {
                Ok(conn) => {
                    return Ok(Self {
                        endpoint: endpoint.clone(),
                        conn: Mutex::new(conn),
                        addresses,
                        current: AtomicUsize::new(i),
                        server_name: options.server_name.clone(),
                        appends: AppendStreams::new(ANSWER_TIMEOUT),
                        answer_timeout: ANSWER_TIMEOUT,
                    })
                }
                Err(e) if matches!(e.code(), ErrorCode::Unauthenticated | ErrorCode::InvalidArgument) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Address(format!("no node address in {:?}", options.node))))
    }

    /// Calls give up on an answer that makes no progress for `timeout` (beyond a fetch's
    /// long-poll wait), and the append stream once answers have been owed that long without one
    /// coming, instead of after [`ANSWER_TIMEOUT`].
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self.appends = AppendStreams::new(timeout);
        self
    }

    /// The connection calls go on now.
    fn conn(&self) -> Connection {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sends `request`; with several addresses, moves on after `UNAVAILABLE` (see the module).
    pub async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let long_poll = match request {
            Request::Fetch(fetch) => Duration::from_millis(u64::from(fetch.max_wait_ms)),
            _ => Duration::ZERO,
        };
        let patience = Patience {
            first: long_poll + self.answer_timeout,
            between: self.answer_timeout,
        };
        self.with_failover(|conn| async move {
            let (answered, _) = framed::patient_call(&conn, request, CLIENT_MAX_FRAME, patience).await?;
            Ok(answered.response)
        })
        .await
    }

    /// Makes `attempt` on the connection in use; with several addresses, moves on and makes it
    /// again after `UNAVAILABLE` (see the module).
    async fn with_failover<F, A>(&self, attempt: F) -> Result<Response, ClientError>
    where
        F: Fn(Connection) -> A,
        A: Future<Output = Result<Response, StreamError>>,
    {
        let deadline = Instant::now() + FAILOVER_BUDGET;
        let mut tried = 0;
        loop {
            let conn = self.conn();
            let error = match attempt(conn.clone()).await {
                Ok(Response::Error(e)) => ClientError::Rpc(e),
                Ok(response) => return Ok(response),
                Err(e) => ClientError::from(e),
            };
            let more = self.addresses.len() > 1 && Instant::now() < deadline;
            if !more || error.code() != ErrorCode::Unavailable {
                return Err(error);
            }
            tried += 1;
            if tried % self.addresses.len() == 0 {
                tokio::time::sleep(FAILOVER_PAUSE).await;
            }
            self.move_on(&conn).await;
        }
    }

    /// Connects to the next address of the list (keeping the old connection if none answers),
    /// unless another call already moved on from `failed`: the calls in flight fail together,
    /// and each later one moving on again would close the connection the others just moved to.
    async fn move_on(&self, failed: &Connection) {
        if self.conn().stable_id() != failed.stable_id() {
            return;
        }
        let next = self.current.load(Ordering::Relaxed) + 1;
        let dialed = dial(&self.endpoint, &self.addresses, next, &self.server_name).await;
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if conn.stable_id() != failed.stable_id() {
            if let Ok(extra) = dialed {
                extra.close(CloseCode::Shutdown.code().into(), b"moved on already");
            }
            return;
        }
        if let Ok(dialed) = dialed {
            std::mem::replace(&mut *conn, dialed).close(CloseCode::Shutdown.code().into(), b"moving on");
        }
        self.current.store(next % self.addresses.len(), Ordering::Relaxed);
    }

    /// `AppendFact`, on the connection's append stream: concurrent calls are pipelined, each
    /// answered once its fact is durable.
    pub async fn append(&self, message: Message) -> Result<AppendResponse, ClientError> {
        let request = Request::Append(AppendRequest { message });
        let frame = Bytes::from(codec::encode_frame(&request, CLIENT_MAX_FRAME).map_err(StreamError::from)?);
        let sent = self.with_failover(|conn| self.appends.call(conn, frame.clone()));
        match sent.await? {
            Response::Append(r) => Ok(r),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// `AppendFacts`: the messages in order, each with its own outcome (see [`AppendBatchRequest`]).
    pub async fn append_batch(&self, messages: Vec<Message>) -> Result<Outcomes, ClientError> {
        self.append_facts(&Request::AppendBatch(AppendBatchRequest { messages }))
            .await
    }

    /// `AppendFacts` that stops at its first failed message: the outcomes end with the first
    /// error, and nothing after it was stored, so the facts stored are a prefix of `messages`.
    /// What a producer that keeps its order needs: resend the rest once the failure is dealt with.
    ///
    /// A call over the node's `limits.max_frame_bytes` (which the client does not know) is
    /// refused unread; its messages are then sent again in halves, in order.
    pub async fn append_in_order(&self, messages: Vec<Message>) -> Result<Outcomes, ClientError> {
        let mut parts = VecDeque::from([messages]);
        let mut outcomes = Outcomes::new();
        while let Some(messages) = parts.pop_front() {
            let request = Request::AppendInOrder(AppendBatchRequest { messages });
            let results = match self.append_facts(&request).await {
                Err(ClientError::Rpc(refused)) if refused.is_frame_too_large() => {
                    let Request::AppendInOrder(AppendBatchRequest { mut messages }) = request else {
                        return Err(ClientError::Unexpected);
                    };
                    if messages.len() < 2 && outcomes.is_empty() {
                        return Err(ClientError::Rpc(refused));
                    }
                    if messages.len() < 2 {
                        // One message over the limit, after earlier ones were stored: it fails.
                        outcomes.push(Err(refused));
                        break;
                    }
                    let second = messages.split_off(messages.len() / 2);
                    parts.push_front(second);
                    parts.push_front(messages);
                    continue;
                }
                // A later part refused whole: its first message carries the refusal.
                Err(ClientError::Rpc(refused)) if !outcomes.is_empty() => vec![Err(refused)],
                Err(error) => return Err(error),
                Ok(results) => results,
            };
            let failed = results.iter().any(Result::is_err);
            outcomes.extend(results);
            if failed {
                break;
            }
        }
        Ok(outcomes)
    }

    async fn append_facts(&self, request: &Request) -> Result<Outcomes, ClientError> {
        match self.call(request).await? {
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
    /// With several addresses, an upload refused `UNAVAILABLE` (an HA standby) is sent again to
    /// the next one, from the start of `source`.
    pub async fn put_object(
        &self,
        request: PutObjectRequest,
        source: &mut (impl AsyncRead + AsyncSeek + Unpin),
        progress: impl FnMut(usize),
    ) -> Result<ObjectMeta, ClientError> {
        let size = request.size;
        let request = Request::PutObject(request);
        // The answer comes once the artifact is durable: in an HA zone, once it is in the engine
        // too, which takes longer the larger it is.
        let patience = Patience {
            first: self.answer_timeout
                + ENGINE_UPLOAD.saturating_mul(u32::try_from(size / 1_000_000).unwrap_or(u32::MAX)),
            between: self.answer_timeout,
        };
        let body = tokio::sync::Mutex::new((source, progress));
        let (request, body) = (&request, &body);
        let stored = self.with_failover(|conn| async move {
            let mut body = body.lock().await;
            let (source, progress) = &mut *body;
            source.rewind().await.map_err(StreamError::Source)?;
            framed::call_with_body(&conn, request, source, size, progress, CLIENT_MAX_FRAME, patience).await
        });
        match stored.await? {
            Response::PutObject(meta) => Ok(meta),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Streams an artifact into `sink` (`GetObject`) and verifies its digest once it is through;
    /// `progress` is told the length of every chunk received. On [`ClientError::Corrupt`] the sink
    /// already holds the bytes: write to a temporary place when that matters.
    ///
    /// A body that breaks off part way (the connection lost, the body stalled) is resumed on a
    /// new connection (to the next address, with several) from the bytes received
    /// (`GetObjectFrom`), into the same sink, until [`FRUITLESS_RESUMES`] tries in a row bring
    /// no byte; the digest is checked over the whole.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        sink: &mut (impl AsyncWrite + Unpin),
        mut progress: impl FnMut(usize),
    ) -> Result<ObjectMeta, ClientError> {
        // The body arrives about a packet at a time: one write (a blocking-pool hop for a file)
        // per packet made a get ten times slower than a put.
        let mut sink = tokio::io::BufWriter::with_capacity(SINK_BUFFER, sink);
        let mut received = Received::default();
        let mut whole: Option<ObjectMeta> = None;
        let mut fruitless = 0;
        loop {
            let conn = self.conn();
            let before = received.bytes;
            let outcome = match self.open_body(bucket, key, received.bytes).await {
                Ok((meta, mut recv)) => {
                    let meta = same_artifact(&mut whole, meta)?;
                    let rest = meta.size.saturating_sub(received.bytes);
                    receive_body(
                        &mut recv,
                        rest,
                        self.answer_timeout,
                        &mut sink,
                        &mut received,
                        &mut progress,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            fruitless = match received.bytes > before {
                true => 0,
                false => fruitless + 1,
            };
            match outcome {
                Ok(()) => break,
                Err(e) if received.bytes > 0 && lost_on_the_way(&e) && fruitless < FRUITLESS_RESUMES => {
                    tokio::time::sleep(RESUME_PAUSE).await;
                    self.move_on(&conn).await;
                }
                Err(e) => return Err(e),
            }
        }
        sink.flush().await.map_err(ClientError::Sink)?;
        let meta = whole.ok_or(ClientError::Unexpected)?;
        let actual = received.hasher.finish();
        if actual != meta.digest {
            return Err(ClientError::Corrupt {
                expected: meta.digest,
                actual,
            });
        }
        Ok(meta)
    }

    /// Asks for the artifact's bytes from `offset` on; its whole meta and the stream its body
    /// comes on.
    async fn open_body(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
    ) -> Result<(ObjectMeta, quinn::RecvStream), ClientError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let request = match offset {
            0 => Request::GetObject(GetObjectRequest { bucket, key }),
            offset => Request::GetObjectFrom(GetObjectFromRequest { bucket, key, offset }),
        };
        // The node may fetch the artifact from its HA zone's engine before it answers.
        let patience = Patience {
            first: self.answer_timeout + GET_AHEAD,
            between: self.answer_timeout,
        };
        // With several addresses, a refusal before the body (an HA standby) moves on to the next.
        let body = std::sync::Mutex::new(None);
        let (request, kept) = (&request, &body);
        let answered = self.with_failover(|conn| async move {
            let (response, recv) = framed::call_for_body(&conn, request, CLIENT_MAX_FRAME, patience).await?;
            *kept.lock().unwrap_or_else(PoisonError::into_inner) = Some(recv);
            Ok(response)
        });
        let meta = match answered.await? {
            Response::GetObject(meta) => meta,
            _ => return Err(ClientError::Unexpected),
        };
        let recv = body
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or(ClientError::Unexpected)?;
        Ok((meta, recv))
    }

    /// Closes the connection and waits briefly for the close to reach the node.
    pub async fn close(self) {
        self.conn().close(CloseCode::Shutdown.code().into(), b"done");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Bytes of an artifact gathered before they are written to the sink.
const SINK_BUFFER: usize = 1 << 20;

/// How long a get waits before it resumes a body that broke off.
const RESUME_PAUSE: Duration = Duration::from_millis(500);
/// How many tries in a row may bring no byte of a body that broke off before a get gives up.
pub const FRUITLESS_RESUMES: u32 = 3;

/// What has arrived of an artifact so far.
#[derive(Default)]
struct Received {
    bytes: u64,
    hasher: ObjectHasher,
}

/// Copies a body of `size` bytes into `sink`, adding what arrived to `received`; a body that
/// brings no byte for `between` has stalled.
async fn receive_body(
    recv: &mut quinn::RecvStream,
    size: u64,
    between: Duration,
    sink: &mut (impl AsyncWrite + Unpin),
    received: &mut Received,
    progress: &mut impl FnMut(usize),
) -> Result<(), ClientError> {
    let mut body = framed::BodyReader::new(size, between);
    while let Some(chunk) = body.next(recv).await? {
        received.hasher.update(&chunk);
        sink.write_all(&chunk).await.map_err(ClientError::Sink)?;
        received.bytes += chunk.len() as u64;
        progress(chunk.len());
    }
    Ok(())
}

/// The meta of the artifact being read: `meta`, when it is the first answer or names the same
/// content as the first; a key whose content was replaced between two parts is an error.
fn same_artifact(whole: &mut Option<ObjectMeta>, meta: ObjectMeta) -> Result<&ObjectMeta, ClientError> {
    match whole {
        Some(first) if (first.digest, first.size) != (meta.digest, meta.size) => Err(ClientError::Changed {
            bucket: meta.bucket,
            key: meta.key,
            before: first.digest,
            now: meta.digest,
        }),
        Some(first) => Ok(first),
        None => Ok(whole.insert(meta)),
    }
}

/// Whether a get failed because its connection or its body broke off, not by an answer.
fn lost_on_the_way(error: &ClientError) -> bool {
    matches!(error, ClientError::Stream(_) | ClientError::Connect { tls: false, .. })
        && error.code() == ErrorCode::Unavailable
}

/// A client endpoint bound to the family of the `i`-th address, which must resolve.
async fn endpoint_for(addresses: &Addresses, i: usize, tls: &TlsMaterial) -> Result<Endpoint, ClientError> {
    let node = addresses.get(i).to_string();
    // Any family will do: the endpoint is bound to match the address found.
    let any = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let first = addresses.resolve(i, any).await.map_err(|e| ClientError::Resolve {
        node: node.clone(),
        reason: e.to_string(),
    })?;
    let bind = match first {
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        SocketAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
    };
    let mut endpoint = Endpoint::client(bind).map_err(|e| connect_error(&node, e.to_string(), false))?;
    endpoint.set_default_client_config(tls.quic_client_config(DEFAULT_IDLE_TIMEOUT)?);
    Ok(endpoint)
}

/// A connection to the `i`-th address (wrapping around).
async fn dial(
    endpoint: &Endpoint,
    addresses: &Addresses,
    i: usize,
    server_name: &str,
) -> Result<Connection, ClientError> {
    let node = &addresses.get(i).to_string();
    let bound = endpoint
        .local_addr()
        .map_err(|e| connect_error(node, e.to_string(), false))?;
    let addr = addresses.resolve(i, bound).await.map_err(|e| ClientError::Resolve {
        node: node.clone(),
        reason: e.to_string(),
    })?;
    // Refused before any packet: no retry can make this address or name one to dial.
    let connecting = endpoint.connect(addr, server_name).map_err(|e| match e {
        quinn::ConnectError::InvalidRemoteAddress(_) => {
            ClientError::Address(format!("cannot dial {node} ({addr}): {e}"))
        }
        quinn::ConnectError::InvalidServerName(_) => ClientError::Address(format!(
            "invalid server name {server_name:?} (--server-name, BSFG_SERVER_NAME): {e}"
        )),
        other => connect_error(node, other.to_string(), false),
    })?;
    let patience = match addresses.len() {
        1 => DEFAULT_IDLE_TIMEOUT,
        _ => DIAL_TIMEOUT,
    };
    match tokio::time::timeout(patience, connecting).await {
        Ok(connected) => connected.map_err(|e| connect_error(node, e.to_string(), tls::handshake_alert(&e).is_some())),
        Err(_) => Err(connect_error(node, format!("no handshake within {patience:?}"), false)),
    }
}

fn connect_error(node: &str, reason: String, tls: bool) -> ClientError {
    ClientError::Connect {
        node: node.to_owned(),
        reason,
        tls,
    }
}
