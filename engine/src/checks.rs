//! What the engine must be before an HA zone trusts it with acknowledged facts (SPEC §15, design
//! §4.2), as pure functions over what the servers report, plus [`verify`], which asks them.
//!
//! - **Version floor.** nats-server ≥ [`MIN_VERSION`] (2.12.3: the clustered compare-and-set race
//!   was fixed in 2.9.21, `sync_interval: always` came in 2.10, membership fixes in 2.12.3).
//!   Below [`FULL_SPEED_VERSION`] (2.15.0) a replicated stream fsyncs twice per record: allowed,
//!   with a warning. A pre-release (`2.15.0-dev`, `2.12.3-RC.1`) counts as below its release.
//! - **Fsync before acknowledging.** Every server must run with `sync_interval: always`, read
//!   from its monitoring `/varz` (`jetstream.config.sync_always`). A server that says otherwise
//!   refuses the start, naming the server and the setting. A server that cannot be asked is a
//!   warning as long as a majority of the configured ones answered and passed; the result is then
//!   "not verified". `assume_durable` turns every refusal about fsync into a warning (never the
//!   version floor: an old server is unsafe, not merely unverified).

use std::{fmt, time::Duration};

use crate::monitor::{self, Varz};

/// The oldest nats-server an HA zone accepts.
pub const MIN_VERSION: Version = Version::release(2, 12, 3);
/// From this version on, `sync_always` costs one fsync per replicated append, not two.
pub const FULL_SPEED_VERSION: Version = Version::release(2, 15, 0);
/// How long one server's `/varz` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A nats-server version; a pre-release sorts before its release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `false` for a pre-release (`-dev`, `-RC.1`, `-beta`).
    pub released: bool,
}

impl Version {
    pub const fn release(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
            released: true,
        }
    }

    /// Parses `2.15.1`, `v2.15.1`, `2.15.0-dev`, `2.11.0-RC.1`, `2.10.4+build`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, !pre.is_empty()),
            None => (text, false),
        };
        let core = core.split('+').next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = Self {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
            released: !pre,
        };
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.released {
            f.write_str("-pre")?;
        }
        Ok(())
    }
}

/// Why the engine is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("engine server {server} ({url}) does not fsync before acknowledging: set `sync_interval: always` in its jetstream block (or set assume_durable = true to start anyway, unverified)")]
    NotDurable { url: String, server: String },
    #[error("engine server {server} ({url}) runs nats-server {version}; an HA zone needs {MIN_VERSION} or later")]
    TooOld {
        url: String,
        server: String,
        version: String,
    },
    #[error("engine server {server} ({url}) reports a version this cannot read: {version:?}")]
    BadVersion {
        url: String,
        server: String,
        version: String,
    },
    #[error("engine server {server} ({url}) does not run JetStream")]
    NoJetStream { url: String, server: String },
    #[error("cannot verify that the engine fsyncs before acknowledging: {failures}; at least {needed} of {total} monitor URLs must answer (or set assume_durable = true)")]
    Unverifiable {
        failures: String,
        needed: usize,
        total: usize,
    },
    #[error("no monitor_urls to verify that the engine fsyncs before acknowledging (`sync_interval: always`); list every server's monitoring URL, or set assume_durable = true")]
    NoMonitors,
}

/// How one version compares with the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionVerdict {
    Current,
    /// Accepted, but fsyncs twice per replicated append.
    Slow,
}

/// The version floor for one server, named `server` at `url` in errors.
pub fn check_version(url: &str, server: &str, version: &str) -> Result<VersionVerdict, CheckError> {
    let parsed = Version::parse(version).ok_or_else(|| CheckError::BadVersion {
        url: url.to_owned(),
        server: server.to_owned(),
        version: version.to_owned(),
    })?;
    if parsed < MIN_VERSION {
        return Err(CheckError::TooOld {
            url: url.to_owned(),
            server: server.to_owned(),
            version: version.to_owned(),
        });
    }
    Ok(if parsed < FULL_SPEED_VERSION {
        VersionVerdict::Slow
    } else {
        VersionVerdict::Current
    })
}

/// The outcome of the start-up checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every configured server answered and fsyncs before acknowledging.
    pub durability_verified: bool,
    /// What the operator should know (log each at WARN).
    pub warnings: Vec<String>,
}

/// Judges the `/varz` answers of the configured monitor URLs (in their order).
pub fn judge(probes: &[(String, Result<Varz, String>)], assume_durable: bool) -> Result<Verdict, CheckError> {
    if probes.is_empty() && !assume_durable {
        return Err(CheckError::NoMonitors);
    }
    let mut warnings = Vec::new();
    let mut failures = Vec::new();
    for (url, probe) in probes {
        match probe {
            Ok(varz) => judge_server(url, varz, assume_durable, &mut warnings)?,
            Err(reason) => failures.push(reason.clone()),
        }
    }
    let needed = probes.len() / 2 + 1;
    let answered = probes.len() - failures.len();
    if answered < needed && !assume_durable {
        return Err(CheckError::Unverifiable {
            failures: failures.join("; "),
            needed,
            total: probes.len(),
        });
    }
    warnings.extend(failures.iter().map(|f| format!("engine server not verified: {f}")));
    let verified = !probes.is_empty()
        && failures.is_empty()
        && probes.iter().all(|(_, p)| p.as_ref().is_ok_and(Varz::sync_always));
    if assume_durable && !verified {
        warnings.push("assume_durable = true: the engine's fsync before acknowledging is NOT verified".to_owned());
    }
    Ok(Verdict {
        durability_verified: verified,
        warnings,
    })
}

fn judge_server(url: &str, varz: &Varz, assume_durable: bool, warnings: &mut Vec<String>) -> Result<(), CheckError> {
    let server = varz.server_name.as_str();
    if check_version(url, server, &varz.version)? == VersionVerdict::Slow {
        warnings.push(format!(
            "engine server {server} ({url}) runs nats-server {}: before {FULL_SPEED_VERSION} every replicated append costs two fsyncs per server",
            varz.version
        ));
    }
    if !varz.jetstream_enabled() {
        return Err(CheckError::NoJetStream {
            url: url.to_owned(),
            server: server.to_owned(),
        });
    }
    if !varz.sync_always() {
        let refusal = CheckError::NotDurable {
            url: url.to_owned(),
            server: server.to_owned(),
        };
        if !assume_durable {
            return Err(refusal);
        }
        warnings.push(refusal.to_string());
    }
    Ok(())
}

/// Asks every monitor URL's `/varz` (concurrently) and judges the answers.
pub async fn verify(monitor_urls: &[String], assume_durable: bool) -> Result<Verdict, CheckError> {
    let probes = futures::future::join_all(monitor_urls.iter().map(|url| async move {
        let varz = monitor::get_json::<Varz>(url, "/varz", PROBE_TIMEOUT).await;
        (url.clone(), varz.map_err(|e| e.to_string()))
    }))
    .await;
    judge(&probes, assume_durable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varz(name: &str, version: &str, sync_always: bool) -> Varz {
        serde_json::from_value(serde_json::json!({
            "server_name": name, "version": version,
            "jetstream": {"config": {"sync_always": sync_always}}
        }))
        .expect("varz")
    }

    fn probes(servers: &[Result<Varz, &str>]) -> Vec<(String, Result<Varz, String>)> {
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("http://10.0.0.{i}:8222"), s.clone().map_err(str::to_owned)))
            .collect()
    }

    #[test]
    fn versions_parse_with_prefixes_and_suffixes() {
        assert_eq!(Version::parse("2.15.1"), Some(Version::release(2, 15, 1)));
        assert_eq!(Version::parse("v2.12.3"), Some(Version::release(2, 12, 3)));
        assert_eq!(Version::parse("2.10.4+build.7"), Some(Version::release(2, 10, 4)));
        let dev = Version::parse("2.15.0-dev").expect("dev");
        assert!(!dev.released && dev < FULL_SPEED_VERSION && dev > Version::release(2, 14, 9));
        for bad in ["", "2.15", "2.x.1", "2.15.1.4", "nats"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_floor_is_2_12_3_and_below_2_15_is_slow() {
        let check = |v| check_version("http://a:8222", "a", v);
        assert!(matches!(check("2.9.10"), Err(CheckError::TooOld { .. })));
        assert!(matches!(check("2.9.21"), Err(CheckError::TooOld { .. })));
        assert!(matches!(check("2.12.2"), Err(CheckError::TooOld { .. })));
        assert!(matches!(check("2.12.3-RC.1"), Err(CheckError::TooOld { .. })));
        assert_eq!(check("2.12.3"), Ok(VersionVerdict::Slow));
        assert_eq!(check("2.14.5"), Ok(VersionVerdict::Slow));
        assert_eq!(check("2.15.0-dev"), Ok(VersionVerdict::Slow));
        assert_eq!(check("2.15.0"), Ok(VersionVerdict::Current));
        assert_eq!(check("v2.15.1"), Ok(VersionVerdict::Current));
        assert_eq!(check("3.0.0"), Ok(VersionVerdict::Current));
        assert!(matches!(check("garbage"), Err(CheckError::BadVersion { .. })));
    }

    #[test]
    fn every_server_fsyncing_is_verified() {
        let all = probes(&[
            Ok(varz("a", "2.15.1", true)),
            Ok(varz("b", "2.15.1", true)),
            Ok(varz("c", "2.15.1", true)),
        ]);
        let verdict = judge(&all, false).expect("accepted");
        assert!(verdict.durability_verified);
        assert!(verdict.warnings.is_empty(), "{:?}", verdict.warnings);
    }

    #[test]
    fn one_server_without_sync_always_refuses_naming_it_and_the_setting() {
        let mixed = probes(&[Ok(varz("a", "2.15.1", true)), Ok(varz("b", "2.15.1", false))]);
        let refusal = judge(&mixed, false).expect_err("refused");
        let text = refusal.to_string();
        assert!(
            text.contains("http://10.0.0.1:8222") && text.contains("server b"),
            "{text}"
        );
        assert!(text.contains("sync_interval: always"), "{text}");
    }

    #[test]
    fn the_override_starts_unverified_with_warnings() {
        let mixed = probes(&[Ok(varz("a", "2.15.1", true)), Ok(varz("b", "2.15.1", false))]);
        let verdict = judge(&mixed, true).expect("overridden");
        assert!(!verdict.durability_verified);
        assert!(verdict.warnings.iter().any(|w| w.contains("sync_interval: always")));
        assert!(verdict.warnings.iter().any(|w| w.contains("NOT verified")));
        assert!(!judge(&[], true).expect("no monitors, overridden").durability_verified);
    }

    #[test]
    fn the_override_never_accepts_an_old_server() {
        let old = probes(&[Ok(varz("a", "2.9.10", true))]);
        assert!(matches!(judge(&old, true), Err(CheckError::TooOld { .. })));
    }

    #[test]
    fn a_minority_unreachable_is_a_warning_a_majority_a_refusal() {
        let one_down = probes(&[
            Ok(varz("a", "2.15.1", true)),
            Err("connection refused"),
            Ok(varz("c", "2.15.1", true)),
        ]);
        let verdict = judge(&one_down, false).expect("majority verified");
        assert!(!verdict.durability_verified);
        assert!(verdict.warnings.iter().any(|w| w.contains("connection refused")));
        let two_down = probes(&[Ok(varz("a", "2.15.1", true)), Err("refused"), Err("timed out")]);
        assert!(matches!(
            judge(&two_down, false),
            Err(CheckError::Unverifiable {
                needed: 2,
                total: 3,
                ..
            })
        ));
    }

    #[test]
    fn no_monitor_urls_refuses_without_the_override() {
        assert_eq!(judge(&[], false), Err(CheckError::NoMonitors));
    }

    #[test]
    fn a_server_without_jetstream_is_refused() {
        let plain: Varz = serde_json::from_str(r#"{"server_name":"a","version":"2.15.1"}"#).expect("varz");
        assert!(matches!(
            judge(&probes(&[Ok(plain)]), true),
            Err(CheckError::NoJetStream { .. })
        ));
    }
}
