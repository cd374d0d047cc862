//! Consumer management (SPEC §10): `GET /v1/consumers` lists every consumer of the forward
//! buffer with its cursor, backlog and lag; `DELETE /v1/consumers/{name}` forgets one (its
//! cursor, its series, and its hold on forward facts); `POST /v1/consumers/{name}/rewind?to_offset=N`
//! moves its cursor back so the facts after `N` that are still retained are delivered again.
//! Both changes need the operator's token and are audited. A peer's derived consumer
//! (`peer:<zone>`) is not a consumer of this buffer: touching one is `PERMISSION_DENIED`.

use actix_web::{web, HttpResponse};
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

#[derive(Debug, Deserialize)]
pub struct RewindQuery {
    pub to_offset: u64,
}

pub(super) async fn rewind(
    operator: Operator,
    name: web::Path<String>,
    query: web::Query<RewindQuery>,
    running: Started,
    state: web::Data<AdminDeps>,
) -> HttpResponse {
    let (name, to) = (name.into_inner(), query.to_offset);
    let outcome = match running.node.consumers.rewind(&name, to).await {
        Ok(rewound) => Ok(json!({
            "consumer": name,
            "previous": rewound.previous,
            "cursor": rewound.cursor,
            "next_offset": rewound.next_offset,
        })),
        Err(error) => Err(Refusal::of(error)),
    };
    let subject = Subject {
        consumer: Some(&name),
        offset: Some(to),
        ..Subject::default()
    };
    audited(&state.log, &operator, "consumer_rewind", subject, outcome)
}
