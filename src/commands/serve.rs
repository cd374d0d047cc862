//! `bsfg serve`: load the configuration, check it against the TLS material, run the node until
//! SIGTERM or Ctrl-C, then drain (the same path as `POST /v1/admin/drain`), shut down in order and
//! exit 0. SIGHUP reloads the TLS material (the same path as `POST /v1/admin/reload`).

use std::{path::Path, sync::Arc};

use actix::Addr;
use bsfg_actors::{
    backpressure::{BackpressureConfig, BufferLimits, WhenFull},
    cert_watcher::{self, Reload, TlsPaths, Trigger},
    node::{Node, NodeSettings, PeerSettings},
    rpc::{Roles, DRAIN_GRACE},
    CertWatcher,
};
use bsfg_proto::ErrorCode;
use slog::{info, warn};
use tokio::signal::unix::{signal, SignalKind};

use super::CommandError;
use crate::config::{Backpressure, Config, Role};

/// How long a stopping node waits for RocksDB to close before exiting anyway.
const STORAGE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest reconnect backoff (SPEC §4).
const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(30);

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path).map_err(|e| CommandError::invalid(e.to_string()))?;
    let tls = cert_watcher::validate(config.node.zone.as_str(), &tls_paths(&config))
        .map_err(|e| CommandError::invalid(e.to_string()))?;
    let token = match &config.admin.token_file {
        Some(path) => Some(Arc::from(
            crate::admin::read_token(path, "admin.token_file").map_err(CommandError::invalid)?,
        )),
        None => None,
    };
    let log = crate::logging::logger(config.node.zone.as_str(), config.log.level, config.log.format);
    let settings = node_settings(&config);
    let settings_zone = settings.zone.clone();
    let admin_addr = config.listen.admin;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let system = actix_rt::System::with_tokio_rt(move || runtime);
    let stopped = system.block_on(async move {
        let node = Node::start(settings, &tls, log.clone())
            .await
            .map_err(|e| CommandError::new(ErrorCode::Unavailable, e.to_string()))?;
        let handles = node.handles();
        let deps = crate::admin::AdminDeps {
            zone: settings_zone,
            node: handles.clone(),
            token,
        };
        let admin = crate::admin::start(admin_addr, deps).map_err(|e| {
            CommandError::new(
                ErrorCode::Unavailable,
                format!("listen.admin: cannot listen on {admin_addr}: {e}"),
            )
        })?;
        info!(log, "admin_listening"; "admin" => %admin_addr);
        wait_for_stop(&handles.certs).await?;
        info!(log, "shutdown_requested");
        let outcome = handles.drain.drain(DRAIN_GRACE).await;
        info!(log, "drained"; "drained" => outcome.drained, "in_flight" => outcome.in_flight);
        admin.stop(true).await;
        anyhow::Ok((node.shutdown().await, log))
    });
    // Dropping the system drops every actor and task, and with them the last handles on storage;
    // only then is RocksDB closed, and the process must not exit before.
    drop(system);
    let (stopped, log) = stopped?;
    if !stopped.wait_storage_closed(STORAGE_CLOSE_GRACE) {
        warn!(log, "storage_close_timeout"; "reason" => format!("RocksDB still open after {STORAGE_CLOSE_GRACE:?}"));
    }
    info!(log, "exited");
    Ok(())
}

/// Until SIGTERM or Ctrl-C; every SIGHUP meanwhile asks `certs` for a reload (the watcher logs
/// and counts its outcome).
async fn wait_for_stop(certs: &Addr<CertWatcher>) -> anyhow::Result<()> {
    let (mut term, mut hangup) = (signal(SignalKind::terminate())?, signal(SignalKind::hangup())?);
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = hangup.recv() => certs.do_send(Reload { trigger: Trigger::Signal }),
        }
    }
}

fn tls_paths(config: &Config) -> TlsPaths {
    TlsPaths {
        ca: config.tls.ca.clone(),
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
    }
}

fn node_settings(config: &Config) -> NodeSettings {
    NodeSettings {
        zone: config.node.zone.as_str().to_owned(),
        data_dir: config.node.data_dir.clone(),
        rpc_listen: config.listen.rpc,
        tls: tls_paths(config),
        audit: config.log.audit,
        peers: config
            .peers
            .iter()
            .map(|p| PeerSettings {
                zone: p.zone.as_str().to_owned(),
                address: p.address,
                dial: p.dial,
            })
            .collect(),
        clients: config
            .clients
            .iter()
            .map(|c| (c.identity.clone(), roles(&c.roles)))
            .collect(),
        max_fact_bytes: usize::try_from(config.limits.max_fact_bytes.bytes()).unwrap_or(usize::MAX),
        max_frame_bytes: usize::try_from(config.limits.max_frame_bytes.bytes()).unwrap_or(usize::MAX),
        max_object_bytes: config.limits.max_object_bytes.bytes(),
        batch_limit: config.replication.batch_limit,
        max_wait: std::time::Duration::from_millis(config.replication.max_wait_ms),
        backoff_cap: BACKOFF_CAP,
        link_timeout: config.replication.link_timeout,
        buffers: buffers(config),
    }
}

fn buffers(config: &Config) -> BackpressureConfig {
    let (store, forward) = (&config.store, &config.forward);
    BackpressureConfig {
        store: BufferLimits {
            capacity_bytes: store.capacity_bytes.bytes(),
            retention: store.retention,
        },
        forward: BufferLimits {
            capacity_bytes: forward.capacity_bytes.bytes(),
            retention: forward.retention,
        },
        when_full: match store.backpressure {
            Backpressure::Reject => WhenFull::Reject,
            Backpressure::DropOldest => WhenFull::DropOldest,
        },
        safety_critical: store.safety_critical,
        high_watermark_percent: store.high_watermark_percent,
        low_watermark_percent: store.low_watermark_percent,
    }
}

fn roles(roles: &[Role]) -> Roles {
    Roles {
        produce: roles.contains(&Role::Produce),
        consume: roles.contains(&Role::Consume),
    }
}
