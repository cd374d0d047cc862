//! The pull loop of one peer link: which connection a session runs on, and what happens when
//! it ends. The session itself (three concurrent stages, its calls and their retries) is in
//! `session`; the artifact pulls before insertion in `artifacts`.
//!
//! A session runs on one connection until the connection dies. The link is dead only by QUIC's
//! own liveness — no packet acknowledged within `replication.link_timeout`, keep-alives four
//! times per period — or when an answer makes no progress at all for [`ANSWER_STALL`] (a peer
//! whose connection lives but whose node stopped answering). How long a page takes to cross is
//! never a failure, and an error the peer answers with retryably (`UNAVAILABLE`,
//! `RESOURCE_EXHAUSTED`: a storage fault or a full disk over there) is retried on the same
//! connection with backoff, as is a failed insert into our own forward buffer.
//!
//! What a session made durable is not pulled again: the highest offset it inserted is kept for
//! the next session on any connection, which confirms it first and fetches after it (a peer that
//! refuses that confirm — it lost its data — is pulled from its frontier again).
//!
//! An artifact that cannot be made local while the connection works (the peer has lost it or
//! serves other content, the local store refuses it) is not a link failure either: the session
//! keeps the link up and tries the page again with backoff (`session`), so the operator sees
//! `artifact_retrieval_failed`, not a flapping link.
//!
//! One connection per peer pair: when both sides dialled, the connection dialled by the zone
//! whose name sorts first is kept; the other side closes its own and moves over. A session that
//! fails on a connection this side dialled while the connection stays up (an answer it cannot
//! use) leaves it for the next session, after the backoff, instead of dialling another:
//! a link that keeps failing holds one connection, not one per retry, and the peer's session on
//! it, which may be doing fine, goes on.
//!
//! The operator's gate switch comes first: while the gate is closed there is no session, no dial
//! and no offered connection is used; closing it ends the session and closes its connection.

mod artifacts;
mod calls;
mod holding;
mod session;
mod stored;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bsfg_proto::{CloseCode, RpcError};
use quinn::Connection;
use rand::{rngs::StdRng, SeedableRng};
use tokio::sync::watch;

use self::session::Session;
use super::{
    link_state::{Ended, LinkState, OnOffer},
    PeerLinkConfig, PeerLinkDeps,
};
use crate::{
    events::{LinkFailure, PeerConnectionReplaced, PeerDisconnected, CLOSED_BY_OPERATOR},
    transport::framed,
};

/// How long an answer may make no progress at all (no byte of it arriving) while its connection
/// stays alive, on top of the long-poll wait, before the peer counts as hung: far longer than a
/// lossy link's retransmissions ever hold a stream back.
pub const ANSWER_STALL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("{0}")]
    Stream(#[from] framed::StreamError),
    #[error("peer answered {0}")]
    Remote(RpcError),
    #[error("peer answered a {0} call with another kind of response")]
    Protocol(&'static str),
    #[error("forward buffer: {0}")]
    Local(RpcError),
    #[error("artifact: {0}")]
    Objects(crate::objects::ObjectError),
    /// An artifact a page references could not be made local while the connection works: the
    /// peer refused it or served other content, or the local store refused it. Not a link
    /// failure: the session waits and tries the page again.
    #[error("{0}")]
    Unretrievable(Box<PullError>),
    /// This relay's store is full and the page holds a fact for a next hop whose link is down,
    /// at `offset`: the page was cut before it, and the session pulls on past that hop's facts,
    /// or waits for the hop or for room.
    #[error("the store is full and next hop {hop} is not linked, or the store is exhausted")]
    HopHeld { hop: String, offset: u64 },
    /// Holds are to end (a hop linked again, or room): the session pulls again from the first
    /// fact they held.
    #[error("the holds of next hops {:?} end", .0.hops)]
    Released(holding::Release),
}

impl PullError {
    /// The bounded reason a session that failed with this counts under.
    fn kind(&self) -> LinkFailure {
        use quinn::ConnectionError as C;
        match self {
            Self::Stream(framed::StreamError::Connection(C::TimedOut) | framed::StreamError::Timeout(_)) => {
                LinkFailure::Timeout
            }
            Self::Stream(framed::StreamError::Connection(C::ApplicationClosed(close)))
                if matches!(
                    CloseCode::from_code(close.error_code.into_inner()),
                    Some(CloseCode::Shutdown | CloseCode::GateClosed | CloseCode::Standby)
                ) =>
            {
                LinkFailure::Stopped
            }
            Self::Stream(framed::StreamError::Connection(
                C::ApplicationClosed(_) | C::ConnectionClosed(_) | C::Reset | C::LocallyClosed,
            )) => LinkFailure::Closed,
            Self::Stream(_) => LinkFailure::Other,
            Self::Remote(_) => LinkFailure::Refused,
            Self::Protocol(_) => LinkFailure::Protocol,
            Self::Local(_) | Self::HopHeld { .. } | Self::Released(_) => LinkFailure::Local,
            Self::Objects(_) | Self::Unretrievable(_) => LinkFailure::Artifact,
        }
    }

    /// An answer worth repeating on the same connection: the peer said "not now" (a storage
    /// fault or a full disk over there, backpressure).
    fn retryable(&self) -> Option<&RpcError> {
        match self {
            Self::Remote(e) if e.retryable => Some(e),
            _ => None,
        }
    }
}

/// How a session on one connection ended.
enum SessionEnd {
    /// We gave the connection up for the pair's other one: not a link failure.
    Switched,
    /// An operator closed the gate; the connection is closed.
    GateClosed,
    Failed(PullError),
}

/// Why this side closes its connection when the pair keeps the peer's.
const KEEPING_YOURS: &[u8] = b"duplicate connection: keeping yours";

pub(super) struct Looper {
    session: Session,
    offers: watch::Receiver<Option<Connection>>,
    /// The connection this side dialled whose last session failed while it stayed up.
    kept: Option<Connection>,
    /// The operator's switch for this peer: `true` while the gate is closed.
    closed: watch::Receiver<bool>,
    state: LinkState,
}

/// Returns once the gate is open (at once if it is, or if its switch is gone).
async fn until_open(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| !*closed).await;
}

/// Returns once an operator closed the gate; never if its switch is gone.
async fn until_closed(closed: &mut watch::Receiver<bool>) {
    if closed.wait_for(|closed| *closed).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Looper {
    pub(super) fn new(
        config: Arc<PeerLinkConfig>,
        deps: PeerLinkDeps,
        offers: watch::Receiver<Option<Connection>>,
    ) -> Self {
        let state = LinkState::new(&config.zone, &config.peer, StdRng::from_os_rng());
        // Every configured peer has a switch; a missing one reads as a gate that never closes.
        let closed = deps
            .switches
            .subscribe(&config.peer)
            .unwrap_or_else(|| watch::Sender::new(false).subscribe());
        Self {
            session: Session::new(config, deps),
            kept: None,
            offers,
            closed,
            state,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let (conn, dialled) = self.connection().await;
            let progressed = AtomicBool::new(false);
            let end = self.run_session(&conn, dialled, &progressed).await;
            let ended = match &end {
                SessionEnd::Failed(e) => {
                    // A dialled connection that outlives its session's failure (an artifact the
                    // peer cannot serve, an answer refused) is the next session's: both nodes'
                    // RPC servers still serve it, so dialling another would leave it open beside
                    // the new one, one more after every failure. Closing it instead would end the
                    // peer's session on it, which may be doing fine.
                    if dialled && conn.close_reason().is_none() {
                        self.kept = Some(conn.clone());
                    }
                    self.session.deps.telemetry.emit(PeerDisconnected {
                        peer: &self.session.config.peer,
                        failure: Some((e.kind(), e)),
                    });
                    self.session.link_down(e.to_string());
                    Ended::Failed
                }
                SessionEnd::GateClosed => {
                    self.session.deps.telemetry.emit(PeerDisconnected {
                        peer: &self.session.config.peer,
                        failure: None,
                    });
                    Ended::GateClosed
                }
                SessionEnd::Switched => Ended::Switched,
            };
            let progressed = progressed.load(Ordering::Relaxed);
            // The next dial goes to the zone's next address; not while the connection is kept.
            if dialled && !progressed && self.kept.is_none() {
                self.session.next_address.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(delay) = self.state.on_session_end(ended, progressed) {
                // A connection the peer opens meanwhile (e.g. once its operator reopened a gate
                // that refused us) ends the wait, and so does an operator closing the gate.
                tokio::select! {
                    _ = tokio::time::timeout(delay, self.offers.changed()) => {}
                    () = until_closed(&mut self.closed) => {}
                }
            }
        }
    }

    /// The live connection this side dialled and kept, or a live one the peer offered (when both
    /// are there, the one the pair keeps), else a new dialled one (`true`: this side dialled it);
    /// waits with backoff until there is one, and first until the gate is open.
    async fn connection(&mut self) -> (Connection, bool) {
        loop {
            if *self.closed.borrow() {
                // No connection while an operator keeps the gate closed, a kept one neither.
                if let Some(kept) = self.kept.take() {
                    kept.close(CloseCode::GateClosed.code().into(), CLOSED_BY_OPERATOR.as_bytes());
                }
            }
            until_open(&mut self.closed).await;
            let kept = self.kept.take().filter(|c| c.close_reason().is_none());
            let offered = self.offers.borrow_and_update().clone();
            match (kept, offered.filter(|c| c.close_reason().is_none())) {
                // The pair keeps one connection, by the rule of a session offered another.
                (Some(kept), Some(offered)) => {
                    if self.state.on_offer(true) == OnOffer::KeepOurs {
                        return (kept, true);
                    }
                    kept.close(CloseCode::DuplicateConnection.code().into(), KEEPING_YOURS);
                    return (offered, false);
                }
                (Some(kept), None) => return (kept, true),
                (None, Some(offered)) => return (offered, false),
                (None, None) => {}
            }
            // A handshake to a peer that is not up yet can take the whole idle timeout; a
            // connection the peer opens to us meanwhile is taken at once.
            tokio::select! {
                dialled = self.session.dial() => match dialled {
                    Some(Ok(conn)) => return (conn, true),
                    Some(Err(reason)) => self.session.link_down(reason),
                    None => {}
                },
                _ = self.offers.changed() => continue,
                _ = until_closed(&mut self.closed) => continue,
            }
            let delay = self.state.on_no_connection();
            let _ = tokio::time::timeout(delay, self.offers.changed()).await;
        }
    }

    /// Pulls on `conn` until it fails, settling which connection the pair keeps when the peer
    /// offers another one meanwhile.
    async fn run_session(&mut self, conn: &Connection, dialled: bool, progressed: &AtomicBool) -> SessionEnd {
        let pull = self.session.pull(conn, progressed);
        tokio::pin!(pull);
        loop {
            tokio::select! {
                failed = &mut pull => return SessionEnd::Failed(failed),
                _ = until_closed(&mut self.closed) => {
                    conn.close(CloseCode::GateClosed.code().into(), CLOSED_BY_OPERATOR.as_bytes());
                    return SessionEnd::GateClosed;
                }
                changed = self.offers.changed() => {
                    if changed.is_err() {
                        // The actor is gone; the task is aborted with it.
                        return SessionEnd::Switched;
                    }
                    let offered = self.offers.borrow_and_update().clone();
                    if !offered.is_some_and(|o| o.close_reason().is_none() && o.stable_id() != conn.stable_id()) {
                        continue;
                    }
                    if self.state.on_offer(dialled) == OnOffer::KeepOurs {
                        continue;
                    }
                    let peer = &self.session.config.peer;
                    self.session.deps.telemetry.emit(PeerConnectionReplaced { peer });
                    conn.close(CloseCode::DuplicateConnection.code().into(), KEEPING_YOURS);
                    return SessionEnd::Switched;
                }
            }
        }
    }
}
