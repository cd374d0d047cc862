//! Actor `ForwardBuffer`: the inbound log. `putIfAbsent` of pages pulled from peers, and durable
//! named consumers (fetch with long-poll, confirm) for local clients. A consumer is known from its
//! first fetch: the fetch registers its cursor at 0 (durably), so its backlog and lag show (and
//! forward facts wait for it) before it ever confirms. [`Consumers`] is the operator's handle on
//! them: list, delete, rewind (admin API); peers' derived consumers (`peer:<zone>`) are not
//! consumers of this buffer and cannot be touched.

use actix::prelude::*;
use bsfg_proto::{FetchedFact, RpcError};

use crate::{
    journal::{CursorMove, InsertOutcome, Journal},
    long_poll::{self, PageRequest, Served},
    storage::CursorKey,
};

/// Longest accepted consumer name, in bytes.
pub const MAX_CONSUMER_NAME: usize = 128;

/// Plain configuration of the forward buffer.
#[derive(Debug, Clone)]
pub struct ForwardBufferConfig {
    pub max_frame_bytes: usize,
}

pub struct ForwardBuffer {
    config: ForwardBufferConfig,
    journal: Journal,
}

impl ForwardBuffer {
    pub fn new(config: ForwardBufferConfig, journal: Journal) -> Self {
        Self { config, journal }
    }
}

impl Actor for ForwardBuffer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// A page of facts pulled from peer `from_zone`, already checked to come from it.
#[derive(Message)]
#[rtype(result = "Result<InsertOutcome, RpcError>")]
pub struct Insert {
    pub from_zone: String,
    pub facts: Vec<FetchedFact>,
}

/// FetchFacts from a local consumer.
#[derive(Message)]
#[rtype(result = "Result<Served, RpcError>")]
pub struct Fetch {
    pub consumer: String,
    pub page: PageRequest,
}

/// ConfirmReceipt from a local consumer.
#[derive(Message)]
#[rtype(result = "Result<u64, RpcError>")]
pub struct Confirm {
    pub consumer: String,
    pub offset: u64,
}

impl Handler<Insert> for ForwardBuffer {
    type Result = ResponseFuture<Result<InsertOutcome, RpcError>>;

    fn handle(&mut self, msg: Insert, _: &mut Self::Context) -> Self::Result {
        let journal = self.journal.clone();
        Box::pin(async move { Ok(journal.insert(msg.from_zone, msg.facts).await?) })
    }
}

impl Handler<Fetch> for ForwardBuffer {
    type Result = ResponseFuture<Result<Served, RpcError>>;

    fn handle(&mut self, msg: Fetch, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = check_consumer(&msg.consumer) {
            return Box::pin(async move { Err(e) });
        }
        let (journal, max_bytes) = (self.journal.clone(), self.config.max_frame_bytes / 2);
        Box::pin(async move {
            let cursor = CursorKey::Consumer(msg.consumer);
            if !journal.knows(&cursor) {
                journal.register(cursor.clone()).await?;
            }
            long_poll::fetch(&journal, cursor, msg.page, max_bytes).await
        })
    }
}

impl Handler<Confirm> for ForwardBuffer {
    type Result = ResponseFuture<Result<u64, RpcError>>;

    fn handle(&mut self, msg: Confirm, _: &mut Self::Context) -> Self::Result {
        let journal = self.journal.clone();
        Box::pin(async move {
            check_consumer(&msg.consumer)?;
            Ok(journal.confirm(CursorKey::Consumer(msg.consumer), msg.offset).await?)
        })
    }
}

/// The operator's handle on the forward buffer's consumers; cheap to clone.
#[derive(Clone)]
pub struct Consumers {
    journal: Journal,
}

/// A consumer's cursor moved back by an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewound {
    pub previous: u64,
    pub cursor: u64,
    /// The first fact it will be given again (`None`: nothing after the cursor is retained).
    pub next_offset: Option<u64>,
}

impl Consumers {
    pub fn new(journal: Journal) -> Self {
        Self { journal }
    }

    /// Every known consumer and its cursor, by name.
    pub fn list(&self) -> Vec<(String, u64)> {
        let mut consumers: Vec<(String, u64)> = self
            .journal
            .cursors()
            .into_iter()
            .filter_map(|(key, cursor)| match key {
                CursorKey::Consumer(name) => Some((name, cursor)),
                CursorKey::Peer(_) => None,
            })
            .collect();
        consumers.sort();
        consumers
    }

    /// Forgets `name`: its cursor goes, and with it its series and its hold on forward facts.
    /// Answers the cursor it had.
    pub async fn delete(&self, name: &str) -> Result<u64, RpcError> {
        check_consumer(name)?;
        let moved = self.journal.remove(CursorKey::Consumer(name.to_owned())).await?;
        Ok(moved.previous.unwrap_or(0))
    }

    /// Moves `name`'s cursor back to `to`: what follows it and is still retained is delivered
    /// again (facts already reclaimed are gone).
    pub async fn rewind(&self, name: &str, to: u64) -> Result<Rewound, RpcError> {
        check_consumer(name)?;
        let key = CursorKey::Consumer(name.to_owned());
        let CursorMove { previous, cursor } = self.journal.rewind(key, to).await?;
        let storage = self.journal.storage();
        let high = *self.journal.forward_high().borrow();
        let next = tokio::task::spawn_blocking(move || storage.read_forward(to, high, 1))
            .await
            .map_err(|e| RpcError::internal(format!("read task failed: {e}")))?
            .map_err(|e| RpcError::unavailable(e.to_string()))?;
        Ok(Rewound {
            previous: previous.unwrap_or(0),
            cursor: cursor.unwrap_or(to),
            next_offset: next.first().map(|r| r.offset),
        })
    }
}

/// Consumer names are durable keys chosen by clients; `peer:` names belong to peer nodes.
fn check_consumer(name: &str) -> Result<(), RpcError> {
    if name.is_empty() || name.len() > MAX_CONSUMER_NAME || name.chars().any(char::is_control) {
        return Err(RpcError::invalid(format!(
            "consumer name {name:?} must be 1..={MAX_CONSUMER_NAME} printable bytes"
        )));
    }
    if name.starts_with("peer:") {
        return Err(RpcError::denied(format!(
            "consumer name {name:?} is reserved for peer nodes"
        )));
    }
    Ok(())
}
