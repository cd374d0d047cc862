//! The session's calls to the peer. Each waits on its answer patiently: as long as the answer's
//! bytes keep coming, however slow the link; only an answer that makes no progress for the
//! long-poll wait plus [`ANSWER_STALL`] marks the peer as hung (the connection is closed as dead).
//! A retryable refusal (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`) is repeated on the same connection
//! with backoff, so a peer whose disk is full or whose storage faults keeps its link.

use std::{future::Future, time::Duration};

use bsfg_proto::{
    CloseCode, ConfirmRequest, FetchHeldRequest, FetchRequest, FetchResponse, FetchedFact, Request, Response,
};
use quinn::Connection;
use rand::{rngs::StdRng, SeedableRng};

use super::{session::Session, PullError, ANSWER_STALL};
use crate::{
    events::PeerCallRetried,
    peer_link::backoff::Backoff,
    transport::framed::{self, Answered, Patience},
};

/// First wait before repeating a refused call.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest wait between two attempts of a refused call.
const RETRY_CAP: Duration = Duration::from_secs(5);

impl Session {
    /// How long an answer may make no progress: the long-poll wait plus [`ANSWER_STALL`] for its
    /// first byte, [`ANSWER_STALL`] between any two later ones.
    pub(super) fn patience(&self) -> Patience {
        Patience {
            first: self.config.max_wait + ANSWER_STALL,
            between: ANSWER_STALL,
        }
    }

    /// Runs `call` on `conn`; when its answer stalls, the peer is hung and the connection closed.
    pub(super) async fn watched<T>(
        &self,
        conn: &Connection,
        call: impl Future<Output = Result<T, framed::StreamError>>,
    ) -> Result<T, PullError> {
        match call.await {
            Err(stalled @ framed::StreamError::Timeout(_)) => {
                conn.close(CloseCode::DeadLink.code().into(), b"the answer made no progress");
                Err(stalled.into())
            }
            other => Ok(other?),
        }
    }

    async fn call(&self, conn: &Connection, request: &Request) -> Result<Answered, PullError> {
        let call = framed::patient_call(conn, request, self.config.max_frame_bytes, self.patience());
        Ok(self.watched(conn, call).await?.0)
    }

    /// The page after `after` (the peer's frontier when `None`), at most `limit` facts, leaving
    /// out the facts for `held_zones` (`FetchHeld`), and its size on the wire; repeated while the
    /// peer refuses retryably.
    pub(super) async fn fetch(
        &self,
        conn: &Connection,
        after: Option<u64>,
        limit: u32,
        held_zones: &[String],
    ) -> Result<(FetchResponse, usize), PullError> {
        let fetch = FetchRequest {
            consumer: format!("peer:{}", self.config.zone),
            limit,
            max_wait_ms: self.config.max_wait.as_millis().min(u128::from(u32::MAX)) as u32,
            after,
        };
        let request = match held_zones {
            [] => Request::Fetch(fetch),
            held => Request::FetchHeld(FetchHeldRequest {
                fetch,
                held_zones: held.to_vec(),
            }),
        };
        self.retrying(conn, "fetch_facts", || async {
            let answered = self.call(conn, &request).await?;
            match answered.response {
                Response::Fetch(page) => Ok((page, answered.frame_bytes)),
                Response::Error(e) => Err(PullError::Remote(e)),
                _ => Err(PullError::Protocol("fetch")),
            }
        })
        .await
    }

    /// The fact the peer serves at `offset`, if any, at once (a plain fetch of one fact: held
    /// zones are not left out); repeated while it refuses retryably.
    pub(super) async fn fact_at(&self, conn: &Connection, offset: u64) -> Result<Option<FetchedFact>, PullError> {
        let request = Request::Fetch(FetchRequest {
            consumer: format!("peer:{}", self.config.zone),
            limit: 1,
            max_wait_ms: 0,
            after: Some(offset.saturating_sub(1)),
        });
        self.retrying(conn, "fetch_facts", || async {
            match self.call(conn, &request).await?.response {
                Response::Fetch(page) => Ok(page.facts.into_iter().find(|fact| fact.offset == offset)),
                Response::Error(e) => Err(PullError::Remote(e)),
                _ => Err(PullError::Protocol("fetch")),
            }
        })
        .await
    }

    /// Confirms `offset` to the peer; repeated while it refuses retryably.
    pub(super) async fn confirm(&self, conn: &Connection, offset: u64) -> Result<(), PullError> {
        self.retrying(conn, "confirm_receipt", || self.confirm_once(conn, offset))
            .await
    }

    pub(super) async fn confirm_once(&self, conn: &Connection, offset: u64) -> Result<(), PullError> {
        let request = Request::Confirm(ConfirmRequest {
            consumer: format!("peer:{}", self.config.zone),
            offset,
        });
        match self.call(conn, &request).await?.response {
            Response::Confirm(_) => Ok(()),
            Response::Error(e) => Err(PullError::Remote(e)),
            _ => Err(PullError::Protocol("confirm")),
        }
    }

    /// Runs `attempt` until it succeeds or fails for a reason other than a retryable refusal,
    /// waiting with backoff between refusals (and ending early if the connection is lost).
    async fn retrying<T, F, A>(&self, conn: &Connection, operation: &str, mut attempt: A) -> Result<T, PullError>
    where
        A: FnMut() -> F,
        F: Future<Output = Result<T, PullError>>,
    {
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
        let mut rng = StdRng::from_os_rng();
        loop {
            let failure = match attempt().await {
                Ok(done) => return Ok(done),
                Err(failure) => failure,
            };
            let Some(error) = failure.retryable() else {
                return Err(failure);
            };
            let retry_in = backoff.next_delay(&mut rng);
            self.deps.telemetry.emit(PeerCallRetried {
                peer: &self.config.peer,
                operation,
                error,
                retry_in,
            });
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                lost = conn.closed() => return Err(framed::StreamError::from(lost).into()),
            }
        }
    }
}
