//! `bsfg pki revoke`: the revocation list of a dev/test CA made by `bsfg pki init`, `DIR/ca.crl`
//! (PEM), which nodes apply through `[tls] crl`. Each run re-signs the list with the CA key in DIR:
//! the certificates named are added to those already revoked (kept with their revocation time),
//! the list gets a new `thisUpdate`, a `nextUpdate` `days` ahead and a larger CRL number. Run
//! without certificates it only refreshes the list before its `nextUpdate` passes (a node refuses
//! an expired list at start and at reload). Like the rest of `pki`, for development and tests:
//! in production the CA that issued the certificates publishes its list.

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls_pki_types::{pem::PemObject, CertificateRevocationListDer};
use x509_parser::{
    certificate::X509Certificate, error::X509Error, prelude::FromDer, revocation_list::CertificateRevocationList,
    x509::SubjectPublicKeyInfo,
};

use super::{load_ca, pem_der, read, write_file, Ca, BACKDATE, CA_CERT, CA_KEY, DAY};

const CA_CRL: &str = "ca.crl";

/// What `revoke` wrote, for the CLI to print.
#[derive(Debug)]
pub struct CrlWritten {
    pub crl: PathBuf,
    /// Certificates the list revokes, those of earlier runs included.
    pub revoked: usize,
    /// Serial numbers (hex) of the certificates this run added.
    pub added: Vec<String>,
    pub next_update: SystemTime,
}

/// Revokes the certificates in the files `certs` (issued by the CA in DIR) in `DIR/ca.crl`,
/// keeping what it revoked before, and signs it anew valid for `days`.
pub fn revoke(dir: &Path, certs: &[PathBuf], days: u32) -> anyhow::Result<CrlWritten> {
    ensure!(days > 0, "--days must be at least 1");
    let ca = load_ca(&dir.join(CA_CERT), &dir.join(CA_KEY))?;
    let path = dir.join(CA_CRL);
    let (mut revoked, previous_number) = earlier(&path, &ca)?;
    let now = SystemTime::now();
    let mut added = Vec::new();
    for cert in certs {
        let serial = serial_of(cert, &ca)?;
        if !revoked.iter().any(|r| r.serial_number == serial) {
            added.push(hex(serial.as_ref()));
            revoked.push(RevokedCertParams {
                serial_number: serial,
                revocation_time: now.into(),
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let next_update = now + DAY * days;
    let number = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let params = CertificateRevocationListParams {
        this_update: (now - BACKDATE).into(),
        next_update: next_update.into(),
        crl_number: SerialNumber::from(number.max(previous_number.saturating_add(1))),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca.issuer).context("signing the revocation list")?;
    write_file(&path, &crl.pem().context("encoding the revocation list")?, 0o644)?;
    Ok(CrlWritten {
        crl: path,
        revoked: params.revoked_certs.len(),
        added,
        next_update,
    })
}

/// The entries and CRL number of the list already at `path` (none when there is no file); it
/// must be this CA's.
fn earlier(path: &Path, ca: &Ca) -> anyhow::Result<(Vec<RevokedCertParams>, u64)> {
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let der = CertificateRevocationListDer::from_pem_slice(read(path)?.as_bytes())
        .with_context(|| format!("{}: no PEM revocation list", path.display()))?;
    let (_, crl) = CertificateRevocationList::from_der(&der)
        .with_context(|| format!("{}: bad revocation list", path.display()))?;
    let signed = signed_by(ca, |key| crl.verify_signature(key));
    if crl.issuer().as_raw() != ca.subject.as_slice() || !signed {
        bail!(
            "{} was not issued by the CA in {}",
            path.display(),
            ca.cert_path.display()
        );
    }
    let entries = crl
        .iter_revoked_certificates()
        .map(|entry| RevokedCertParams {
            serial_number: SerialNumber::from_slice(entry.raw_serial()),
            revocation_time: entry.revocation_date.to_datetime(),
            reason_code: None,
            invalidity_date: None,
        })
        .collect();
    let number = crl.crl_number().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    Ok((entries, number))
}

/// The serial number of the certificate in `path`, which this CA must have issued.
fn serial_of(path: &Path, ca: &Ca) -> anyhow::Result<SerialNumber> {
    let der = pem_der(path)?;
    let (_, cert) = X509Certificate::from_der(&der).with_context(|| format!("{}: bad certificate", path.display()))?;
    let signed = signed_by(ca, |key| cert.verify_signature(Some(key)));
    if cert.issuer().as_raw() != ca.subject.as_slice() || !signed {
        bail!(
            "{} was issued by {}, not by the CA in {}",
            path.display(),
            cert.issuer(),
            ca.cert_path.display()
        );
    }
    ensure!(
        cert.subject().as_raw() != ca.subject.as_slice(),
        "{} is the CA itself: a CA is retired by replacing it, not revoked by its own list",
        path.display()
    );
    Ok(SerialNumber::from_slice(cert.raw_serial()))
}

/// Whether `verify` accepts the signature with the CA's public key (a CA made anew may carry the
/// same name).
fn signed_by(ca: &Ca, verify: impl FnOnce(&SubjectPublicKeyInfo<'_>) -> Result<(), X509Error>) -> bool {
    X509Certificate::from_der(&ca.der).is_ok_and(|(_, ca_cert)| verify(ca_cert.public_key()).is_ok())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use bsfg_actors::transport::tls::{TlsError, TlsMaterial};

    use super::{super::init, *};

    fn load(dir: &Path, name: &str) -> Result<TlsMaterial, TlsError> {
        let file = |ext: &str| dir.join(format!("{name}.{ext}"));
        TlsMaterial::load_revoking(&dir.join(CA_CERT), &file("pem"), &file("key"), Some(&dir.join(CA_CRL)))
    }

    #[test]
    fn revoked_certificates_stay_revoked_across_runs_and_others_still_load() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        init(tmp.path(), &names(&["plant-a", "idmz"]), &names(&["mes", "erp"]), 30)?;
        let empty = revoke(tmp.path(), &[], 7)?;
        assert_eq!((empty.revoked, empty.added.len()), (0, 0));
        assert!(load(tmp.path(), "plant-a")?
            .revocation()
            .is_some_and(|r| r.revoked == 0));

        let first = revoke(tmp.path(), &[tmp.path().join("mes.pem")], 7)?;
        assert_eq!((first.revoked, first.added.len()), (1, 1));
        let second = revoke(
            tmp.path(),
            &[tmp.path().join("plant-a.pem"), tmp.path().join("mes.pem")],
            7,
        )?;
        assert_eq!((second.revoked, second.added.len()), (2, 1), "mes is not added twice");
        for revoked in ["mes", "plant-a"] {
            let err = load(tmp.path(), revoked).err().context("a revoked certificate loads")?;
            assert!(matches!(err, TlsError::Revoked { .. }), "{revoked}: {err}");
        }
        let summary = load(tmp.path(), "erp")?.revocation().cloned().context("summary")?;
        assert_eq!(summary.revoked, 2);
        let left = summary
            .next_update
            .and_then(|t| t.duration_since(SystemTime::now()).ok());
        assert!(left.is_some_and(|d| d > DAY * 6), "{left:?}");
        Ok(())
    }

    #[test]
    fn only_certificates_of_this_ca_are_revoked() -> anyhow::Result<()> {
        let (ours, theirs) = (tempfile::tempdir()?, tempfile::tempdir()?);
        init(ours.path(), &["plant-a".to_owned()], &[], 30)?;
        init(theirs.path(), &["plant-a".to_owned()], &[], 30)?;
        let err = revoke(ours.path(), &[theirs.path().join("plant-a.pem")], 7)
            .err()
            .context("foreign certificate revoked")?;
        assert!(err.to_string().contains("not by the CA"), "{err}");
        let err = revoke(ours.path(), &[ours.path().join(CA_CERT)], 7)
            .err()
            .context("CA revoked")?;
        assert!(err.to_string().contains("the CA itself"), "{err}");
        assert!(!ours.path().join(CA_CRL).exists(), "nothing written on a refusal");
        Ok(())
    }
}
