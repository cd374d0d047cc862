//! The admin HTTP API (SPEC §10), served by actix-web on `listen.admin` (loopback by default):
//! `GET /metrics` (Prometheus text format), `GET /healthz` (200 while the process runs),
//! `GET /readyz` (200 once the node serves and is not draining), `GET /v1/status` (JSON), and
//! the mutating `POST /v1/admin/drain` and `/v1/admin/resume`. When `admin.token_file` is set,
//! every POST needs `Authorization: Bearer <token>`; GETs stay open (SPEC §6).

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use actix::Addr;
use actix_web::{dev::ServerHandle, http::header, web, App, HttpRequest, HttpResponse, HttpServer};
use bsfg_actors::{
    metrics::Metrics,
    transport::{DrainHandle, DRAIN_GRACE},
    zone_gate, ZoneGate,
};
use serde_json::json;

/// The node's certificate, as `/v1/status` reports it.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub subject: String,
    pub not_after: SystemTime,
}

/// What the handlers read and act on.
#[derive(Clone)]
pub struct AdminDeps {
    pub zone: String,
    pub metrics: Arc<Metrics>,
    pub drain: DrainHandle,
    pub gate: Addr<ZoneGate>,
    pub certificate: Certificate,
    /// The bearer token mutating endpoints require, when `admin.token_file` is set.
    pub token: Option<Arc<str>>,
}

/// Reads `admin.token_file`: the whole file, surrounding whitespace trimmed, must not be empty.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("admin.token_file: cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("admin.token_file: {} is empty", path.display()));
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
        .body(state.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(state: web::Data<AdminDeps>) -> HttpResponse {
    match state.metrics.node_up.get() == 1 && !state.drain.is_draining() {
        true => HttpResponse::Ok().body("ready\n"),
        false => HttpResponse::ServiceUnavailable().body("not ready\n"),
    }
}

async fn status(state: web::Data<AdminDeps>) -> HttpResponse {
    let gates = state.gate.send(zone_gate::Snapshot).await.unwrap_or_default();
    let peers: serde_json::Map<String, serde_json::Value> = gates
        .into_iter()
        .map(|(peer, gate)| {
            let frontier = state.metrics.frontier_offset.with_label_values(&[&peer]).get();
            let lag = state.metrics.replication_lag_seconds.with_label_values(&[&peer]).get();
            let entry = json!({"state": gate.as_str(), "frontier": frontier, "lag_seconds": lag});
            (peer, entry)
        })
        .collect();
    let cert = &state.certificate;
    let seconds_left = cert
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .as_secs();
    HttpResponse::Ok().json(json!({
        "zone": state.zone,
        "version": env!("CARGO_PKG_VERSION"),
        "draining": state.drain.is_draining(),
        "in_flight": state.drain.in_flight(),
        "peers": peers,
        "certificate": {
            "subject": cert.subject,
            "not_after": humantime::format_rfc3339_seconds(cert.not_after).to_string(),
            "seconds_left": seconds_left,
        },
    }))
}

/// Stops admitting client calls and waits (grace 30 s) for those in flight.
async fn drain(request: HttpRequest, state: web::Data<AdminDeps>) -> HttpResponse {
    if let Some(reason) = refusal(&request, &state) {
        return unauthorised(reason);
    }
    let outcome = state.drain.drain(DRAIN_GRACE).await;
    HttpResponse::Ok().json(json!({"drained": outcome.drained, "in_flight": outcome.in_flight}))
}

async fn resume(request: HttpRequest, state: web::Data<AdminDeps>) -> HttpResponse {
    if let Some(reason) = refusal(&request, &state) {
        return unauthorised(reason);
    }
    state.drain.resume();
    HttpResponse::Ok().json(json!({"draining": false}))
}

/// Why a mutating request is refused, if it is: it needs the bearer token when one is configured.
fn refusal(request: &HttpRequest, state: &AdminDeps) -> Option<&'static str> {
    let expected = state.token.as_deref()?;
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
        let missing = read_token(&path).expect_err("missing file");
        assert!(missing.starts_with("admin.token_file: cannot read"), "{missing}");
        std::fs::write(&path, " \n\t").expect("write");
        let empty = read_token(&path).expect_err("blank file");
        assert!(
            empty.starts_with("admin.token_file:") && empty.ends_with("is empty"),
            "{empty}"
        );
        std::fs::write(&path, "  s3cret\n").expect("write");
        assert_eq!(read_token(&path).as_deref(), Ok("s3cret"));
    }

    #[test]
    fn tokens_compare_by_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
