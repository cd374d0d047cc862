//! `bsfg serve`: load the configuration, check it against the TLS material, run the node until
//! SIGTERM or Ctrl-C, then drain (the same path as `POST /v1/admin/drain`), shut down in order and
//! exit 0.

use std::{path::Path, sync::Arc};

use bsfg_actors::{
    node::{Node, NodeSettings, PeerSettings},
    transport::{tls::TlsMaterial, Roles, DRAIN_GRACE},
};
use bsfg_proto::ErrorCode;
use slog::info;

use super::CommandError;
use crate::config::{Config, Role};

/// Longest reconnect backoff (SPEC §4).
const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(30);

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path).map_err(|e| CommandError::invalid(e.to_string()))?;
    let tls = TlsMaterial::load(&config.tls.ca, &config.tls.cert, &config.tls.key)
        .map_err(|e| CommandError::invalid(format!("tls: {e}")))?;
    if tls.identity() != config.node.zone.as_str() {
        return Err(CommandError::invalid(format!(
            "node.zone: {:?} does not match the CN {:?} of tls.cert {}",
            config.node.zone.as_str(),
            tls.identity(),
            config.tls.cert.display()
        ))
        .into());
    }
    let token = match &config.admin.token_file {
        Some(path) => Some(Arc::from(
            crate::admin::read_token(path).map_err(CommandError::invalid)?,
        )),
        None => None,
    };
    let certificate = crate::admin::Certificate {
        subject: tls.subject(),
        not_after: tls.not_after(),
    };
    let log = crate::logging::logger(config.node.zone.as_str(), config.log.level, config.log.format);
    let settings = node_settings(&config);
    let settings_zone = settings.zone.clone();
    let admin_addr = config.listen.admin;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let system = actix_rt::System::with_tokio_rt(move || runtime);
    system.block_on(async move {
        let node = Node::start(settings, &tls, log.clone())
            .await
            .map_err(|e| CommandError::new(ErrorCode::Unavailable, e.to_string()))?;
        let deps = crate::admin::AdminDeps {
            zone: settings_zone,
            metrics: node.metrics(),
            drain: node.drain_handle(),
            gate: node.gate(),
            certificate,
            token,
        };
        let admin = crate::admin::start(admin_addr, deps).map_err(|e| {
            CommandError::new(
                ErrorCode::Unavailable,
                format!("listen.admin: cannot listen on {admin_addr}: {e}"),
            )
        })?;
        info!(log, "admin_listening"; "admin" => %admin_addr);
        wait_for_stop().await?;
        info!(log, "shutdown_requested");
        let outcome = node.drain_handle().drain(DRAIN_GRACE).await;
        info!(log, "drained"; "drained" => outcome.drained, "in_flight" => outcome.in_flight);
        admin.stop(true).await;
        node.shutdown().await;
        Ok(())
    })
}

async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

fn node_settings(config: &Config) -> NodeSettings {
    NodeSettings {
        zone: config.node.zone.as_str().to_owned(),
        data_dir: config.node.data_dir.clone(),
        rpc_listen: config.listen.rpc,
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
    }
}

fn roles(roles: &[Role]) -> Roles {
    Roles {
        produce: roles.contains(&Role::Produce),
        consume: roles.contains(&Role::Consume),
    }
}
