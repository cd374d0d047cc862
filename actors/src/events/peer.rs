//! Connections to peers and callers: a peer connected (either way), lost, not reachable, refused
//! because an operator closed its gate, or moved to the pair's other connection; a call the peer
//! answered "not now", repeated on the live connection; an identity that is neither client nor
//! peer. Lost links and failed dials are counted in `bsfg_link_failures_total{peer,reason}` by a
//! bounded [`LinkFailure`]; the connections served are counted in `bsfg_peer_connections{peer}`.

use std::{fmt::Display, net::SocketAddr, time::Duration};

use bsfg_proto::RpcError;

use slog::{info, warn};

use super::{Event, Telemetry, CLOSED_BY_OPERATOR};
use crate::{
    metrics::{Counted, Metrics},
    transport::address::PeerAddress,
};

pub const PEER_CONNECTED: &str = "peer_connected";
pub const PEER_DISCONNECTED: &str = "peer_disconnected";
pub const PEER_DIAL_FAILED: &str = "peer_dial_failed";
pub const PEER_REFUSED: &str = "peer_refused";
pub const PEER_CONNECTION_REPLACED: &str = "peer_connection_replaced";
pub const PEER_CALL_RETRIED: &str = "peer_call_retried";
pub const CLIENT_REJECTED: &str = "client_rejected";

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// Why a link to a peer failed: the bounded `reason` of `bsfg_link_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFailure {
    /// A dial got no answer (peer down, or packets lost on the way).
    Unreachable,
    /// A handshake was refused for a certificate, by either side.
    Tls,
    /// A live link went silent (QUIC idle timeout, or a call not answered in time).
    Timeout,
    /// The peer closed or reset the connection.
    Closed,
    /// The peer closed the link on purpose: it is stopping, its operator closed its gate toward
    /// this node, or its HA instance stepped down. The link is lost, but nothing is wrong with it.
    Stopped,
    /// The peer answered a call with an error (e.g. `UNAVAILABLE` while its storage fails).
    Refused,
    /// The peer answered something that does not fit the protocol.
    Protocol,
    /// This node could not store what it pulled (forward buffer).
    Local,
    /// An artifact referenced by a pulled fact could not be retrieved.
    Artifact,
    Other,
}

impl LinkFailure {
    pub const ALL: [Self; 10] = [
        Self::Unreachable,
        Self::Tls,
        Self::Timeout,
        Self::Closed,
        Self::Stopped,
        Self::Refused,
        Self::Protocol,
        Self::Local,
        Self::Artifact,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Stopped => "stopped",
            Self::Refused => "refused",
            Self::Protocol => "protocol",
            Self::Local => "local",
            Self::Artifact => "artifact",
            Self::Other => "other",
        }
    }

    fn count(self, metrics: &Metrics, peer: &str) {
        metrics.link_failures.with_label_values(&[peer, self.as_str()]).inc();
    }
}

/// A peer's connection is up; `not_after` is when the certificate it presented expires (a
/// rotation on the other side shows here).
pub struct PeerConnected<'a> {
    pub peer: &'a str,
    pub remote: SocketAddr,
    pub direction: Direction,
    pub not_after: &'a str,
}

impl Event for PeerConnected<'_> {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", PEER_CONNECTED; "peer" => self.peer, "remote" => %self.remote,
            "direction" => self.direction.as_str(), "not_after" => self.not_after);
    }
}

/// A connection with a peer is served (accepted, or dialled by its link): counted in
/// `bsfg_peer_connections{peer}` until the [`Counted`] it returns is dropped, when the
/// connection is gone.
pub struct PeerConnectionOpen<'a> {
    pub peer: &'a str,
}

impl PeerConnectionOpen<'_> {
    pub fn begin(self, t: &Telemetry) -> Counted {
        Counted::new(t.metrics.peer_connections.with_label_values(&[self.peer]))
    }
}

/// The session with a peer ended: it failed (WARN, with why; counted), or an operator closed the
/// gate (INFO; not a failure).
pub struct PeerDisconnected<'a> {
    pub peer: &'a str,
    /// Why the session failed; `None` when an operator closed the gate.
    pub failure: Option<(LinkFailure, &'a dyn Display)>,
}

impl Event for PeerDisconnected<'_> {
    fn emit(self, t: &Telemetry) {
        match self.failure {
            // Counted, but not a fault to look into: the peer said why it closed.
            Some((kind @ LinkFailure::Stopped, reason)) => {
                kind.count(&t.metrics, self.peer);
                info!(t.log, "{}", PEER_DISCONNECTED; "peer" => self.peer, "reason" => %reason, "kind" => kind.as_str());
            }
            Some((kind, reason)) => {
                kind.count(&t.metrics, self.peer);
                warn!(t.log, "{}", PEER_DISCONNECTED; "peer" => self.peer, "reason" => %reason, "kind" => kind.as_str());
            }
            None => info!(t.log, "{}", PEER_DISCONNECTED; "peer" => self.peer, "reason" => CLOSED_BY_OPERATOR),
        }
    }
}

/// A dial to a peer failed (counted): `address` as configured (a host name that may not have
/// resolved), `remote` the address dialled once it did.
pub struct PeerDialFailed<'a> {
    pub peer: &'a str,
    pub address: &'a PeerAddress,
    pub remote: Option<SocketAddr>,
    pub kind: LinkFailure,
    pub reason: &'a str,
}

impl Event for PeerDialFailed<'_> {
    fn emit(self, t: &Telemetry) {
        self.kind.count(&t.metrics, self.peer);
        match self.remote {
            Some(remote) => warn!(t.log, "{}", PEER_DIAL_FAILED; "peer" => self.peer, "address" => %self.address,
                "remote" => %remote, "reason" => self.reason, "kind" => self.kind.as_str()),
            None => warn!(t.log, "{}", PEER_DIAL_FAILED; "peer" => self.peer, "address" => %self.address,
                "reason" => self.reason, "kind" => self.kind.as_str()),
        }
    }
}

/// A peer connected while an operator keeps its gate closed: served refusals, never used.
pub struct PeerRefused<'a> {
    pub peer: &'a str,
    pub remote: SocketAddr,
}

impl Event for PeerRefused<'_> {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", PEER_REFUSED; "peer" => self.peer, "remote" => %self.remote, "reason" => CLOSED_BY_OPERATOR);
    }
}

/// Both sides dialled: this side closed its own connection and moved to the peer's.
pub struct PeerConnectionReplaced<'a> {
    pub peer: &'a str,
}

impl Event for PeerConnectionReplaced<'_> {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", PEER_CONNECTION_REPLACED; "peer" => self.peer,
            "reason" => "the peer's connection is kept for both directions");
    }
}

/// The peer answered a call retryably (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`: a storage fault or a
/// full disk over there); the call is repeated on the same connection after `retry_in`, which
/// grows with each refusal in a row. The link stays up.
pub struct PeerCallRetried<'a> {
    pub peer: &'a str,
    /// `fetch_facts` or `confirm_receipt`.
    pub operation: &'a str,
    pub error: &'a RpcError,
    pub retry_in: Duration,
}

impl Event for PeerCallRetried<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(t.log, "{}", PEER_CALL_RETRIED; "peer" => self.peer, "operation" => self.operation,
            "code" => self.error.code.as_str(), "error_message" => &self.error.message,
            "retry_in_ms" => self.retry_in.as_millis() as u64);
    }
}

/// A certificate from our CA whose CN is neither a configured client nor a peer (logged once
/// per connection; each of its calls is refused and audited).
pub struct ClientRejected<'a> {
    pub caller: &'a str,
    pub remote: SocketAddr,
}

impl Event for ClientRejected<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(t.log, "{}", CLIENT_REJECTED; "caller" => self.caller, "remote" => %self.remote,
            "reason" => "not a configured client or peer: every call is refused with PERMISSION_DENIED");
    }
}

/// Every configured peer shows its backlog, its connections and every failure reason from
/// start-up, at 0.
pub(super) fn init_series(metrics: &Metrics, peer: &str) {
    metrics.peer_backlog_facts.with_label_values(&[peer]).set(0);
    metrics.peer_connections.with_label_values(&[peer]).set(0);
    for failure in LinkFailure::ALL {
        metrics.link_failures.with_label_values(&[peer, failure.as_str()]);
    }
}
