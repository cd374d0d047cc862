//! Actor `ForwardBuffer`: the inbound log. `putIfAbsent` of pages pulled from peers (with the
//! facts of the page this node relays, which go to the store log in the same commit), and
//! durable named consumers (fetch with long-poll, confirm) for local clients.
//!
//! A consumer is *seen* from its first fetch ([`Seen`], in memory): it is listed and has backlog
//! and lag series (at cursor 0) before it ever confirms, so a consumer that fetches and never
//! confirms can alert. Only its first confirm gives it a durable cursor, and only consumers with a
//! cursor hold forward facts (retention counts a fact confirmed once every consumer with a cursor
//! passed it): a one-off `bsfg fetch` under a new name must not keep facts forever. A consumer
//! seen but never confirmed is seen again at its next fetch after a restart. [`Consumers`] is the
//! operator's handle: list, delete, rewind (admin API); peers' derived consumers (`peer:<zone>`)
//! are not consumers of this buffer and cannot be touched.
//!
//! Names are chosen by clients, and each one known costs memory, four metric series and a storage
//! read a second for the status: a node keeps at most [`MAX_CONSUMERS`], and a fetch or confirm
//! under a new name beyond them is refused (`RESOURCE_EXHAUSTED`) until an operator deletes some.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, PoisonError},
};

use actix::prelude::*;
use bsfg_proto::{ErrorCode, FetchedFact, RpcError};

use crate::{
    journal::{CursorMove, InsertOutcome, Journal, JournalError, Prepared},
    long_poll::{self, PageRequest, Served},
    relay::Relayed,
    rpc::DrainHandle,
    storage::CursorKey,
};

/// Longest accepted consumer name, in bytes.
pub const MAX_CONSUMER_NAME: usize = 128;

/// The most consumers a node knows at once, seen fetching or with a cursor: far more than a
/// zone's applications, few enough that a client inventing a name per call cannot grow the
/// node's memory, metrics and status without bound.
pub const MAX_CONSUMERS: usize = 1024;

/// Plain configuration of the forward buffer.
#[derive(Debug, Clone)]
pub struct ForwardBufferConfig {
    pub max_frame_bytes: usize,
}

pub struct ForwardBuffer {
    config: ForwardBufferConfig,
    journal: Journal,
    seen: Seen,
    /// A drain ends consumers' long-polls at once: it waits for the calls in flight, and an
    /// idle poll would otherwise hold it (and a restart) for up to a minute.
    drain: DrainHandle,
}

impl ForwardBuffer {
    pub fn new(config: ForwardBufferConfig, journal: Journal, seen: Seen, drain: DrainHandle) -> Self {
        Self {
            config,
            journal,
            seen,
            drain,
        }
    }
}

/// The names of consumers that fetched since the node started; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<BTreeSet<String>>>);

impl Seen {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `name` may fetch or confirm: a consumer already seen or with a cursor always, a
    /// new one while fewer than [`MAX_CONSUMERS`] are known. Only a new name counts them.
    fn has_room(&self, journal: &Journal, name: &str) -> Result<(), RpcError> {
        if self.set().contains(name) {
            return Ok(());
        }
        let known = consumer_cursors(journal, self);
        if !known.contains_key(name) && known.len() >= MAX_CONSUMERS {
            return Err(RpcError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "consumer {name:?} is new, and this node already knows {MAX_CONSUMERS} consumers, the most \
                     it keeps: delete those no longer used (`bsfg consumers list`, `bsfg consumers delete NAME`)"
                ),
            ));
        }
        Ok(())
    }

    /// Records a consumer's fetch, if there is room for it (allocates only for a new name). A
    /// confirm is not recorded: one that succeeds gives the consumer its cursor.
    fn note(&self, journal: &Journal, name: &str) -> Result<(), RpcError> {
        self.has_room(journal, name)?;
        let mut set = self.set();
        if !set.contains(name) {
            set.insert(name.to_owned());
        }
        Ok(())
    }

    /// Every consumer seen, by name.
    pub fn names(&self) -> BTreeSet<String> {
        self.set().clone()
    }

    fn forget(&self, name: &str) -> bool {
        self.set().remove(name)
    }
}

impl Actor for ForwardBuffer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// A page pulled from a peer, sorted by the relay rules (`relay::Sorted`): the facts delivered
/// here, and those relayed toward their next hop, stored in one commit.
#[derive(Message)]
#[rtype(result = "Result<InsertOutcome, RpcError>")]
pub struct Insert {
    pub facts: Vec<FetchedFact>,
    pub relayed: Vec<Relayed>,
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
        Box::pin(async move {
            let relayed = msg
                .relayed
                .into_iter()
                .map(|r| Ok(Prepared::new(r.message)?.via(&r.next_hop)))
                .collect::<Result<Vec<_>, JournalError>>()?;
            Ok(journal.insert_page(msg.facts, relayed).await?)
        })
    }
}

impl Handler<Fetch> for ForwardBuffer {
    type Result = ResponseFuture<Result<Served, RpcError>>;

    fn handle(&mut self, msg: Fetch, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = check_consumer(&msg.consumer).and_then(|()| self.seen.note(&self.journal, &msg.consumer)) {
            return Box::pin(async move { Err(e) });
        }
        let cursor = CursorKey::Consumer(msg.consumer);
        let drain = self.drain.clone();
        Box::pin(long_poll::fetch_until(
            &self.journal,
            cursor,
            msg.page,
            self.config.max_frame_bytes / 2,
            async move { drain.raised().await },
        ))
    }
}

impl Handler<Confirm> for ForwardBuffer {
    type Result = ResponseFuture<Result<u64, RpcError>>;

    fn handle(&mut self, msg: Confirm, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = check_consumer(&msg.consumer).and_then(|()| self.seen.has_room(&self.journal, &msg.consumer)) {
            return Box::pin(async move { Err(e) });
        }
        let journal = self.journal.clone();
        Box::pin(async move { Ok(journal.confirm(CursorKey::Consumer(msg.consumer), msg.offset).await?) })
    }
}

/// The operator's handle on the forward buffer's consumers; cheap to clone.
#[derive(Clone)]
pub struct Consumers {
    journal: Journal,
    seen: Seen,
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
    pub fn new(journal: Journal, seen: Seen) -> Self {
        Self { journal, seen }
    }

    /// Every consumer with a cursor or seen fetching, with its cursor (0 when it has none), by name.
    pub fn list(&self) -> Vec<(String, u64)> {
        consumer_cursors(&self.journal, &self.seen).into_iter().collect()
    }

    /// Forgets `name`: its cursor goes, and with it its series and its hold on forward facts.
    /// Answers the cursor it had (0 for one only seen fetching).
    pub async fn delete(&self, name: &str) -> Result<u64, RpcError> {
        check_consumer(name)?;
        let seen = self.seen.forget(name);
        match self.journal.remove(CursorKey::Consumer(name.to_owned())).await {
            Ok(moved) => Ok(moved.previous.unwrap_or(0)),
            Err(JournalError::UnknownCursor(_)) if seen => Ok(0),
            Err(e) => Err(e.into()),
        }
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

/// Every consumer with a cursor, and every one seen fetching (at 0), by name.
pub fn consumer_cursors(journal: &Journal, seen: &Seen) -> std::collections::BTreeMap<String, u64> {
    let mut consumers: std::collections::BTreeMap<String, u64> = seen.names().into_iter().map(|n| (n, 0)).collect();
    for (key, cursor) in journal.cursors() {
        if let CursorKey::Consumer(name) = key {
            consumers.insert(name, cursor);
        }
    }
    consumers
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
