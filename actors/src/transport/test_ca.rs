//! A throw-away CA for unit tests of TLS material: issues node and client certificates with
//! rcgen into a temp dir (valid, expired, any CN), and revocation lists naming any of them, so
//! tests exercise the real PEM loading path.

use std::{
    error::Error,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use tempfile::TempDir;
use x509_parser::{certificate::X509Certificate, pem::parse_x509_pem, prelude::FromDer};

use super::tls::{TlsMaterial, DEFAULT_IDLE_TIMEOUT};

pub type TestResult<T = ()> = Result<T, Box<dyn Error>>;

pub struct TestCa {
    pub dir: TempDir,
    pub ca_pem: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn params(cn: &str, sans: &[&str]) -> TestResult<CertificateParams> {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    Ok(params)
}

impl TestCa {
    pub fn new(name: &str) -> TestResult<Self> {
        let mut ca = params(name, &[])?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let dir = tempfile::tempdir()?;
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, issuer.pem())?;
        Ok(Self { dir, ca_pem, issuer })
    }

    /// Issues `cn` (serverAuth + clientAuth) with a new key and returns its (cert, key) paths,
    /// `<cn>.pem` and `<cn>.key` (overwriting an earlier issue for the same CN).
    pub fn issue(&self, cn: &str, sans: &[&str], expired: bool) -> TestResult<(PathBuf, PathBuf)> {
        let mut leaf = params(cn, sans)?;
        if expired {
            leaf.not_before = rcgen::date_time_ymd(2000, 1, 1);
            leaf.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        self.sign(cn, leaf)
    }

    /// Issues `cn` as [`TestCa::issue`] does, valid from an hour ago until `not_after`.
    pub fn issue_until(&self, cn: &str, not_after: SystemTime) -> TestResult<(PathBuf, PathBuf)> {
        let mut leaf = params(cn, &[])?;
        leaf.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
        leaf.not_after = not_after.into();
        self.sign(cn, leaf)
    }

    fn sign(&self, cn: &str, mut leaf: CertificateParams) -> TestResult<(PathBuf, PathBuf)> {
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &self.issuer)?;
        let (cert_path, key_path) = (
            self.dir.path().join(format!("{cn}.pem")),
            self.dir.path().join(format!("{cn}.key")),
        );
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }

    /// Writes `<name>` (PEM) with a revocation list of this CA naming the certificates in the
    /// files `revoked`, valid until `next_update`; returns its path.
    pub fn crl(&self, name: &str, revoked: &[&PathBuf], next_update: SystemTime) -> TestResult<PathBuf> {
        let now = SystemTime::now();
        let mut revoked_certs = Vec::new();
        for cert in revoked {
            let pem = std::fs::read(cert)?;
            let (_, pem) = parse_x509_pem(&pem)?;
            let (_, parsed) = X509Certificate::from_der(&pem.contents)?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(parsed.raw_serial()),
                revocation_time: now.into(),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: (now.min(next_update) - Duration::from_secs(3600)).into(),
            next_update: next_update.into(),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let path = self.dir.path().join(name);
        std::fs::write(&path, params.signed_by(&self.issuer)?.pem()?)?;
        Ok(path)
    }

    pub fn material(&self, cn: &str, sans: &[&str]) -> TestResult<TlsMaterial> {
        let (cert, key) = self.issue(cn, sans, false)?;
        Ok(TlsMaterial::load(&self.ca_pem, &cert, &key)?)
    }
}

/// One live connection from `client` to `server` (dialled as `server_name`): (the server's
/// end, the client's end); the endpoints go with them so they stay open.
pub async fn connected(
    server: &TlsMaterial,
    client: &TlsMaterial,
    server_name: &str,
) -> TestResult<((quinn::Connection, quinn::Connection), [quinn::Endpoint; 2])> {
    let listener = quinn::Endpoint::server(
        server.quic_server_config(DEFAULT_IDLE_TIMEOUT)?,
        ([127, 0, 0, 1], 0).into(),
    )?;
    let mut dialler = quinn::Endpoint::client(([127, 0, 0, 1], 0).into())?;
    dialler.set_default_client_config(client.quic_client_config(DEFAULT_IDLE_TIMEOUT)?);
    let dialled = dialler.connect(listener.local_addr()?, server_name)?;
    let accepted = async {
        listener
            .accept()
            .await
            .ok_or("endpoint closed")?
            .await
            .map_err(|e| e.to_string())
    };
    let (accepted, dialled) = tokio::join!(accepted, dialled);
    Ok(((accepted?, dialled?), [listener, dialler]))
}
