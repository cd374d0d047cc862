//! `--peers`: a real mutual-TLS handshake with every peer this node dials, with the node's own
//! certificate and the verifier its links use (chain, revocation, CN = the peer's zone). The
//! connection negotiates the check protocol (`tls::CHECK_ALPN`): the peer closes it once the
//! handshake passed, telling what it takes this node for, so the check never disturbs the
//! peer's links (a plain connection from a node's certificate would be offered to one).

use std::{net::SocketAddr, time::Duration};

use bsfg_actors::transport::{
    address::PeerAddress,
    tls::{TlsMaterial, DEFAULT_IDLE_TIMEOUT},
};
use bsfg_proto::CloseCode;
use quinn::ConnectionError;

use super::Check;
use crate::config::Config;

/// How long a peer may take to handshake and answer.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn checks(config: &Config, material: &TlsMaterial) -> Vec<Check> {
    // Every address of every dialled peer (each instance of an HA peer zone).
    let dialled: Vec<(String, PeerAddress)> = config
        .peers
        .iter()
        .filter(|peer| peer.dial)
        .flat_map(|peer| {
            let zone = peer.zone.as_str().to_owned();
            peer.dial_addresses()
                .into_iter()
                .map(move |address| (zone.clone(), address))
        })
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return vec![Check::fail("peers", format!("no runtime: {e}"))],
    };
    let zone = config.node.zone.as_str();
    runtime.block_on(async {
        let mut checks = Vec::new();
        let any = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
        for (peer, address) in dialled {
            let name = format!("peer {peer}");
            let answered = match address.resolve(any, 0).await {
                Ok(resolved) => handshake(material, &peer, resolved, zone).await,
                Err(e) => Err(e.to_string()),
            };
            checks.push(match answered {
                Ok(detail) => Check::ok(name, format!("{address}: {detail}")),
                Err(reason) => Check::fail(name, format!("{address}: {reason}")),
            });
        }
        checks
    })
}

/// Dials `peer` at `address` as this node; what the peer answered.
async fn handshake(material: &TlsMaterial, peer: &str, address: SocketAddr, zone: &str) -> Result<String, String> {
    let bind: SocketAddr = if address.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| format!("no local endpoint: {e}"))?;
    let config = material
        .quic_check_config(DEFAULT_IDLE_TIMEOUT)
        .map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(config);
    let connecting = endpoint.connect(address, peer).map_err(|e| e.to_string())?;
    let answered = tokio::time::timeout(TIMEOUT, async {
        let conn = connecting.await?;
        Ok::<_, ConnectionError>(conn.closed().await)
    })
    .await;
    endpoint.close(0u32.into(), b"done");
    match answered {
        Err(_) => Err(format!(
            "no answer within {TIMEOUT:?} (unreachable, or not a bsfg node)"
        )),
        Ok(Err(refused)) => Err(format!("handshake failed: {refused}")),
        Ok(Ok(closed)) => verdict(&closed, peer, zone),
    }
}

/// What the peer's close says: taken for a peer is the only pass.
fn verdict(closed: &ConnectionError, peer: &str, zone: &str) -> Result<String, String> {
    let ConnectionError::ApplicationClosed(close) = closed else {
        return Err(format!("handshake failed: {closed}"));
    };
    if CloseCode::from_code(close.error_code.into_inner()) != Some(CloseCode::Checked) {
        return Err(format!("closed by {peer}: {closed}"));
    }
    match &close.reason[..] {
        b"peer" => Ok(format!("handshake ok; {peer} accepts {zone} as a peer")),
        other => Err(format!(
            "handshake ok, but {peer} takes {zone} for a {} (not in its [[peers]])",
            String::from_utf8_lossy(other)
        )),
    }
}
