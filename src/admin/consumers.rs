//! Consumer management (SPEC §10): `GET /v1/consumers` lists every consumer of the forward
//! buffer with its cursor, backlog and lag; `DELETE /v1/consumers/{name}` forgets one (its
//! cursor, its series, and its hold on forward facts); `POST /v1/consumers/{name}/rewind?to_offset=N`
//! (or with the JSON body `{"to_offset": N}`) moves its cursor back so the facts after `N` that
//! are still retained are delivered again.
//! Both changes need the operator's token and are audited. A peer's derived consumer
//! (`peer:<zone>`) is not a consumer of this buffer: touching one is `PERMISSION_DENIED`.

use actix_web::{web, HttpRequest, HttpResponse};
use bsfg_proto::RpcError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    operator::{audited, Operator, Refusal, Subject},
    status::ConsumerStatus,
    AdminDeps, Started,
};

/// The answer of `GET /v1/consumers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerList {
    pub consumers: Vec<ConsumerStatus>,
}

pub(super) async fn list(running: Started) -> HttpResponse {
    let progress = running.node.progress.borrow().consumers.clone();
    let consumers = running
        .node
        .consumers
        .list()
        .into_iter()
        .map(|(name, cursor)| {
            // Backlog and lag come from the last refresh (at most a second old).
            let seen = progress.get(&name).cloned().unwrap_or_default();
            ConsumerStatus {
                name,
                cursor,
                backlog: seen.backlog,
                lag_seconds: seen.lag_seconds,
            }
        })
        .collect();
    HttpResponse::Ok().json(ConsumerList { consumers })
}

pub(super) async fn delete(
    operator: Operator,
    name: web::Path<String>,
    running: Started,
    state: web::Data<AdminDeps>,
) -> HttpResponse {
    let name = name.into_inner();
    let outcome = match running.node.consumers.delete(&name).await {
        Ok(cursor) => Ok(json!({"consumer": name, "deleted": true, "cursor": cursor})),
        Err(error) => Err(Refusal::of(error)),
    };
    let subject = Subject {
        consumer: Some(&name),
        ..Subject::default()
    };
    audited(&state.log, &operator, "consumer_delete", subject, outcome)
}

/// Where a rewind moves a cursor to: `?to_offset=N`, or the JSON body `{"to_offset": N}`.
#[derive(Debug, Deserialize)]
struct RewindTarget {
    to_offset: Option<u64>,
}

pub(super) async fn rewind(
    operator: Operator,
    name: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
    running: Started,
    state: web::Data<AdminDeps>,
) -> HttpResponse {
    let name = name.into_inner();
    let to = rewind_target(request.query_string(), &body);
    let offset = to.as_ref().ok().copied();
    let outcome = match to {
        Ok(to) => match running.node.consumers.rewind(&name, to).await {
            Ok(rewound) => Ok(json!({
                "consumer": name,
                "previous": rewound.previous,
                "cursor": rewound.cursor,
                "next_offset": rewound.next_offset,
            })),
            Err(error) => Err(Refusal::of(error)),
        },
        Err(error) => Err(Refusal::of(error)),
    };
    let subject = Subject {
        consumer: Some(&name),
        offset,
        ..Subject::default()
    };
    audited(&state.log, &operator, "consumer_rewind", subject, outcome)
}

/// The offset a rewind names, from its query or else its JSON body; a request naming none, or
/// one that is not a number, is refused (`INVALID_ARGUMENT`, audited like any other refusal).
fn rewind_target(query: &str, body: &[u8]) -> Result<u64, RpcError> {
    let usage = "POST /v1/consumers/NAME/rewind?to_offset=N, or with the JSON body {\"to_offset\": N}";
    let from_query = web::Query::<RewindTarget>::from_query(query)
        .map_err(|e| RpcError::invalid(format!("to_offset in the query: {e} ({usage})")))?;
    if let Some(to) = from_query.to_offset {
        return Ok(to);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RpcError::invalid(format!("no to_offset given: {usage}")));
    }
    let from_body: RewindTarget = serde_json::from_slice(body)
        .map_err(|e| RpcError::invalid(format!("the body is not {{\"to_offset\": N}}: {e} ({usage})")))?;
    from_body
        .to_offset
        .ok_or_else(|| RpcError::invalid(format!("no to_offset given: {usage}")))
}
