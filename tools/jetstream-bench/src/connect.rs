//! Connections to a zone's servers: plain TCP, or mutual TLS when given a CA and a client
//! certificate. bsfg's producers, consumers and peers always speak QUIC with mutual TLS, so the
//! comparison script turns TLS on for JetStream's client, leafnode and route connections too.

use std::path::PathBuf;

use anyhow::Context as _;
use async_nats::{Client, ConnectOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct Tls {
    /// The CA certificate (PEM) that signed the servers' certificates; with --tls-cert and
    /// --tls-key, every connection uses mutual TLS [default: plain TCP].
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), signed by a CA the servers trust.
    #[arg(long, requires = "tls_ca")]
    pub tls_cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, requires = "tls_ca")]
    pub tls_key: Option<PathBuf>,
}

impl Tls {
    /// Connects to `url`, with mutual TLS when configured.
    pub async fn connect(&self, url: &str) -> anyhow::Result<Client> {
        let mut options = ConnectOptions::new();
        if let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            options = options
                .add_root_certificates(ca.clone())
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        options
            .connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))
    }
}
