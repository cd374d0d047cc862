//! Certificate revocation lists (`[tls] crl`, SPEC §9): read from a file of one or more PEM
//! CRLs or one DER CRL, and validated once when the TLS material is loaded (at start and at every
//! reload), so that a list that cannot do its job is refused with the file's name rather than
//! silently revoking nothing: each list must be issued and signed by a CA of the bundle
//! (`tls.ca`), and its `nextUpdate` must not have passed.
//!
//! The handshakes then apply the lists through rustls' WebPKI verifiers (see `tls`): only the
//! end-entity certificate is checked, and a certificate from a CA that has no list in the file
//! is not checked (a bundle may hold a CA being rolled in or out). A list whose `nextUpdate`
//! passes while the node runs keeps revoking what it names; it is refused at the next start or
//! reload, and `bsfg check` reports it.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use rustls::pki_types::{pem::PemObject, CertificateDer, CertificateRevocationListDer};
use x509_parser::{
    certificate::X509Certificate, prelude::FromDer, revocation_list::CertificateRevocationList, time::ASN1Time,
};

use super::tls::{system_time, TlsError};

/// The revocation lists of one file, validated.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub(super) crls: Vec<CertificateRevocationListDer<'static>>,
    summary: CrlSummary,
}

/// What `bsfg check` and the logs say about a revocation list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSummary {
    pub path: PathBuf,
    /// Revoked certificates, over every list in the file.
    pub revoked: usize,
    /// The earliest `nextUpdate` of the lists; `None` when no list has one.
    pub next_update: Option<SystemTime>,
}

impl Revocation {
    /// Reads `path` and validates every list in it against `cas` (the certificates of `ca_path`).
    pub(super) fn load(path: &Path, ca_path: &Path, cas: &[CertificateDer<'static>]) -> Result<Self, TlsError> {
        let crls = read_crls(path)?;
        let mut summary = CrlSummary {
            path: path.to_owned(),
            revoked: 0,
            next_update: None,
        };
        for der in &crls {
            let (revoked, next_update) = validate(der, path, ca_path, cas)?;
            summary.revoked += revoked;
            summary.next_update = match (summary.next_update, next_update) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(Self { crls, summary })
    }

    pub fn summary(&self) -> &CrlSummary {
        &self.summary
    }
}

/// PEM (`-----BEGIN X509 CRL-----`, one or more) or a single DER list; never empty.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(TlsError::NoCrl { path: path.to_owned() });
    }
    Ok(crls)
}

/// One list: parses, names a CA of the bundle as its issuer, carries that CA's signature, and
/// is not past its `nextUpdate`. Returns its number of revoked certificates and `nextUpdate`.
fn validate(
    der: &[u8],
    path: &Path,
    ca_path: &Path,
    cas: &[CertificateDer<'static>],
) -> Result<(usize, Option<SystemTime>), TlsError> {
    let bad = |reason: String| TlsError::BadCrl {
        path: path.to_owned(),
        reason,
    };
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| bad(e.to_string()))?;
    check_issuer(&crl, cas, path, ca_path)?;
    if let Some(next_update) = crl.next_update() {
        if ASN1Time::now() > next_update {
            return Err(TlsError::CrlExpired {
                path: path.to_owned(),
                next_update: next_update.to_string(),
            });
        }
    }
    let revoked = crl.iter_revoked_certificates().count();
    Ok((revoked, crl.next_update().as_ref().map(system_time)))
}

/// Some CA of the bundle whose subject is the list's issuer (byte for byte) signed the list. A
/// bundle may hold two CAs of the same name (one made anew): any of them may have signed it.
fn check_issuer(
    crl: &CertificateRevocationList<'_>,
    cas: &[CertificateDer<'static>],
    path: &Path,
    ca_path: &Path,
) -> Result<(), TlsError> {
    let mut refused = None;
    let named = cas
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .filter(|ca| ca.subject().as_raw() == crl.issuer().as_raw());
    for ca in named {
        match crl.verify_signature(ca.public_key()) {
            Ok(()) => return Ok(()),
            Err(e) => refused = Some(e.to_string()),
        }
    }
    Err(match refused {
        None => TlsError::CrlNotFromCa {
            path: path.to_owned(),
            ca: ca_path.to_owned(),
            issuer: crl.issuer().to_string(),
        },
        Some(reason) => TlsError::CrlSignature {
            path: path.to_owned(),
            ca: ca_path.to_owned(),
            reason,
        },
    })
}
