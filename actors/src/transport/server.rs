//! The RPC server: accepts QUIC connections, learns the caller from its verified certificate,
//! and serves one call per bidirectional stream — frame → typed request → authorised dispatch
//! to the buffer actors → response frame. Connections from peer nodes are also offered to that
//! peer's `PeerLink`, so one connection can carry both directions. `PutObject` and `GetObject`
//! (with their raw bodies) are served in `objects`.
//!
//! Refusals before dispatch: client calls while the node drains, and every call of a peer whose
//! gate an operator closed (its connection is closed once the refusal is delivered, and never
//! offered to the link). Each call is counted and timed, and logged as `audit` says.

mod objects;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use actix::Addr;
use bsfg_proto::{
    rpc::MAX_APPEND_BATCH, AppendBatchResponse, AppendResponse, BatchTally, ConfirmRequest, ConfirmResponse,
    EncodedPage, FetchRequest, Message, Request, Response, RpcError,
};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use slog::{info, warn, Logger};

use super::{
    audit::{Call, Details},
    drain::InFlight,
    framed, tls, DrainHandle,
};
use crate::{
    forward_buffer,
    journal::AppendMode,
    metrics::Metrics,
    objects::ObjectStore,
    peer_link,
    store_buffer::{self, Outcomes},
    zone_gate::{self, GateSwitches},
    ForwardBuffer, PeerLink, StoreBuffer, ZoneGate,
};

/// How long a refused peer gets to receive its refusal before its connection is closed.
const REFUSAL_DELIVERY: Duration = Duration::from_secs(5);

/// What a client identity may do (SPEC §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    pub produce: bool,
    pub consume: bool,
}

/// Who is calling, as decided from the certificate's CN and the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Peer(String),
    Client { identity: String, roles: Roles },
    Unknown(String),
}

impl Caller {
    pub fn identity(&self) -> &str {
        match self {
            Self::Peer(zone) => zone,
            Self::Client { identity, .. } => identity,
            Self::Unknown(cn) => cn,
        }
    }
}

/// The configured peers and clients: the authorisation table.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub peers: HashSet<String>,
    pub clients: HashMap<String, Roles>,
}

impl Directory {
    pub fn identify(&self, cn: &str) -> Caller {
        if self.peers.contains(cn) {
            return Caller::Peer(cn.to_owned());
        }
        match self.clients.get(cn) {
            Some(roles) => Caller::Client {
                identity: cn.to_owned(),
                roles: *roles,
            },
            None => Caller::Unknown(cn.to_owned()),
        }
    }
}

/// The actors a call can reach.
#[derive(Clone)]
pub struct ServerDeps {
    pub zone: String,
    pub store: Addr<StoreBuffer>,
    pub forward: Addr<ForwardBuffer>,
    pub gate: Addr<ZoneGate>,
    pub objects: ObjectStore,
    pub metrics: Arc<Metrics>,
    pub links: HashMap<String, Addr<PeerLink>>,
    pub directory: Arc<Directory>,
    /// Refuses client calls while the node drains; peer calls are never held back.
    pub drain: DrainHandle,
    /// A peer whose gate is closed is refused every call.
    pub switches: GateSwitches,
    pub max_frame_bytes: usize,
    /// Log every call (`log.audit`), not only failures.
    pub audit: bool,
    pub log: Logger,
}

/// Connections this node dialled to a peer: the peer may open streams on them too.
pub type DialedConnections = tokio::sync::mpsc::UnboundedReceiver<(quinn::Connection, String)>;

/// What a call answers: a response, or a page served from the stored encodings of its facts,
/// which goes on the wire as the `Response::Fetch` it encodes to.
pub(super) enum Answer {
    Response(Response),
    Page(EncodedPage),
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Self::Response(response)
    }
}

impl bincode::Encode for Answer {
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        match self {
            Self::Response(response) => response.encode(encoder),
            Self::Page(page) => page.encode(encoder),
        }
    }
}

/// Handle to the accept loop.
pub struct RpcServer {
    task: tokio::task::JoinHandle<()>,
}

impl RpcServer {
    /// Serves every connection `endpoint` accepts, and the calls peers make on connections we
    /// dialled (one connection per peer pair carries both directions), until the endpoint closes.
    pub fn spawn(endpoint: Endpoint, deps: ServerDeps, mut dialed: DialedConnections) -> Self {
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    incoming = endpoint.accept() => match incoming {
                        Some(incoming) => { tokio::spawn(accept(incoming, deps.clone())); }
                        None => break,
                    },
                    Some((conn, peer)) = dialed.recv() => {
                        tokio::spawn(serve_calls(conn, Arc::new(Caller::Peer(peer)), deps.clone()));
                    }
                }
            }
        });
        Self { task }
    }

    pub fn abort(&self) {
        self.task.abort();
    }
}

async fn accept(incoming: quinn::Incoming, deps: ServerDeps) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            let kind = handshake_failure_reason(&e);
            deps.metrics.tls_handshake_errors.with_label_values(&[kind]).inc();
            warn!(deps.log, "tls_handshake_failed"; "remote" => %remote, "reason" => %e, "kind" => kind);
            return;
        }
    };
    let caller = match tls::peer_identity(&conn) {
        Ok(cn) => deps.directory.identify(&cn),
        Err(e) => Caller::Unknown(e.to_string()),
    };
    match &caller {
        Caller::Peer(zone) => offer(zone, &conn, remote, &deps),
        Caller::Unknown(cn) => warn!(deps.log, "client_rejected"; "caller" => cn, "remote" => %remote,
            "reason" => "not a configured client or peer: every call is refused with PERMISSION_DENIED"),
        Caller::Client { .. } => {}
    }
    serve_calls(conn, Arc::new(caller), deps).await;
}

/// Hands a peer's connection to its link, unless an operator closed the peer's gate.
fn offer(zone: &str, conn: &Connection, remote: std::net::SocketAddr, deps: &ServerDeps) {
    if deps.switches.is_closed(zone) {
        info!(deps.log, "peer_refused"; "peer" => zone, "remote" => %remote, "reason" => zone_gate::CLOSED_BY_OPERATOR);
        return;
    }
    info!(deps.log, "peer_connected"; "peer" => zone, "remote" => %remote, "direction" => "inbound",
        "not_after" => tls::peer_not_after(conn));
    if let Some(link) = deps.links.get(zone) {
        link.do_send(peer_link::Offer(conn.clone()));
    }
}

/// One task per stream, until the connection closes.
async fn serve_calls(conn: Connection, caller: Arc<Caller>, deps: ServerDeps) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(serve_stream(conn.clone(), send, recv, caller.clone(), deps.clone()));
    }
}

async fn serve_stream(
    conn: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    caller: Arc<Caller>,
    deps: ServerDeps,
) {
    let read = tokio::time::timeout(
        framed::REQUEST_TIMEOUT,
        framed::read_frame::<Request>(&mut recv, deps.max_frame_bytes),
    );
    let started = std::time::Instant::now();
    let (mut operation, mut facts, mut details, mut in_flight) = ("invalid", 0, Details::default(), None);
    let gate_closed = matches!(&*caller, Caller::Peer(zone) if deps.switches.is_closed(zone));
    let mut body = None;
    let answer: Answer = match read.await {
        Ok(Ok(request)) => {
            operation = request.operation();
            facts = request.facts();
            details = Details::capture(&request, &caller, deps.audit);
            match admit(&caller, gate_closed, &deps) {
                Ok(guard) => {
                    in_flight = guard;
                    dispatch(request, &caller, &deps, &mut recv, &mut body).await
                }
                Err(e) => Response::Error(e).into(),
            }
        }
        Ok(Err(e)) => Response::Error(e.to_rpc()).into(),
        Err(_) => Response::Error(framed::StreamError::Timeout(framed::REQUEST_TIMEOUT).to_rpc()).into(),
    };
    let took = started.elapsed();
    record(&deps.metrics, operation, facts, &caller, &answer, took);
    let call = Call {
        caller: &caller,
        operation,
        facts,
        details: &details,
        answer: &answer,
        took,
    };
    call.log(&deps.log, deps.audit);
    let _ = recv.stop(0u32.into());
    objects::respond(&mut send, &answer, body, deps.max_frame_bytes).await;
    drop(in_flight);
    if gate_closed {
        // The peer learns why, then loses the connection: it must not keep one open per retry.
        let _ = tokio::time::timeout(REFUSAL_DELIVERY, send.stopped()).await;
        conn.close(peer_link::GATE_CLOSED.into(), zone_gate::CLOSED_BY_OPERATOR.as_bytes());
    }
}

/// Client calls count as in flight until their response is written; while the node drains they
/// are refused with a retryable code. Peer calls pass untouched so replication continues, unless
/// an operator closed the peer's gate.
fn admit(caller: &Caller, gate_closed: bool, deps: &ServerDeps) -> Result<Option<InFlight>, RpcError> {
    if gate_closed {
        return Err(RpcError::unavailable(format!(
            "gate closed by operator: zone {:?} exchanges nothing with this peer until it is opened",
            deps.zone
        )));
    }
    if matches!(caller, Caller::Peer(_)) {
        return Ok(None);
    }
    deps.drain
        .admit()
        .map(Some)
        .ok_or_else(|| RpcError::unavailable("node is draining; retry later or against another node"))
}

async fn dispatch(
    request: Request,
    caller: &Caller,
    deps: &ServerDeps,
    recv: &mut RecvStream,
    body: &mut Option<objects::Body>,
) -> Answer {
    let response = match request {
        Request::Append(r) => append(vec![r.message], AppendMode::EachAlone, caller, deps)
            .await
            .and_then(|mut results| results.pop().unwrap_or_else(|| Err(RpcError::internal("no outcome"))))
            .map(Response::Append)
            .unwrap_or_else(Response::Error),
        Request::AppendBatch(r) => append(r.messages, AppendMode::EachAlone, caller, deps)
            .await
            .map(|results| Response::AppendBatch(AppendBatchResponse { results }))
            .unwrap_or_else(Response::Error),
        Request::AppendInOrder(r) => append(r.messages, AppendMode::StopAtFailure, caller, deps)
            .await
            .map(|results| Response::AppendBatch(AppendBatchResponse { results }))
            .unwrap_or_else(Response::Error),
        Request::Fetch(r) => {
            return match fetch(r, caller, deps).await {
                Ok(page) => Answer::Page(page),
                Err(e) => Response::Error(e).into(),
            }
        }
        Request::Confirm(r) => confirm(r, caller, deps).await.unwrap_or_else(Response::Error),
        Request::PutObject(r) => objects::put(r, caller, deps, recv)
            .await
            .unwrap_or_else(Response::Error),
        Request::GetObject(r) => match objects::get(r, caller, deps).await {
            Ok((response, blob)) => {
                *body = Some(blob);
                response
            }
            Err(e) => Response::Error(e),
        },
    };
    response.into()
}

/// AppendFact (one message) and AppendFacts (either form) alike.
async fn append(
    messages: Vec<Message>,
    mode: AppendMode,
    caller: &Caller,
    deps: &ServerDeps,
) -> Result<Outcomes, RpcError> {
    authorise(caller, Need::Produce, deps)?;
    if messages.is_empty() || messages.len() > MAX_APPEND_BATCH {
        return Err(RpcError::invalid(format!(
            "AppendFacts carries {} messages; it takes 1 to {MAX_APPEND_BATCH}",
            messages.len()
        )));
    }
    flatten(deps.store.send(store_buffer::Append(messages, mode)).await)
}

async fn fetch(r: FetchRequest, caller: &Caller, deps: &ServerDeps) -> Result<EncodedPage, RpcError> {
    let max_wait = Duration::from_millis(u64::from(r.max_wait_ms.min(60_000)));
    let page = match caller {
        Caller::Peer(zone) => {
            let msg = store_buffer::PeerFetch {
                peer: zone.clone(),
                limit: r.limit,
                max_wait,
                after: r.after,
            };
            let page = flatten(deps.store.send(msg).await)?;
            deps.gate.do_send(zone_gate::Served {
                peer: zone.clone(),
                behind: page.facts.len() >= r.limit as usize,
            });
            page
        }
        _ => {
            authorise(caller, Need::Consume, deps)?;
            let msg = forward_buffer::Fetch {
                consumer: r.consumer,
                limit: r.limit,
                max_wait,
                after: r.after,
            };
            flatten(deps.forward.send(msg).await)?
        }
    };
    Ok(page)
}

async fn confirm(r: ConfirmRequest, caller: &Caller, deps: &ServerDeps) -> Result<Response, RpcError> {
    let cursor = match caller {
        Caller::Peer(zone) => flatten(
            deps.store
                .send(store_buffer::PeerConfirm {
                    peer: zone.clone(),
                    offset: r.offset,
                })
                .await,
        )?,
        _ => {
            authorise(caller, Need::Consume, deps)?;
            flatten(
                deps.forward
                    .send(forward_buffer::Confirm {
                        consumer: r.consumer,
                        offset: r.offset,
                    })
                    .await,
            )?
        }
    };
    Ok(Response::Confirm(ConfirmResponse { cursor }))
}

enum Need {
    Produce,
    Consume,
}

fn authorise(caller: &Caller, need: Need, deps: &ServerDeps) -> Result<(), RpcError> {
    let role = match need {
        Need::Produce => "produce",
        Need::Consume => "consume",
    };
    match caller {
        Caller::Client { roles, .. } if matches!(need, Need::Produce) && roles.produce => Ok(()),
        Caller::Client { roles, .. } if matches!(need, Need::Consume) && roles.consume => Ok(()),
        Caller::Client { identity, .. } => Err(RpcError::denied(format!("client {identity:?} lacks the role {role}"))),
        Caller::Peer(zone) => Err(RpcError::denied(format!(
            "peer node {zone:?} cannot {role} as a client"
        ))),
        Caller::Unknown(cn) => Err(RpcError::denied(format!(
            "identity {cn:?} is not a configured client or peer of zone {:?}",
            deps.zone
        ))),
    }
}

fn flatten<T>(sent: Result<Result<T, RpcError>, actix::MailboxError>) -> Result<T, RpcError> {
    sent.map_err(|e| RpcError::unavailable(format!("node is shutting down: {e}")))?
}

/// Counts and times one call (SPEC §11). The append counters count facts: an `AppendFacts` call
/// adds a request for each message answered (an in-order call leaves the messages after its
/// first failure unanswered and uncounted) and a failure for each fact that failed (a call
/// refused whole counts each of its `facts`, at least one, so even an empty call shows).
fn record(metrics: &Metrics, operation: &'static str, facts: usize, caller: &Caller, answer: &Answer, took: Duration) {
    metrics
        .rpc_latency
        .with_label_values(&[operation])
        .observe(took.as_secs_f64());
    let role = match caller {
        Caller::Peer(_) => "peer",
        _ => "consumer",
    };
    match (operation, answer) {
        ("append_fact" | "append_facts", Answer::Response(Response::Error(e))) => {
            metrics.append_requests.inc_by(facts.max(1) as u64);
            metrics
                .append_failures
                .with_label_values(&[e.code.as_str()])
                .inc_by(facts.max(1) as u64);
        }
        ("append_fact", Answer::Response(Response::Append(ack))) => {
            record_appended(metrics, std::slice::from_ref(&Ok(*ack)), took)
        }
        ("append_facts", Answer::Response(Response::AppendBatch(batch))) => {
            record_appended(metrics, &batch.results, took)
        }
        ("fetch_facts", _) => metrics.fetch_requests.with_label_values(&[role]).inc(),
        ("confirm_receipt", _) => metrics.confirm_requests.with_label_values(&[role]).inc(),
        ("put_object", Answer::Response(Response::PutObject(_))) => metrics.artifact_upload_total.inc(),
        ("put_object", _) => metrics.artifact_upload_failures.inc(),
        _ => {}
    }
}

fn record_appended(metrics: &Metrics, results: &[Result<AppendResponse, RpcError>], took: Duration) {
    metrics.append_requests.inc_by(results.len() as u64);
    metrics.append_latency.observe(took.as_secs_f64());
    let tally = BatchTally::of(results);
    if tally.duplicates > 0 {
        metrics
            .duplicate_facts
            .with_label_values(&["store"])
            .inc_by(tally.duplicates as u64);
    }
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        metrics.append_failures.with_label_values(&[error.code.as_str()]).inc();
    }
}

/// A bounded label for a refused handshake.
fn handshake_failure_reason(error: &quinn::ConnectionError) -> &'static str {
    let text = error.to_string();
    if text.contains("UnknownIssuer") || text.contains("unknown ca") || text.contains("UnknownCA") {
        "unknown_ca"
    } else if text.contains("Expired") || text.contains("expired") {
        "expired"
    } else if text.contains("NotValidForName") || text.contains("bad certificate") || text.contains("BadCertificate") {
        "bad_certificate"
    } else if matches!(error, quinn::ConnectionError::TimedOut) {
        "timeout"
    } else {
        "other"
    }
}
