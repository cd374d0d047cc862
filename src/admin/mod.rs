//! The admin HTTP API (SPEC §10), served by actix-web on `listen.admin` (loopback by default):
//! `GET /metrics` (Prometheus text format), `GET /healthz` (200 while the process runs),
//! `GET /readyz` (200 once the node serves, its storage works and it is not draining; 503 while
//! commits or reads fail or damaged data waits for an operator), `GET /v1/status` (JSON,
//! [`status::Status`]), and the mutating `POST /v1/admin/drain`, `/resume`, `/reload` and
//! `/gates/{peer}/close|open`. When `admin.token_file` is set, every POST needs
//! `Authorization: Bearer <token>` (the [`Operator`] extractor); GETs stay open (SPEC §6).
//! Errors answer `{"error": CODE, "message": ...}` (plus `reason` for a refused reload).
//!
//! [`client`] is the other side: the small HTTP client of `bsfg status` and `bsfg admin`.

pub mod client;
pub mod status;

use std::{future::Ready, net::SocketAddr, path::Path, sync::Arc, time::SystemTime};

use actix_web::{
    dev::{Payload, ServerHandle},
    http::{header, StatusCode},
    web, App, FromRequest, HttpRequest, HttpResponse, HttpServer,
};
use bsfg_actors::{
    cert_watcher::{Reload, Trigger},
    node::Handles,
    rpc::DRAIN_GRACE,
    zone_gate,
};
use serde_json::json;
use status::{CertificateStatus, Status};

/// What the handlers read and act on.
#[derive(Clone)]
pub struct AdminDeps {
    pub zone: String,
    pub node: Handles,
    /// The bearer token mutating endpoints require, when `admin.token_file` is set.
    pub token: Option<Arc<str>>,
}

/// Reads a token file (`admin.token_file` on the node, `--token-file` in the CLI; `setting` names
/// it in errors): the whole file, surrounding whitespace trimmed, must not be empty.
pub fn read_token(path: &Path, setting: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{setting}: cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{setting}: {} is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// Binds `addr` and serves the admin API on the current actix system until the handle stops it.
pub fn start(addr: SocketAddr, deps: AdminDeps) -> std::io::Result<ServerHandle> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(deps.clone()))
            .route("/metrics", web::get().to(metrics_text))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/v1/status", web::get().to(status))
            .route("/v1/admin/drain", web::post().to(drain))
            .route("/v1/admin/resume", web::post().to(resume))
            .route("/v1/admin/reload", web::post().to(reload))
            .route("/v1/admin/gates/{peer}/{action}", web::post().to(switch_gate))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

async fn metrics_text(state: web::Data<AdminDeps>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.node.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(state: web::Data<AdminDeps>) -> HttpResponse {
    match state.node.health.healthy() && state.node.metrics.node_up.get() == 1 && !state.node.drain.is_draining() {
        true => HttpResponse::Ok().body("ready\n"),
        false => HttpResponse::ServiceUnavailable().body("not ready\n"),
    }
}

async fn status(state: web::Data<AdminDeps>) -> HttpResponse {
    let gates = state.node.gate.send(zone_gate::Snapshot).await.unwrap_or_default();
    HttpResponse::Ok().json(Status::collect(&state.zone, gates, &state.node, SystemTime::now()))
}

/// Stops admitting client calls and waits (grace 30 s) for those in flight.
async fn drain(_: Operator, state: web::Data<AdminDeps>) -> HttpResponse {
    let outcome = state.node.drain.drain(DRAIN_GRACE).await;
    HttpResponse::Ok().json(json!({"drained": outcome.drained, "in_flight": outcome.in_flight}))
}

async fn resume(_: Operator, state: web::Data<AdminDeps>) -> HttpResponse {
    state.node.drain.resume();
    HttpResponse::Ok().json(json!({"draining": false}))
}

/// 200 with the certificate now presented, or 422 with why the files were refused (the old
/// material stays in use).
async fn reload(_: Operator, state: web::Data<AdminDeps>) -> HttpResponse {
    let reloaded = state
        .node
        .certs
        .send(Reload {
            trigger: Trigger::Admin,
        })
        .await;
    match reloaded {
        Ok(Ok(certificate)) => HttpResponse::Ok().json(CertificateStatus::of(&certificate, SystemTime::now())),
        Ok(Err(refused)) => HttpResponse::UnprocessableEntity().json(json!({
            "error": "INVALID_ARGUMENT",
            "message": "the new TLS material was refused; the current certificate stays in use",
            "reason": refused.to_string(),
        })),
        Err(gone) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            &format!("the certificate watcher is not running: {gone}"),
        ),
    }
}

/// `close` or `open` the gate toward a configured peer (404 for anything else).
async fn switch_gate(_: Operator, path: web::Path<(String, String)>, state: web::Data<AdminDeps>) -> HttpResponse {
    let (peer, action) = path.into_inner();
    let closed = match action.as_str() {
        "close" => true,
        "open" => false,
        _ => return error(StatusCode::NOT_FOUND, "NOT_FOUND", "gate actions are close and open"),
    };
    let switched = state
        .node
        .gate
        .send(zone_gate::SwitchGate {
            peer: peer.clone(),
            closed,
        })
        .await;
    match switched {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"peer": peer, "closed": closed})),
        Ok(Err(unknown)) => error(StatusCode::NOT_FOUND, "NOT_FOUND", &unknown.to_string()),
        Err(gone) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            &format!("the zone gate is not running: {gone}"),
        ),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": code, "message": message}))
}

/// Proof that a mutating request may proceed: it carries the configured bearer token, or none is
/// configured. Extracting it fails with 401 otherwise.
pub struct Operator;

impl FromRequest for Operator {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let expected = request
            .app_data::<web::Data<AdminDeps>>()
            .and_then(|state| state.token.clone());
        let verdict = match refusal(request, expected.as_deref()) {
            None => Ok(Operator),
            Some(reason) => Err(actix_web::error::InternalError::from_response(reason, unauthorised(reason)).into()),
        };
        std::future::ready(verdict)
    }
}

/// Why a mutating request is refused, if it is: it needs the bearer token when one is configured.
fn refusal(request: &HttpRequest, expected: Option<&str>) -> Option<&'static str> {
    let expected = expected?;
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => None,
        Some(_) => Some("the bearer token does not match admin.token_file"),
        None => Some("this endpoint requires Authorization: Bearer <token>"),
    }
}

fn unauthorised(message: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({"error": "UNAUTHENTICATED", "message": message}))
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    }

    #[test]
    fn tokens_compare_by_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
