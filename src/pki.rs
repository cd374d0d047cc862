//! Dev/test PKI behind `bsfg pki init` (SPEC §8): a local CA plus the node and client
//! certificates that bsfg's mutual TLS needs (SPEC §6: the identity is the Subject CN).
//!
//! Layout of DIR: `ca.pem`/`ca.key` and one `<name>.pem`/`<name>.key` pair per zone or client.
//! An existing CA is reused so more certificates can be issued later by the same CA. Keys are
//! written unencrypted with mode 0600 — this is for development and tests, not production.
//! Every file is written to a temporary name and renamed, so a crash never leaves half a PEM.
//! [`revoke`] (`crl`) keeps the CA's revocation list, `ca.crl`.

mod crl;

use std::{
    fs,
    io::{ErrorKind, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{bail, ensure, Context};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

const CA_CN: &str = "bsfg dev CA";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
/// A new CA lives at least this long, so certificates issued later by it stay verifiable.
const CA_MIN_DAYS: u32 = 3650;
/// Backdating absorbs clock skew between the machine that issues and the ones that verify.
const BACKDATE: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

pub use crl::{revoke, CrlWritten};

/// What was written, for the CLI to print.
#[derive(Debug)]
pub struct PkiSummary {
    pub dir: PathBuf,
    pub ca_created: bool,
    /// Names issued, zones first, in the order given.
    pub issued: Vec<String>,
}

/// What a certificate is for; decides its SANs and extended key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// A zone's node: serves clients and peers, and dials peers (serverAuth + clientAuth).
    Node,
    /// A producer/consumer client (clientAuth).
    Client,
}

impl CertKind {
    /// Nodes are also reachable as localhost for single-machine setups; bsfg itself checks the
    /// CN, not SANs, so these only serve other TLS tooling.
    fn sans(self, name: &str) -> Vec<String> {
        match self {
            Self::Node => [name, "localhost", "127.0.0.1", "::1"].map(str::to_owned).to_vec(),
            Self::Client => vec![name.to_owned()],
        }
    }

    fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Self::Node => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            Self::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// Creates DIR (0700) if needed, reuses or creates the CA, and issues one certificate per zone
/// (`CertKind::Node`) and per client, valid from an hour ago until `days` from now.
pub fn init(dir: &Path, zones: &[String], clients: &[String], days: u32) -> anyhow::Result<PkiSummary> {
    ensure!(days > 0, "--days must be at least 1");
    check_names(zones.iter().chain(clients))?;
    create_dir(dir)?;
    let (ca, ca_created) = open_or_create_ca(dir, days)?;
    let now = SystemTime::now();
    let not_after = now + DAY * days;
    let kinds = zones
        .iter()
        .map(|z| (z, CertKind::Node))
        .chain(clients.iter().map(|c| (c, CertKind::Client)));
    let mut issued = Vec::new();
    for (name, kind) in kinds {
        write_leaf(dir, &ca, name, kind, now - BACKDATE, not_after, name)?;
        issued.push(name.clone());
    }
    Ok(PkiSummary {
        dir: dir.to_owned(),
        ca_created,
        issued,
    })
}

/// Issues one certificate with a new key, signed by the existing CA in DIR, with an explicit
/// validity window (for tests of expired or not-yet-valid certificates, and of rotations: issuing
/// an existing name again replaces its files, key included).
pub fn issue(
    dir: &Path,
    name: &str,
    kind: CertKind,
    not_before: SystemTime,
    not_after: SystemTime,
) -> anyhow::Result<()> {
    issue_as(dir, name, kind, not_before, not_after, name)
}

/// Like [`issue`], but writes the certificate for `name` into the files of `file_stem`
/// (`<file_stem>.pem`/`.key`): a certificate with the wrong CN installed in a node's place.
pub fn issue_as(
    dir: &Path,
    name: &str,
    kind: CertKind,
    not_before: SystemTime,
    not_after: SystemTime,
    file_stem: &str,
) -> anyhow::Result<()> {
    check_names([name])?;
    check_names([file_stem])?;
    let ca = load_ca(&dir.join(CA_CERT), &dir.join(CA_KEY))?;
    write_leaf(dir, &ca, name, kind, not_before, not_after, file_stem)
}

/// Names become file names and CNs: `[a-z0-9][a-z0-9-]{0,62}`, not `ca`, no duplicates.
fn check_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let name = name.as_ref();
        ensure!(
            valid_name(name),
            "invalid certificate name {name:?}: must match [a-z0-9][a-z0-9-]{{0,62}}"
        );
        ensure!(
            name != "ca",
            "invalid certificate name \"ca\": reserved for the CA's own files"
        );
        ensure!(
            seen.insert(name.to_owned()),
            "certificate name {name:?} given more than once"
        );
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let lower_or_digit = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match name.as_bytes() {
        [first, rest @ ..] => {
            rest.len() <= 62 && lower_or_digit(*first) && rest.iter().all(|&c| lower_or_digit(c) || c == b'-')
        }
        [] => false,
    }
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Reuses DIR/ca.pem + DIR/ca.key when both exist; creates them when neither does. One without
/// the other is an error: overwriting a lone CA certificate would silently orphan every
/// certificate it signed.
fn open_or_create_ca(dir: &Path, days: u32) -> anyhow::Result<(Ca, bool)> {
    let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    match (cert.exists(), key.exists()) {
        (true, true) => Ok((load_ca(&cert, &key)?, false)),
        (false, false) => Ok((create_ca(&cert, &key, days)?, true)),
        _ => bail!(
            "{} and {} must both exist (to reuse the CA) or both be absent (to create one)",
            cert.display(),
            key.display()
        ),
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn create_ca(cert_path: &Path, key_path: &Path, days: u32) -> anyhow::Result<Ca> {
    let mut params = ca_params(CA_CN);
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + DAY * days.max(CA_MIN_DAYS)).into();
    let key = KeyPair::generate().context("generating the CA key")?;
    let cert = params.self_signed(&key).context("signing the CA certificate")?;
    write_file(key_path, &key.serialize_pem(), 0o600)?;
    write_file(cert_path, &cert.pem(), 0o644)?;
    Ca::from_der(cert_path, cert.der(), Issuer::new(params, key))
}

/// Rebuilds the issuer from the CA on disk. rcgen is built without its x509-parser feature, so
/// the issuer name is rebuilt from the CA's CN; `Ca::sign` checks that it reproduces the CA's
/// subject exactly, which holds for every CA this module creates.
fn load_ca(cert_path: &Path, key_path: &Path) -> anyhow::Result<Ca> {
    let key_pem = read(key_path)?;
    let key = KeyPair::from_pem(&key_pem).with_context(|| format!("{}: bad CA key", key_path.display()))?;
    let cert_der = pem_der(cert_path)?;
    let (_, cert) =
        X509Certificate::from_der(&cert_der).with_context(|| format!("{}: bad CA certificate", cert_path.display()))?;
    ensure!(
        cert.public_key().raw == key.subject_public_key_info().as_slice(),
        "CA key {} does not match CA certificate {}",
        key_path.display(),
        cert_path.display()
    );
    let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
    let cn = cn.with_context(|| format!("{}: CA certificate has no Subject CN", cert_path.display()))?;
    Ca::from_der(cert_path, &cert_der, Issuer::new(ca_params(cn), key))
}

fn leaf_params(
    name: &str,
    kind: CertKind,
    not_before: SystemTime,
    not_after: SystemTime,
) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(kind.sans(name)).with_context(|| format!("bad SAN for {name:?}"))?;
    params.distinguished_name = common_name(name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = kind.extended_key_usages();
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(params)
}

/// Writes `<file_stem>.key`, then `<file_stem>.pem`, each replaced atomically.
fn write_leaf(
    dir: &Path,
    ca: &Ca,
    name: &str,
    kind: CertKind,
    not_before: SystemTime,
    not_after: SystemTime,
    file_stem: &str,
) -> anyhow::Result<()> {
    let params = leaf_params(name, kind, not_before, not_after)?;
    let key = KeyPair::generate().with_context(|| format!("generating the key for {name:?}"))?;
    let cert = ca
        .sign(&params, &key)
        .with_context(|| format!("issuing the certificate for {name:?}"))?;
    write_file(&dir.join(format!("{file_stem}.key")), &key.serialize_pem(), 0o600)?;
    write_file(&dir.join(format!("{file_stem}.pem")), &cert.pem(), 0o644)
}

/// The CA that signs: its issuer handle, its certificate and its subject name as encoded there.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
    subject: Vec<u8>,
    cert_path: PathBuf,
}

impl Ca {
    fn from_der(cert_path: &Path, der: &[u8], issuer: Issuer<'static, KeyPair>) -> anyhow::Result<Self> {
        let (_, cert) =
            X509Certificate::from_der(der).with_context(|| format!("{}: bad CA certificate", cert_path.display()))?;
        Ok(Self {
            issuer,
            der: der.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
            cert_path: cert_path.to_owned(),
        })
    }

    /// Signs, then checks the issuer name matches the CA's subject byte for byte (see `load_ca`).
    fn sign(&self, params: &CertificateParams, key: &KeyPair) -> anyhow::Result<Certificate> {
        let cert = params.signed_by(key, &self.issuer)?;
        let (_, leaf) = X509Certificate::from_der(cert.der())?;
        ensure!(
            leaf.issuer().as_raw() == self.subject.as_slice(),
            "the CA subject in {} cannot be reproduced; reuse only works with a CA made by `bsfg pki init`",
            self.cert_path.display()
        );
        Ok(cert)
    }
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The DER of the first certificate in a PEM file.
fn pem_der(path: &Path) -> anyhow::Result<Vec<u8>> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let der = CertificateDer::from_pem_slice(read(path)?.as_bytes())
        .with_context(|| format!("{}: no PEM certificate", path.display()))?;
    Ok(der.to_vec())
}

/// Writes via a temporary file created with `mode` and renamed into place.
fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", tmp.display()))
        }
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use bsfg_actors::transport::tls::{TlsError, TlsMaterial};

    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn load(dir: &Path, name: &str) -> Result<TlsMaterial, TlsError> {
        TlsMaterial::load(
            &dir.join(CA_CERT),
            &dir.join(format!("{name}.pem")),
            &dir.join(format!("{name}.key")),
        )
    }

    fn mode(path: &Path) -> anyhow::Result<u32> {
        Ok(fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[test]
    fn init_writes_loadable_certificates_with_their_names_as_cn() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("pki");
        let summary = init(&dir, &names(&["plant-a", "enterprise"]), &names(&["mes-line-1"]), 30)?;
        assert!(summary.ca_created);
        assert_eq!(summary.issued, names(&["plant-a", "enterprise", "mes-line-1"]));
        for name in &summary.issued {
            let tls = load(&dir, name)?;
            assert_eq!(tls.identity(), name);
            assert_eq!(tls.subject(), format!("CN={name}"));
            assert!(tls.not_after() > SystemTime::now() + DAY * 29);
            assert_eq!(mode(&dir.join(format!("{name}.key")))?, 0o600);
        }
        assert_eq!(mode(&dir)?, 0o700);
        assert_eq!(mode(&dir.join(CA_KEY))?, 0o600);
        Ok(())
    }

    #[test]
    fn second_init_reuses_the_ca() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        init(tmp.path(), &names(&["plant-a"]), &[], 30)?;
        let ca_before = fs::read(tmp.path().join(CA_CERT))?;
        let summary = init(tmp.path(), &names(&["plant-b"]), &names(&["ops"]), 30)?;
        assert!(!summary.ca_created);
        assert_eq!(fs::read(tmp.path().join(CA_CERT))?, ca_before);
        // Chains to the unchanged CA: `load` verifies the chain against ca.pem.
        assert_eq!(load(tmp.path(), "plant-b")?.identity(), "plant-b");
        assert_eq!(load(tmp.path(), "ops")?.identity(), "ops");
        assert_eq!(load(tmp.path(), "plant-a")?.identity(), "plant-a");
        Ok(())
    }

    #[test]
    fn bad_names_are_rejected_by_name() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        for bad in ["Plant-A", "-a", "", "a/b", "ca", &"x".repeat(64)] {
            let err = init(tmp.path(), &names(&["plant-a"]), &names(&[bad]), 30)
                .err()
                .context("accepted")?;
            assert!(err.to_string().contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
        let err = init(tmp.path(), &names(&["dup"]), &names(&["dup"]), 30)
            .err()
            .context("duplicate accepted")?;
        assert!(err.to_string().contains("\"dup\""), "{err}");
        assert!(
            !tmp.path().join(CA_CERT).exists(),
            "nothing is written when a name is bad"
        );
        assert!(valid_name(&"x".repeat(63)));
        Ok(())
    }

    #[test]
    fn issue_with_past_window_makes_a_certificate_load_rejects_as_expired() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        init(tmp.path(), &names(&["plant-a"]), &[], 30)?;
        let now = SystemTime::now();
        issue(tmp.path(), "old", CertKind::Client, now - DAY * 10, now - DAY)?;
        let err = load(tmp.path(), "old").err().context("expired certificate loaded")?;
        assert!(matches!(err, TlsError::Expired { .. }), "{err}");
        Ok(())
    }

    #[test]
    fn issue_as_puts_a_certificate_in_another_names_files() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        init(tmp.path(), &names(&["plant-a"]), &[], 30)?;
        let before = fs::read(tmp.path().join("plant-a.pem"))?;
        let now = SystemTime::now();
        issue_as(tmp.path(), "intruder", CertKind::Node, now, now + DAY, "plant-a")?;
        assert_ne!(fs::read(tmp.path().join("plant-a.pem"))?, before);
        assert_eq!(load(tmp.path(), "plant-a")?.identity(), "intruder");
        assert!(!tmp.path().join("intruder.pem").exists());
        Ok(())
    }

    #[test]
    fn lone_ca_certificate_is_not_overwritten() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        init(tmp.path(), &names(&["plant-a"]), &[], 30)?;
        fs::remove_file(tmp.path().join(CA_KEY))?;
        let err = init(tmp.path(), &names(&["plant-b"]), &[], 30)
            .err()
            .context("CA overwritten")?;
        assert!(err.to_string().contains(CA_KEY), "{err}");
        Ok(())
    }
}
