//! Actor `StoreBuffer`: the outbound log. Idempotent durable append for local producers, paged
//! fetch and confirm for peer nodes (their cursor is their frontier). Validation (including the
//! artifact reference check and the route to `to_zone`: each fact waits for its next hop, SPEC
//! §4a) and admission (the `Backpressure` actor's flag, never a storage read) happen here;
//! ordering, idempotency and group commit happen in the journal.
//!
//! A peer confirms only what this process served it (or what its cursor already passed). The
//! offsets a peer pulled from another store — this node before its data directory was replaced,
//! or another instance of an HA zone — name other facts here: confirming them would delete facts
//! the peer never received. Such a confirm is refused, and the peer pulls from its frontier.

use std::{collections::HashMap, sync::Arc};

use actix::prelude::*;
use bsfg_proto::{AppendResponse, Message, RpcError};

use crate::{
    backpressure::Admission,
    journal::{AppendMode, Journal, JournalError, Prepared, QueuedFacts},
    long_poll::{self, PageRequest, Served},
    objects::{Hold, ObjectStore},
    relay::Routing,
    storage::CursorKey,
};

/// Plain configuration of the store buffer.
#[derive(Debug, Clone)]
pub struct StoreBufferConfig {
    pub zone: String,
    /// Peers and routes: the next hop of each `to_zone`.
    pub routing: Arc<Routing>,
    pub max_fact_bytes: usize,
    pub max_frame_bytes: usize,
}

pub struct StoreBuffer {
    config: Arc<StoreBufferConfig>,
    journal: Journal,
    admission: Admission,
    objects: ObjectStore,
    /// The highest offset this process has served each peer (see the module docs).
    served: HashMap<String, u64>,
}

impl StoreBuffer {
    pub fn new(config: StoreBufferConfig, journal: Journal, admission: Admission, objects: ObjectStore) -> Self {
        Self {
            config: Arc::new(config),
            journal,
            admission,
            objects,
            served: HashMap::new(),
        }
    }
}

impl Actor for StoreBuffer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// AppendFact (one message) or AppendFacts (many) from a local producer, up to the journal's
/// queue: validated, admitted and prepared here, the facts are queued on the journal, and the
/// answer is the [`QueuedAppend`] whose [`QueuedAppend::outcomes`] come once they are durable.
/// Each message gets the outcome AppendFact would give it alone, in the order given — or, with
/// [`AppendMode::StopAtFailure`], the messages up to the first failed one get their outcomes and
/// nothing after it is stored or answered — and every fact taken shares one group commit (in an
/// HA zone, a call of facts that stand alone past 1 MiB is taken in parts: `Journal::queue_append`). The
/// call fails as a whole only when backpressure refuses new facts or the commit fails. The
/// journal plans in queue order, so a caller that sends its next `Append` once the last one is
/// queued has its new facts stored in that order (an append stream's groups).
#[derive(Message)]
#[rtype(result = "Result<QueuedAppend, RpcError>")]
pub struct Append(pub Vec<Message>, pub AppendMode);

/// The outcome of each message of an [`Append`], in its order.
pub type Outcomes = Vec<Result<AppendResponse, RpcError>>;

/// An [`Append`] queued on the journal.
pub struct QueuedAppend {
    slots: Vec<Option<RpcError>>,
    mode: AppendMode,
    holds: Vec<Hold>,
    journaled: Option<QueuedFacts>,
}

impl QueuedAppend {
    /// A call with nothing for the journal (every frame of an append stream's group refused).
    pub fn empty() -> Self {
        Self {
            slots: Vec::new(),
            mode: AppendMode::EachAlone,
            holds: Vec::new(),
            journaled: None,
        }
    }

    /// The outcome of each message, once the journal has answered.
    pub async fn outcomes(self) -> Result<Outcomes, RpcError> {
        let journaled = match self.journaled {
            None => Vec::new(),
            Some(queued) => queued.answer().await?,
        };
        // Artifacts referenced by these facts were not swept until the journal answered.
        drop(self.holds);
        Ok(outcomes(self.slots, journaled, self.mode))
    }
}

/// FetchFacts from a peer node: facts addressed to `peer`.
#[derive(Message)]
#[rtype(result = "Result<Served, RpcError>")]
pub struct PeerFetch {
    pub peer: String,
    pub page: PageRequest,
}

/// ConfirmReceipt from a peer node: its frontier moves to `offset`.
#[derive(Message)]
#[rtype(result = "Result<u64, RpcError>")]
pub struct PeerConfirm {
    pub peer: String,
    pub offset: u64,
}

impl Handler<Append> for StoreBuffer {
    type Result = ResponseFuture<Result<QueuedAppend, RpcError>>;

    fn handle(&mut self, Append(messages, mode): Append, _: &mut Self::Context) -> Self::Result {
        let (config, journal) = (self.config.clone(), self.journal.clone());
        let (admission, objects) = (self.admission.clone(), self.objects.clone());
        Box::pin(async move {
            let checked: Vec<_> = messages
                .into_iter()
                .map(|message| admit(&config, &message).map(|next_hop| (message, next_hop)))
                .collect();
            if checked.iter().any(Result::is_ok) {
                admission.check()?;
            }
            // Each slot is the message's own error, or `None` when the journal decides it.
            let mut slots = Vec::with_capacity(checked.len());
            let mut prepared = Vec::with_capacity(checked.len());
            // Artifacts referenced by these facts are not swept until the journal has answered.
            let mut holds = Vec::new();
            for message in checked {
                let ready = match message {
                    Ok((message, next_hop)) => prepare(&objects, message, next_hop).await,
                    Err(e) => Err(e),
                };
                let failed = ready.is_err();
                match ready {
                    Ok((fact, hold)) => {
                        prepared.push(fact);
                        holds.extend(hold);
                        slots.push(None);
                    }
                    Err(e) => slots.push(Some(e)),
                }
                if failed && mode == AppendMode::StopAtFailure {
                    break;
                }
            }
            let journaled = match prepared.is_empty() {
                true => None,
                false => Some(journal.queue_append(prepared, mode).await?),
            };
            Ok(QueuedAppend {
                slots,
                mode,
                holds,
                journaled,
            })
        })
    }
}

/// Merges the refusals found before the journal with the journal's outcomes, in call order; with
/// [`AppendMode::StopAtFailure`] the answer ends at the first failure.
fn outcomes(
    slots: Vec<Option<RpcError>>,
    journaled: Vec<Result<AppendResponse, JournalError>>,
    mode: AppendMode,
) -> Outcomes {
    let mut journaled = journaled.into_iter();
    let mut outcomes = Vec::with_capacity(slots.len());
    for slot in slots {
        let outcome = match slot {
            Some(refused) => Err(refused),
            None => journaled.next().map_or_else(
                || Err(RpcError::internal("the journal answered fewer facts than it was given")),
                |result| result.map_err(RpcError::from),
            ),
        };
        let failed = outcome.is_err();
        outcomes.push(outcome);
        if failed && mode == AppendMode::StopAtFailure {
            break;
        }
    }
    outcomes
}

/// The artifact check, then encoding and hashing: everything before the journal that may await.
/// The hold keeps the fact's artifact from being swept until the fact is durable.
async fn prepare(
    objects: &ObjectStore,
    message: Message,
    next_hop: &str,
) -> Result<(Prepared, Option<Hold>), RpcError> {
    let hold = reference_artifact(objects, &message, next_hop).await?;
    Ok((Prepared::new(message)?.via(next_hop), hold))
}

/// The checks that need this node's configuration (SPEC §2, §4a); answers the fact's next hop.
fn admit<'c>(config: &'c StoreBufferConfig, message: &Message) -> Result<&'c str, RpcError> {
    message
        .validate(config.max_fact_bytes)
        .map_err(|e| RpcError::invalid(e.to_string()))?;
    let envelope = &message.envelope;
    if envelope.from_zone != config.zone {
        return Err(RpcError::invalid(format!(
            "from_zone {:?} is not this node's zone {:?}",
            envelope.from_zone, config.zone
        )));
    }
    if !envelope.hops.is_empty() {
        return Err(RpcError::invalid(
            "hops must be empty when a producer appends: each relaying zone adds itself",
        ));
    }
    config.routing.next_hop(&envelope.to_zone).ok_or_else(|| {
        RpcError::invalid(format!(
            "no route to zone {}: it is neither a peer of {} nor in its [[routes]]",
            envelope.to_zone, config.zone
        ))
    })
}

/// A fact that references an artifact is accepted only when the artifact is stored here with the
/// referenced digest and size (SPEC §3). The object is marked referenced, and readable by the
/// fact's next hop, *before* the append is journaled: if the append then fails, the object merely
/// stays immutable, which is harmless; the other order could let a fact reference content that
/// is replaced a moment later.
async fn reference_artifact(
    objects: &ObjectStore,
    message: &Message,
    next_hop: &str,
) -> Result<Option<Hold>, RpcError> {
    let Some(artifact) = message.artifact().map_err(|e| RpcError::invalid(e.to_string()))? else {
        return Ok(None);
    };
    let hold = objects.hold(&artifact.bucket, &artifact.key);
    objects.reference(artifact, Some(next_hop.to_owned())).await?;
    Ok(Some(hold))
}

impl Handler<PeerFetch> for StoreBuffer {
    type Result = ResponseActFuture<Self, Result<Served, RpcError>>;

    fn handle(&mut self, msg: PeerFetch, _: &mut Self::Context) -> Self::Result {
        let cursor = CursorKey::Peer(msg.peer.clone());
        let fetch = long_poll::fetch(&self.journal, cursor, msg.page, self.config.max_frame_bytes / 2);
        Box::pin(fetch.into_actor(self).map(move |served, actor, _| {
            if let Ok(served) = &served {
                // An empty page after an `after` past the store's end is complete up to that
                // `after`: never taken as served what the store does not hold.
                let stored = *actor.journal.store_high().borrow();
                let high = actor.served.entry(msg.peer).or_default();
                *high = (*high).max(served.page.high_offset.min(stored));
            }
            served
        }))
    }
}

impl Handler<PeerConfirm> for StoreBuffer {
    type Result = ResponseFuture<Result<u64, RpcError>>;

    fn handle(&mut self, msg: PeerConfirm, _: &mut Self::Context) -> Self::Result {
        let served = self.served.get(&msg.peer).copied().unwrap_or(0);
        let key = CursorKey::Peer(msg.peer);
        let cursor = self.journal.cursor(&key);
        if msg.offset > served.max(cursor) {
            let refused = RpcError::invalid(format!(
                "offset {} was not served to this peer by this store (served up to {served}, confirmed up to \
                 {cursor}): pull from the confirmed frontier",
                msg.offset
            ));
            return Box::pin(std::future::ready(Err(refused)));
        }
        let journal = self.journal.clone();
        Box::pin(async move { Ok(journal.confirm(key, msg.offset).await?) })
    }
}
