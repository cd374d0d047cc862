//! `bsfg check --config FILE [--peers] [--json]` (SPEC §8): preflight of a node before it starts.
//! Each check is one line, `ok`, `warn` or `FAIL`, with what it found; the command exits 0 when
//! none failed and 1 otherwise (2 for usage errors, as every command).
//!
//! The checks reuse what `serve` does at start, never a copy: the configuration is loaded and
//! mapped with the same functions, the certificate, key and CA (and the CRL) are validated by the
//! `CertWatcher`'s `validate`. What `serve` would only find out later is looked at from outside
//! (`host`): the data directory (without opening RocksDB or writing anything in it), the free
//! space against the configured capacities, and whether the listen ports can be bound. With
//! `--peers`, every dialled peer gets a real mutual-TLS handshake with the node's certificate
//! (`peers`).

mod host;
mod peers;

use std::{path::Path, time::Duration};

use bsfg_actors::{
    cert_watcher::{self, TlsPaths},
    node::NodeSettings,
    transport::tls::TlsMaterial,
};
use bsfg_proto::ErrorCode;
use serde::Serialize;

use super::CommandError;
use crate::config::Config;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing, but the node would run.
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

impl Check {
    fn new(check: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status,
            detail: detail.into(),
        }
    }

    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, Status::Ok, detail)
    }

    fn fail(check: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::new(check, Status::Fail, detail.to_string())
    }
}

pub fn run(config: &Path, peers: bool, json: bool) -> anyhow::Result<()> {
    let checks = preflight(config, peers);
    if json {
        let ok = checks.iter().all(|c| c.status != Status::Fail);
        println!("{}", serde_json::json!({"ok": ok, "checks": checks}));
    } else {
        for check in &checks {
            println!("{:<4} {}: {}", check.status.label(), check.check, check.detail);
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        let message = format!("{failed} of {} checks failed", checks.len());
        return Err(CommandError::new(ErrorCode::InvalidArgument, message).into());
    }
    Ok(())
}

/// Every check, in the order an operator fixes things: the file, the node's identity, the host.
pub fn preflight(path: &Path, peers: bool) -> Vec<Check> {
    let (config, settings) = match load(path) {
        Ok(loaded) => loaded,
        Err(e) => return vec![Check::fail("config", format!("{}: {e}", path.display()))],
    };
    let detail = format!(
        "{}: zone {}, {} peers, {} clients",
        path.display(),
        settings.zone,
        config.peers.len(),
        config.clients.len()
    );
    let mut checks = vec![Check::ok("config", detail)];
    if let Some(token) = &config.admin.token_file {
        checks.push(match crate::admin::read_token(token, "admin.token_file") {
            Ok(_) => Check::ok("admin token", token.display().to_string()),
            Err(e) => Check::fail("admin token", e),
        });
    }
    let material = identity(&settings, &mut checks);
    checks.extend(host::checks(&config));
    if peers {
        match material {
            Some(material) => checks.extend(peers::checks(&config, &material)),
            None => checks.push(Check::fail(
                "peers",
                "not checked: the node's own TLS material is refused",
            )),
        }
    }
    checks
}

/// The same loading and mapping as `serve`.
fn load(path: &Path) -> anyhow::Result<(Config, NodeSettings)> {
    let config = Config::load(path)?;
    let settings = config.node_settings()?;
    Ok((config, settings))
}

/// The certificate (CN = zone, chain to the CA, valid now, key matches), then the CRL (from the
/// CA, current, not revoking the node's certificate); the material when both pass.
fn identity(settings: &NodeSettings, checks: &mut Vec<Check>) -> Option<TlsMaterial> {
    let paths = &settings.certs.paths;
    let without_crl = TlsPaths {
        crl: None,
        ..paths.clone()
    };
    let material = match cert_watcher::validate(&settings.zone, &without_crl) {
        Ok(material) => material,
        Err(e) => {
            checks.push(Check::fail("certificate", e));
            return None;
        }
    };
    let left = material
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let status = if left < WEEK { Status::Warn } else { Status::Ok };
    let detail = format!(
        "CN {}, expires in {} ({})",
        material.identity(),
        span(left),
        paths.cert.display()
    );
    checks.push(Check::new("certificate", status, detail));
    if paths.crl.is_none() {
        return Some(material);
    }
    match cert_watcher::validate(&settings.zone, paths) {
        Ok(material) => {
            checks.push(crl_line(&material));
            Some(material)
        }
        Err(e) => {
            checks.push(Check::fail("crl", e));
            None
        }
    }
}

fn crl_line(material: &TlsMaterial) -> Check {
    let Some(summary) = material.revocation() else {
        return Check::fail("crl", "configured but not loaded");
    };
    let next = match summary.next_update {
        Some(at) => format!(
            "next update in {}",
            span(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
        ),
        None => "no next update".to_owned(),
    };
    let detail = format!("{}: {} revoked, {next}", summary.path.display(), summary.revoked);
    Check::ok("crl", detail)
}

const WEEK: Duration = Duration::from_secs(7 * 86_400);

/// A duration as an operator reads it: days, else hours, else minutes.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}
