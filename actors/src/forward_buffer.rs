//! Actor `ForwardBuffer`: the inbound log. `putIfAbsent` of pages pulled from peers, and durable
//! named consumers (fetch with long-poll, confirm) for local clients.

use actix::prelude::*;
use bsfg_proto::{FetchedFact, RpcError};

use crate::{
    journal::{InsertOutcome, Journal},
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
        let cursor = CursorKey::Consumer(msg.consumer);
        Box::pin(long_poll::fetch(
            &self.journal,
            cursor,
            msg.page,
            self.config.max_frame_bytes / 2,
        ))
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
