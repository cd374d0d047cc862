//! What each operation asks of the buffers: appends go to the store buffer (`AppendFact` by way
//! of [`append_stream`](super::append_stream)); fetches and confirms
//! go to the store buffer for a peer (its pull, its frontier) and to the forward buffer for a
//! local consumer; `PutObject` and `GetObject` to the object store (`objects`).

use std::time::Duration;

use bsfg_proto::{
    rpc::MAX_APPEND_BATCH, AppendBatchResponse, ConfirmRequest, ConfirmResponse, FetchRequest, GetObjectFromRequest,
    Message, Request, Response, RpcError,
};
use quinn::RecvStream;

use super::{
    call::Answer,
    caller::{authorise, Caller, Role},
    context::Context,
    objects,
};
use crate::{
    forward_buffer,
    journal::AppendMode,
    long_poll::{PageRequest, Served},
    store_buffer::{self, Outcomes, QueuedAppend},
    zone_gate,
};

/// Serves one admitted request. A `GetObject` leaves the blob to stream after the answer in `body`.
pub(super) async fn dispatch(
    request: Request,
    caller: &Caller,
    ctx: &Context,
    recv: &mut RecvStream,
    body: &mut Option<objects::Body>,
) -> Answer {
    let response = match request {
        // The server serves every `AppendFact` as an append stream (`append_stream`).
        Request::Append(_) => Response::Error(RpcError::internal("AppendFact is served as an append stream")),
        Request::AppendBatch(r) => append(r.messages, AppendMode::EachAlone, caller, ctx)
            .await
            .map(|results| Response::AppendBatch(AppendBatchResponse { results }))
            .unwrap_or_else(Response::Error),
        Request::AppendInOrder(r) => append(r.messages, AppendMode::StopAtFailure, caller, ctx)
            .await
            .map(|results| Response::AppendBatch(AppendBatchResponse { results }))
            .unwrap_or_else(Response::Error),
        Request::Fetch(r) => {
            return match fetch(r, Vec::new(), caller, ctx).await {
                Ok(Served { page, waited, .. }) => Answer::Page { page, waited },
                Err(e) => Response::Error(e).into(),
            }
        }
        Request::FetchHeld(r) => {
            return match fetch(r.fetch, r.held_zones, caller, ctx).await {
                Ok(Served { page, waited, .. }) => Answer::Page { page, waited },
                Err(e) => Response::Error(e).into(),
            }
        }
        Request::Confirm(r) => confirm(r, caller, ctx).await.unwrap_or_else(Response::Error),
        Request::PutObject(r) => objects::put(r, caller, ctx, recv).await.unwrap_or_else(Response::Error),
        Request::GetObject(r) => get(r.into(), caller, ctx, body).await,
        Request::GetObjectFrom(r) => get(r, caller, ctx, body).await,
    };
    response.into()
}

/// `GetObject`, whole or from an offset: the blob to stream after the answer goes in `body`.
async fn get(r: GetObjectFromRequest, caller: &Caller, ctx: &Context, body: &mut Option<objects::Body>) -> Response {
    match objects::get(r, caller, ctx).await {
        Ok((response, blob)) => {
            *body = Some(blob);
            response
        }
        Err(e) => Response::Error(e),
    }
}

/// AppendFact (one message) and AppendFacts (either form) alike.
pub(super) async fn append(
    messages: Vec<Message>,
    mode: AppendMode,
    caller: &Caller,
    ctx: &Context,
) -> Result<Outcomes, RpcError> {
    queue_append(messages, mode, caller, ctx).await?.outcomes().await
}

/// [`append`] up to the journal's queue (an append stream's group; see
/// [`store_buffer::Append`]).
pub(super) async fn queue_append(
    messages: Vec<Message>,
    mode: AppendMode,
    caller: &Caller,
    ctx: &Context,
) -> Result<QueuedAppend, RpcError> {
    authorise(caller, Role::Produce, &ctx.config.zone)?;
    if messages.is_empty() || messages.len() > MAX_APPEND_BATCH {
        return Err(RpcError::invalid(format!(
            "AppendFacts carries {} messages; it takes 1 to {MAX_APPEND_BATCH}",
            messages.len()
        )));
    }
    flatten(ctx.deps.store.send(store_buffer::Append(messages, mode)).await)
}

/// `FetchFacts`; a relay's pages leave out the facts for `held_zones` (`FetchHeld`, for peers only).
async fn fetch(r: FetchRequest, held_zones: Vec<String>, caller: &Caller, ctx: &Context) -> Result<Served, RpcError> {
    let deps = &ctx.deps;
    if !held_zones.is_empty() && !matches!(caller, Caller::Peer(_)) {
        return Err(RpcError::invalid(
            "FetchFacts with held zones is a relay's pull: a consumer reads its own zone's facts",
        ));
    }
    let request = PageRequest {
        limit: r.limit,
        max_wait: Duration::from_millis(u64::from(r.max_wait_ms.min(crate::long_poll::MAX_WAIT_MS))),
        after: r.after,
        held_zones,
    };
    let page = match caller {
        Caller::Peer(zone) => {
            let msg = store_buffer::PeerFetch {
                peer: zone.clone(),
                page: request,
            };
            let served = flatten(deps.store.send(msg).await)?;
            deps.gate.do_send(zone_gate::Served {
                peer: zone.clone(),
                behind: served.more,
            });
            served
        }
        _ => {
            authorise(caller, Role::Consume, &ctx.config.zone)?;
            let msg = forward_buffer::Fetch {
                consumer: r.consumer,
                page: request,
            };
            flatten(deps.forward.send(msg).await)?
        }
    };
    Ok(page)
}

async fn confirm(r: ConfirmRequest, caller: &Caller, ctx: &Context) -> Result<Response, RpcError> {
    let deps = &ctx.deps;
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
            authorise(caller, Role::Consume, &ctx.config.zone)?;
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

fn flatten<T>(sent: Result<Result<T, RpcError>, actix::MailboxError>) -> Result<T, RpcError> {
    sent.map_err(|e| RpcError::unavailable(format!("node is shutting down: {e}")))?
}
