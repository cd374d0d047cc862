//! The node's configuration (`bsfg serve --config FILE`, SPEC §9): one strict tree, loaded once.
//!
//! Loading reads the file and nothing else: no port is bound, no certificate or token is opened.
//! It runs in three steps, each of which can only fail with a [`ConfigError`] naming the key:
//! 1. *decode* — TOML into typed values (zones, sizes, durations, addresses, enums); unknown keys
//!    and bad values fail here with the dotted key path tracked by `serde_path_to_error`;
//! 2. *resolve* — relative paths (`node.data_dir`, `[tls]`, `admin.token_file`) are joined to the
//!    config file's directory, so the node behaves the same whatever its working directory;
//! 3. *check* — cross-field rules (see `validate`), e.g. a safety-critical store cannot drop facts.
//!    A rule a component owns (the store's policy) is checked by that component's constructor,
//!    and only the key path is added here.
//!
//! [`Config::node_settings`] (`settings`) then maps the tree, once, onto the node's per-component
//! configs.

mod routes;
mod sections;
mod settings;
mod storage;
mod validate;
mod values;

#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use bsfg_actors::{backpressure::WhenFull, rpc::Role};
pub use routes::{RelaySection, RouteSection};
pub use sections::{
    AdminSection, ClientSection, ForwardSection, LimitsSection, ListenSection, LogSection, NodeSection, ObjectsSection,
    PeerSection, ReplicationSection, StoreSection, TlsSection,
};
pub use storage::{EngineKind, JetStreamSection, StorageSection};
pub use values::{ByteSize, LogFormat, LogLevel, Zone};

/// The whole configuration file. Build it with [`Config::load`] or [`Config::parse`], which also
/// resolve paths and enforce the cross-field rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    #[serde(default)]
    pub listen: ListenSection,
    pub tls: TlsSection,
    #[serde(default)]
    pub peers: Vec<PeerSection>,
    #[serde(default)]
    pub clients: Vec<ClientSection>,
    /// `[[routes]]`: zones reached through a peer (SPEC §4a).
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// `[[relay]]`: the flows this node relays; none by default.
    #[serde(default)]
    pub relay: Vec<RelaySection>,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub forward: ForwardSection,
    #[serde(default)]
    pub objects: ObjectsSection,
    #[serde(default)]
    pub replication: ReplicationSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub storage: StorageSection,
}

/// Why a configuration was refused. `Invalid` is the operator's mistake at a known key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// `path` is the dotted key path, e.g. `store.retention` or `peers[1].zone`.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads, decodes, resolves and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |source: io::Error| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let absolute = std::path::absolute(path).map_err(read_error)?;
        let base_dir = absolute.parent().unwrap_or(Path::new("/"));
        Config::parse(&text, base_dir)
    }

    /// Decodes and checks `text`; relative paths in it are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config = decode(text)?;
        config.resolve_paths(base_dir);
        validate::check(&config)?;
        Ok(config)
    }

    /// The configured peer for `zone`, if any.
    pub fn peer(&self, zone: &str) -> Option<&PeerSection> {
        self.peers.iter().find(|peer| peer.zone.as_str() == zone)
    }

    /// The configured client with certificate identity `identity`, if any.
    pub fn client(&self, identity: &str) -> Option<&ClientSection> {
        self.clients.iter().find(|client| client.identity == identity)
    }

    fn resolve_paths(&mut self, base_dir: &Path) {
        let paths = [
            &mut self.node.data_dir,
            &mut self.tls.ca,
            &mut self.tls.cert,
            &mut self.tls.key,
        ];
        let engine = self.storage.jetstream.iter_mut().flat_map(JetStreamSection::paths_mut);
        let optional = self.admin.token_file.as_mut().into_iter().chain(self.tls.crl.as_mut());
        for path in paths.into_iter().chain(optional).chain(engine) {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }
}

fn decode(text: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(value_error)
}

fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    ConfigError::Syntax {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        message: error.message().trim().to_owned(),
    }
}

/// A missing required key is reported at its own path (`node.zone`), not at its parent table.
fn value_error(error: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let parent = error.path().to_string();
    let message = error.inner().message();
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    let (path, message) = match missing {
        Some(key) if parent == "." => (key.to_owned(), "required key is missing"),
        Some(key) => (format!("{parent}.{key}"), "required key is missing"),
        None => (parent, message),
    };
    ConfigError::Invalid {
        path,
        message: message.to_owned(),
    }
}
