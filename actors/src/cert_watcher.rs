//! Actor `CertWatcher`: keeps the node's TLS material current without a restart (SPEC §6, §7).
//!
//! A reload is triggered by a change of the certificate, key, CA or revocation list file (the
//! parent directories are watched, so editors and `mv` that replace a file are seen; changes are
//! debounced; and every [`POLL`] the files' identities are compared with what the last reload
//! read, for the swaps no watch of those directories hears: a directory replaced whole, a
//! symbolic link such as Kubernetes' `..data` pointed elsewhere), by SIGHUP, or by
//! `POST /v1/admin/reload`. Each reload reads and validates the files off the
//! arbiter ([`validate`]: everything parses, the key matches the certificate, the certificate
//! chains to the CA and is valid now, its CN is the node's zone, and the revocation lists, if
//! any, come from the CA, are current and do not revoke it) and only then swaps: the QUIC
//! endpoint's server config (new handshakes present the new certificate, live connections keep
//! theirs), the client config peer links dial with, and the [`Trust`] live connections are
//! checked against again (the RPC server closes those whose other side the new CA or lists no
//! longer accept). Refused material changes nothing: the
//! old certificate keeps serving. Every outcome is logged (`cert_reloaded` / `cert_reload_failed`)
//! and counted (`bsfg_cert_reloads_total{result}`). Reloads run one at a time, in arrival order.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use actix::prelude::*;
use notify::{
    event::{AccessKind, AccessMode},
    Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher,
};
use tokio::sync::{mpsc, watch};

use crate::{
    events::{CertReloadFailed, CertReloaded, CertWatchFailed, Telemetry},
    metrics::Metrics,
    transport::tls::{TlsError, TlsMaterial, Trust},
};

/// Quiet time after the last file event before reloading: a rotation replaces several files.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// How often the files are looked at besides the watch of their directories.
const POLL: Duration = Duration::from_secs(5);

/// What identifies the content of each file, as a path resolves now (symbolic links followed):
/// its device and inode, modification time and length; `None` for a file that cannot be read.
type Fingerprint = Vec<Option<(u64, u64, i128, u64)>>;

fn fingerprint(paths: &TlsPaths) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let identity = |m: std::fs::Metadata| {
        let modified = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        (m.dev(), m.ino(), modified, m.len())
    };
    paths
        .files()
        .into_iter()
        .map(|f| std::fs::metadata(f).ok().map(identity))
        .collect()
}

/// The fingerprint of the files the last reload read, shared with the poll.
type Seen = Arc<std::sync::Mutex<Option<Fingerprint>>>;

/// Where the node's TLS material lives (`[tls]` of the configuration).
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Revocation lists (`tls.crl`), optional.
    pub crl: Option<PathBuf>,
}

impl TlsPaths {
    fn files(&self) -> Vec<&Path> {
        let files = [&self.ca, &self.cert, &self.key].into_iter().chain(&self.crl);
        files.map(PathBuf::as_path).collect()
    }
}

/// The certificate a node presents, as `/v1/status` and `bsfg_certificate_expiry_seconds` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Printable subject, e.g. "CN=plant-a".
    pub subject: String,
    pub not_after: SystemTime,
    /// The earliest `nextUpdate` of the revocation lists in use, if any has one.
    pub crl_next_update: Option<SystemTime>,
}

impl Certificate {
    pub fn of(material: &TlsMaterial) -> Self {
        Self {
            subject: material.subject(),
            not_after: material.not_after(),
            crl_next_update: material.revocation().and_then(|crl| crl.next_update),
        }
    }

    /// Time left until `not_after`, zero once expired.
    pub fn time_left(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// Time left until the revocation lists' `crl_next_update`, zero once passed.
    pub fn crl_time_left(&self, now: SystemTime) -> Option<Duration> {
        let next = self.crl_next_update?;
        Some(next.duration_since(now).unwrap_or_default())
    }

    /// Sets `bsfg_certificate_expiry_seconds` and `bsfg_crl_expiry_seconds` as of `now`.
    pub fn publish(&self, metrics: &Metrics, now: SystemTime) {
        crate::events::set_expiry(metrics, self.time_left(now), self.crl_time_left(now));
    }
}

/// Why new TLS material was refused; the message names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("node.zone: {zone:?} does not match the CN {found:?} of tls.cert {}", cert.display())]
    WrongZone { zone: String, found: String, cert: PathBuf },
    #[error("reload did not complete: {0}")]
    Interrupted(String),
}

/// The decision of every reload (and of start-up): the material in `paths` is loaded and
/// validated by [`TlsMaterial::load_revoking`] and must name this node's `zone` as its CN.
pub fn validate(zone: &str, paths: &TlsPaths) -> Result<TlsMaterial, ReloadError> {
    let material = TlsMaterial::load_revoking(&paths.ca, &paths.cert, &paths.key, paths.crl.as_deref())?;
    if material.identity() != zone {
        return Err(ReloadError::WrongZone {
            zone: zone.to_owned(),
            found: material.identity().to_owned(),
            cert: paths.cert.clone(),
        });
    }
    Ok(material)
}

/// Validated material, turned into what gets swapped in.
struct Prepared {
    certificate: Certificate,
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
    trust: Trust,
}

fn prepare(config: &CertWatcherConfig) -> Result<Prepared, ReloadError> {
    let material = validate(&config.zone, &config.paths)?;
    Ok(Prepared {
        certificate: Certificate::of(&material),
        server: material.quic_server_config(config.idle_timeout)?,
        client: material.quic_client_config(config.idle_timeout)?,
        trust: material.trust()?,
    })
}

/// Plain configuration of the watcher.
#[derive(Debug, Clone)]
pub struct CertWatcherConfig {
    pub zone: String,
    pub paths: TlsPaths,
    /// QUIC idle timeout of the configs built from new material (`replication.link_timeout`).
    pub idle_timeout: Duration,
}

/// Where new material goes.
pub struct CertWatcherDeps {
    pub endpoint: quinn::Endpoint,
    /// The config peer links dial with.
    pub client_config: watch::Sender<quinn::ClientConfig>,
    /// What live connections are checked against.
    pub trust: watch::Sender<Trust>,
    pub certificate: watch::Sender<Certificate>,
    pub telemetry: Telemetry,
}

impl CertWatcherDeps {
    fn apply(&self, trigger: Trigger, prepared: Result<Prepared, ReloadError>) -> Result<Certificate, ReloadError> {
        match prepared {
            Ok(new) => {
                self.endpoint.set_server_config(Some(new.server));
                self.client_config.send_replace(new.client);
                self.trust.send_replace(new.trust);
                self.certificate.send_replace(new.certificate.clone());
                let certificate = &new.certificate;
                self.telemetry.emit(CertReloaded {
                    trigger: trigger.as_str(),
                    subject: &certificate.subject,
                    not_after: certificate.not_after,
                    left: certificate.time_left(SystemTime::now()),
                    crl_left: certificate.crl_time_left(SystemTime::now()),
                });
                Ok(new.certificate)
            }
            Err(e) => {
                let trigger = trigger.as_str();
                self.telemetry.emit(CertReloadFailed { trigger, reason: &e });
                Err(e)
            }
        }
    }
}

pub struct CertWatcher {
    config: Arc<CertWatcherConfig>,
    deps: Arc<CertWatcherDeps>,
    /// Dropping it stops the file events and, with them, the debounce task.
    files: Option<RecommendedWatcher>,
    seen: Seen,
    poll: Option<tokio::task::JoinHandle<()>>,
}

impl CertWatcher {
    pub fn new(config: CertWatcherConfig, deps: CertWatcherDeps) -> Self {
        Self {
            config: Arc::new(config),
            deps: Arc::new(deps),
            files: None,
            seen: Seen::default(),
            poll: None,
        }
    }

    /// Watches the directories of the files; relevant events wake the debounce task.
    fn watch_files(&self, watcher: Addr<Self>) -> notify::Result<RecommendedWatcher> {
        let (changed, changes) = mpsc::channel(1);
        let files: Vec<PathBuf> = self.config.paths.files().into_iter().map(Path::to_owned).collect();
        let mut events = notify::recommended_watcher(move |event: notify::Result<Event>| {
            // An error (e.g. a lost event queue) may hide a change: reload to be sure.
            if event.map_or(true, |e| touches(&e, &files)) {
                let _ = changed.try_send(());
            }
        })?;
        let mut dirs: Vec<&Path> = self
            .config
            .paths
            .files()
            .into_iter()
            .filter_map(|f| f.parent())
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            events.watch(dir, RecursiveMode::NonRecursive)?;
        }
        tokio::spawn(debounce(changes, watcher));
        Ok(events)
    }
}

/// Whether `event` may have changed one of `files`: writes, creations, renames, removals and
/// attribute changes count; opens and reads (the watcher's own included) do not.
fn touches(event: &Event, files: &[PathBuf]) -> bool {
    let read_only = matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write));
    !read_only && event.paths.iter().any(|p| files.contains(p))
}

/// Every [`POLL`], a reload when the files are not the ones the last reload read (the first
/// look only notes them: the node loaded them as it started).
async fn poll(paths: TlsPaths, seen: Seen, watcher: Addr<CertWatcher>) {
    loop {
        let look = paths.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&look)).await else {
            return;
        };
        let changed = {
            let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*seen {
                None => {
                    *seen = Some(now);
                    false
                }
                Some(before) => *before != now,
            }
        };
        if changed {
            let reload = watcher.send(Reload {
                trigger: Trigger::FileChange,
            });
            if reload.await.is_err() {
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One reload per burst of file events, once the files have been quiet for [`DEBOUNCE`].
async fn debounce(mut changes: mpsc::Receiver<()>, watcher: Addr<CertWatcher>) {
    while changes.recv().await.is_some() {
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
        let _ = watcher
            .send(Reload {
                trigger: Trigger::FileChange,
            })
            .await;
    }
}

impl Actor for CertWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        match self.watch_files(ctx.address()) {
            Ok(files) => self.files = Some(files),
            Err(e) => self.deps.telemetry.emit(CertWatchFailed { reason: &e }),
        }
        let paths = self.config.paths.clone();
        self.poll = Some(tokio::spawn(poll(paths, self.seen.clone(), ctx.address())));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(poll) = self.poll.take() {
            poll.abort();
        }
    }
}

impl Supervised for CertWatcher {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.files = None;
        if let Some(poll) = self.poll.take() {
            poll.abort();
        }
    }
}

/// What asked for a reload (logged as `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    FileChange,
    Signal,
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FileChange => "file_change",
            Self::Signal => "sighup",
            Self::Admin => "admin",
        }
    }
}

/// Reload the TLS material now; answers the new certificate or why the files were refused.
#[derive(Message)]
#[rtype(result = "Result<Certificate, ReloadError>")]
pub struct Reload {
    pub trigger: Trigger,
}

impl Handler<Reload> for CertWatcher {
    // Atomic: the next reload starts only after this one swapped, so files read later always win.
    type Result = AtomicResponse<Self, Result<Certificate, ReloadError>>;

    fn handle(&mut self, msg: Reload, _: &mut Self::Context) -> Self::Result {
        let (config, deps, seen) = (self.config.clone(), self.deps.clone(), self.seen.clone());
        let reload = async move {
            let prepared = tokio::task::spawn_blocking(move || {
                // Noted before the files are read: a change while they are read is seen again.
                let files = fingerprint(&config.paths);
                *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(files);
                prepare(&config)
            })
            .await
            .unwrap_or_else(|e| Err(ReloadError::Interrupted(e.to_string())));
            deps.apply(msg.trigger, prepared)
        };
        AtomicResponse::new(Box::pin(reload.into_actor(self)))
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    use super::*;
    use crate::transport::test_ca::{TestCa, TestResult};

    fn paths(ca: &TestCa, cert: PathBuf, key: PathBuf) -> TlsPaths {
        TlsPaths {
            ca: ca.ca_pem.clone(),
            cert,
            key,
            crl: None,
        }
    }

    /// A new certificate for `cn` (with its own key), validated as the material of `plant-a`.
    fn validate_issued(cn: &str, expired: bool) -> TestResult<Result<TlsMaterial, ReloadError>> {
        let ca = TestCa::new("test CA")?;
        let (cert, key) = ca.issue(cn, &[], expired)?;
        Ok(validate("plant-a", &paths(&ca, cert, key)))
    }

    #[test]
    fn material_for_this_zone_is_accepted_and_describes_its_certificate() -> TestResult {
        let material = validate_issued("plant-a", false)??;
        let certificate = Certificate::of(&material);
        assert_eq!(certificate.subject, "CN=plant-a");
        let left = certificate.time_left(SystemTime::now());
        assert!(left > Duration::from_secs(86_400), "{left:?}");
        assert_eq!(certificate.time_left(certificate.not_after + DEBOUNCE), Duration::ZERO);
        Ok(())
    }

    #[test]
    fn a_certificate_for_another_cn_is_refused_naming_both() -> TestResult {
        let err = validate_issued("enterprise", false)?.err().ok_or("wrong CN accepted")?;
        assert!(
            matches!(&err, ReloadError::WrongZone { found, .. } if found == "enterprise"),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("\"plant-a\"") && text.contains("\"enterprise\""),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn an_expired_certificate_is_refused() -> TestResult {
        let err = validate_issued("plant-a", true)?.err().ok_or("expired accepted")?;
        assert!(matches!(err, ReloadError::Tls(TlsError::Expired { .. })), "{err}");
        Ok(())
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() -> TestResult {
        let ca = TestCa::new("test CA")?;
        let (_, old_key) = ca.issue("plant-a", &[], false)?;
        let old_key_copy = ca.dir.path().join("old.key");
        std::fs::copy(&old_key, &old_key_copy)?;
        // A rotation half done: the new certificate is in place, the key is still the old one.
        let (new_cert, _) = ca.issue("plant-a", &[], false)?;
        let err = validate("plant-a", &paths(&ca, new_cert, old_key_copy))
            .err()
            .ok_or("mismatched key accepted")?;
        assert!(matches!(err, ReloadError::Tls(TlsError::KeyMismatch { .. })), "{err}");
        Ok(())
    }

    #[test]
    fn only_changes_to_the_watched_files_wake_the_watcher() {
        let files = vec![PathBuf::from("/pki/ca.pem"), PathBuf::from("/pki/plant-a.pem")];
        let event = |kind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(touches(&event(renamed, "/pki/plant-a.pem"), &files));
        assert!(touches(
            &event(EventKind::Create(CreateKind::File), "/pki/ca.pem"),
            &files
        ));
        let written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(touches(&event(written, "/pki/ca.pem"), &files));
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!touches(&event(read, "/pki/ca.pem"), &files), "our own reads");
        assert!(!touches(
            &event(EventKind::Access(AccessKind::Any), "/pki/ca.pem"),
            &files
        ));
        assert!(
            !touches(&event(renamed, "/pki/enterprise.pem"), &files),
            "another node's file"
        );
        assert!(!touches(&event(renamed, "/pki/plant-a.pem.tmp"), &files));
    }
}
