//! The accept loop: one task per connection and one per stream. Learns the caller from its
//! verified certificate, offers connections from peer nodes to that peer's `PeerLink` (one
//! connection per peer pair carries both directions), and serves each call: frame → typed
//! request → admission → [`dispatch`](super::dispatch) → response frame (and raw body), then one
//! [`Call`] is logged and counted. A stream whose first frame is an `AppendFact` may carry more of
//! them ([`append_stream`](super::append_stream)).
//!
//! A connection stays open only while the certificate its other side presented at the handshake
//! would pass a handshake now: it is checked again whenever a reload swaps the TLS material and
//! when it expires, and closed with `CloseCode::Untrusted` once it fails (revoked, its CA
//! removed, expired), so an operator who revokes a stolen key cuts the sessions it holds too.
//!
//! A `bsfg check --peers` connection ([`tls::CHECK_ALPN`]) is closed once its handshake passed,
//! with what the caller is taken for; it never reaches a link or a call.
//!
//! Refusals before dispatch: every call while this instance is an HA zone's standby (naming the
//! active instance; its connections are closed with `CloseCode::Standby` when it stops being
//! active, and a peer's as soon as a call of it was refused, so clients and peers move to the
//! active one), client calls while the node drains, and
//! every call of a peer whose gate an operator closed (its connection is closed once the refusal
//! is delivered, and never offered to the link).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bsfg_proto::{CloseCode, Request, Response, RpcError, StreamCode};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::watch;

use super::{
    append_stream,
    call::{Answer, Call, Details},
    caller::{refuse_unknown, Caller},
    context::{Context, RpcConfig, RpcDeps},
    dispatch,
    drain::InFlight,
    objects,
};
use crate::{
    events::{
        CheckAnswered, ClientRejected, ConnectionUntrusted, Direction, PeerConnected, PeerConnectionOpen, PeerRefused,
        TlsHandshakeFailed, CLOSED_BY_OPERATOR,
    },
    peer_link, standing,
    transport::{framed, pacing::Pacer, tls},
};

/// How long an answer may take to be acknowledged by its caller before the call counts as over:
/// a client call stays in flight (a drain waits for it), a refused peer keeps its connection.
pub(super) const ANSWER_DELIVERY: Duration = Duration::from_secs(5);
/// Why a standby closes a connection.
const NOT_ACTIVE: &str = "this instance is not the active instance";
/// Why a connection whose certificate stopped passing the checks is closed.
const UNTRUSTED: &str = "the certificate presented at the handshake is no longer trusted";
/// The longest a live connection's certificate goes unchecked without a reload: a clock that
/// stepped past its expiry is noticed within this.
const TRUST_LOOK: Duration = Duration::from_secs(600);

/// Connections this node dialled to a peer: the peer may open streams on them too.
pub type DialedConnections = tokio::sync::mpsc::UnboundedReceiver<(quinn::Connection, String)>;

/// Handle to the accept loop.
pub struct RpcServer {
    task: tokio::task::JoinHandle<()>,
}

impl RpcServer {
    /// Serves every connection `endpoint` accepts, and the calls peers make on connections we
    /// dialled (one connection per peer pair carries both directions), until the endpoint closes.
    pub fn spawn(endpoint: Endpoint, config: RpcConfig, deps: RpcDeps, mut dialed: DialedConnections) -> Self {
        let ctx = Arc::new(Context { config, deps });
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    incoming = endpoint.accept() => match incoming {
                        Some(incoming) => { tokio::spawn(accept(incoming, ctx.clone())); }
                        None => break,
                    },
                    Some((conn, peer)) = dialed.recv() => {
                        let caller = Arc::new(Caller::Peer(peer));
                        tokio::spawn(serve_calls(conn, caller, Direction::Outbound, ctx.clone()));
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

async fn accept(incoming: quinn::Incoming, ctx: Arc<Context>) {
    let remote = incoming.remote_address();
    let deps = &ctx.deps;
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(error) => {
            deps.telemetry.emit(TlsHandshakeFailed {
                remote,
                direction: Direction::Inbound,
                peer: None,
                error: &error,
            });
            return;
        }
    };
    let caller = match tls::peer_identity(&conn) {
        Ok(cn) => ctx.deps.authorisations.current().identify(&cn),
        Err(e) => Caller::Unknown(e.to_string()),
    };
    if tls::is_check(&conn) {
        let taken_for = match &caller {
            Caller::Peer(_) => "peer",
            Caller::Client { .. } => "client",
            Caller::Unknown(_) => "unknown",
        };
        let caller = caller.identity();
        deps.telemetry.emit(CheckAnswered {
            caller,
            taken_for,
            remote,
        });
        conn.close(CloseCode::Checked.code().into(), taken_for.as_bytes());
        return;
    }
    match &caller {
        Caller::Peer(_) if !deps.standing.borrow().is_active() => {}
        Caller::Peer(zone) => offer(zone, &conn, remote, deps),
        Caller::Unknown(cn) => deps.telemetry.emit(ClientRejected { caller: cn, remote }),
        Caller::Client { .. } => {}
    }
    serve_calls(conn, Arc::new(caller), Direction::Inbound, ctx).await;
}

/// Hands a peer's connection to its link, unless an operator closed the peer's gate: then it is
/// closed at once, saying why, and the peer dials again later. Kept open, it was never handed to
/// the link once the gate opened, and the peer, whose calls passed from then on, had no reason
/// to dial again: a link whose own side does not dial stayed one-way.
fn offer(zone: &str, conn: &Connection, remote: SocketAddr, deps: &RpcDeps) {
    if deps.switches.is_closed(zone) {
        deps.telemetry.emit(PeerRefused { peer: zone, remote });
        conn.close(CloseCode::GateClosed.code().into(), CLOSED_BY_OPERATOR.as_bytes());
        return;
    }
    deps.telemetry.emit(PeerConnected {
        peer: zone,
        remote,
        direction: Direction::Inbound,
        not_after: &tls::peer_not_after(conn),
    });
    if let Some(link) = deps.links.get(zone) {
        link.do_send(peer_link::Offer(conn.clone()));
    }
}

/// One task per stream, until the connection closes (a peer's is counted meanwhile); a
/// connection made while this instance was active is closed when it stops being active, and one
/// whose other side's certificate stops passing the handshake's checks is closed as untrusted.
/// `direction` says who dialled: `Outbound`, this node (to the peer `caller`).
async fn serve_calls(conn: Connection, caller: Arc<Caller>, direction: Direction, ctx: Arc<Context>) {
    let telemetry = &ctx.deps.telemetry;
    let _counted = match &*caller {
        Caller::Peer(zone) => Some(PeerConnectionOpen { peer: zone }.begin(telemetry)),
        _ => None,
    };
    let mut standing = ctx.deps.standing.clone();
    let was_active = standing.borrow_and_update().is_active();
    let dialled = match (&*caller, direction) {
        (Caller::Peer(zone), Direction::Outbound) => Some(zone.clone()),
        _ => None,
    };
    let untrusted = until_untrusted(conn.clone(), dialled, ctx.deps.trust.clone());
    tokio::pin!(untrusted);
    loop {
        tokio::select! {
            error = &mut untrusted => {
                let peer = match &*caller {
                    Caller::Peer(zone) => Some(zone.as_str()),
                    _ => None,
                };
                telemetry.emit(ConnectionUntrusted {
                    remote: conn.remote_address(),
                    direction,
                    peer,
                    identity: caller.identity(),
                    error: &error,
                });
                conn.close(CloseCode::Untrusted.code().into(), UNTRUSTED.as_bytes());
                return;
            }
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    tokio::spawn(serve_stream(conn.clone(), send, recv, caller.clone(), ctx.clone()));
                }
                Err(_) => return,
            },
            _ = standing::until_inactive(&mut standing), if was_active => {
                conn.close(CloseCode::Standby.code().into(), NOT_ACTIVE.as_bytes());
                return;
            }
        }
    }
}

async fn serve_stream(
    conn: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    caller: Arc<Caller>,
    ctx: Arc<Context>,
) {
    let (config, deps) = (&ctx.config, &ctx.deps);
    // Judged by the table of the moment: the client list may have been reloaded since the
    // connection was accepted.
    let caller = deps.authorisations.refresh(&caller);
    let started = std::time::Instant::now();
    let (mut operation, mut facts, mut details, mut in_flight) = ("invalid", 0, Details::default(), None);
    let gate_closed = gate_closed(&caller, deps);
    // A peer's link stays on a connection whose calls are refused retryably: unless a standby
    // closes it, the link never moves on to the zone's next address (the active instance).
    let standby = matches!(*caller, Caller::Peer(_)) && !deps.standing.borrow().is_active();
    let mut body = None;
    // A stranger (a certificate of our CA, but neither a client nor a peer) is refused whatever
    // it asks, so its request is not read: it makes the node hold no frame buffers.
    let answer: Answer = if let Some(refusal) = refuse_unknown(&caller, &config.zone) {
        Response::Error(refusal).into()
    } else {
        // Patient while bytes come: the wait is for each next byte, not for the whole frame.
        let patience = framed::Patience {
            first: framed::REQUEST_TIMEOUT,
            between: framed::REQUEST_TIMEOUT,
        };
        let read = framed::read_frame_patiently::<Request>(&mut recv, config.max_frame_bytes, patience);
        match read.await.map(|(request, _)| request) {
            Ok(request @ Request::Append(_)) => {
                return append_stream::serve(request, started, send, recv, caller, ctx.clone()).await
            }
            Ok(request) => {
                operation = request.operation();
                facts = request.facts();
                details = Details::capture(&request, &caller, config.audit);
                match admit(&caller, gate_closed, &ctx) {
                    Ok(guard) => {
                        in_flight = guard;
                        dispatch::dispatch(request, &caller, &ctx, &mut recv, &mut body).await
                    }
                    Err(e) => Response::Error(e).into(),
                }
            }
            Err(e) => Response::Error(e.to_rpc()).into(),
        }
    };
    let call = Call {
        caller: &caller,
        operation,
        facts,
        details: &details,
        answer: &answer,
        took: started.elapsed().saturating_sub(answer.waited()),
    };
    call.emit(&deps.telemetry, config.audit);
    let _ = recv.stop(StreamCode::Done.code().into());
    let pacer = match &*caller {
        Caller::Peer(zone) => deps.egress.get(zone).cloned().unwrap_or_default(),
        _ => Pacer::default(),
    };
    let finished = objects::respond(
        &mut send,
        &answer,
        body,
        (config.max_frame_bytes, &pacer),
        &deps.telemetry,
    )
    .await;
    // A page can be megabytes: not kept while its acknowledgement is awaited.
    drop((answer, details));
    let closing = match (gate_closed, standby) {
        (true, _) => Some((CloseCode::GateClosed, CLOSED_BY_OPERATOR)),
        (false, true) => Some((CloseCode::Standby, NOT_ACTIVE)),
        (false, false) => None,
    };
    if finished && (in_flight.is_some() || closing.is_some()) {
        // Written is not delivered: a drain that ends and closes the connection, or a close
        // below, discards what the caller has not acknowledged yet. So a client call ends once
        // its answer is acknowledged, and a refused peer learns why before it loses the
        // connection (it must not keep one open per retry).
        let _ = tokio::time::timeout(ANSWER_DELIVERY, send.stopped()).await;
    }
    drop(in_flight);
    if let Some((code, reason)) = closing {
        conn.close(code.code().into(), reason.as_bytes());
    }
}

/// Resolves with the reason once the certificate the other side of `conn` presented fails the
/// checks of the [`tls::Trust`] in force (`dialled`: the zone this node dialled it as): checked
/// at once, after every reload, and when the certificate expires.
async fn until_untrusted(
    conn: Connection,
    dialled: Option<String>,
    mut trust: watch::Receiver<tls::Trust>,
) -> rustls::Error {
    let expiry = tls::peer_expiry(&conn);
    loop {
        // Cloned out (two `Arc`s), so the check does not hold the watch's lock: after a reload
        // every connection checks at once, and the next reload must not wait for them.
        let current = trust.borrow_and_update().clone();
        let verdict = current.verify(&conn, dialled.as_deref(), SystemTime::now());
        if let Err(error) = verdict {
            return error;
        }
        tokio::select! {
            changed = trust.changed() => {
                if changed.is_err() {
                    // The node is shutting down; nothing will be reloaded any more.
                    std::future::pending::<()>().await;
                }
            }
            () = tokio::time::sleep(next_look(expiry, SystemTime::now())) => {}
        }
    }
}

/// How long until a live connection's certificate, expiring at `expiry`, is checked again
/// without a reload: until just past its expiry (it is valid through its last second), at most
/// [`TRUST_LOOK`].
fn next_look(expiry: Option<SystemTime>, now: SystemTime) -> Duration {
    let until_expired = expiry.and_then(|expiry| expiry.duration_since(now).ok());
    match until_expired {
        Some(left) => (left + Duration::from_secs(1)).min(TRUST_LOOK),
        // Expired by our clock but accepted by the check: look again soon.
        None if expiry.is_some() => Duration::from_secs(1),
        None => TRUST_LOOK,
    }
}

/// Whether `caller` is a peer whose gate an operator closed.
pub(super) fn gate_closed(caller: &Caller, deps: &RpcDeps) -> bool {
    matches!(caller, Caller::Peer(zone) if deps.switches.is_closed(zone))
}

/// Client calls count as in flight until their caller has acknowledged the answer; while the node
/// drains they are refused with a retryable code. Peer calls pass untouched so replication
/// continues, unless an operator closed the peer's gate.
pub(super) fn admit(caller: &Caller, gate_closed: bool, ctx: &Context) -> Result<Option<InFlight>, RpcError> {
    if let Some(refusal) = ctx.deps.standing.borrow().refusal(&ctx.config.zone) {
        return Err(RpcError::unavailable(refusal));
    }
    if gate_closed {
        return Err(RpcError::unavailable(format!(
            "gate closed by operator: zone {:?} exchanges nothing with this peer until it is opened",
            ctx.config.zone
        )));
    }
    if matches!(caller, Caller::Peer(_)) {
        return Ok(None);
    }
    ctx.deps
        .drain
        .admit()
        .map(Some)
        .ok_or_else(|| RpcError::unavailable("node is draining; retry later or against another node"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_certificate_is_looked_at_again_just_after_it_expires_and_at_least_every_ten_minutes() {
        let now = SystemTime::now();
        let second = Duration::from_secs(1);
        assert_eq!(next_look(Some(now + 30 * second), now), 31 * second);
        assert_eq!(next_look(Some(now + 3 * TRUST_LOOK), now), TRUST_LOOK);
        assert_eq!(next_look(Some(now - second), now), second, "expired, yet let through");
        assert_eq!(next_look(None, now), TRUST_LOOK);
    }
}
