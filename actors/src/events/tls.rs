//! TLS: refused handshakes (counted by a bounded reason taken from the error's type and the TLS
//! alert it carries, never from its text), on connections we accepted and ones we dialled, live
//! connections closed because their certificate stopped passing those checks, the
//! `CertWatcher`'s reloads, and the handshakes of `bsfg check --peers` this node answered.
//!
//! Not every handshake that does not finish is a TLS failure. A peer whose application gives a
//! connection up during its handshake (both sides dialled at once and it moved to the pair's
//! other connection) closes it with QUIC's `APPLICATION_ERROR`: that is a decision, logged at
//! debug as `handshake_abandoned` and not counted, so a healthy pair is quiet. A dial that gets no
//! answer at all is a link failure (`unreachable`), not a TLS one: on the dialling side only a
//! refusal with a TLS alert counts.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use quinn::{ConnectionError, TransportErrorCode};
use rustls::{AlertDescription, CertificateError};
use slog::{debug, info, warn};

use super::{Direction, Event, Telemetry};
use crate::{metrics::Metrics, transport::tls};

pub const TLS_HANDSHAKE_FAILED: &str = "tls_handshake_failed";
pub const HANDSHAKE_ABANDONED: &str = "handshake_abandoned";
pub const TLS_CONNECTION_CLOSED: &str = "tls_connection_closed";
pub const CERT_RELOADED: &str = "cert_reloaded";
pub const CERT_RELOAD_FAILED: &str = "cert_reload_failed";
pub const CERT_WATCH_FAILED: &str = "cert_watch_failed";
pub const CHECK_ANSWERED: &str = "check_answered";

/// The `result` label of `bsfg_cert_reloads_total`.
const RELOAD_SUCCESS: &str = "success";
const RELOAD_FAILURE: &str = "failure";

/// Why a handshake failed: the bounded `reason` label of `bsfg_tls_handshake_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The certificate does not chain to our CA (alert `unknown_ca`).
    UnknownCa,
    /// The certificate is expired or not yet valid (alert `certificate_expired`).
    Expired,
    /// A revocation list (`tls.crl`) of one side names the certificate (alert `certificate_revoked`).
    Revoked,
    /// The certificate is malformed or names another identity (alert `bad_certificate`).
    BadCertificate,
    /// The handshake did not complete within the idle timeout.
    Timeout,
    Other,
}

impl HandshakeFailure {
    pub const ALL: [Self; 6] = [
        Self::UnknownCa,
        Self::Expired,
        Self::Revoked,
        Self::BadCertificate,
        Self::Timeout,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::BadCertificate => "bad_certificate",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }

    /// What a handshake that did not complete on a connection opened in `direction` counts as:
    /// `None` when it is no TLS failure (abandoned by the other side's application, or, when we
    /// dialled, no TLS alert at all).
    pub fn classify(error: &ConnectionError, direction: Direction) -> Option<Self> {
        if abandoned(error) {
            return None;
        }
        match direction {
            Direction::Outbound if tls::handshake_alert(error).is_none() => None,
            _ => Some(Self::of(error)),
        }
    }

    /// Classifies a failed handshake by the TLS alert it ended with, whichever side sent it.
    pub fn of(error: &ConnectionError) -> Self {
        if matches!(error, ConnectionError::TimedOut) {
            return Self::Timeout;
        }
        match tls::handshake_alert(error).map(AlertDescription::from) {
            // `decrypt_error` is what rustls sends for a chain whose signature does not verify:
            // a certificate from another CA that carries the same name as ours (a CA made anew).
            Some(AlertDescription::UnknownCA | AlertDescription::DecryptError) => Self::UnknownCa,
            Some(AlertDescription::CertificateExpired) => Self::Expired,
            Some(AlertDescription::CertificateRevoked) => Self::Revoked,
            Some(AlertDescription::BadCertificate) => Self::BadCertificate,
            _ => Self::Other,
        }
    }

    /// What a certificate that passed its handshake and fails the same checks later counts as,
    /// from the verifier's error (the alert a handshake would have sent is chosen from it too).
    pub fn of_verification(error: &rustls::Error) -> Self {
        let rustls::Error::InvalidCertificate(error) = error else {
            return Self::Other;
        };
        match error {
            CertificateError::Revoked => Self::Revoked,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Self::Expired,
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Self::UnknownCa,
            _ => Self::BadCertificate,
        }
    }
}

/// Whether the other side's application closed the connection before the handshake completed
/// (QUIC sends an application close as `APPLICATION_ERROR` until 1-RTT keys exist).
fn abandoned(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::ApplicationClosed(_) => true,
        ConnectionError::ConnectionClosed(close) => close.error_code == TransportErrorCode::APPLICATION_ERROR,
        _ => false,
    }
}

/// A handshake with `remote` did not complete, on a connection it opened (`Inbound`) or we
/// dialled (`Outbound`, toward `peer`). Counted and logged as `tls_handshake_failed` when
/// [`HandshakeFailure::classify`] calls it a TLS failure (the full error in `reason`, the bounded
/// label in `kind`); otherwise only a debug line.
pub struct TlsHandshakeFailed<'a> {
    pub remote: SocketAddr,
    pub direction: Direction,
    /// The peer we dialled.
    pub peer: Option<&'a str>,
    pub error: &'a ConnectionError,
}

impl Event for TlsHandshakeFailed<'_> {
    fn emit(self, t: &Telemetry) {
        let (remote, direction) = (self.remote, self.direction.as_str());
        let Some(kind) = HandshakeFailure::classify(self.error, self.direction) else {
            debug!(t.log, "{}", HANDSHAKE_ABANDONED; "remote" => %remote, "direction" => direction,
                "reason" => %self.error);
            return;
        };
        t.metrics.tls_handshake_errors.with_label_values(&[kind.as_str()]).inc();
        match self.peer {
            Some(peer) => warn!(t.log, "{}", TLS_HANDSHAKE_FAILED; "remote" => %remote, "direction" => direction,
                "peer" => peer, "reason" => %self.error, "kind" => kind.as_str()),
            None => warn!(t.log, "{}", TLS_HANDSHAKE_FAILED; "remote" => %remote, "direction" => direction,
                "reason" => %self.error, "kind" => kind.as_str()),
        }
    }
}

/// A live connection was closed because the certificate its other side presented at the
/// handshake no longer passes the handshake's checks: a reload revoked it or removed its CA, or
/// it expired. Counted in `bsfg_tls_connections_closed_total` by the bounded `kind`; logged as
/// `tls_connection_closed` with who it was (`peer` or `caller`) and the full `reason`.
pub struct ConnectionUntrusted<'a> {
    pub remote: SocketAddr,
    /// `Outbound` when this node dialled the connection.
    pub direction: Direction,
    /// The peer zone, or `None` for a client.
    pub peer: Option<&'a str>,
    /// The identity (certificate CN) it was accepted as.
    pub identity: &'a str,
    pub error: &'a rustls::Error,
}

impl Event for ConnectionUntrusted<'_> {
    fn emit(self, t: &Telemetry) {
        let kind = HandshakeFailure::of_verification(self.error).as_str();
        t.metrics.tls_connections_closed.with_label_values(&[kind]).inc();
        let (remote, direction) = (self.remote, self.direction.as_str());
        match self.peer {
            Some(peer) => warn!(t.log, "{}", TLS_CONNECTION_CLOSED; "remote" => %remote, "direction" => direction,
                "peer" => peer, "reason" => %self.error, "kind" => kind),
            None => warn!(t.log, "{}", TLS_CONNECTION_CLOSED; "remote" => %remote, "direction" => direction,
                "caller" => self.identity, "reason" => %self.error, "kind" => kind),
        }
    }
}

/// A `bsfg check --peers` handshake from `caller` passed; the connection was closed at once,
/// telling the caller what it is taken for (`peer`, `client` or `unknown`).
pub struct CheckAnswered<'a> {
    pub caller: &'a str,
    pub taken_for: &'static str,
    pub remote: SocketAddr,
}

impl Event for CheckAnswered<'_> {
    fn emit(self, t: &Telemetry) {
        info!(t.log, "{}", CHECK_ANSWERED; "caller" => self.caller, "taken_for" => self.taken_for,
            "remote" => %self.remote);
    }
}

/// The expiry gauges: the certificate's, and the revocation lists' (`+Inf` without a list or
/// without a `nextUpdate`, so an alert on a short time left never fires for them).
pub fn set_expiry(metrics: &Metrics, certificate_left: Duration, crl_left: Option<Duration>) {
    metrics.certificate_expiry_seconds.set(certificate_left.as_secs_f64());
    let crl = crl_left.map_or(f64::INFINITY, |left| left.as_secs_f64());
    metrics.crl_expiry_seconds.set(crl);
}

/// New TLS material was validated and swapped in; the expiry gauges follow it at once.
pub struct CertReloaded<'a> {
    pub trigger: &'static str,
    pub subject: &'a str,
    pub not_after: SystemTime,
    /// Until `not_after`.
    pub left: Duration,
    /// Until the revocation lists' earliest `nextUpdate`, if they have one.
    pub crl_left: Option<Duration>,
}

impl Event for CertReloaded<'_> {
    fn emit(self, t: &Telemetry) {
        let left = self.left;
        t.metrics.cert_reloads.with_label_values(&[RELOAD_SUCCESS]).inc();
        t.metrics.cert_reload_failing.set(0);
        set_expiry(&t.metrics, left, self.crl_left);
        info!(t.log, "{}", CERT_RELOADED; "trigger" => self.trigger, "subject" => self.subject,
            "not_after" => %humantime::format_rfc3339_seconds(self.not_after), "seconds_left" => left.as_secs());
    }
}

/// New TLS material was refused; the old material keeps serving.
pub struct CertReloadFailed<'a> {
    pub trigger: &'static str,
    pub reason: &'a dyn std::fmt::Display,
}

impl Event for CertReloadFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics.cert_reloads.with_label_values(&[RELOAD_FAILURE]).inc();
        t.metrics.cert_reload_failing.set(1);
        warn!(t.log, "{}", CERT_RELOAD_FAILED; "trigger" => self.trigger, "reason" => %self.reason);
    }
}

/// The certificate files cannot be watched; SIGHUP and the admin endpoint still reload.
pub struct CertWatchFailed<'a> {
    pub reason: &'a dyn std::fmt::Display,
}

impl Event for CertWatchFailed<'_> {
    fn emit(self, t: &Telemetry) {
        warn!(t.log, "{}", CERT_WATCH_FAILED; "reason" => %self.reason,
            "error_message" => "file changes are not seen; reload with SIGHUP or POST /v1/admin/reload");
    }
}

pub(super) fn init_series(metrics: &Metrics) {
    for failure in HandshakeFailure::ALL {
        metrics.tls_handshake_errors.with_label_values(&[failure.as_str()]);
        if failure != HandshakeFailure::Timeout {
            metrics.tls_connections_closed.with_label_values(&[failure.as_str()]);
        }
    }
    for result in [RELOAD_SUCCESS, RELOAD_FAILURE] {
        metrics.cert_reloads.with_label_values(&[result]);
    }
}

#[cfg(test)]
mod tests {
    use quinn::{ConnectionClose, TransportErrorCode};

    use super::*;

    /// What a node sees when the other side refused the handshake with `alert`. (A refusal by
    /// the node itself, a `TransportError`, is classified in `transport::tls`'s handshake tests.)
    fn closed_with_alert(alert: AlertDescription) -> ConnectionError {
        ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::crypto(u8::from(alert)),
            frame_type: None,
            reason: "invalid peer certificate".into(),
        })
    }

    #[test]
    fn handshake_failures_are_classified_by_alert_not_by_text() {
        let cases = [
            (AlertDescription::UnknownCA, HandshakeFailure::UnknownCa),
            (AlertDescription::DecryptError, HandshakeFailure::UnknownCa),
            (AlertDescription::CertificateExpired, HandshakeFailure::Expired),
            (AlertDescription::CertificateRevoked, HandshakeFailure::Revoked),
            (AlertDescription::BadCertificate, HandshakeFailure::BadCertificate),
            (AlertDescription::CertificateRequired, HandshakeFailure::Other),
        ];
        for (alert, expected) in cases {
            assert_eq!(HandshakeFailure::of(&closed_with_alert(alert)), expected, "{alert:?}");
        }
        assert_eq!(
            HandshakeFailure::of(&ConnectionError::TimedOut),
            HandshakeFailure::Timeout
        );
        // Text that reads like an alert is not one.
        let misleading = ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::PROTOCOL_VIOLATION,
            frame_type: None,
            reason: "UnknownIssuer expired BadCertificate".into(),
        });
        assert_eq!(HandshakeFailure::of(&misleading), HandshakeFailure::Other);
    }

    #[test]
    fn a_live_connection_failing_its_certificate_check_counts_by_the_checks_error() {
        let cases = [
            (CertificateError::Revoked, HandshakeFailure::Revoked),
            (CertificateError::Expired, HandshakeFailure::Expired),
            (CertificateError::NotValidYet, HandshakeFailure::Expired),
            (CertificateError::UnknownIssuer, HandshakeFailure::UnknownCa),
            (CertificateError::BadSignature, HandshakeFailure::UnknownCa),
            (CertificateError::NotValidForName, HandshakeFailure::BadCertificate),
        ];
        for (error, expected) in cases {
            let error = rustls::Error::InvalidCertificate(error);
            assert_eq!(HandshakeFailure::of_verification(&error), expected, "{error:?}");
        }
        let other = rustls::Error::NoCertificatesPresented;
        assert_eq!(HandshakeFailure::of_verification(&other), HandshakeFailure::Other);
    }

    #[test]
    fn a_handshake_the_other_side_gave_up_on_purpose_is_no_tls_failure() {
        // What the accepting node sees when the dialler closed its connection mid-handshake
        // because both sides dialled at once and it moved to the other connection.
        let given_up = ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::APPLICATION_ERROR,
            frame_type: None,
            reason: "duplicate connection: keeping yours".into(),
        });
        for direction in [Direction::Inbound, Direction::Outbound] {
            assert_eq!(HandshakeFailure::classify(&given_up, direction), None, "{direction:?}");
        }
        let refused = closed_with_alert(AlertDescription::CertificateExpired);
        assert_eq!(
            HandshakeFailure::classify(&refused, Direction::Outbound),
            Some(HandshakeFailure::Expired),
            "a dialled connection refused for a certificate counts with its alert"
        );
        assert_eq!(
            HandshakeFailure::classify(&ConnectionError::TimedOut, Direction::Inbound),
            Some(HandshakeFailure::Timeout)
        );
        assert_eq!(
            HandshakeFailure::classify(&ConnectionError::TimedOut, Direction::Outbound),
            None,
            "a dial nobody answered is an unreachable peer, not a TLS failure"
        );
    }
}
