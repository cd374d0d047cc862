//! TLS material for the QUIC transport: loads the node's or client's PEM files (CA bundle,
//! certificate chain, private key), validates them once at load time, and builds the quinn server
//! and client configs that every connection uses.
//!
//! Identity is the certificate's Subject CN (SPEC §6). Both directions are mutual TLS 1.3 with the
//! ring provider: the server requires a client certificate chaining to the CA and valid now; the
//! client verifies the server's chain the same way and then requires the server's CN to equal the
//! name it dialled. SANs are deliberately not checked — the dialled address need not appear in the
//! certificate — but chain verification is never skipped. With revocation lists (`crl`), both
//! directions also refuse a certificate they revoke.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::{danger::ClientCertVerifier, ParsedCertificate, WebPkiClientVerifier},
    CertificateError, DigitallySignedStruct, InconsistentKeys, RootCertStore, SignatureScheme,
};
use x509_parser::{certificate::X509Certificate, prelude::FromDer, time::ASN1Time};

use super::crl::{CrlSummary, Revocation};

/// The ALPN protocol every bsfg connection negotiates.
pub const ALPN: &[u8] = b"bsfg/1";
/// The ALPN protocol of `bsfg check --peers`: authenticated like any connection, then closed by
/// the node with `CloseCode::Checked` without serving a call or reaching a peer link.
pub const CHECK_ALPN: &[u8] = b"bsfg-check/1";

/// Idle timeout of client tools' connections; nodes use their `replication.link_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BIDI_STREAMS: u32 = 1024;

/// Why TLS material could not be loaded or a peer could not be identified. File problems name
/// the offending file; peer problems describe what the peer presented.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: bad certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: bad private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{}: certificate does not chain to the CA in {}: {reason}", path.display(), ca.display())]
    Untrusted { path: PathBuf, ca: PathBuf, reason: String },
    #[error("{}: certificate expired at {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("{}: certificate is not valid before {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("{}: certificate is revoked by the revocation list {}", path.display(), crl.display())]
    Revoked { path: PathBuf, crl: PathBuf },
    #[error("{}: no certificate revocation list found (expected PEM X509 CRL or DER)", path.display())]
    NoCrl { path: PathBuf },
    #[error("{}: bad certificate revocation list: {reason}", path.display())]
    BadCrl { path: PathBuf, reason: String },
    #[error("{}: revocation list issued by {issuer:?}, which is not a CA in {}", path.display(), ca.display())]
    CrlNotFromCa { path: PathBuf, ca: PathBuf, issuer: String },
    #[error("{}: revocation list is not signed by its CA in {}: {reason}", path.display(), ca.display())]
    CrlSignature { path: PathBuf, ca: PathBuf, reason: String },
    #[error("{}: revocation list expired at {next_update} (its nextUpdate); install a fresh one", path.display())]
    CrlExpired { path: PathBuf, next_update: String },
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    #[error("peer certificate cannot be parsed: {reason}")]
    BadPeerCertificate { reason: String },
    #[error("certificate subject {subject:?} does not have exactly one Subject CN (the identity)")]
    NoCommonName { subject: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
}

/// The node's or client's TLS material, parsed and validated.
pub struct TlsMaterial {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    identity: String,
    facts: CertFacts,
    /// Revocation lists both directions check, when `crl` is configured.
    revocation: Option<Revocation>,
}

impl fmt::Debug for TlsMaterial {
    // Hand-written so the private key never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("identity", &self.identity)
            .field("not_after", &self.facts.not_after.to_string())
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads PEM files: CA bundle, certificate chain, private key (PKCS#8/PKCS#1/SEC1).
    /// Validates: everything parses, the key matches the certificate's public key, the certificate
    /// is valid now and chains to the CA. The chain check uses the client-certificate rules
    /// (clientAuth usage), which every bsfg certificate needs: nodes also dial their peers.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Self::load_revoking(ca, cert, key, None)
    }

    /// [`TlsMaterial::load`], plus the revocation lists in `crl` (validated against the CA
    /// bundle, see `crl`), which the handshakes apply; the certificate must not be revoked.
    pub fn load_revoking(ca: &Path, cert: &Path, key: &Path, crl: Option<&Path>) -> Result<Self, TlsError> {
        let cas = read_certs(ca)?;
        let roots = Arc::new(roots_of(&cas, ca)?);
        let chain = read_certs(cert)?;
        let key_der = read_key(key)?;
        let facts = CertFacts::parse(&chain[0]).map_err(|reason| bad_cert(cert, reason))?;
        let identity = facts.identity_or(|reason| bad_cert(cert, reason))?;
        facts.check_valid_now(cert)?;
        check_key_matches(&chain, &key_der, cert, key)?;
        let revocation = crl.map(|crl| Revocation::load(crl, ca, &cas)).transpose()?;
        check_chain(&roots, revocation.as_ref(), &chain, cert, ca)?;
        Ok(Self {
            roots,
            chain,
            key: key_der,
            identity,
            facts,
            revocation,
        })
    }

    /// The revocation lists in use, if any.
    pub fn revocation(&self) -> Option<&CrlSummary> {
        self.revocation.as_ref().map(Revocation::summary)
    }

    /// Subject CN of the end-entity certificate.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn not_after(&self) -> SystemTime {
        system_time(&self.facts.not_after)
    }

    /// Printable subject, e.g. "CN=plant-a".
    pub fn subject(&self) -> String {
        self.facts.subject.clone()
    }

    /// quinn server config: presents our certificate and requires a client certificate that
    /// chains to the CA and is valid now, at every connection (no session resumption); ALPN
    /// `bsfg/1`; a connection that hears nothing for `idle_timeout` (keep-alives included) is dead.
    pub fn quic_server_config(&self, idle_timeout: Duration) -> Result<quinn::ServerConfig, TlsError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier(&self.roots, self.revocation.as_ref())?)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        // Ours first: a client offering both gets `bsfg/1`.
        tls.alpn_protocols = vec![ALPN.to_vec(), CHECK_ALPN.to_vec()];
        // No session resumption: a resumed handshake skips the certificate checks, so a
        // certificate that expired (or was replaced) since would still get in.
        tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        tls.send_tls13_tickets = 0;
        let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(transport_config(idle_timeout)?);
        Ok(config)
    }

    /// quinn client config: presents our certificate as client certificate and verifies the
    /// server with [`CommonNameVerifier`] (chain to the CA, valid now, CN == dialled name);
    /// `idle_timeout` as for the server.
    pub fn quic_client_config(&self, idle_timeout: Duration) -> Result<quinn::ClientConfig, TlsError> {
        self.client_config(idle_timeout, ALPN)
    }

    /// [`TlsMaterial::quic_client_config`] for the checks of `bsfg check --peers` ([`CHECK_ALPN`]).
    pub fn quic_check_config(&self, idle_timeout: Duration) -> Result<quinn::ClientConfig, TlsError> {
        self.client_config(idle_timeout, CHECK_ALPN)
    }

    /// What the certificates of connections already up are checked against again: this
    /// material's CA and revocation lists, with the rules of the handshakes.
    pub fn trust(&self) -> Result<Trust, TlsError> {
        Ok(Trust {
            servers: self.server_verifier()?,
            clients: client_verifier(&self.roots, self.revocation.as_ref())?,
        })
    }

    fn server_verifier(&self) -> Result<Arc<CommonNameVerifier>, TlsError> {
        // Revocation on the dialling side goes through the client-certificate verifier with the
        // same lists: every node certificate is also a client certificate (nodes dial), which
        // `load` checks of our own, so its rules fit the servers we dial.
        let revocation = match &self.revocation {
            Some(revocation) => Some(client_verifier(&self.roots, Some(revocation))?),
            None => None,
        };
        Ok(Arc::new(CommonNameVerifier {
            roots: self.roots.clone(),
            algorithms: provider().signature_verification_algorithms,
            revocation,
        }))
    }

    fn client_config(&self, idle_timeout: Duration, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.server_verifier()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        // Every connection verifies the server's certificate again (see the server config).
        tls.resumption = rustls::client::Resumption::disabled();
        let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport_config(idle_timeout)?);
        Ok(config)
    }
}

/// The verdict of a node's TLS material on certificates that passed a handshake earlier: a
/// connection stays trusted only while what its other side presented would still pass one
/// (SPEC §6), so a reload that revokes a certificate or drops its CA, or the certificate's
/// expiry, ends the connections it holds. Cheap to clone.
#[derive(Clone)]
pub struct Trust {
    /// For the nodes we dialled: chain, lists, and the CN we dialled.
    servers: Arc<CommonNameVerifier>,
    /// For whoever dialled us: chain and lists.
    clients: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

impl Trust {
    /// Checks again, at `now`, the chain the other side of `conn` presented: as the server named
    /// `dialled` when this side dialled it, as a client otherwise. The error is what the
    /// handshake would have failed with.
    pub fn verify(
        &self,
        conn: &quinn::Connection,
        dialled: Option<&str>,
        now: SystemTime,
    ) -> Result<(), rustls::Error> {
        let chain = presented_chain(conn).map_err(|_| rustls::Error::NoCertificatesPresented)?;
        let (end_entity, intermediates) = chain.split_first().ok_or(rustls::Error::NoCertificatesPresented)?;
        let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        match dialled {
            Some(zone) => {
                let name = ServerName::try_from(zone.to_owned())
                    .map_err(|_| rustls::Error::General(format!("{zone:?} is no server name")))?;
                let checked = self
                    .servers
                    .verify_server_cert(end_entity, intermediates, &name, &[], now);
                checked.map(drop)
            }
            None => self
                .clients
                .verify_client_cert(end_entity, intermediates, now)
                .map(drop),
        }
    }
}

/// Whether `conn` is the handshake of `bsfg check --peers` (it negotiated [`CHECK_ALPN`]).
pub fn is_check(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .is_some_and(|data| data.protocol.as_deref() == Some(CHECK_ALPN))
}

/// Subject CN of the first (end-entity) certificate a peer presented, read after the handshake
/// (which has already verified the chain).
pub fn peer_identity(conn: &quinn::Connection) -> Result<String, TlsError> {
    let facts = peer_facts(conn)?;
    facts.identity_or(|_| TlsError::NoCommonName {
        subject: facts.subject.clone(),
    })
}

/// When the certificate the peer presented expires, RFC 3339 (for `peer_connected` log lines:
/// a rotation on the other side shows up there).
pub fn peer_not_after(conn: &quinn::Connection) -> String {
    match peer_facts(conn) {
        Ok(facts) => humantime::format_rfc3339_seconds(system_time(&facts.not_after)).to_string(),
        Err(e) => e.to_string(),
    }
}

/// The TLS alert a connection's handshake ended with, whichever side sent it (QUIC carries TLS
/// alerts as the crypto error codes `0x100 + alert`), or `None` when it did not end with one.
pub fn handshake_alert(error: &quinn::ConnectionError) -> Option<u8> {
    let code = match error {
        // Our side refused the handshake.
        quinn::ConnectionError::TransportError(e) => e.code,
        // The other side did.
        quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
        _ => return None,
    };
    let code = u64::from(code);
    (0x100..0x200).contains(&code).then_some((code & 0xff) as u8)
}

/// When the certificate the peer presented expires (the last second it is valid in).
pub fn peer_expiry(conn: &quinn::Connection) -> Option<SystemTime> {
    peer_facts(conn).ok().map(|facts| system_time(&facts.not_after))
}

fn presented_chain(conn: &quinn::Connection) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let presented = conn.peer_identity().ok_or(TlsError::NoPeerCertificate)?;
    let chain = presented
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TlsError::NoPeerCertificate)?;
    Ok(*chain)
}

fn peer_facts(conn: &quinn::Connection) -> Result<CertFacts, TlsError> {
    let chain = presented_chain(conn)?;
    let end_entity = chain.first().ok_or(TlsError::NoPeerCertificate)?;
    CertFacts::parse(end_entity).map_err(|reason| TlsError::BadPeerCertificate { reason })
}

/// Verifies a server by identity, not network location (SPEC §6): webpki chain verification to
/// the configured CA at `now`, then (with revocation lists) that no list revokes it, then Subject
/// CN == the dialled server name. SANs are not consulted.
#[derive(Debug)]
struct CommonNameVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The verifier that applies the revocation lists, when there are any.
    revocation: Option<Arc<dyn ClientCertVerifier>>,
}

impl ServerCertVerifier for CommonNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if let Some(revocation) = &self.revocation {
            revocation.verify_client_cert(end_entity, intermediates, now)?;
        }
        check_dialled_name(end_entity, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The identity check that replaces rustls' SAN check: the server's Subject CN must equal the
/// name the caller dialled (a zone name), whatever address it dialled.
fn check_dialled_name(end_entity: &CertificateDer<'_>, server_name: &ServerName<'_>) -> Result<(), rustls::Error> {
    let facts = CertFacts::parse(end_entity).map_err(|_| CertificateError::BadEncoding)?;
    match facts.identity {
        Some(cn) if cn == server_name.to_str() => Ok(()),
        _ => Err(CertificateError::NotValidForNameContext {
            expected: server_name.to_owned(),
            presented: vec![facts.subject],
        }
        .into()),
    }
}

/// What bsfg needs from an end-entity certificate, extracted once with x509-parser.
struct CertFacts {
    /// The single Subject CN; `None` when there is none or more than one (ambiguous identity).
    identity: Option<String>,
    subject: String,
    not_before: ASN1Time,
    not_after: ASN1Time,
}

impl CertFacts {
    fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut cns = cert.subject().iter_common_name();
        let first = cns.next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
        let identity = first.filter(|_| cns.next().is_none());
        let validity = cert.validity();
        Ok(Self {
            identity,
            subject: cert.subject().to_string(),
            not_before: validity.not_before,
            not_after: validity.not_after,
        })
    }

    fn identity_or(&self, err: impl FnOnce(String) -> TlsError) -> Result<String, TlsError> {
        let reason = format!("subject {:?} must have exactly one Subject CN", self.subject);
        self.identity.clone().ok_or_else(|| err(reason))
    }

    fn check_valid_now(&self, path: &Path) -> Result<(), TlsError> {
        let now = ASN1Time::now();
        if now < self.not_before {
            let not_before = self.not_before.to_string();
            return Err(TlsError::NotYetValid {
                path: path.to_owned(),
                not_before,
            });
        }
        if now > self.not_after {
            let not_after = self.not_after.to_string();
            return Err(TlsError::Expired {
                path: path.to_owned(),
                not_after,
            });
        }
        Ok(())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Chain to `roots`, valid now, clientAuth; with `revocation`, the end-entity certificate must
/// not be revoked by a list of its issuer (certificates of a CA without a list pass, see `crl`).
fn client_verifier(
    roots: &Arc<RootCertStore>,
    revocation: Option<&Revocation>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
    if let Some(revocation) = revocation {
        builder = builder
            .with_crls(revocation.crls.iter().cloned())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    builder
        .build()
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))
}

/// Reordering (in packets) before a packet counts as lost by its successors' acknowledgements
/// alone. Jitter on a WAN path reorders many packets at once; with RFC 9002's 3, each burst of
/// reordering looked like loss and cut the sending rate. Losses are still found by time (9/8 of
/// the round trip), as RACK does for TCP.
const REORDERING_PACKETS: u32 = 32;

/// Keep-alives four times per idle timeout, so a live but quiet link never looks dead and a
/// silent one is declared dead within `idle_timeout` (the effective timeout is the smaller of
/// both sides' values). Congestion control is BBR: it paces by the measured bottleneck rather
/// than backing off at every loss, which is what a lossy plant link needs (measured against
/// quinn's default Cubic in docs/performance.md, "Lossy links").
fn transport_config(idle_timeout: Duration) -> Result<Arc<quinn::TransportConfig>, TlsError> {
    let idle = quinn::IdleTimeout::try_from(idle_timeout).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(idle_timeout / 4))
        .max_idle_timeout(Some(idle))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_BIDI_STREAMS))
        .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        .packet_threshold(REORDERING_PACKETS);
    Ok(Arc::new(transport))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn bad_cert(path: &Path, reason: String) -> TlsError {
    TlsError::BadCertificate {
        path: path.to_owned(),
        reason,
    }
}

/// Never returns an empty chain, so callers may take `[0]` as the end-entity certificate.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// The trust anchors of the CA bundle `cas`, read from `path`.
fn roots_of(cas: &[CertificateDer<'static>], path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in cas {
        roots.add(cert.clone()).map_err(|e| bad_cert(path, e.to_string()))?;
    }
    Ok(roots)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read_file(path)?).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_owned() },
        other => pem_error(path, other),
    })
}

fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TlsError> {
    let bad_key = |reason: String| TlsError::BadKey {
        path: key_path.to_owned(),
        reason,
    };
    let signer = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| bad_key(e.to_string()))?;
    match rustls::sign::CertifiedKey::new(chain.to_vec(), signer).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(TlsError::KeyMismatch {
            key: key_path.to_owned(),
            cert: cert_path.to_owned(),
        }),
        Err(e) => Err(bad_key(e.to_string())),
    }
}

fn check_chain(
    roots: &Arc<RootCertStore>,
    revocation: Option<&Revocation>,
    chain: &[CertificateDer<'static>],
    cert_path: &Path,
    ca_path: &Path,
) -> Result<(), TlsError> {
    let verified = client_verifier(roots, revocation)?.verify_client_cert(&chain[0], &chain[1..], UnixTime::now());
    match (verified, revocation) {
        (Ok(_), _) => Ok(()),
        (Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)), Some(revocation)) => {
            Err(TlsError::Revoked {
                path: cert_path.to_owned(),
                crl: revocation.summary().path.clone(),
            })
        }
        (Err(e), _) => Err(TlsError::Untrusted {
            path: cert_path.to_owned(),
            ca: ca_path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

pub(super) fn system_time(t: &ASN1Time) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rustls::{pki_types::CertificateRevocationListDer, AlertDescription};

    use super::{
        super::test_ca::{connected, TestCa, TestResult},
        *,
    };

    #[test]
    fn load_accepts_ca_signed_material() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let tls = ca.material("plant-a", &["plant-a"])?;
        assert_eq!(tls.identity(), "plant-a");
        assert_eq!(tls.subject(), "CN=plant-a");
        assert!(tls.not_after() > SystemTime::now());
        Ok(())
    }

    #[test]
    fn load_rejects_key_of_another_certificate() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let (cert, _) = ca.issue("plant-a", &[], false)?;
        let (_, other_key) = ca.issue("plant-b", &[], false)?;
        let err = TlsMaterial::load(&ca.ca_pem, &cert, &other_key)
            .err()
            .ok_or("mismatch accepted")?;
        assert!(
            matches!(&err, TlsError::KeyMismatch { key, .. } if *key == other_key),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn load_rejects_expired_certificate() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let (cert, key) = ca.issue("plant-a", &[], true)?;
        let err = TlsMaterial::load(&ca.ca_pem, &cert, &key)
            .err()
            .ok_or("expired accepted")?;
        assert!(matches!(&err, TlsError::Expired { path, .. } if *path == cert), "{err}");
        Ok(())
    }

    #[test]
    fn load_rejects_certificate_of_foreign_ca() -> TestResult {
        let (ca, foreign) = (TestCa::new("test CA")?, TestCa::new("foreign CA")?);
        let (cert, key) = foreign.issue("plant-a", &[], false)?;
        let err = TlsMaterial::load(&ca.ca_pem, &cert, &key)
            .err()
            .ok_or("foreign cert accepted")?;
        assert!(matches!(err, TlsError::Untrusted { .. }), "{err}");
        Ok(())
    }

    #[test]
    fn load_names_the_missing_file() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let (cert, _) = ca.issue("plant-a", &[], false)?;
        let missing = ca.dir.path().join("missing.key");
        let err = TlsMaterial::load(&ca.ca_pem, &cert, &missing)
            .err()
            .ok_or("missing key accepted")?;
        assert!(matches!(&err, TlsError::Read { path, .. } if *path == missing), "{err}");
        std::fs::write(&missing, "not a key")?;
        let err = TlsMaterial::load(&ca.ca_pem, &cert, &missing)
            .err()
            .ok_or("empty key accepted")?;
        assert!(matches!(&err, TlsError::NoKey { path } if *path == missing), "{err}");
        Ok(())
    }

    /// Accepts one connection, returns the client's identity after echoing one stream.
    async fn serve_once(endpoint: quinn::Endpoint) -> Result<String, String> {
        let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
        let conn = incoming.await.map_err(|e| format!("server handshake: {e}"))?;
        let identity = peer_identity(&conn).map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let data = recv.read_to_end(64).await.map_err(|e| e.to_string())?;
        send.write_all(&data).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        conn.closed().await;
        Ok(identity)
    }

    /// Connects, sends "ping" on one stream and expects it echoed.
    async fn ping(client: quinn::ClientConfig, addr: SocketAddr, server_name: &str) -> Result<(), String> {
        let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(client);
        let connecting = endpoint.connect(addr, server_name).map_err(|e| e.to_string())?;
        let conn = connecting.await.map_err(|e| format!("client handshake: {e}"))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(b"ping").await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let echoed = recv.read_to_end(64).await.map_err(|e| e.to_string())?;
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        (echoed == b"ping")
            .then_some(())
            .ok_or_else(|| format!("bad echo {echoed:?}"))
    }

    /// Runs one loopback connection; returns (server's view, client's view).
    async fn handshake(
        server: &TlsMaterial,
        client: &TlsMaterial,
        server_name: &str,
    ) -> TestResult<(Result<String, String>, Result<(), String>)> {
        let endpoint = quinn::Endpoint::server(
            server.quic_server_config(DEFAULT_IDLE_TIMEOUT)?,
            ([127, 0, 0, 1], 0).into(),
        )?;
        let addr = endpoint.local_addr()?;
        let served = tokio::spawn(serve_once(endpoint));
        let pinged = ping(client.quic_client_config(DEFAULT_IDLE_TIMEOUT)?, addr, server_name);
        let pinged = tokio::time::timeout(Duration::from_secs(10), pinged).await?;
        let served = tokio::time::timeout(Duration::from_secs(10), served).await??;
        Ok((served, pinged))
    }

    #[tokio::test]
    async fn handshake_with_ca_signed_certs_identifies_client() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let server = ca.material("plant-a", &["plant-a", "127.0.0.1"])?;
        let client = ca.material("mes-line-1", &["mes-line-1"])?;
        let (served, pinged) = handshake(&server, &client, "plant-a").await?;
        assert_eq!(served, Ok("mes-line-1".to_owned()));
        assert_eq!(pinged, Ok(()));
        Ok(())
    }

    #[tokio::test]
    async fn handshake_fails_for_client_of_foreign_ca() -> TestResult {
        let (ca, foreign) = (TestCa::new("test CA")?, TestCa::new("foreign CA")?);
        let server = ca.material("plant-a", &[])?;
        let (cert, key) = foreign.issue("mes-line-1", &[], false)?;
        // The client trusts the real CA, so only the server's check can reject it.
        let client = TlsMaterial::load(&foreign.ca_pem, &cert, &key)?;
        let client = TlsMaterial {
            roots: server.roots.clone(),
            ..client
        };
        let (served, pinged) = handshake(&server, &client, "plant-a").await?;
        let served = served.err().ok_or("server accepted a foreign client")?;
        assert!(
            served.contains("server handshake") && served.contains("UnknownIssuer"),
            "{served}"
        );
        assert!(pinged.is_err(), "client round trip succeeded");
        Ok(())
    }

    /// The error the server's side of one connection ends with, when `client` dials `server_name`.
    async fn server_refusal(
        server: &TlsMaterial,
        client: &TlsMaterial,
        server_name: &str,
    ) -> TestResult<quinn::ConnectionError> {
        let endpoint = quinn::Endpoint::server(
            server.quic_server_config(DEFAULT_IDLE_TIMEOUT)?,
            ([127, 0, 0, 1], 0).into(),
        )?;
        let addr = endpoint.local_addr()?;
        let pinged = ping(client.quic_client_config(DEFAULT_IDLE_TIMEOUT)?, addr, server_name);
        let served = async {
            let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
            incoming.await.err().ok_or("the server completed the handshake")
        };
        let (served, pinged) =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(served, pinged) }).await?;
        assert!(pinged.is_err(), "the client's call went through");
        Ok(served?)
    }

    /// A certificate of `cn` from `ca`, expired or not, presented with any roots (so only the
    /// other side's check can refuse it).
    fn presenting(ca: &TestCa, cn: &str, expired: bool, trusting: &TlsMaterial) -> TestResult<TlsMaterial> {
        let (cert, key) = ca.issue(cn, &[], expired)?;
        Ok(TlsMaterial {
            chain: read_certs(&cert)?,
            key: read_key(&key)?,
            roots: trusting.roots.clone(),
            ..ca.material(cn, &[])?
        })
    }

    #[tokio::test]
    async fn refused_handshakes_carry_the_alert_of_the_reason_on_both_sides() -> TestResult {
        let (ca, foreign) = (TestCa::new("test CA")?, TestCa::new("foreign CA")?);
        let server = ca.material("plant-a", &[])?;
        let cases = [
            // The server refuses a client certificate from another CA, and an expired one.
            (
                presenting(&foreign, "mes-line-1", false, &server)?,
                "plant-a",
                AlertDescription::UnknownCA,
            ),
            (
                presenting(&ca, "mes-line-1", true, &server)?,
                "plant-a",
                AlertDescription::CertificateExpired,
            ),
            // The client refuses a server that is not the zone it dialled: the server is told.
            (
                ca.material("mes-line-1", &[])?,
                "plant-b",
                AlertDescription::BadCertificate,
            ),
        ];
        for (client, dialled, alert) in cases {
            let refused = server_refusal(&server, &client, dialled).await?;
            assert_eq!(handshake_alert(&refused), Some(u8::from(alert)), "{refused}");
        }
        assert_eq!(handshake_alert(&quinn::ConnectionError::TimedOut), None);
        Ok(())
    }

    /// A link redials with the client config it dialled with before, and the server keeps its
    /// config: a certificate that expired in between must be refused at the next connection,
    /// not let in by resuming the earlier session.
    #[tokio::test]
    async fn a_certificate_that_expired_since_the_last_connection_is_refused_at_the_next() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let server = ca.material("idmz", &[])?;
        let expires = SystemTime::now() + Duration::from_secs(3);
        let (cert, key) = ca.issue_until("plant-a", expires)?;
        let client = TlsMaterial::load(&ca.ca_pem, &cert, &key)?;
        let endpoint = quinn::Endpoint::server(
            server.quic_server_config(DEFAULT_IDLE_TIMEOUT)?,
            ([127, 0, 0, 1], 0).into(),
        )?;
        let addr = endpoint.local_addr()?;
        let mut dialler = quinn::Endpoint::client(([127, 0, 0, 1], 0).into())?;
        dialler.set_default_client_config(client.quic_client_config(DEFAULT_IDLE_TIMEOUT)?);
        let connect =
            |dialler: &quinn::Endpoint| -> TestResult<quinn::Connecting> { Ok(dialler.connect(addr, "idmz")?) };

        let (first, served) = tokio::join!(connect(&dialler)?, async { endpoint.accept().await?.await.ok() });
        let first = first?;
        // One round trip, so the server's session tickets (if any) reach the client.
        let client_side = async {
            let (mut send, mut recv) = first.open_bi().await?;
            send.write_all(b"ping").await?;
            send.finish()?;
            let echoed = recv.read_to_end(64).await?;
            first.close(0u32.into(), b"done");
            TestResult::Ok(echoed)
        };
        let server_side = async {
            let conn = served.ok_or("the server refused the first connection")?;
            let (mut send, mut recv) = conn.accept_bi().await?;
            let data = recv.read_to_end(64).await?;
            send.write_all(&data).await?;
            send.finish()?;
            conn.closed().await;
            TestResult::Ok(())
        };
        let (echoed, served) = tokio::join!(client_side, server_side);
        assert_eq!(echoed?, b"ping");
        served?;

        // Certificates are valid through the last second of their `not_after`.
        while SystemTime::now() < expires + Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let second = tokio::join!(connect(&dialler)?, async {
            endpoint
                .accept()
                .await
                .ok_or("endpoint closed")?
                .await
                .err()
                .ok_or("the expired certificate got in again")
        });
        // The client may count its side of the handshake as done before the server has judged
        // its certificate: the server's view decides.
        let (_, served) = second;
        assert_eq!(
            handshake_alert(&served?),
            Some(u8::from(AlertDescription::CertificateExpired))
        );
        Ok(())
    }

    fn certificate_error(verdict: Result<(), rustls::Error>) -> TestResult<CertificateError> {
        match verdict {
            Err(rustls::Error::InvalidCertificate(e)) => Ok(e),
            other => Err(format!("expected a certificate error, got {other:?}").into()),
        }
    }

    /// What a reload or the clock does to connections already up: each end checks again what
    /// the other presented, against the material in force, and learns why it no longer passes.
    #[tokio::test]
    async fn a_live_connection_is_judged_again_by_new_material_and_by_the_clock() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let idmz = ca.material("idmz", &[])?;
        let expires = SystemTime::now() + Duration::from_secs(3600);
        let (cert, key) = ca.issue_until("plant-a", expires)?;
        let plant_a = TlsMaterial::load(&ca.ca_pem, &cert, &key)?;
        let ((at_idmz, at_plant_a), _endpoints) = connected(&idmz, &plant_a, "idmz").await?;
        let now = SystemTime::now();
        idmz.trust()?.verify(&at_idmz, None, now)?;
        plant_a.trust()?.verify(&at_plant_a, Some("idmz"), now)?;

        // Valid through its last second, expired after it.
        let (trust, second) = (idmz.trust()?, Duration::from_secs(1));
        trust.verify(&at_idmz, None, expires)?;
        let expired = certificate_error(trust.verify(&at_idmz, None, expires + 2 * second))?;
        assert!(
            matches!(
                expired,
                CertificateError::ExpiredContext { .. } | CertificateError::Expired
            ),
            "{expired:?}"
        );

        // A list revoking the other side, on either side.
        let crl = ca.crl(
            "ca.crl",
            &[&ca.dir.path().join("plant-a.pem"), &ca.dir.path().join("idmz.pem")],
            now + MONTH,
        )?;
        let idmz_reloaded = revoking(&ca, "idmz-reloaded", &crl)?;
        let revoked = certificate_error(idmz_reloaded.trust()?.verify(&at_idmz, None, now))?;
        assert_eq!(revoked, CertificateError::Revoked);
        let plant_a_reloaded = revoking(&ca, "plant-a-reloaded", &crl)?;
        let revoked = certificate_error(plant_a_reloaded.trust()?.verify(&at_plant_a, Some("idmz"), now))?;
        assert_eq!(revoked, CertificateError::Revoked);

        // A new CA alone: what the old one signed is a stranger now.
        let replaced = TestCa::new("new CA")?.material("idmz", &[])?;
        let unknown = certificate_error(replaced.trust()?.verify(&at_idmz, None, now))?;
        assert!(
            matches!(
                unknown,
                CertificateError::UnknownIssuer | CertificateError::BadSignature
            ),
            "{unknown:?}"
        );
        Ok(())
    }

    const MONTH: Duration = Duration::from_secs(30 * 86_400);

    /// `cn`'s material from `ca`, with `crl` applied.
    fn revoking(ca: &TestCa, cn: &str, crl: &Path) -> TestResult<TlsMaterial> {
        let (cert, key) = ca.issue(cn, &[], false)?;
        Ok(TlsMaterial::load_revoking(&ca.ca_pem, &cert, &key, Some(crl))?)
    }

    #[tokio::test]
    async fn a_client_certificate_the_crl_revokes_is_refused_and_others_are_served() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let stolen = ca.material("mes-line-1", &[])?;
        let crl = ca.crl(
            "ca.crl",
            &[&ca.dir.path().join("mes-line-1.pem")],
            SystemTime::now() + MONTH,
        )?;
        let server = revoking(&ca, "plant-a", &crl)?;
        assert_eq!(server.revocation().map(|r| r.revoked), Some(1));

        let refused = server_refusal(&server, &stolen, "plant-a").await?;
        assert_eq!(
            handshake_alert(&refused),
            Some(u8::from(AlertDescription::CertificateRevoked)),
            "{refused}"
        );
        let other = ca.material("mes-line-2", &[])?;
        let (served, pinged) = handshake(&server, &other, "plant-a").await?;
        assert_eq!((served, pinged), (Ok("mes-line-2".to_owned()), Ok(())));
        Ok(())
    }

    #[tokio::test]
    async fn a_dialled_node_whose_certificate_the_crl_revokes_is_refused() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let server = ca.material("idmz", &[])?;
        let crl = ca.crl("ca.crl", &[&ca.dir.path().join("idmz.pem")], SystemTime::now() + MONTH)?;
        let dialler = revoking(&ca, "plant-a", &crl)?;
        let (served, pinged) = handshake(&server, &dialler, "idmz").await?;
        let pinged = pinged.err().ok_or("the dialler accepted a revoked server")?;
        assert!(pinged.contains("Revoked"), "{pinged}");
        assert!(served.is_err(), "{served:?}");
        let other = ca.material("enterprise", &[])?;
        let (served, pinged) = handshake(&other, &dialler, "enterprise").await?;
        assert_eq!(
            (served, pinged),
            (Ok("plant-a".to_owned()), Ok(())),
            "a node the list does not name"
        );
        Ok(())
    }

    #[test]
    fn revocation_lists_that_cannot_do_their_job_are_refused_naming_the_file() -> TestResult {
        let (ca, foreign, namesake) = (
            TestCa::new("test CA")?,
            TestCa::new("foreign CA")?,
            TestCa::new("test CA")?,
        );
        let (cert, key) = ca.issue("plant-a", &[], false)?;
        let load = |crl: &Path| TlsMaterial::load_revoking(&ca.ca_pem, &cert, &key, Some(crl));
        let month = SystemTime::now() + MONTH;

        let err = load(&foreign.crl("foreign.crl", &[], month)?)
            .err()
            .ok_or("foreign CRL")?;
        assert!(
            matches!(&err, TlsError::CrlNotFromCa { issuer, .. } if issuer.contains("foreign CA")),
            "{err}"
        );
        let err = load(&namesake.crl("namesake.crl", &[], month)?)
            .err()
            .ok_or("forged CRL")?;
        assert!(matches!(err, TlsError::CrlSignature { .. }), "{err}");
        let lapsed = SystemTime::now() - Duration::from_secs(60);
        let expired = ca.crl("expired.crl", &[], lapsed)?;
        let err = load(&expired).err().ok_or("expired CRL")?;
        assert!(
            matches!(&err, TlsError::CrlExpired { path, .. } if *path == expired),
            "{err}"
        );
        let own = ca.crl("own.crl", &[&cert], month)?;
        let err = load(&own).err().ok_or("own certificate revoked")?;
        assert!(
            matches!(&err, TlsError::Revoked { path, crl } if *path == cert && *crl == own),
            "{err}"
        );
        let garbage = ca.dir.path().join("garbage.crl");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")?;
        assert!(matches!(load(&garbage), Err(TlsError::NoCrl { .. })));
        std::fs::write(&garbage, b"\x30\x03\x02\x01\x01")?;
        assert!(matches!(load(&garbage), Err(TlsError::BadCrl { .. })));

        // DER works as PEM does.
        let pem = std::fs::read(ca.crl("ok.crl", &[], month)?)?;
        let der = CertificateRevocationListDer::from_pem_slice(&pem)?;
        let der_path = ca.dir.path().join("ok.der");
        std::fs::write(&der_path, der.as_ref())?;
        let summary = load(&der_path)?.revocation().cloned().ok_or("no summary")?;
        assert_eq!((summary.revoked, summary.path), (0, der_path));
        Ok(())
    }

    #[tokio::test]
    async fn handshake_fails_when_dialled_name_is_not_the_server_cn() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let server = ca.material("plant-a", &["plant-a", "plant-b", "127.0.0.1"])?;
        let client = ca.material("mes-line-1", &[])?;
        let (served, pinged) = handshake(&server, &client, "plant-b").await?;
        let pinged = pinged.err().ok_or("client accepted the wrong server")?;
        assert!(pinged.contains("not valid for name \"plant-b\""), "{pinged}");
        assert!(served.is_err(), "server saw a completed connection");
        Ok(())
    }

    #[tokio::test]
    async fn handshake_ignores_sans_of_server_cert() -> TestResult {
        let ca = TestCa::new("test CA")?;
        // Dialled at 127.0.0.1 with server name "plant-a": neither appears among the SANs.
        let server = ca.material("plant-a", &["unrelated.example"])?;
        let client = ca.material("mes-line-1", &[])?;
        let (served, pinged) = handshake(&server, &client, "plant-a").await?;
        assert_eq!(served, Ok("mes-line-1".to_owned()));
        assert_eq!(pinged, Ok(()));
        Ok(())
    }
}
