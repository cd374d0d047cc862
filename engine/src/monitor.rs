//! Reads nats-server's HTTP monitoring endpoints (`/varz`, `/jsz`, `/healthz`): what the start-up
//! checks and the dev fixture need to know about each server that the client protocol does not
//! tell (the fsync setting of every server, not only the one connected to; stream leaders).
//!
//! A minimal HTTP/1.0 GET over tokio: one request per connection, the body is everything until
//! the server closes (HTTP/1.0 answers are never chunked), capped at [`MAX_BODY`]. Plain
//! `http://HOST:PORT` only: the monitoring port is meant for the zone's private network.

use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The largest answer read (a `/jsz` with streams of a few zones is a few KiB).
const MAX_BODY: u64 = 4 << 20;

/// Why a monitoring endpoint gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("monitor URL {url:?} must be http://HOST:PORT")]
    Url { url: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}{path} answered HTTP {status}")]
    Status { url: String, path: String, status: u16 },
    #[error("{url}{path} answered something unreadable: {reason}")]
    Invalid { url: String, path: String, reason: String },
}

/// What `/varz` says about one server (the fields the checks need).
#[derive(Debug, Clone, Deserialize)]
pub struct Varz {
    pub server_name: String,
    pub version: String,
    #[serde(default)]
    pub jetstream: Option<VarzJetStream>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VarzJetStream {
    #[serde(default)]
    pub config: Option<VarzJetStreamConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VarzJetStreamConfig {
    /// `sync_interval: always`: every write is fsync'd before it is acknowledged.
    #[serde(default)]
    pub sync_always: bool,
}

impl Varz {
    /// JetStream enabled at all (its `config` is present).
    pub fn jetstream_enabled(&self) -> bool {
        self.config().is_some()
    }

    pub fn sync_always(&self) -> bool {
        self.config().is_some_and(|c| c.sync_always)
    }

    fn config(&self) -> Option<&VarzJetStreamConfig> {
        self.jetstream.as_ref()?.config.as_ref()
    }
}

/// `GET url + path`, decoded as JSON; `timeout` bounds the whole exchange.
pub async fn get_json<T: DeserializeOwned>(url: &str, path: &str, timeout: Duration) -> Result<T, MonitorError> {
    let body = get(url, path, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| MonitorError::Invalid {
        url: url.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// `GET url + path`; the body of a 200 answer.
pub async fn get(url: &str, path: &str, timeout: Duration) -> Result<Vec<u8>, MonitorError> {
    let authority = authority(url)?;
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_BODY).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let unreachable = |reason: String| MonitorError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    body_of(url, path, &raw)
}

/// `host:port` of an `http://HOST:PORT[/]` URL.
fn authority(url: &str) -> Result<&str, MonitorError> {
    let bad = || MonitorError::Url { url: url.to_owned() };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() && !authority.contains('/') => {
            Ok(authority)
        }
        _ => Err(bad()),
    }
}

fn body_of(url: &str, path: &str, raw: &[u8]) -> Result<Vec<u8>, MonitorError> {
    let invalid = |reason: &str| MonitorError::Invalid {
        url: url.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("no HTTP status line"))?;
    if status != 200 {
        return Err(MonitorError::Status {
            url: url.to_owned(),
            path: path.to_owned(),
            status,
        });
    }
    Ok(raw[split + 4..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_plain_http_host_and_port() {
        assert_eq!(authority("http://127.0.0.1:8222").ok(), Some("127.0.0.1:8222"));
        assert_eq!(authority("http://nats-a:8222/").ok(), Some("nats-a:8222"));
        for bad in [
            "https://a:8222",
            "http://a",
            "http://a:x",
            "http://:8222",
            "http://a:8222/varz",
        ] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_body_follows_a_200_status() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(body_of("u", "/p", raw).expect("body"), b"{\"a\":1}");
        let refused = b"HTTP/1.0 503 Service Unavailable\r\n\r\n{}";
        assert!(matches!(
            body_of("u", "/p", refused),
            Err(MonitorError::Status { status: 503, .. })
        ));
        assert!(body_of("u", "/p", b"garbage").is_err());
    }

    #[test]
    fn varz_tells_the_fsync_setting() {
        let varz: Varz = serde_json::from_str(
            r#"{"server_name":"n1","version":"2.15.1","jetstream":{"config":{"sync_interval":120000000000,"sync_always":true}}}"#,
        )
        .expect("varz");
        assert!(varz.jetstream_enabled() && varz.sync_always());
        let plain: Varz =
            serde_json::from_str(r#"{"server_name":"n1","version":"2.15.1","jetstream":{}}"#).expect("varz");
        assert!(!plain.jetstream_enabled() && !plain.sync_always());
    }
}
