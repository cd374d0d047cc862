//! The engine of an HA zone for end-to-end tests: a real nats-server cluster (three servers,
//! `sync_interval: always` unless asked otherwise, mutual TLS if asked) in a scratch directory,
//! connections to it, and the zone's log and lease. The servers' logs are printed when a test
//! fails.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use bsfg::devnet::nats::{NatsCluster, NatsOptions, NatsTls};
use bsfg_engine::jetstream::{ConnectConfig, Engine, JetStreamLog, KvLease, LeaseSpec, LogSpec};

/// The zone whose log and lease the tests use.
pub const ZONE: &str = "enterprise";
/// The engine servers' certificate name in a TLS fixture's PKI.
const SERVERS_CERT: &str = "engine";
/// The client certificate name in a TLS fixture's PKI.
pub const TLS_CLIENT: &str = "enterprise-a";

pub struct EngineFixture {
    pub nats: NatsCluster,
    /// The PKI of a TLS fixture: `ca.pem`, and `<name>.pem`/`.key` per certificate.
    pub pki: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl EngineFixture {
    /// Three servers with `sync_interval: always`, healthy.
    pub async fn start() -> Self {
        Self::start_with(NatsOptions::default()).await
    }

    pub async fn start_with(options: NatsOptions) -> Self {
        Self::start_in(scratch(), options, None).await
    }

    /// Three servers requiring mutual TLS on the client port, with a fresh PKI that also holds
    /// the client certificate [`TLS_CLIENT`].
    pub async fn start_tls() -> Self {
        let dir = scratch();
        let pki = dir.path().join("pki");
        bsfg::pki::init(&pki, &[SERVERS_CERT.into()], &[TLS_CLIENT.into()], 1).expect("PKI");
        let options = NatsOptions {
            tls: Some(NatsTls {
                ca: pki.join("ca.pem"),
                cert: pki.join(format!("{SERVERS_CERT}.pem")),
                key: pki.join(format!("{SERVERS_CERT}.key")),
            }),
            ..Default::default()
        };
        Self::start_in(dir, options, Some(pki)).await
    }

    async fn start_in(dir: tempfile::TempDir, options: NatsOptions, pki: Option<PathBuf>) -> Self {
        super::failure::remember();
        let nats = NatsCluster::start(dir.path(), options)
            .await
            .unwrap_or_else(|e| panic!("starting nats-server: {e:#}"));
        Self { nats, pki, _dir: dir }
    }

    /// A connection named `name` to any of the servers.
    pub async fn connect(&self, name: &str) -> Engine {
        let config = ConnectConfig {
            urls: self.nats.urls(),
            name: name.to_owned(),
            ..Default::default()
        };
        Engine::connect(&config).await.expect("connecting to the engine")
    }

    /// The zone's WAL (R3) through a connection of its own named `writer`.
    pub async fn log(&self, writer: &str) -> JetStreamLog {
        self.log_with(writer, &LogSpec::new(ZONE, 3)).await
    }

    pub async fn log_with(&self, writer: &str, spec: &LogSpec) -> JetStreamLog {
        self.connect(writer)
            .await
            .open_log(spec)
            .await
            .expect("opening the log")
    }

    /// The zone's lease (R3) as `instance` sees it, through a connection of its own.
    pub async fn lease(&self, instance: &str, ttl: Duration) -> KvLease {
        let spec = LeaseSpec {
            zone: ZONE.to_owned(),
            instance: instance.to_owned(),
            replicas: 3,
            ttl,
        };
        self.connect(instance)
            .await
            .open_lease(&spec)
            .await
            .expect("opening the lease")
    }
}

impl Drop for EngineFixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("nats-server logs:\n{}", self.nats.logs());
            super::failure::repeat();
        }
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bsfg-engine-")
        .tempdir()
        .expect("tempdir")
}

/// A deadline `budget` from now.
pub fn within(budget: Duration) -> Instant {
    Instant::now() + budget
}
