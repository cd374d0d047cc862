//! Property: `bsfg serve` refuses a bad configuration at start-up, quickly and before touching
//! its data directory, with exit code 1 and one `error: INVALID_ARGUMENT: ` line naming the key
//! and the offending value — unknown keys, bad durations, a zone that is not the certificate's
//! CN, the contradiction `safety_critical` + `drop_oldest` (SPEC §5, §9; issue #2, test 6), an
//! admin listener off loopback without a token (SPEC §6), and a revocation list not from the CA.
//! A data directory that belongs to another zone is refused the same way (exit 1, not the
//! retryable 75): waiting cannot make it this node's. So is one the node's user cannot write.

use crate::harness;

use std::{
    os::unix::{
        fs::{chown, PermissionsExt},
        process::CommandExt,
    },
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use harness::Cluster;

/// Runs `bsfg serve --config path` and returns its exit code and stderr; fails the test if the
/// process is still running after a few seconds (a refused config must not start a node).
fn serve(config: &Path) -> (Option<i32>, String) {
    serve_with(Command::new(harness::bin()), config)
}

/// [`serve`] of the binary `bin` as the user `uid` (and its group of the same number).
fn serve_as(bin: &Path, config: &Path, uid: u32) -> (Option<i32>, String) {
    let mut command = Command::new(bin);
    command.uid(uid).gid(uid);
    serve_with(command, config)
}

fn serve_with(mut command: Command, config: &Path) -> (Option<i32>, String) {
    let mut child = command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bsfg serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "bsfg serve --config {} kept running; stdout: {}",
                config.display(),
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `enterprise`'s generated config with `extra` appended, served; asserts the refusal and that
/// the error names every string in `names`.
fn assert_refused(cluster: &mut Cluster, extra: &str, names: &[&str]) {
    cluster.net.nodes.get_mut("enterprise").expect("enterprise spec").extra = extra.to_owned();
    cluster.net.write_configs().expect("configs");
    let node = cluster.net.node("enterprise").expect("enterprise spec").clone();
    assert_refused_file(&node.config, &node.data_dir, names);
}

/// `zone`'s generated config rewritten by `edit` (which must change it), served from a copy.
fn assert_edited_refused(cluster: &Cluster, zone: &str, edit: impl Fn(&str) -> String, names: &[&str]) {
    let node = cluster.net.node(zone).expect("zone spec").clone();
    let text = std::fs::read_to_string(&node.config).expect("generated config");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit of {zone}'s config changed nothing");
    let config = cluster.dir().join(format!("{zone}-edited.toml"));
    std::fs::write(&config, edited).expect("write config");
    assert_refused_file(&config, &node.data_dir, names);
}

fn assert_refused_file(config: &Path, data_dir: &Path, names: &[&str]) {
    let (code, stderr) = serve(config);
    assert_eq!(code, Some(1), "permanent error expected; stderr: {stderr}");
    assert!(stderr.starts_with("error: INVALID_ARGUMENT: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    for name in names {
        assert!(stderr.contains(name), "the error names {name:?}: {stderr}");
    }
    assert!(
        !data_dir.exists(),
        "a refused config must not create {}",
        data_dir.display()
    );
}

#[test]
fn bad_configurations_are_refused_at_start_up() {
    let mut cluster = Cluster::pair();

    assert_refused(&mut cluster, "[store]\ncolour = \"red\"\n", &["store.colour"]);
    assert_refused(
        &mut cluster,
        "[store]\nretention = \"7x\"\n",
        &["store.retention", "7x"],
    );
    let contradiction = "[store]\nsafety_critical = true\nbackpressure = \"drop_oldest\"\n";
    assert_refused(
        &mut cluster,
        contradiction,
        &["store.backpressure", "store.safety_critical", "drop_oldest"],
    );

    // plant-a's config presenting enterprise's certificate.
    cluster
        .net
        .nodes
        .get_mut("enterprise")
        .expect("enterprise spec")
        .extra
        .clear();
    cluster.net.write_configs().expect("configs");
    let impostor = |text: &str| {
        text.replace("plant-a.pem", "enterprise.pem")
            .replace("plant-a.key", "enterprise.key")
    };
    assert_edited_refused(
        &cluster,
        "plant-a",
        impostor,
        &["node.zone", "\"plant-a\"", "\"enterprise\""],
    );

    // The admin API leaves loopback only behind a token (SPEC §6).
    let exposed = |text: &str| text.replace("admin = \"127.0.0.1:", "admin = \"0.0.0.0:");
    assert_edited_refused(
        &cluster,
        "enterprise",
        exposed,
        &["listen.admin", "0.0.0.0", "admin.token_file"],
    );

    // A revocation list from another CA would revoke nothing: refused, naming the file.
    let foreign = cluster.dir().join("foreign-pki");
    bsfg::pki::init(&foreign, &[], &[], 30).expect("foreign CA");
    let crl = bsfg::pki::revoke(&foreign, &[], 30).expect("foreign list").crl;
    let crl_text = crl.display().to_string();
    let with_crl = |text: &str| text.replace("plant-a.key\"\n", &format!("plant-a.key\"\ncrl = \"{crl_text}\"\n"));
    assert_edited_refused(
        &cluster,
        "plant-a",
        with_crl,
        &["tls", &crl_text, "not signed by its CA"],
    );

    // The unmodified configs start: the refusals above were about the edits alone.
    cluster.start("enterprise");
}

#[test]
fn a_data_directory_of_another_zone_is_a_permanent_refusal() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let status = cluster.terminate("enterprise");
    assert!(status.success(), "enterprise stops cleanly: {status:?}");
    let enterprise = cluster.net.node("enterprise").expect("enterprise spec").clone();
    let plant = cluster.net.node("plant-a").expect("plant-a spec").clone();
    let text = std::fs::read_to_string(&plant.config).expect("plant-a's config");
    let (theirs, ours) = (
        enterprise.data_dir.display().to_string(),
        plant.data_dir.display().to_string(),
    );
    let edited = text.replace(&ours, &theirs);
    assert_ne!(edited, text, "plant-a's config names its data directory");
    let config = cluster.dir().join("plant-a-misplaced.toml");
    std::fs::write(&config, edited).expect("write config");
    let (code, stderr) = serve(&config);
    assert_eq!(code, Some(1), "permanent error expected; stderr: {stderr}");
    assert!(stderr.starts_with("error: INVALID_ARGUMENT: "), "{stderr}");
    for name in [theirs.as_str(), "\"enterprise\"", "\"plant-a\""] {
        assert!(stderr.contains(name), "the error names {name}: {stderr}");
    }
    // enterprise's data is untouched by the attempt: it starts again.
    cluster.start("enterprise");
}

/// A data directory the node's user cannot write (a unit running as `bsfg` over a directory root
/// created) is refused with exit 1, naming the directory and the user: no wait fixes ownership,
/// and the retryable 75 would have a supervisor retry it for ever.
#[test]
fn a_data_directory_closed_to_the_nodes_user_is_a_permanent_refusal() {
    const NOBODY: u32 = 65534;
    let cluster = Cluster::pair();
    let node = cluster.net.node("enterprise").expect("enterprise spec").clone();
    // A copy of the binary the node's user can run: the build's own may sit under a directory
    // closed to it (CI keeps its target directory under root's home).
    let bin = cluster.dir().join("bsfg");
    std::fs::copy(harness::bin(), &bin).expect("copy bsfg");
    // The node's user owns its configuration and certificates, and the scratch directory.
    for entry in walk(&cluster.dir()) {
        chown(&entry, Some(NOBODY), Some(NOBODY)).expect("chown to the node's user");
    }
    let uid = format!("uid {NOBODY}");
    let data = node.data_dir.display().to_string();

    // A directory root created, with the usual mode 0755: readable, not writable.
    std::fs::create_dir(&node.data_dir).expect("data directory");
    std::fs::set_permissions(&node.data_dir, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let (code, stderr) = serve_as(&bin, &node.config, NOBODY);
    assert_eq!(code, Some(1), "permanent error expected; stderr: {stderr}");
    assert!(stderr.starts_with("error: INVALID_ARGUMENT: "), "{stderr}");
    for name in [data.as_str(), uid.as_str(), "not readable, writable"] {
        assert!(stderr.contains(name), "the error names {name:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(&node.data_dir).expect("data directory").count(),
        0,
        "nothing was written"
    );

    // A directory the node may not create: its parent is root's.
    std::fs::remove_dir(&node.data_dir).expect("remove data directory");
    let parent = node.data_dir.parent().expect("data directory's parent");
    chown(parent, Some(0), Some(0)).expect("parent to root");
    let (code, stderr) = serve_as(&bin, &node.config, NOBODY);
    assert_eq!(code, Some(1), "permanent error expected; stderr: {stderr}");
    for name in [data.as_str(), uid.as_str(), "cannot be created"] {
        assert!(stderr.contains(name), "the error names {name:?}: {stderr}");
    }
}

/// `dir` and every file and directory under it.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).expect("read scratch directory") {
        let path = entry.expect("entry").path();
        match path.is_dir() {
            true => found.extend(walk(&path)),
            false => found.push(path),
        }
    }
    found
}
