//! The pull loop of one peer link: get a connection, then fetch → insert → confirm until the
//! connection fails; back off and start again. Facts are confirmed only after the forward buffer
//! made them durable, so a crash anywhere re-pulls them and `putIfAbsent` drops the copies.

use std::{sync::Arc, time::Duration};

use bsfg_proto::{ConfirmRequest, FetchRequest, FetchResponse, FetchedFact, Request, Response, RpcError};
use quinn::Connection;
use rand::{rngs::StdRng, SeedableRng};
use slog::{info, warn};
use tokio::sync::watch;

use super::{backoff::Backoff, PeerLinkConfig, PeerLinkDeps};
use crate::{forward_buffer::Insert, transport::framed};

const BACKOFF_BASE: Duration = Duration::from_millis(100);

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
}

pub(super) struct Looper {
    config: Arc<PeerLinkConfig>,
    deps: PeerLinkDeps,
    offers: watch::Receiver<Option<Connection>>,
    backoff: Backoff,
    rng: StdRng,
}

impl Looper {
    pub(super) fn new(
        config: Arc<PeerLinkConfig>,
        deps: PeerLinkDeps,
        offers: watch::Receiver<Option<Connection>>,
    ) -> Self {
        let backoff = Backoff::new(BACKOFF_BASE, config.backoff_cap);
        Self {
            config,
            deps,
            offers,
            backoff,
            rng: StdRng::from_os_rng(),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let conn = self.connection().await;
            let result = self.pull(&conn).await;
            if let Err(e) = result {
                warn!(self.deps.log, "peer_disconnected"; "peer" => &self.config.peer, "reason" => %e);
            }
            tokio::time::sleep(self.backoff.next_delay(&mut self.rng)).await;
        }
    }

    /// An offered live connection, else a dialled one; waits (with backoff) until there is one.
    async fn connection(&mut self) -> Connection {
        loop {
            let offered = self.offers.borrow_and_update().clone();
            if let Some(conn) = offered.filter(|c| c.close_reason().is_none()) {
                return conn;
            }
            if let Some(conn) = self.dial().await {
                return conn;
            }
            let delay = self.backoff.next_delay(&mut self.rng);
            let _ = tokio::time::timeout(delay, self.offers.changed()).await;
        }
    }

    async fn dial(&mut self) -> Option<Connection> {
        let address = self.config.address.filter(|_| self.config.dial)?;
        let connecting = self
            .deps
            .endpoint
            .connect_with(self.deps.client_config.clone(), address, &self.config.peer);
        let result = match connecting {
            Ok(connecting) => connecting.await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(conn) => {
                let _ = self.deps.dialed.send((conn.clone(), self.config.peer.clone()));
                info!(self.deps.log, "peer_connected"; "peer" => &self.config.peer, "remote" => %address, "direction" => "outbound");
                Some(conn)
            }
            Err(reason) => {
                warn!(self.deps.log, "peer_dial_failed"; "peer" => &self.config.peer, "remote" => %address, "reason" => reason);
                None
            }
        }
    }

    async fn pull(&mut self, conn: &Connection) -> Result<(), PullError> {
        let mut after: Option<u64> = None;
        loop {
            let page = self.fetch(conn, after).await?;
            self.backoff.reset();
            let high = page.high_offset;
            self.insert(page.facts).await?;
            if high > after.unwrap_or(0) {
                self.confirm(conn, high).await?;
            }
            after = Some(high.max(after.unwrap_or(0)));
        }
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

    /// Inserts the facts that really come from the peer and are addressed to us; any other is
    /// rejected, logged and skipped (it is confirmed with the page so it cannot block the link).
    async fn insert(&self, facts: Vec<FetchedFact>) -> Result<(), PullError> {
        let (good, rejected): (Vec<_>, Vec<_>) = facts.into_iter().partition(|f| {
            f.message.envelope.from_zone == self.config.peer && f.message.envelope.to_zone == self.config.zone
        });
        for fact in &rejected {
            warn!(self.deps.log, "fact_rejected"; "peer" => &self.config.peer, "message_id" => &fact.message.envelope.message_id,
                "from_zone" => &fact.message.envelope.from_zone, "to_zone" => &fact.message.envelope.to_zone,
                "reason" => "from_zone or to_zone does not match the link");
        }
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
        if outcome.conflicts > 0 {
            warn!(self.deps.log, "fact_conflict"; "peer" => &self.config.peer, "count" => outcome.conflicts,
                "reason" => "message_id already holds other content from this zone");
        }
        Ok(())
    }

    /// A call bounded by the dead-link timeout: a peer that stops answering is a dead link even
    /// before QUIC's idle timeout notices.
    async fn call(&self, conn: &Connection, request: &Request) -> Result<Response, PullError> {
        let limit = self.config.max_wait + self.config.link_timeout;
        match tokio::time::timeout(limit, framed::call(conn, request, self.config.max_frame_bytes)).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                conn.close(1u32.into(), b"no answer within the link timeout");
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
