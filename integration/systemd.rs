//! `bsfg serve` as a systemd `Type=notify` service: `READY=1` comes only once the node serves —
//! storage open and listeners bound, so `/readyz` already answers 200 — and never from a node
//! whose storage cannot open; `WATCHDOG=1` pings follow while systemd asks for them; a shutdown
//! starts with `STOPPING=1`. The unit sample `config-samples/bsfg.service` passes
//! `systemd-analyze verify`.
//!
//! The test plays systemd's part: it binds the datagram socket `NOTIFY_SOCKET` names and sets
//! `WATCHDOG_USEC` and `WATCHDOG_PID`, the latter through `sh -c 'WATCHDOG_PID=$$ exec bsfg …'`
//! since a process's pid is known only once it runs (sd_watchdog_enabled(3) ignores a watchdog
//! meant for another pid).

use crate::harness;

use std::{
    fs,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bsfg_actors::storage::RocksStorage;
use harness::{
    admin::http,
    bin,
    notify::{has, Notifications},
    Cluster,
};

/// A node started as systemd would start it; killed if the test ends first.
struct Service(Child);

impl Service {
    /// `bsfg serve` for `zone` with `NOTIFY_SOCKET`, and a watchdog of `watchdog` when given;
    /// its output goes to the zone's log, which the cluster prints when the test fails.
    fn start(cluster: &Cluster, zone: &str, notify: &Notifications, watchdog: Option<Duration>) -> Self {
        let config = cluster.net.node(zone).expect("zone").config.clone();
        let log = fs::File::create(cluster.dir().join(format!("{zone}.log"))).expect("log file");
        let mut command = Command::new("sh");
        command
            .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" serve --config \"$1\""])
            .arg(bin())
            .arg(config)
            .env("NOTIFY_SOCKET", &notify.path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        match watchdog {
            Some(period) => command.env("WATCHDOG_USEC", period.as_micros().to_string()),
            None => command.env_remove("WATCHDOG_USEC"),
        };
        Self(command.spawn().expect("start bsfg"))
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name}");
    }

    /// The exit code, once the process ended; fails the test after `timeout`.
    fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the node did not exit within {timeout:?}")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ready_comes_once_the_node_serves_then_watchdog_pings_then_stopping() {
    let cluster = Cluster::pair();
    cluster.net.write_configs().expect("configs");
    let notify = Notifications::bind(&cluster.dir());
    let mut node = Service::start(&cluster, "enterprise", &notify, Some(Duration::from_secs(1)));

    let before_ready = notify.until("READY=1", Duration::from_secs(30));
    let (status, body) = http(cluster.admin("enterprise"), "GET", "/readyz", None);
    assert_eq!(status, 200, "at READY=1 the node serves: {body}");
    let ready = before_ready.last().expect("the READY=1 message");
    assert!(ready.contains("STATUS=serving zone enterprise"), "{ready:?}");
    assert!(
        !before_ready.iter().any(|m| has(m, "WATCHDOG=1")),
        "no ping before the node is ready: {before_ready:?}"
    );

    // A watchdog of 1 s: a ping every 0.5 s.
    let pings = notify
        .during(Duration::from_secs(3))
        .iter()
        .filter(|m| has(m, "WATCHDOG=1"))
        .count();
    assert!(
        (3..=8).contains(&pings),
        "{pings} pings in 3 s with WATCHDOG_USEC = 1 s"
    );

    node.signal("TERM");
    notify.until("STOPPING=1", Duration::from_secs(10));
    assert_eq!(
        node.exit_code(Duration::from_secs(45)),
        Some(0),
        "a drained node exits 0"
    );
}

#[test]
fn no_watchdog_pings_unless_systemd_asks_for_them() {
    let cluster = Cluster::pair();
    cluster.net.write_configs().expect("configs");
    let notify = Notifications::bind(&cluster.dir());
    let _node = Service::start(&cluster, "enterprise", &notify, None);
    notify.until("READY=1", Duration::from_secs(30));
    let after = notify.during(Duration::from_secs(2));
    assert!(!after.iter().any(|m| has(m, "WATCHDOG=1")), "{after:?}");
}

/// Another process holds the data directory's RocksDB lock (a second instance on the same data):
/// the node exits with an error and never told systemd it was ready.
#[test]
fn a_node_whose_storage_cannot_open_never_reports_ready() {
    let cluster = Cluster::pair();
    cluster.net.write_configs().expect("configs");
    let data_dir = cluster.net.node("enterprise").expect("zone").data_dir.clone();
    let _held = RocksStorage::open(&data_dir, "enterprise").expect("the test holds the storage");
    let notify = Notifications::bind(&cluster.dir());
    let mut node = Service::start(&cluster, "enterprise", &notify, Some(Duration::from_secs(1)));

    let code = node.exit_code(Duration::from_secs(30));
    assert_eq!(code, Some(75), "storage that cannot open is a retryable failure");
    let sent = notify.during(Duration::from_millis(200));
    assert!(!sent.iter().any(|m| has(m, "READY=1")), "{sent:?}");
    let log = fs::read_to_string(cluster.dir().join("enterprise.log")).expect("log");
    assert!(log.contains("cannot open storage"), "{log}");
}

/// The unit sample as shipped passes `systemd-analyze verify` with nothing to say. The tool needs
/// `ExecStart=` to name an executable that exists, so it checks a copy whose `ExecStart=` runs the
/// binary under test instead of `/usr/bin/bsfg`; the `bsfg` user need not exist. A missing tool
/// fails the test: `scripts/test.sh` installs it (Debian's `systemd`).
#[test]
fn the_unit_sample_passes_systemd_analyze_verify() {
    let unit = fs::read_to_string("config-samples/bsfg.service").expect("the unit sample");
    for setting in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "ExecStart=/usr/bin/bsfg serve",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(setting)), "the unit sets {setting}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("bsfg.service");
    let binary = bin();
    let runnable = unit.replace("ExecStart=/usr/bin/bsfg ", &format!("ExecStart={} ", binary.display()));
    fs::write(&copy, runnable).expect("write the copy");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze is installed (scripts/test.sh installs Debian's systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
