//! `bsfg serve`: load the configuration, check it against the TLS material, run the node until
//! SIGTERM or Ctrl-C, then drain (the same path as `POST /v1/admin/drain`), shut down in order and
//! exit 0. SIGHUP reloads the TLS material and the client list (the same path as
//! `POST /v1/admin/reload`, see `reload`). Under systemd it reports readiness, watchdog pings and
//! stopping, and how far a long start has come (`crate::systemd`).

use std::{path::Path, sync::Arc};

use bsfg_actors::{
    cert_watcher::{self, Trigger},
    node::{Node, StartProgress},
    rpc::DRAIN_GRACE,
};
use bsfg_proto::ErrorCode;
use slog::{info, warn};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{CommandError, StopSignals};
use crate::{config::Config, reload::Reloader, systemd::ServiceManager};

/// How long a stopping node waits for RocksDB to close before exiting anyway.
const STORAGE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path).map_err(|e| CommandError::invalid(e.to_string()))?;
    let settings = config
        .node_settings()
        .map_err(|e| CommandError::invalid(e.to_string()))?;
    let tls = cert_watcher::validate(&settings.zone, &settings.certs.paths)
        .map_err(|e| CommandError::invalid(e.to_string()))?;
    let token = match &config.admin.token_file {
        Some(path) => Some(crate::admin::AdminToken::new(
            crate::admin::read_token(path, "admin.token_file").map_err(CommandError::invalid)?,
        )),
        None => None,
    };
    // Dropped last, when `run` returns: the last lines (`exited`) are written whole.
    let (log, _flush) = crate::logging::logger(config.node.zone.as_str(), config.log.level, config.log.format);
    let settings_zone = settings.zone.clone();
    let admin_addr = config.listen.admin;
    let config_path = config_path.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let system = actix_rt::System::with_tokio_rt(move || runtime);
    let deps = crate::admin::AdminDeps::new(settings_zone.clone(), token.clone(), log.clone());
    let stopped = system.block_on(async move {
        // Taken over first: a SIGTERM or Ctrl-C that comes while the node starts ends the start
        // (exit 0); before, one that came before the node's wait killed the process outright.
        let mut stop = StopSignals::new()?;
        // Bound before the node starts (an HA instance may wait seconds for its engine), so
        // `/healthz` answers 200 for as long as the process runs; the rest answers once it serves.
        let admin = crate::admin::start(admin_addr, deps).map_err(|e| {
            CommandError::new(
                ErrorCode::Unavailable,
                format!("listen.admin: cannot listen on {admin_addr}: {e}"),
            )
        })?;
        // Taken over before the start, which can last minutes on an HA instance: a SIGHUP meanwhile
        // (a renewal hook's `kill -HUP`) would otherwise end the process. One that comes during
        // the start is kept, and reloads once the node serves.
        let mut hangup = signal(SignalKind::hangup())?;
        let service = ServiceManager::new(log.clone());
        let progress = Arc::new(StartProgress::default());
        let reporting = service.starting(progress.clone());
        let started = tokio::select! {
            started = Node::start(settings, &tls, log.clone(), &progress) => started,
            _ = stop.next() => {
                reporting.abort();
                info!(log, "shutdown_requested"; "during" => "start");
                admin.stop().await;
                return anyhow::Ok((None, log));
            }
        };
        reporting.abort();
        let node = started.map_err(|e| {
            let code = match &e {
                // The operator must change the engine, the configuration or the package:
                // retrying cannot help (exit 1, not 75).
                _ if e.is_misconfigured() => ErrorCode::InvalidArgument,
                // Damaged data waits for an operator (`bsfg storage accept-loss`).
                _ if e.is_damage() => ErrorCode::Internal,
                _ => ErrorCode::Unavailable,
            };
            CommandError::new(code, e.to_string())
        })?;
        let handles = node.handles();
        let reloader = Arc::new(Reloader {
            path: config_path,
            running: config,
            certs: handles.certs.clone(),
            authorisations: handles.authorisations.clone(),
            token,
            log: log.clone(),
            metrics: handles.metrics.clone(),
        });
        admin.serve(crate::admin::Running {
            node: handles.clone(),
            reloader: reloader.clone(),
        });
        info!(log, "admin_listening"; "admin" => %admin_addr);
        service.ready(&format!("serving zone {settings_zone}; admin on {admin_addr}"));
        let watchdog = service.watchdog(handles.gate.clone());
        wait_for_stop(&mut stop, &mut hangup, &reloader).await;
        info!(log, "shutdown_requested");
        service.stopping(&format!("draining client calls (up to {DRAIN_GRACE:?})"));
        let outcome = handles.drain.stop(DRAIN_GRACE).await;
        info!(log, "drained"; "drained" => outcome.drained, "in_flight" => outcome.in_flight);
        service.status("closing peer links and storage");
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let stopped = node.shutdown().await;
        // `/healthz` answered throughout; `/readyz` has said 503 since the drain.
        admin.stop().await;
        anyhow::Ok((Some(stopped), log))
    });
    // Dropping the system drops every actor and task, and with them the last handles on storage;
    // only then is RocksDB closed, and the process must not exit before.
    drop(system);
    let (stopped, log) = stopped?;
    if stopped.is_some_and(|stopped| !stopped.wait_storage_closed(STORAGE_CLOSE_GRACE)) {
        warn!(log, "storage_close_timeout"; "reason" => format!("RocksDB still open after {STORAGE_CLOSE_GRACE:?}"));
    }
    info!(log, "exited");
    Ok(())
}

/// Until SIGTERM or Ctrl-C; every SIGHUP meanwhile reloads (the reloader logs its outcome).
async fn wait_for_stop(stop: &mut StopSignals, hangup: &mut Signal, reloader: &Arc<Reloader>) {
    loop {
        tokio::select! {
            _ = stop.next() => return,
            _ = hangup.recv() => {
                let reloader = reloader.clone();
                actix_rt::spawn(async move { reloader.reload(Trigger::Signal).await });
            }
        }
    }
}
