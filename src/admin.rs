//! The admin HTTP API (SPEC §10), served by actix-web on `listen.admin` (loopback by default):
//! `GET /metrics` (Prometheus text format), `GET /healthz` (200 while the process runs) and
//! `GET /readyz` (200 once the node serves).

use std::{net::SocketAddr, sync::Arc};

use actix_web::{dev::ServerHandle, web, App, HttpResponse, HttpServer};
use bsfg_actors::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
}

/// Binds `addr` and serves the admin API on the current actix system until the handle stops it.
pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<ServerHandle> {
    let state = AdminState { metrics };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics_text))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

async fn metrics_text(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    match state.metrics.node_up.get() == 1 && state.metrics.draining.get() == 0 {
        true => HttpResponse::Ok().body("ready\n"),
        false => HttpResponse::ServiceUnavailable().body("not ready\n"),
    }
}
