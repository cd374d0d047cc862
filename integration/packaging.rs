//! What a host installs: shell completions and manual pages generated from the command line
//! name every subcommand, and the Debian package of `scripts/package-deb.sh` carries the
//! binary, the unit, the config, the alert rules, the dashboard, the pages and the completions,
//! passes lintian, and installs and purges cleanly.
//!
//! The package is built once per run from the binary under test. The install runs in a
//! throwaway root: an overlay of `/` in a mount namespace of its own (`unshare`), so `dpkg -i`,
//! the `bsfg` user its postinst creates and everything it writes vanish with the test; the host
//! is never changed. That needs root, as CI and the project's machines are.

use crate::harness;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use clap::CommandFactory;
use harness::bin;

/// Runs `program args`; fails the test unless it exits 0. Returns stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed (scripts/test.sh installs it): {e}"));
    assert_success(&out, &format!("{program} {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bsfg(args: &[&str]) -> String {
    run(bin().to_str().expect("utf-8 path"), args)
}

/// The path of every subcommand, e.g. `["admin", "drain"]`, parents before children.
fn subcommands() -> Vec<Vec<String>> {
    fn walk(command: &clap::Command, prefix: &[String], all: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = [prefix, &[sub.get_name().to_owned()]].concat();
            all.push(path.clone());
            walk(sub, &path, all);
        }
    }
    let mut all = Vec::new();
    walk(&bsfg::cli::Cli::command(), &[], &mut all);
    all
}

fn top_level() -> Vec<String> {
    subcommands()
        .into_iter()
        .filter(|p| p.len() == 1)
        .map(|p| p.concat())
        .collect()
}

#[test]
fn completions_name_every_subcommand() {
    let names = top_level();
    assert!(names.iter().any(|n| n == "serve") && names.iter().any(|n| n == "append"));
    for shell in ["bash", "zsh", "fish"] {
        let script = bsfg(&["completions", shell]);
        let missing: Vec<&String> = names.iter().filter(|n| !script.contains(n.as_str())).collect();
        assert!(missing.is_empty(), "the {shell} completion lacks {missing:?}");
    }
    let bash = bsfg(&["completions", "bash"]);
    assert!(bash.contains("complete -F _bsfg"), "bash completion registers itself");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bsfg.bash");
    std::fs::write(&file, bash).expect("write");
    run("bash", &["-n", file.to_str().expect("path")]);
}

#[test]
fn the_manual_page_renders_and_lists_every_subcommand() {
    let page = bsfg(&["man"]);
    assert!(page.contains(".TH BSFG 1 "), "{}", &page[..page.len().min(300)]);
    for name in top_level() {
        let reference = format!("bsfg\\-{}(1)", name.replace('-', "\\-"));
        assert!(page.contains(&reference), "bsfg(1) lists {reference}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bsfg.1");
    std::fs::write(&file, page).expect("write");
    let rendered = rendered(&file);
    assert!(rendered.contains("bsfg-serve(1)"), "{rendered}");
}

/// `man -l PAGE` as text, failing the test on any warning groff or man gives (as lintian does).
fn rendered(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man is installed (man-db)");
    assert_success(&out, "man -l");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.trim().is_empty(), "{}: {warnings}", page.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/package-deb.sh` run once on the binary under test; the path of the .deb.
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb");
        let out = Command::new("bash")
            .arg("scripts/package-deb.sh")
            .arg("--binary")
            .arg(bin())
            .arg("--out")
            .arg(&out_dir)
            .output()
            .expect("run scripts/package-deb.sh");
        assert_success(&out, "scripts/package-deb.sh");
        let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(deb.is_file(), "the script printed the path of the package: {deb:?}");
        deb
    })
}

fn deb_arg() -> &'static str {
    package().to_str().expect("utf-8 path")
}

#[test]
fn the_package_carries_every_file_a_gateway_needs() {
    let listing = run("dpkg-deb", &["--contents", deb_arg()]);
    let paths: BTreeSet<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(|path| path.trim_start_matches('.'))
        .collect();
    let mut expected: Vec<String> = [
        "/usr/bin/bsfg",
        "/lib/systemd/system/bsfg.service",
        "/etc/bsfg/bsfg.toml",
        "/usr/share/bsfg/prometheus/alerts.yml",
        "/usr/share/bsfg/grafana/bsfg-dashboard.json",
        "/usr/share/doc/bsfg/copyright",
        "/usr/share/doc/bsfg/changelog.gz",
        "/usr/share/doc/bsfg/examples/idmz.toml",
        "/usr/share/bash-completion/completions/bsfg",
        "/usr/share/zsh/vendor-completions/_bsfg",
        "/usr/share/fish/vendor_completions.d/bsfg.fish",
        "/usr/share/man/man1/bsfg.1.gz",
    ]
    .map(str::to_owned)
    .to_vec();
    expected.extend(
        subcommands()
            .iter()
            .map(|p| format!("/usr/share/man/man1/bsfg-{}.1.gz", p.join("-"))),
    );
    let missing: Vec<&String> = expected.iter().filter(|p| !paths.contains(p.as_str())).collect();
    assert!(missing.is_empty(), "the package lacks {missing:#?}\n{listing}");

    let field = |name: &str| run("dpkg-deb", &["--field", deb_arg(), name]).trim().to_owned();
    assert_eq!(field("Package"), "bsfg");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture"), run("dpkg", &["--print-architecture"]).trim());
    let depends = field("Depends");
    assert!(
        depends.contains("adduser") && depends.contains("libc6 (>="),
        "{depends}"
    );
    let info = run("dpkg-deb", &["--info", deb_arg()]);
    for control in ["conffiles", "postinst", "prerm", "postrm", "md5sums"] {
        assert!(info.contains(control), "control file {control}: {info}");
    }
    let conffiles = run("dpkg-deb", &["--info", deb_arg(), "conffiles"]);
    assert_eq!(conffiles.trim(), "/etc/bsfg/bsfg.toml");
}

/// lintian finds no error and no warning (the package's one override is explained in it).
#[test]
fn lintian_accepts_the_package() {
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(package())
        .output()
        .expect("lintian is installed (scripts/test.sh installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lintian: {}\n{report}", out.status);
    assert!(
        !report.lines().any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{report}"
    );
}

/// In the throwaway root: `dpkg -i` creates the user and the directories with their owners, the
/// binary runs from `/usr/bin`, the unit is the sample, the pages are found; `dpkg --purge`
/// removes the config and its ownership overrides and keeps the data directory.
#[test]
fn the_package_installs_and_purges_in_a_throwaway_root() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string("config-samples/bsfg.service").expect("unit sample");
    let inside = r#"set -e
dpkg -i /bsfg.deb >/dev/null
id bsfg
stat -c '%U:%G %a %n' /var/lib/bsfg /etc/bsfg /etc/bsfg/bsfg.toml /usr/bin/bsfg
bsfg --version
man -w bsfg-serve
cat /lib/systemd/system/bsfg.service > /unit.copy
dpkg --purge bsfg >/dev/null
echo "after purge:"
test -e /etc/bsfg || echo "no /etc/bsfg"
test -d /var/lib/bsfg && echo "kept /var/lib/bsfg"
dpkg-statoverride --list | grep -c bsfg || true
"#;
    let merged = scratch.path().join("merged");
    let outside = r#"set -e
cd "$0"
mkdir -p upper work merged
mount -t overlay overlay -o lowerdir=/,upperdir=$PWD/upper,workdir=$PWD/work merged
mount --bind /proc merged/proc
mount --bind /dev merged/dev
cp "$1" merged/bsfg.deb
chroot merged sh -c "$2"
cp merged/unit.copy unit.copy
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--fork", "sh", "-c", outside])
        .arg(scratch.path())
        .arg(package())
        .arg(inside)
        .output()
        .expect("unshare (util-linux)");
    assert_success(&out, "dpkg -i and --purge in an overlay of / (needs root)");
    let report = String::from_utf8_lossy(&out.stdout);
    for line in [
        "bsfg:bsfg 750 /var/lib/bsfg",
        "root:bsfg 750 /etc/bsfg",
        "root:bsfg 640 /etc/bsfg/bsfg.toml",
        "root:root 755 /usr/bin/bsfg",
        &format!("bsfg {}", env!("CARGO_PKG_VERSION")),
        "/usr/share/man/man1/bsfg-serve.1.gz",
        "no /etc/bsfg",
        "kept /var/lib/bsfg",
    ] {
        assert!(report.lines().any(|l| l == line), "expected {line:?} in:\n{report}");
    }
    assert!(
        report.lines().any(|l| l.starts_with("uid=") && l.contains("(bsfg)")),
        "{report}"
    );
    assert_eq!(
        report.lines().last(),
        Some("0"),
        "purge removes the statoverrides:\n{report}"
    );
    let installed = std::fs::read_to_string(scratch.path().join("unit.copy")).expect("unit copy");
    assert_eq!(installed, unit, "the installed unit is config-samples/bsfg.service");
    assert!(
        !merged.join("bsfg.deb").exists(),
        "the overlay is gone with the namespace"
    );
}
