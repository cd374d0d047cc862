//! Property: a 50 MB artifact put in zone A and referenced by a fact is pulled by zone B before
//! the fact is delivered there, with the same digest, and stays readable in B after the link is
//! cut again; both nodes stream it, so their peak memory grows far less than the artifact's size
//! (issue 5).

use crate::harness;

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use bsfg_proto::{ArtifactRef, ObjectDigest, ObjectHasher};
use rand::{rngs::StdRng, RngCore, SeedableRng};

use bsfg::devnet::proxy::FaultProxy;
use harness::{json_lines, observe::metric, receive, stderr, Cluster};

const ARTIFACT_BYTES: usize = 50 << 20;
/// Far below the artifact's size: a node that held it whole in memory would exceed it.
const RSS_GROWTH_LIMIT: u64 = 32 << 20;

/// `ARTIFACT_BYTES` of seeded random bytes in `dir`; returns the path and the content's digest.
fn artifact(dir: &Path) -> (PathBuf, ObjectDigest) {
    let seed = rand::random::<u64>();
    eprintln!("artifact seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let path = dir.join("coa-batch-42.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create artifact"));
    let mut hasher = ObjectHasher::default();
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..ARTIFACT_BYTES / block.len() {
        rng.fill_bytes(&mut block);
        hasher.update(&block);
        file.write_all(&block).expect("write artifact");
    }
    file.flush().expect("flush artifact");
    (path, hasher.finish())
}

fn file_digest(path: &Path) -> ObjectDigest {
    let mut hasher = ObjectHasher::default();
    let mut file = std::fs::File::open(path).expect("open");
    let mut block = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut file, &mut block).expect("read") {
            0 => return hasher.finish(),
            n => hasher.update(&block[..n]),
        }
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifty_megabyte_artifact_crosses_zones_streamed_and_stays_readable_after_the_link_is_cut() {
    let mut cluster = Cluster::pair();
    let proxies = cluster.proxy_all();
    cluster.start_all();
    for (zone, peer) in [("enterprise", "plant-a"), ("plant-a", "enterprise")] {
        let up = cluster.wait_gate(zone, peer, "normal", Duration::from_secs(20)).await;
        assert!(up.is_some(), "{zone} never reached normal toward {peer}");
    }
    let (path, digest) = artifact(&cluster.dir());
    let peaks_before = [cluster.peak_rss("enterprise"), cluster.peak_rss("plant-a")];

    let put = ["put-object", "--bucket", "coa", "--key", "batch/42.bin", text(&path)];
    let out = cluster.cli("enterprise", &put);
    assert!(out.status.success(), "put-object failed: {}", stderr(&out));
    let reference: ArtifactRef = serde_json::from_value(json_lines(&out)[0].clone()).expect("a reference");
    assert_eq!(reference.digest, digest);
    assert_eq!(reference.size, ARTIFACT_BYTES as u64);
    assert_eq!(reference.media_type, "application/octet-stream");
    assert_eq!(reference.file_name.as_deref(), Some("coa-batch-42.bin"));

    let reference_json = serde_json::to_string(&reference).expect("render");
    let append = [
        "append",
        "--to",
        "plant-a",
        "--subject",
        "batch/42",
        "--predicate",
        "certified",
        "--message-id",
        "coa-42",
        "--object-media-type",
        "application/octet-stream",
        "--object-json",
        &reference_json,
    ];
    let out = cluster.cli("enterprise", &append);
    assert!(out.status.success(), "append failed: {}", stderr(&out));

    // plant-a delivers the fact only once the artifact is stored there.
    let consumer = cluster.client("plant-a").await;
    let facts = receive(&consumer, "qa", 1, Duration::from_secs(120)).await;
    assert_eq!(facts.len(), 1, "the fact referencing the artifact reached plant-a");
    assert_eq!(
        ArtifactRef::parse(&facts[0].message.fact.object_json),
        Ok(reference.clone())
    );
    consumer.close().await;

    for (zone, before) in ["enterprise", "plant-a"].into_iter().zip(peaks_before) {
        let growth = cluster.peak_rss(zone).saturating_sub(before);
        eprintln!("{zone}: peak RSS grew by {} KiB", growth >> 10);
        assert!(
            growth < RSS_GROWTH_LIMIT,
            "{zone}'s peak memory grew by {} MiB while a {} MiB artifact passed through",
            growth >> 20,
            ARTIFACT_BYTES >> 20
        );
    }
    let usage = "bsfg_object_store_usage_bytes{bucket=\"coa\"}";
    for zone in ["enterprise", "plant-a"] {
        assert_eq!(metric(&cluster, zone, usage), ARTIFACT_BYTES as f64, "{zone}");
    }
    assert_eq!(metric(&cluster, "enterprise", "bsfg_artifact_upload_total"), 1.0);
    assert_eq!(metric(&cluster, "plant-a", "bsfg_artifact_retrieval_total"), 1.0);
    assert_eq!(metric(&cluster, "plant-a", "bsfg_artifact_retrieval_failures"), 0.0);

    // Cut the link: plant-a serves the artifact from its own store.
    for proxy in proxies.values() {
        proxy.blackhole();
    }
    let cut = cluster
        .wait_gate("plant-a", "enterprise", "autonomous", Duration::from_secs(20))
        .await;
    assert!(cut.is_some(), "plant-a noticed the cut link");
    let copy = cluster.dir().join("received.bin");
    let get = [
        "get-object",
        "--bucket",
        "coa",
        "--key",
        "batch/42.bin",
        "-o",
        text(&copy),
    ];
    let out = cluster.cli("plant-a", &get);
    assert!(out.status.success(), "get-object failed: {}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["digest"], digest.to_string());
    assert_eq!(std::fs::metadata(&copy).expect("copy").len(), ARTIFACT_BYTES as u64);
    assert_eq!(file_digest(&copy), digest, "the copy in plant-a has the same content");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&copy).expect("copy").permissions());
    assert_eq!(mode & 0o777, 0o666 & !umask(), "made as any new file is: {mode:o}");

    interrupted_get_leaves_nothing(&cluster).await;
    a_file_that_changes_while_it_is_put_is_refused(&cluster).await;
    a_file_without_a_size_is_refused(&cluster);
}

/// A pipe or a device has no length to announce (it reads 0): put, its content would be stored
/// as an empty artifact. It is refused, naming the path, and nothing is stored.
fn a_file_without_a_size_is_refused(cluster: &Cluster) {
    let put = ["put-object", "--bucket", "coa", "--key", "device.bin", "/dev/zero"];
    let refused = cluster.cli("plant-a", &put);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("/dev/zero is not a regular file"),
        "{}",
        stderr(&refused)
    );
    let get = ["get-object", "--bucket", "coa", "--key", "device.bin"];
    assert!(
        stderr(&cluster.cli("plant-a", &get)).contains("NOT_FOUND"),
        "nothing stored"
    );
}

/// The umask this test and the CLI it starts run with.
fn umask() -> u32 {
    let out = std::process::Command::new("sh")
        .args(["-c", "umask"])
        .output()
        .expect("sh");
    u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 8).expect("octal umask")
}

/// A line to plant-a through a fault proxy that holds every datagram back 50 ms each way: a
/// 50 MB transfer takes seconds, so a test can act on it half-way.
fn slow_line(cluster: &Cluster) -> FaultProxy {
    let proxy = FaultProxy::start(cluster.net.node("plant-a").expect("plant-a").rpc).expect("proxy");
    proxy.faults().delay(Duration::from_millis(50));
    proxy
}

/// A get stopped by SIGINT while its transfer is cut off exits 75 and leaves no partial file
/// behind.
async fn interrupted_get_leaves_nothing(cluster: &Cluster) {
    let dir = cluster.dir().join("interrupted");
    std::fs::create_dir(&dir).expect("dir");
    let out = dir.join("out.bin");
    let line = slow_line(cluster);
    let get = [
        "get-object",
        "--bucket",
        "coa",
        "--key",
        "batch/42.bin",
        "-o",
        text(&out),
    ];
    let child = cluster
        .cli_command("plant-a", harness::CLIENT, &line.addr().to_string(), &get)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn get-object");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&dir).expect("dir").next().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "the get never began");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    line.faults().blackhole();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(
        exit.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    assert!(String::from_utf8_lossy(&exit.stderr).contains("interrupted"));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "no partial file is left: {left:?}");
}

/// A file whose length changes while it is put (here: while its line is cut) fails the put
/// with an error naming the file: cut short, at once and with nothing stored; grown, once the
/// first part is stored, so that no reference to a part of it is printed.
async fn a_file_that_changes_while_it_is_put_is_refused(cluster: &Cluster) {
    let shrunk = put_while_changing(cluster, "shrinking.bin", |f| f.set_len(1 << 20)).await;
    assert!(shrunk.contains("nothing was stored"), "{shrunk}");
    let get = ["get-object", "--bucket", "coa", "--key", "shrinking.bin"];
    let missing = cluster.cli("plant-a", &get);
    assert!(
        stderr(&missing).contains("NOT_FOUND"),
        "nothing stored: {}",
        stderr(&missing)
    );

    let grown = put_while_changing(cluster, "growing.bin", |mut f| f.write_all(b"more")).await;
    assert!(
        grown.contains(&format!("its first {ARTIFACT_BYTES} bytes were stored")),
        "{grown}"
    );
}

/// Puts a fresh artifact as `key` over a slow line, applies `change` to its file once the
/// upload began (the line cut meanwhile), and returns what the failed put said.
async fn put_while_changing(
    cluster: &Cluster,
    key: &str,
    change: impl FnOnce(std::fs::File) -> std::io::Result<()>,
) -> String {
    let dir = cluster.dir().join(key);
    std::fs::create_dir(&dir).expect("dir");
    let (file, _) = artifact(&dir);
    let uploads = cluster
        .net
        .node("plant-a")
        .expect("plant-a")
        .data_dir
        .join("objects/tmp");
    let receiving = || -> Vec<std::path::PathBuf> {
        let entries = std::fs::read_dir(&uploads).into_iter().flatten().flatten();
        entries.map(|e| e.path()).collect()
    };
    let before = receiving();
    let line = slow_line(cluster);
    let put = ["put-object", "--bucket", "coa", "--key", key, text(&file)];
    let child = cluster
        .cli_command("plant-a", harness::CLIENT, &line.addr().to_string(), &put)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn put-object");
    let started = std::time::Instant::now();
    // The node has received the first bytes of this upload: the CLI has the file open.
    let began = || {
        let new = receiving().into_iter().filter(|p| !before.contains(p));
        new.filter_map(|p| std::fs::metadata(p).ok()).any(|m| m.len() > 0)
    };
    while !began() {
        assert!(started.elapsed() < Duration::from_secs(20), "the upload never began");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    line.faults().blackhole();
    let opened = std::fs::File::options().append(true).open(&file);
    opened.and_then(change).expect("change the file");
    line.faults().heal();
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let said = String::from_utf8_lossy(&exit.stderr).into_owned();
    assert_eq!(exit.status.code(), Some(1), "{said}");
    assert!(
        said.contains(text(&file)) && said.contains("changed while it was sent"),
        "{said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused at once, not after a read timeout"
    );
    said
}
