//! The pull loop of one peer link.
//!
//! A session runs on one connection until it fails: three stages run concurrently so a busy link
//! is not one round trip per page —
//!
//! ```text
//!  fetcher ──pages (after = previous high)──▶ inserter ──inserted-up-to──▶ confirmer
//! ```
//!
//! The fetcher asks for the next page (`after` = the previous page's `high_offset`) while the
//! inserter makes the previous one durable in the forward buffer; the confirmer confirms the
//! highest offset whose pages are all inserted (the contiguous frontier), never more. A crash
//! anywhere re-pulls from the peer's durable frontier and `putIfAbsent` drops the copies.
//!
//! One connection per peer pair: when both sides dialled, the connection dialled by the zone
//! whose name sorts first is kept; the other side closes its own and moves over.
//!
//! The operator's gate switch comes first: while the gate is closed there is no session, no dial
//! and no offered connection is used; closing it ends the session and closes its connection.
//!
//! The inserter pulls the artifacts a page references before inserting it (`artifacts`).

mod artifacts;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bsfg_proto::{CloseCode, ConfirmRequest, FetchRequest, FetchResponse, FetchedFact, Request, Response, RpcError};
use quinn::Connection;
use rand::{rngs::StdRng, SeedableRng};
use tokio::sync::{mpsc, watch};

use super::{
    link_state::{Ended, LinkState, OnOffer},
    PeerLinkConfig, PeerLinkDeps,
};
use crate::{
    events::{
        Direction, FactConflict, FactRejected, FactsDuplicated, LinkFailure, PeerConnected, PeerConnectionReplaced,
        PeerDialFailed, PeerDisconnected, Rejection, TlsHandshakeFailed, CLOSED_BY_OPERATOR,
    },
    forward_buffer::Insert,
    storage::Log,
    transport::{framed, tls},
    zone_gate,
};

/// Pages fetched ahead of the inserter.
const PIPELINE_DEPTH: usize = 2;

#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("{0}")]
    Stream(#[from] framed::StreamError),
    #[error("peer answered {0}")]
    Remote(RpcError),
    #[error("peer answered a {0} call with another kind of response")]
    Protocol(&'static str),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("forward buffer: {0}")]
    Local(RpcError),
    #[error("artifact: {0}")]
    Objects(crate::objects::ObjectError),
}

impl PullError {
    /// The bounded reason a session that failed with this counts under.
    fn kind(&self) -> LinkFailure {
        use quinn::ConnectionError as C;
        match self {
            Self::Stream(framed::StreamError::Connection(C::TimedOut)) | Self::Timeout(_) => LinkFailure::Timeout,
            Self::Stream(framed::StreamError::Connection(
                C::ApplicationClosed(_) | C::ConnectionClosed(_) | C::Reset | C::LocallyClosed,
            )) => LinkFailure::Closed,
            Self::Stream(_) => LinkFailure::Other,
            Self::Remote(_) => LinkFailure::Refused,
            Self::Protocol(_) => LinkFailure::Protocol,
            Self::Local(_) => LinkFailure::Local,
            Self::Objects(_) => LinkFailure::Artifact,
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

pub(super) struct Looper {
    session: Session,
    offers: watch::Receiver<Option<Connection>>,
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
            session: Session {
                config,
                deps,
                next_address: Default::default(),
            },
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
            if dialled && !progressed {
                self.session.next_address.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(delay) = self.state.on_session_end(ended, progressed) {
                // A connection the peer opens meanwhile (e.g. once its operator reopened a gate
                // that refused us) ends the wait.
                let _ = tokio::time::timeout(delay, self.offers.changed()).await;
            }
        }
    }

    /// An offered live connection, else a dialled one (`true`); waits with backoff until there is
    /// one, and first until the gate is open.
    async fn connection(&mut self) -> (Connection, bool) {
        loop {
            until_open(&mut self.closed).await;
            let offered = self.offers.borrow_and_update().clone();
            if let Some(conn) = offered.filter(|c| c.close_reason().is_none()) {
                return (conn, false);
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
                    conn.close(
                        CloseCode::DuplicateConnection.code().into(),
                        b"duplicate connection: keeping yours",
                    );
                    return SessionEnd::Switched;
                }
            }
        }
    }
}

/// What a session needs: configuration and handles, shared by the concurrent stages.
struct Session {
    config: Arc<PeerLinkConfig>,
    deps: PeerLinkDeps,
    /// The address of the peer's list to dial next: moves on after a failed dial or a session
    /// that pulled nothing (an HA zone's standby refuses every call, or the instance is gone).
    next_address: std::sync::atomic::AtomicUsize,
}

impl Session {
    fn link_down(&self, reason: String) {
        self.deps.gate.do_send(zone_gate::LinkDown {
            peer: self.config.peer.clone(),
            reason,
        });
    }

    /// `None` when this node does not dial this peer.
    async fn dial(&self) -> Option<Result<Connection, String>> {
        let addresses = self.config.addresses.as_ref().filter(|_| self.config.dial)?;
        let i = self.next_address.load(Ordering::Relaxed);
        let address = match addresses.resolve(i) {
            Ok(address) => address,
            Err(e) => {
                self.next_address.fetch_add(1, Ordering::Relaxed);
                return Some(Err(e.to_string()));
            }
        };
        let connecting =
            self.deps
                .endpoint
                .connect_with(self.deps.client_config.borrow().clone(), address, &self.config.peer);
        let result = match connecting {
            Ok(connecting) => connecting.await.map_err(|error| self.handshake_failed(address, &error)),
            Err(e) => Err((LinkFailure::Other, e.to_string())),
        };
        Some(match result {
            Ok(conn) => {
                let _ = self.deps.dialed.send((conn.clone(), self.config.peer.clone()));
                self.deps.telemetry.emit(PeerConnected {
                    peer: &self.config.peer,
                    remote: address,
                    direction: Direction::Outbound,
                    not_after: &tls::peer_not_after(&conn),
                });
                Ok(conn)
            }
            Err((kind, reason)) => {
                self.next_address.fetch_add(1, Ordering::Relaxed);
                self.deps.telemetry.emit(PeerDialFailed {
                    peer: &self.config.peer,
                    remote: address,
                    kind,
                    reason: &reason,
                });
                Err(format!("cannot connect to {address}: {reason}"))
            }
        })
    }

    /// A dial whose handshake did not complete: a refused certificate counts as a TLS failure
    /// on this side too; a dial nobody answered is an unreachable peer.
    fn handshake_failed(&self, remote: std::net::SocketAddr, error: &quinn::ConnectionError) -> (LinkFailure, String) {
        self.deps.telemetry.emit(TlsHandshakeFailed {
            remote,
            direction: Direction::Outbound,
            peer: Some(&self.config.peer),
            error,
        });
        let kind = match error {
            _ if tls::handshake_alert(error).is_some() => LinkFailure::Tls,
            quinn::ConnectionError::TimedOut => LinkFailure::Unreachable,
            _ => LinkFailure::Other,
        };
        (kind, error.to_string())
    }

    /// The three stages of a session; returns the first failure.
    async fn pull(&self, conn: &Connection, progressed: &AtomicBool) -> PullError {
        let (pages_tx, pages_rx) = mpsc::channel(PIPELINE_DEPTH);
        let (inserted_tx, inserted_rx) = watch::channel(0u64);
        let stages = tokio::try_join!(
            self.fetcher(conn, pages_tx, progressed),
            self.inserter(conn, pages_rx, inserted_tx),
            self.confirmer(conn, inserted_rx),
        );
        match stages {
            Err(e) => e,
            Ok(_) => PullError::Protocol("pipeline stopped"),
        }
    }

    async fn fetcher(
        &self,
        conn: &Connection,
        pages: mpsc::Sender<FetchResponse>,
        progressed: &AtomicBool,
    ) -> Result<(), PullError> {
        let mut after: Option<u64> = None;
        loop {
            self.until_room(conn).await?;
            let page = self.fetch(conn, after).await?;
            progressed.store(true, Ordering::Relaxed);
            self.deps.gate.do_send(zone_gate::Pulled {
                peer: self.config.peer.clone(),
                behind: page.facts.len() >= self.config.batch_limit as usize,
            });
            after = Some(page.high_offset.max(after.unwrap_or(0)));
            if pages.send(page).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Waits while the forward buffer is full (SPEC §5: pressure travels back to the sender's
    /// store buffer); a connection lost meanwhile still ends the session.
    async fn until_room(&self, conn: &Connection) -> Result<(), PullError> {
        let mut paused = self.deps.pulls_paused.clone();
        tokio::select! {
            _ = paused.wait_for(|paused| !*paused) => Ok(()),
            lost = conn.closed() => Err(framed::StreamError::from(lost).into()),
        }
    }

    async fn inserter(
        &self,
        conn: &Connection,
        mut pages: mpsc::Receiver<FetchResponse>,
        inserted: watch::Sender<u64>,
    ) -> Result<(), PullError> {
        while let Some(page) = pages.recv().await {
            self.insert(conn, page.facts).await?;
            inserted.send_if_modified(|high| {
                let moved = page.high_offset > *high;
                *high = (*high).max(page.high_offset);
                moved
            });
        }
        Ok(())
    }

    async fn confirmer(&self, conn: &Connection, mut inserted: watch::Receiver<u64>) -> Result<(), PullError> {
        let mut confirmed = 0;
        while inserted.changed().await.is_ok() {
            let high = *inserted.borrow_and_update();
            if high > confirmed {
                self.confirm(conn, high).await?;
                confirmed = high;
            }
        }
        Ok(())
    }

    async fn fetch(&self, conn: &Connection, after: Option<u64>) -> Result<FetchResponse, PullError> {
        let request = Request::Fetch(FetchRequest {
            consumer: format!("peer:{}", self.config.zone),
            limit: self.config.batch_limit,
            max_wait_ms: self.config.max_wait.as_millis().min(u128::from(u32::MAX)) as u32,
            after,
        });
        match self.call(conn, &request).await? {
            Response::Fetch(page) => Ok(page),
            Response::Error(e) => Err(PullError::Remote(e)),
            _ => Err(PullError::Protocol("fetch")),
        }
    }

    /// Inserts the facts that really come from the peer and are addressed to us, once their
    /// artifacts are local; any other is rejected, logged and skipped (it is confirmed with the
    /// page so it cannot block the link).
    async fn insert(&self, conn: &Connection, facts: Vec<FetchedFact>) -> Result<(), PullError> {
        let (good, rejected): (Vec<_>, Vec<_>) = facts.into_iter().partition(|f| {
            f.message.envelope.from_zone == self.config.peer && f.message.envelope.to_zone == self.config.zone
        });
        for fact in &rejected {
            let envelope = &fact.message.envelope;
            let rejection = match envelope.from_zone == self.config.peer {
                true => Rejection::WrongDestination,
                false => Rejection::WrongOrigin,
            };
            self.deps.telemetry.emit(FactRejected {
                peer: &self.config.peer,
                message_id: &envelope.message_id,
                from_zone: &envelope.from_zone,
                to_zone: &envelope.to_zone,
                rejection,
            });
        }
        let good = self.with_artifacts(conn, good).await?;
        if good.is_empty() {
            return Ok(());
        }
        let insert = Insert {
            from_zone: self.config.peer.clone(),
            facts: good,
        };
        let sent = self.deps.forward.send(insert).await;
        let outcome = sent
            .map_err(|e| PullError::Local(RpcError::unavailable(e.to_string())))?
            .map_err(PullError::Local)?;
        let telemetry = &self.deps.telemetry;
        telemetry.emit(FactsDuplicated {
            log: Log::Forward,
            count: outcome.duplicates,
        });
        if outcome.conflicts > 0 {
            telemetry.emit(FactConflict {
                peer: &self.config.peer,
                count: outcome.conflicts,
            });
        }
        Ok(())
    }

    /// A call bounded by the dead-link timeout: a peer that stops answering is a dead link even
    /// when QUIC keep-alives still get through.
    async fn call(&self, conn: &Connection, request: &Request) -> Result<Response, PullError> {
        self.bounded(conn, framed::call(conn, request, self.config.max_frame_bytes))
            .await
    }

    /// Runs one call on `conn` within the dead-link timeout; closes the connection when it expires.
    async fn bounded<T>(
        &self,
        conn: &Connection,
        call: impl Future<Output = Result<T, framed::StreamError>>,
    ) -> Result<T, PullError> {
        let limit = self.config.max_wait + self.config.link_timeout;
        match tokio::time::timeout(limit, call).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                conn.close(CloseCode::DeadLink.code().into(), b"no answer within the link timeout");
                Err(PullError::Timeout(limit))
            }
        }
    }

    async fn confirm(&self, conn: &Connection, offset: u64) -> Result<(), PullError> {
        let request = Request::Confirm(ConfirmRequest {
            consumer: format!("peer:{}", self.config.zone),
            offset,
        });
        match self.call(conn, &request).await? {
            Response::Confirm(_) => Ok(()),
            Response::Error(e) => Err(PullError::Remote(e)),
            _ => Err(PullError::Protocol("confirm")),
        }
    }
}
