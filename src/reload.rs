//! Reloading a running node, on SIGHUP and `POST /v1/admin/reload` (`bsfg admin reload`): the
//! configuration file is read and checked again as `serve` checks it, the admin token file is read
//! again, the TLS material is reloaded through the `CertWatcher` (validated, then swapped), and
//! only then do the file's `[[clients]]` list and the token replace those calls are judged by. A
//! file that does not load, a token file that cannot be read, or TLS material that is refused,
//! refuses the whole reload: nothing changes.
//!
//! Everything else in the file is read at start only (peers, listeners, buffers, paths...): a
//! section that differs from the one the node runs with is not applied but reported, in the
//! answer (`restart_needed`) and in the log (`restart_needed`), so no edit is silently ignored.
//! Changes the file watcher sees reload the TLS material alone; they do not read the file.

use std::{collections::BTreeSet, path::PathBuf};

use actix::{Addr, MailboxError};
use bsfg_actors::{
    cert_watcher::{CertWatcher, Certificate, Reload, ReloadError, Trigger},
    rpc::{Authorisations, Directory},
};
use serde::Serialize;
use slog::{info, warn, Logger};

use crate::{
    admin::AdminToken,
    config::{Config, ConfigError},
};

pub const CONFIG_RELOADED: &str = "config_reloaded";
pub const CONFIG_RELOAD_FAILED: &str = "config_reload_failed";
pub const RESTART_NEEDED: &str = "restart_needed";

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefused {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Tls(#[from] ReloadError),
    #[error("the certificate watcher is not running: {0}")]
    Gone(#[from] MailboxError),
    /// `admin.token_file` could not be read, or is empty.
    #[error("{0}")]
    Token(String),
}

/// What a reload applied, and what it could not.
#[derive(Debug)]
pub struct Reloaded {
    pub certificate: Certificate,
    pub clients: ClientChanges,
    /// Sections of the file that differ from those the node runs with: applied at the next start.
    pub restart_needed: Vec<&'static str>,
    /// The admin token file held another token than the one in use, which it now replaces.
    pub token_changed: bool,
}

/// Client identities whose authorisation the reload changed.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Still listed, with other roles.
    pub changed: Vec<String>,
}

impl ClientChanges {
    fn between(old: &Directory, new: &Directory) -> Self {
        let names = |d: &Directory| d.clients.keys().cloned().collect::<BTreeSet<_>>();
        let (before, after) = (names(old), names(new));
        Self {
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
            changed: after
                .intersection(&before)
                .filter(|c| old.clients.get(*c) != new.clients.get(*c))
                .cloned()
                .collect(),
        }
    }
}

/// Reloads the node that runs with `running`, loaded from `path`.
pub struct Reloader {
    pub path: PathBuf,
    pub running: Config,
    pub certs: Addr<CertWatcher>,
    pub authorisations: Authorisations,
    /// The admin API's token, when `admin.token_file` is set.
    pub token: Option<AdminToken>,
    pub log: Logger,
    /// For `bsfg_config_reload_failing`: a SIGHUP's outcome is otherwise in the log only.
    pub metrics: std::sync::Arc<bsfg_actors::metrics::Metrics>,
}

impl Reloader {
    /// Reloads; every outcome is logged (the TLS part also by the watcher, as `cert_reloaded` or
    /// `cert_reload_failed`).
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadRefused> {
        let reloaded = self.apply(trigger).await;
        match &reloaded {
            Ok(r) => self.log_applied(trigger, r),
            Err(e) => warn!(self.log, "{}", CONFIG_RELOAD_FAILED; "trigger" => trigger.as_str(), "reason" => %e),
        }
        self.metrics.config_reload_failing.set(i64::from(reloaded.is_err()));
        reloaded
    }

    async fn apply(&self, trigger: Trigger) -> Result<Reloaded, ReloadRefused> {
        let config = Config::load(&self.path)?;
        let directory = config.node_settings()?.rpc.directory;
        let token = self.read_token(&config)?;
        let certificate = self.certs.send(Reload { trigger }).await??;
        let clients = ClientChanges::between(&self.authorisations.current(), &directory);
        self.authorisations.replace(directory);
        let token_changed = match (&self.token, token) {
            (Some(held), Some(token)) => held.replace(token),
            _ => false,
        };
        Ok(Reloaded {
            certificate,
            clients,
            restart_needed: sections_changed(&self.running, &config),
            token_changed,
        })
    }

    /// The token in the running node's `admin.token_file`, when the file still names that file (a
    /// token file added, removed or moved is a change to `[admin]`, applied at the next start).
    fn read_token(&self, config: &Config) -> Result<Option<String>, ReloadRefused> {
        match (&self.running.admin.token_file, &config.admin.token_file) {
            (Some(running), Some(path)) if running == path => crate::admin::read_token(path, "admin.token_file")
                .map(Some)
                .map_err(ReloadRefused::Token),
            _ => Ok(None),
        }
    }

    fn log_applied(&self, trigger: Trigger, reloaded: &Reloaded) {
        let clients = &reloaded.clients;
        info!(self.log, "{}", CONFIG_RELOADED; "trigger" => trigger.as_str(),
            "clients_added" => clients.added.join(","), "clients_removed" => clients.removed.join(","),
            "clients_changed" => clients.changed.join(","), "admin_token_changed" => reloaded.token_changed);
        if !reloaded.restart_needed.is_empty() {
            warn!(self.log, "{}", RESTART_NEEDED; "sections" => reloaded.restart_needed.join(","),
                "reason" => "changed in the configuration file; applied at the next start, not by a reload");
        }
    }
}

/// The sections of `new` that differ from `running`, `[[clients]]` aside (it is reloaded). Every
/// section is named here: `running` is taken apart field by field, so a section added to
/// [`Config`] does not build until it is listed.
fn sections_changed(running: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        node,
        listen,
        tls,
        peers,
        clients: _,
        routes,
        relay,
        store,
        forward,
        objects,
        replication,
        limits,
        admin,
        log,
        storage,
    } = running;
    let differs = [
        ("node", *node != new.node),
        ("listen", *listen != new.listen),
        ("tls", *tls != new.tls),
        ("peers", *peers != new.peers),
        ("routes", *routes != new.routes),
        ("relay", *relay != new.relay),
        ("store", *store != new.store),
        ("forward", *forward != new.forward),
        ("objects", *objects != new.objects),
        ("replication", *replication != new.replication),
        ("limits", *limits != new.limits),
        ("admin", *admin != new.admin),
        ("log", *log != new.log),
        ("storage", *storage != new.storage),
    ];
    differs
        .into_iter()
        .filter_map(|(section, changed)| changed.then_some(section))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[node]\nzone = \"plant-a\"\ndata_dir = \"/d\"\n[tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n{extra}"
        );
        Config::parse(&text, Path::new("/etc/bsfg")).expect("config")
    }

    fn clients(entries: &[(&str, &str)]) -> String {
        entries
            .iter()
            .map(|(identity, roles)| format!("[[clients]]\nidentity = \"{identity}\"\nroles = [{roles}]\n"))
            .collect()
    }

    #[test]
    fn client_changes_name_who_was_added_removed_or_given_other_roles() {
        let before = clients(&[("mes", "\"produce\""), ("erp", "\"consume\""), ("ops", "\"consume\"")]);
        let after = clients(&[
            ("mes", "\"produce\", \"consume\""),
            ("ops", "\"consume\""),
            ("lims", "\"produce\""),
        ]);
        let directory = |text: &str| config(text).node_settings().expect("settings").rpc.directory;
        let changes = ClientChanges::between(&directory(&before), &directory(&after));
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            changes,
            ClientChanges {
                added: names(&["lims"]),
                removed: names(&["erp"]),
                changed: names(&["mes"]),
            }
        );
    }

    #[test]
    fn every_other_changed_section_is_named_as_needing_a_restart() {
        let running = config(&clients(&[("mes", "\"produce\"")]));
        assert_eq!(
            sections_changed(&running, &config("")),
            Vec::<&str>::new(),
            "clients alone"
        );
        let edited = config("[store]\ncapacity_bytes = \"1GiB\"\n[log]\nlevel = \"debug\"\n");
        assert_eq!(sections_changed(&running, &edited), ["store", "log"]);
        let crl = Config {
            tls: crate::config::TlsSection {
                crl: Some("/etc/bsfg/pki/ca.crl".into()),
                ..running.tls.clone()
            },
            ..running.clone()
        };
        assert_eq!(sections_changed(&running, &crl), ["tls"]);
        let engine = config("[storage]\nengine = \"jetstream\"\n[storage.jetstream]\nurls = [\"nats://127.0.0.1:4222\"]\ninstance = \"a\"\n");
        assert_eq!(sections_changed(&running, &engine), ["storage"]);
    }
}
