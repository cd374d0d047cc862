//! Property: `bsfg check --config FILE` (SPEC §8) says, before a node starts, what would stop it
//! or hurt it, one line per check, and exits 1 when anything failed: a certificate for another
//! zone, an expired one, one the CRL revokes, a key that does not match, a data directory the
//! node's user cannot use or another zone wrote, a port in use. It passes (exit 0) on a devnet node's config and on the
//! shipped samples given a PKI, changes nothing on disk, and with `--peers` proves a real
//! handshake with each dialled peer without disturbing the peer's links.

use crate::harness;

use std::{
    net::{TcpListener, UdpSocket},
    os::unix::fs::chown,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, SystemTime},
};

use bsfg::{
    devnet::ports,
    pki::{self, CertKind},
};
use harness::{
    drill::{Drill, Estate},
    observe::{events, wait_until},
    stderr, Cluster,
};

fn check(config: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(harness::bin())
        .args(["check", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .expect("run bsfg check")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails unless every line is `ok` (or `warn`) and the command exited 0.
fn assert_passes(output: &Output) -> String {
    let text = stdout(output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(output));
    assert!(!text.contains("FAIL"), "{text}");
    text
}

/// Fails unless the command exited 1 with a `FAIL` line for `check` naming every one of `names`.
fn assert_fails(output: &Output, check: &str, names: &[&str]) {
    let text = stdout(output);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(output));
    assert!(
        stderr(output).starts_with("error: INVALID_ARGUMENT: "),
        "{}",
        stderr(output)
    );
    let prefix = format!("FAIL {check}: ");
    let line = text.lines().find(|l| l.starts_with(&prefix));
    let line = line.unwrap_or_else(|| panic!("no {prefix:?} line:\n{text}"));
    for name in names {
        assert!(line.contains(name), "{line:?} names {name:?}");
    }
}

/// `zone`'s config rewritten by `edit`, written beside it.
fn edited(cluster: &Cluster, zone: &str, name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(&cluster.net.node(zone).expect("zone").config).expect("config");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    let path = cluster.dir().join(format!("{name}.toml"));
    std::fs::write(&path, edited).expect("write config");
    path
}

/// The pair, plant-a with a CRL, configs written, nothing started.
fn pair_with_crl() -> Cluster {
    let mut cluster = Cluster::pair();
    let crl = pki::revoke(&cluster.net.pki, &[], 30).expect("an empty list").crl;
    cluster.net.nodes.get_mut("plant-a").expect("plant-a").crl = Some(crl);
    cluster.net.write_configs().expect("configs");
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_node_passes_and_its_peer_answers_the_handshake() {
    let mut cluster = pair_with_crl();
    let node = cluster.net.node("plant-a").expect("plant-a").clone();
    let text = assert_passes(&check(&node.config, &[]));
    for line in [
        "ok   config: ",
        "ok   certificate: CN plant-a, expires in 29 days",
        "ok   crl: ",
        "ok   data_dir: ",
        "ok   listen.rpc: udp ",
        "ok   listen.admin: tcp ",
    ] {
        assert!(text.lines().any(|l| l.starts_with(line)), "{line:?} in\n{text}");
    }
    assert!(text.contains("0 revoked, next update in"), "{text}");
    assert!(!node.data_dir.exists(), "the check created {}", node.data_dir.display());

    let json = check(&node.config, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["checks"].as_array().is_some_and(|c| c.len() >= 6), "{report}");

    // The peer is down: its handshake fails, and says why.
    let output = check(&node.config, &["--peers"]);
    assert_fails(&output, "peer enterprise", &["no answer"]);

    cluster.start("enterprise");
    let text = assert_passes(&check(&node.config, &["--peers"]));
    assert!(
        text.contains("ok   peer enterprise: ") && text.contains("enterprise accepts plant-a as a peer"),
        "{text}"
    );
    wait_until(Duration::from_secs(10), "enterprise logs the check it answered", || {
        events(&cluster, "enterprise", "check_answered")
            .iter()
            .any(|l| l["caller"] == "plant-a" && l["taken_for"] == "peer")
    })
    .await;
    assert!(
        events(&cluster, "enterprise", "peer_connected").is_empty(),
        "the check's connection never reached enterprise's link"
    );
    // A running node's own ports are in use.
    cluster.start("plant-a");
    assert_fails(&check(&node.config, &[]), "listen.rpc", &["in use"]);
}

/// A data directory another zone's node wrote is refused by `serve` at every start; the check
/// says so first (it reads the directory's zone without opening it for writing). Before, it
/// passed such a directory as `ok`.
#[test]
fn a_data_directory_of_another_zone_fails_the_check() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    assert_eq!(cluster.terminate("enterprise").code(), Some(0));
    let theirs = cluster.net.node("enterprise").expect("enterprise").data_dir.clone();
    let ours = cluster.net.node("plant-a").expect("plant-a").data_dir.clone();
    let (theirs, ours) = (theirs.display().to_string(), ours.display().to_string());
    let config = edited(&cluster, "plant-a", "misplaced", |t| t.replace(&ours, &theirs));
    assert_fails(
        &check(&config, &[]),
        "data_dir",
        &[&theirs, "\"enterprise\"", "\"plant-a\""],
    );
    let own = cluster.net.node("enterprise").expect("enterprise").config.clone();
    let text = assert_passes(&check(&own, &[]));
    assert!(text.contains(&format!("ok   data_dir: {theirs}")), "{text}");
}

#[test]
fn what_would_stop_the_node_fails_the_check_naming_it() {
    let cluster = pair_with_crl();
    let pki_dir = cluster.net.pki.clone();
    let now = SystemTime::now();
    let (hour, day) = (Duration::from_secs(3600), Duration::from_secs(86_400));
    let use_files = |name: &str, stem: &str| {
        let stem = stem.to_owned();
        edited(&cluster, "plant-a", name, move |t| {
            t.replace("plant-a.pem", &format!("{stem}.pem"))
                .replace("plant-a.key", &format!("{stem}.key"))
        })
    };

    pki::issue_as(&pki_dir, "intruder", CertKind::Node, now - hour, now + day, "intruder").expect("issue");
    assert_fails(
        &check(&use_files("other-zone", "intruder"), &[]),
        "certificate",
        &["\"intruder\"", "node.zone"],
    );
    pki::issue_as(&pki_dir, "plant-a", CertKind::Node, now - day * 10, now - day, "old").expect("issue");
    assert_fails(
        &check(&use_files("expired", "old"), &[]),
        "certificate",
        &["old.pem", "expired"],
    );
    let mismatch = edited(&cluster, "plant-a", "mismatch", |t| {
        t.replace("plant-a.key", "enterprise.key")
    });
    assert_fails(
        &check(&mismatch, &[]),
        "certificate",
        &["enterprise.key", "does not match"],
    );

    let data_dir = cluster.dir().join("foreign-data");
    std::fs::create_dir(&data_dir).expect("data dir");
    chown(&data_dir, Some(4242), Some(4242)).expect("chown");
    let foreign = data_dir.display().to_string();
    let own_data_dir = cluster
        .net
        .node("plant-a")
        .expect("plant-a")
        .data_dir
        .display()
        .to_string();
    let config = edited(&cluster, "plant-a", "foreign-data", |t| {
        t.replace(&own_data_dir, &foreign)
    });
    assert_fails(&check(&config, &[]), "data_dir", &[&foreign, "uid 4242"]);
    // Owned by this user, but holding RocksDB's lock file from a run as another user: the node
    // would fail to open its storage.
    chown(&data_dir, Some(0), Some(0)).expect("chown back");
    std::fs::create_dir(data_dir.join("objects")).expect("objects");
    let lock = data_dir.join("objects").join("LOCK");
    std::fs::write(&lock, "").expect("lock file");
    chown(&lock, Some(4242), Some(4242)).expect("chown");
    assert_fails(
        &check(&config, &[]),
        "data_dir",
        &[&lock.display().to_string(), "uid 4242", "chown -R"],
    );
    // A database whose CURRENT file is gone: the node would refuse it; the check says so first.
    std::fs::remove_file(&lock).expect("lock file");
    std::fs::write(data_dir.join("000004.log"), "a write-ahead log").expect("log file");
    assert_fails(
        &check(&config, &[]),
        "data_dir",
        &[&foreign, "000004.log", "CURRENT", "backup"],
    );
    std::fs::remove_file(data_dir.join("000004.log")).expect("log file");
    let file = cluster.dir().join("a-file");
    std::fs::write(&file, "not a directory").expect("file");
    let under_file = file.join("data").display().to_string();
    let config = edited(&cluster, "plant-a", "under-file", |t| {
        t.replace(&own_data_dir, &under_file)
    });
    assert_fails(
        &check(&config, &[]),
        "data_dir",
        &["cannot be created", "not a directory"],
    );

    let node = cluster.net.node("plant-a").expect("plant-a").clone();
    {
        let _udp = UdpSocket::bind(node.rpc).expect("hold the rpc port");
        let _tcp = TcpListener::bind(node.admin).expect("hold the admin port");
        let output = check(&node.config, &[]);
        assert_fails(&output, "listen.rpc", &[&node.rpc.to_string(), "in use"]);
        assert_fails(&output, "listen.admin", &[&node.admin.to_string(), "in use"]);
    }

    // Last: revoking plant-a's own certificate fails the CRL line (the certificate itself is fine).
    pki::revoke(&pki_dir, &[pki_dir.join("plant-a.pem")], 30).expect("revoke");
    let output = check(&node.config, &[]);
    assert_fails(&output, "crl", &["plant-a.pem", "revoked", "ca.crl"]);
    assert!(
        stdout(&output).contains("ok   certificate: CN plant-a"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn the_shipped_samples_pass_given_a_pki() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki_dir = dir.path().join("pki");
    let zones = ["enterprise", "idmz", "plant-a", "plant-b"].map(str::to_owned);
    pki::init(&pki_dir, &zones, &[], 30).expect("pki for the samples");
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "sample-token\n").expect("token");
    for zone in &zones {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config-samples/{zone}.toml"));
        let text = std::fs::read_to_string(&sample).expect("sample");
        let udp = ports::choose_udp().expect("udp port");
        let tcp = ports::choose_tcp().expect("tcp port");
        let text: String = text
            .lines()
            .map(|line| match line {
                l if l.starts_with("rpc = ") => format!("rpc = \"{udp}\""),
                l if l.starts_with("admin = ") => format!("admin = \"{tcp}\""),
                l => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replace("/etc/bsfg/admin.token", &token.display().to_string())
            .replace("/etc/bsfg/pki", &pki_dir.display().to_string())
            .replace(
                "/var/lib/bsfg",
                &dir.path().join(format!("{zone}-data")).display().to_string(),
            );
        let config = dir.path().join(format!("{zone}.toml"));
        std::fs::write(&config, text).expect("config");
        let text = assert_passes(&check(&config, &[]));
        assert!(text.contains(&format!("ok   certificate: CN {zone}")), "{zone}: {text}");
        assert!(text.contains("ok   admin token: "), "{zone}: {text}");
    }
}

/// The guide's preflight, as written, on a plant-a host about to start, idmz running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_preflight_passes_before_the_first_start() {
    let estate = Estate::new(Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]));
    estate.shell("idmz", "systemctl start bsfg");
    estate.wait_ready("idmz").await;
    let drill = Drill::load("preflight");
    let text = estate.run(&drill, "check");
    assert!(text.contains("ok   admin token: "), "{text}");
    assert!(text.contains("ok   peer idmz: ") && !text.contains("FAIL"), "{text}");
    estate.assert_ran_every_step(&drill);
    estate.shell("plant-a", "systemctl start bsfg");
    estate.wait_ready("plant-a").await;
}
