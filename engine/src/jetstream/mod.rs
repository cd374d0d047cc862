//! The NATS JetStream adapter of the engine port: one connection to the zone's servers
//! ([`Engine`]), the zone's write-ahead log stream ([`JetStreamLog`], design §4.2
//! `bsfg-wal-<zone>`), its lease bucket ([`KvLease`], `bsfg-lease-<zone>`) and its members bucket
//! ([`KvMembers`], `bsfg-members-<zone>`).
//!
//! [`Engine::open_log`], [`Engine::open_lease`] and [`Engine::open_members`] create the stream or
//! bucket when missing and check an existing one against the configuration (replicas, file
//! storage, fsync-before-ack persistence), so a zone never runs on objects someone else set up
//! differently.

mod lease;
mod log;
mod members;
mod objects;
mod provision;
mod tail;

pub use lease::KvLease;
pub use log::JetStreamLog;
pub use members::{KvMembers, Member, Seen};
pub use objects::{JetStreamObjects, ObjectError};
pub use provision::{LeaseSpec, LogSpec, MAX_RECORD_BYTES};
pub use tail::JetStreamTail;

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_nats::jetstream;

/// How long one engine request (an append attempt, a read) may take before it is retried or
/// reported: well under the 4–9 s of a leader election, so appends retry through one.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the connection pings its server: three unanswered pings (~3 s) mark a paused or
/// unreachable server dead and the client moves to another (the default, 60 s, would outlast
/// every append's deadline).
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// How to reach the zone's engine servers.
#[derive(Debug, Clone, Default)]
pub struct ConnectConfig {
    /// `nats://host:port` or `tls://host:port`, one per server.
    pub urls: Vec<String>,
    /// CA certificate to verify the servers with (turns TLS on).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// The connection's name as the servers show it (e.g. the instance).
    pub name: String,
}

/// Why the engine could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to the engine at {urls}: {reason}")]
    Connect { urls: String, reason: String },
    #[error("invalid {what} {value:?}: must match [a-z0-9][a-z0-9-]{{0,62}}")]
    Name { what: &'static str, value: String },
    #[error("cannot set up {object}: {reason}")]
    Provision { object: String, reason: String },
    #[error("{object} has {setting} = {found}, but this zone is configured for {expected}")]
    Mismatch {
        object: String,
        setting: &'static str,
        found: String,
        expected: String,
    },
    #[error("cannot announce this instance in the zone's members bucket: {0}")]
    Announce(String),
}

/// A connection to the zone's engine servers; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    client: async_nats::Client,
    js: jetstream::Context,
}

/// What happened to an engine connection: async-nats's events in the engine's words, so that
/// the node can log them (a connection dropped and taken up again is otherwise invisible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionEvent {
    /// `connected`, `disconnected`, `slow_consumer`, `lame_duck`, `server_error`,
    /// `client_error`, `draining` or `closed`.
    pub kind: &'static str,
    /// The client's own words for it.
    pub detail: String,
}

impl ConnectionEvent {
    fn from_nats(event: &async_nats::Event) -> Self {
        use async_nats::Event;
        let kind = match event {
            Event::Connected => "connected",
            Event::Disconnected => "disconnected",
            Event::LameDuckMode => "lame_duck",
            Event::Draining => "draining",
            Event::Closed => "closed",
            Event::SlowConsumer(_) => "slow_consumer",
            Event::ServerError(_) => "server_error",
            Event::ClientError(_) => "client_error",
        };
        Self {
            kind,
            detail: event.to_string(),
        }
    }

    /// Anything but a (re)connection: the connection lost or at risk.
    pub fn is_trouble(&self) -> bool {
        self.kind != "connected"
    }
}

/// Told of every [`ConnectionEvent`], on the connection's own task: must not block.
pub type ConnectionObserver = Arc<dyn Fn(ConnectionEvent) + Send + Sync>;

impl Engine {
    /// Connects to any of the configured servers (the client follows the cluster from there).
    pub async fn connect(config: &ConnectConfig) -> Result<Self, EngineError> {
        Self::connect_observed(config, Arc::new(|_| {})).await
    }

    /// [`Engine::connect`], telling `observer` of every disconnection, reconnection and error
    /// of the connection for as long as it lives.
    pub async fn connect_observed(config: &ConnectConfig, observer: ConnectionObserver) -> Result<Self, EngineError> {
        let failed = |reason: String| EngineError::Connect {
            urls: config.urls.join(", "),
            reason,
        };
        let mut options = async_nats::ConnectOptions::new()
            .name(&config.name)
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .ping_interval(PING_INTERVAL)
            .event_callback(move |event| {
                observer(ConnectionEvent::from_nats(&event));
                std::future::ready(())
            });
        if let Some(ca) = &config.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &config.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(creds) = &config.creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| failed(format!("credentials file {}: {e}", creds.display())))?;
        }
        let addrs = config
            .urls
            .iter()
            .map(|url| url.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(e.to_string()))?;
        let client = options.connect(addrs).await.map_err(|e| failed(e.to_string()))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        Ok(Self { client, js })
    }

    /// The version of the server this connection is attached to now.
    pub fn server_version(&self) -> String {
        self.client.server_info().version
    }

    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.js
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("server", &self.client.server_info().server_name)
            .finish()
    }
}

fn check_name(what: &'static str, value: &str) -> Result<(), EngineError> {
    if crate::names::is_valid(value) {
        Ok(())
    } else {
        Err(EngineError::Name {
            what,
            value: value.to_owned(),
        })
    }
}
