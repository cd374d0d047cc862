//! The admin HTTP API (SPEC §10), served by actix-web on `listen.admin` (loopback by default):
//! `GET /metrics` (Prometheus text format), `GET /healthz` (200 while the process runs: the
//! listener is bound before the node starts and stopped only after it has shut down),
//! `GET /readyz` (200 once the node serves, its storage works and it is not draining; 503 while
//! commits or reads fail or damaged data waits for an operator), `GET /v1/status` (JSON,
//! [`status::Status`]), `GET /v1/trace/{from_zone}/{message_id}` ([`trace`]), `GET /v1/consumers`
//! ([`consumers`]), and the mutating `POST /v1/admin/drain`, `/resume`, `/reload`,
//! `/gates/{peer}/close|open`, `/step-down` (an HA zone's active instance), `DELETE /v1/consumers/{name}` and
//! `POST /v1/consumers/{name}/rewind?to_offset=N`. When `admin.token_file` is set, every
//! mutating request needs `Authorization: Bearer <token>` (the [`Operator`] extractor); GETs stay
//! open (SPEC §6). Every mutating request is audited (`admin_action`, [`operator`]). Errors
//! answer `{"error": CODE, "message": ...}` (plus `reason` for a refused reload). Until the node
//! has started ([`Admin::serve`]), every endpoint but `/healthz` answers 503 (`/readyz` its
//! usual `not ready`, the others `UNAVAILABLE`, "the node is starting").
//!
//! [`client`] is the other side: the small HTTP client of `bsfg status`, `bsfg admin`,
//! `bsfg trace` and `bsfg consumers`.

pub mod client;
pub mod consumers;
pub mod operator;
pub mod routes;
pub mod status;
pub mod trace;

use std::{
    future::Ready,
    net::SocketAddr,
    ops::Deref,
    path::Path,
    sync::{Arc, OnceLock, PoisonError, RwLock},
    time::SystemTime,
};

use actix_web::{
    dev::{Payload, ServerHandle},
    http::StatusCode,
    web, App, FromRequest, HttpRequest, HttpResponse, HttpServer,
};
use bsfg_actors::{cert_watcher::Trigger, node::Handles, rpc::DRAIN_GRACE, zone_gate};
use bsfg_proto::ErrorCode;
use operator::{audited, Operator, Refusal, Subject};
use serde_json::json;
use slog::Logger;
use status::{CertificateStatus, Status};

/// What the handlers read and act on.
#[derive(Clone)]
pub struct AdminDeps {
    pub zone: String,
    /// The bearer token mutating endpoints require, when `admin.token_file` is set.
    pub token: Option<AdminToken>,
    /// Where operator actions are audited.
    pub log: Logger,
    /// The node, once it has started.
    running: Arc<OnceLock<Started>>,
}

impl AdminDeps {
    pub fn new(zone: String, token: Option<AdminToken>, log: Logger) -> Self {
        Self {
            zone,
            token,
            log,
            running: Arc::default(),
        }
    }

    fn started(&self) -> Option<Started> {
        self.running.get().cloned()
    }
}

/// What every endpoint but `/healthz` answers until the node has started.
fn starting() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "the node is starting",
    )
}

/// The started node: what every endpoint but `/healthz` acts on.
pub struct Running {
    pub node: Handles,
    /// What `POST /v1/admin/reload` runs (as SIGHUP does).
    pub reloader: Arc<crate::reload::Reloader>,
}

/// A handler's proof that the node has started: it derefs to [`Running`]. While the node starts,
/// the request is answered 503 `UNAVAILABLE` instead (a mutating one by [`Operator`], audited).
#[derive(Clone)]
struct Started(Arc<Running>);

impl Deref for Started {
    type Target = Running;

    fn deref(&self) -> &Running {
        &self.0
    }
}

impl FromRequest for Started {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let started = request
            .app_data::<web::Data<AdminDeps>>()
            .and_then(|state| state.started());
        std::future::ready(started.ok_or_else(|| starting().into_error()))
    }
}

/// The bound admin listener.
pub struct Admin {
    handle: ServerHandle,
    running: Arc<OnceLock<Started>>,
}

impl Admin {
    /// Every endpoint serves `running` from now on.
    pub fn serve(&self, running: Running) {
        let _ = self.running.set(Started(Arc::new(running)));
    }

    /// Stops the listener, letting requests in progress finish.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// The token of `admin.token_file`: read at start, and read again by every reload (an operator
/// who rotates the token after a leak needs the old one refused at once, not at the next restart).
#[derive(Clone)]
pub struct AdminToken(Arc<RwLock<Arc<str>>>);

impl AdminToken {
    pub fn new(token: String) -> Self {
        Self(Arc::new(RwLock::new(Arc::from(token))))
    }

    pub fn current(&self) -> Arc<str> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the token; returns whether it changed.
    pub fn replace(&self, token: String) -> bool {
        let mut held = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = **held != *token;
        *held = Arc::from(token);
        changed
    }
}

/// Reads a token file (`admin.token_file` on the node, `--token-file` in the CLI; `setting` names
/// it in errors): the whole file, surrounding whitespace trimmed, must not be empty.
pub fn read_token(path: &Path, setting: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{setting}: cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{setting}: {} is empty", path.display()));
    }
    // A bearer token is one word: a second line (two tokens pasted, a stray comment) would be
    // taken as part of it, and no client could present it.
    if token.chars().any(char::is_whitespace) {
        return Err(format!(
            "{setting}: {} holds more than one word or line; it must hold the token alone, on one line",
            path.display()
        ));
    }
    Ok(token.to_owned())
}

/// Binds `addr` and serves the admin API on the current actix system until [`Admin::stop`]:
/// `/healthz` at once, the rest once [`Admin::serve`] gave it the node.
pub fn start(addr: SocketAddr, deps: AdminDeps) -> std::io::Result<Admin> {
    let running = deps.running.clone();
    let server = HttpServer::new(move || {
        use actix_web::http::Method;
        App::new()
            .app_data(web::Data::new(deps.clone()))
            .service(endpoint("/metrics", Method::GET, web::get().to(metrics_text)))
            .service(endpoint("/healthz", Method::GET, web::get().to(healthz)))
            .service(endpoint("/readyz", Method::GET, web::get().to(readyz)))
            .service(endpoint("/v1/status", Method::GET, web::get().to(status)))
            .service(endpoint("/v1/admin/drain", Method::POST, web::post().to(drain)))
            .service(endpoint("/v1/admin/resume", Method::POST, web::post().to(resume)))
            .service(endpoint("/v1/admin/reload", Method::POST, web::post().to(reload)))
            .service(endpoint("/v1/admin/step-down", Method::POST, web::post().to(step_down)))
            .service(endpoint(
                "/v1/admin/gates/{peer}/{action}",
                Method::POST,
                web::post().to(switch_gate),
            ))
            .service(endpoint("/v1/consumers", Method::GET, web::get().to(consumers::list)))
            .service(endpoint(
                "/v1/consumers/{name}",
                Method::DELETE,
                web::delete().to(consumers::delete),
            ))
            .service(endpoint(
                "/v1/consumers/{name}/rewind",
                Method::POST,
                web::post().to(consumers::rewind),
            ))
            .service(endpoint(
                "/v1/trace/{from_zone}/{message_id:.*}",
                Method::GET,
                web::get().to(trace::trace),
            ))
            .default_service(web::to(no_such_endpoint))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(Admin { handle, running })
}

/// `path`, answered by `route` for `method`; any other method is a 405 naming the one allowed
/// (`Allow`, and the usual JSON error), not the empty 404 it was.
fn endpoint(path: &str, method: actix_web::http::Method, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(move |request: HttpRequest| {
            let allowed = method.clone();
            async move {
                let message = format!(
                    "{} is not allowed on {}: use {allowed}",
                    request.method(),
                    request.path()
                );
                let mut response =
                    Refusal::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::InvalidArgument, message).response();
                if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allowed.as_str()) {
                    response.headers_mut().insert(actix_web::http::header::ALLOW, value);
                }
                response
            }
        }))
}

/// A path the API does not have: 404 with the usual JSON error, naming it.
async fn no_such_endpoint(request: HttpRequest) -> HttpResponse {
    let message = format!("no such endpoint: {} {}", request.method(), request.path());
    Refusal::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message).response()
}

async fn metrics_text(running: Started) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(running.node.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

/// Not ready while the node starts (`running` is `None`).
async fn readyz(running: Option<Started>) -> HttpResponse {
    let serving = running.is_some_and(|running| {
        let node = &running.node;
        node.health.healthy()
            && node.metrics.node_up.get() == 1
            && node.standing.borrow().is_active()
            && !node.drain.is_draining()
    });
    match serving {
        true => HttpResponse::Ok().body("ready\n"),
        false => HttpResponse::ServiceUnavailable().body("not ready\n"),
    }
}

async fn status(running: Started, state: web::Data<AdminDeps>) -> HttpResponse {
    let gates = running.node.gate.send(zone_gate::Snapshot).await.unwrap_or_default();
    HttpResponse::Ok().json(Status::collect(&state.zone, gates, &running.node, SystemTime::now()))
}

/// Stops admitting client calls and waits (grace 30 s) for those in flight.
async fn drain(operator: Operator, running: Started, state: web::Data<AdminDeps>) -> HttpResponse {
    let outcome = running.node.drain.drain(DRAIN_GRACE).await;
    let body = json!({"drained": outcome.drained, "in_flight": outcome.in_flight});
    audited(&state.log, &operator, "drain", Subject::default(), Ok(body))
}

/// 409 while the node is stopping: its shutdown drain is for good.
async fn resume(operator: Operator, running: Started, state: web::Data<AdminDeps>) -> HttpResponse {
    let outcome = match running.node.drain.resume() {
        true => Ok(json!({"draining": false})),
        false => Err(Refusal::new(
            StatusCode::CONFLICT,
            ErrorCode::InvalidArgument,
            "the node is stopping (SIGTERM): it drains for good and does not take client calls again",
        )),
    };
    audited(&state.log, &operator, "resume", Subject::default(), outcome)
}

/// An HA zone's active instance hands over to a standby (rolling upgrades): 200 once it stopped
/// writing and released the lease; 409 `FAILED_PRECONDITION`-like refusals as `INVALID_ARGUMENT`
/// when this node is not an active HA instance.
async fn step_down(operator: Operator, running: Started, state: web::Data<AdminDeps>) -> HttpResponse {
    let outcome = match &running.node.ha {
        None => Err(Refusal::new(
            StatusCode::CONFLICT,
            ErrorCode::InvalidArgument,
            "this node is not an instance of an HA zone (storage.engine = \"rocksdb\")",
        )),
        Some(ha) => match ha.step_down().await {
            Ok(()) => Ok(json!({"stepped_down": true, "instance": ha.status().instance})),
            Err(error @ bsfg_actors::StepDownError::NotActive(_)) => Err(Refusal::new(
                StatusCode::CONFLICT,
                ErrorCode::InvalidArgument,
                error.to_string(),
            )),
            Err(error) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                error.to_string(),
            )),
        },
    };
    audited(&state.log, &operator, "step_down", Subject::default(), outcome)
}

/// 200 with the certificate now presented (`subject`, `not_after`, `seconds_left`), the client
/// identities the reload `added`, `removed` or `changed` (`clients`), and the sections of the file
/// that need a restart (`restart_needed`); or 422 with why the file or the TLS material was
/// refused (nothing changed).
async fn reload(operator: Operator, running: Started, state: web::Data<AdminDeps>) -> HttpResponse {
    let outcome = match running.reloader.reload(Trigger::Admin).await {
        Ok(reloaded) => {
            let mut body = json!(CertificateStatus::of(&reloaded.certificate, SystemTime::now()));
            body["clients"] = json!(reloaded.clients);
            body["restart_needed"] = json!(reloaded.restart_needed);
            body["admin_token_changed"] = json!(reloaded.token_changed);
            Ok(body)
        }
        Err(crate::reload::ReloadRefused::Gone(gone)) => Err(unavailable("certificate watcher", gone)),
        Err(refused) => Err(Refusal {
            reason: Some(refused.to_string()),
            ..Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidArgument,
                "the configuration, the admin token file or the new TLS material was refused; nothing changed",
            )
        }),
    };
    audited(&state.log, &operator, "reload", Subject::default(), outcome)
}

/// `close` or `open` the gate toward a configured peer (404 for anything else).
async fn switch_gate(
    operator: Operator,
    path: web::Path<(String, String)>,
    running: Started,
    state: web::Data<AdminDeps>,
) -> HttpResponse {
    let (peer, action) = path.into_inner();
    let (operation, closed) = match action.as_str() {
        "close" => ("gate_close", true),
        "open" => ("gate_open", false),
        _ => {
            let refusal = Refusal::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "gate actions are close and open",
            );
            return refusal.response();
        }
    };
    let switch = zone_gate::SwitchGate {
        peer: peer.clone(),
        closed,
    };
    let outcome = match running.node.gate.send(switch).await {
        Ok(Ok(())) => Ok(json!({"peer": peer, "closed": closed})),
        Ok(Err(unknown @ zone_gate::SwitchError::UnknownPeer(_))) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            unknown.to_string(),
        )),
        Ok(Err(not_stored)) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            not_stored.to_string(),
        )),
        Err(gone) => Err(unavailable("zone gate", gone)),
    };
    let subject = Subject {
        peer: Some(&peer),
        ..Subject::default()
    };
    audited(&state.log, &operator, operation, subject, outcome)
}

/// A component the handler needs is gone (the node is stopping).
fn unavailable(component: &str, gone: actix::MailboxError) -> Refusal {
    let message = format!("the {component} is not running: {gone}");
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_trimmed_and_must_hold_a_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        let missing = read_token(&path, "admin.token_file").expect_err("missing file");
        assert!(missing.starts_with("admin.token_file: cannot read"), "{missing}");
        std::fs::write(&path, " \n\t").expect("write");
        let empty = read_token(&path, "admin.token_file").expect_err("blank file");
        assert!(
            empty.starts_with("admin.token_file:") && empty.ends_with("is empty"),
            "{empty}"
        );
        std::fs::write(&path, "  s3cret\n").expect("write");
        assert_eq!(read_token(&path, "admin.token_file").as_deref(), Ok("s3cret"));
        std::fs::write(&path, "s3cret\nold-token\n").expect("write");
        let two = read_token(&path, "admin.token_file").expect_err("two lines");
        assert!(two.contains("more than one word or line"), "{two}");
    }
}
