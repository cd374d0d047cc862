//! Runbooks as drills: the command blocks of `docs/operations.md`, run as written against real
//! nodes, so the guide and what the product does cannot drift apart.
//!
//! A block that belongs to a drill is fenced as ```` ```sh drill=NAME[,NAME..] step=ID [on=ZONE] ````
//! (renderers show it as plain `sh`). A drill test loads its blocks by name ([`Drill::load`]) and
//! runs each step with bash on its host (`on`, default `plant-a`), after the guide's prelude block
//! (`drill=prelude`: its shell functions, such as `log`). The guide's host environment block
//! (`drill=env`) names the variables an operator exports; the estate sets every one of them to
//! the host's real value (and fails if the guide names one it does not know).
//!
//! Each zone of the estate is a *host*: a directory standing in for `/etc/bsfg` (config, token),
//! `/var/lib/bsfg` (data) and `/var/tmp`, with shims first on its `PATH` for what a test machine
//! does not have: `systemctl` (the unit `bsfg` as a background process of this host, started,
//! stopped with SIGTERM, reloaded with SIGHUP, killed with `--signal=`), `journalctl` (the unit's
//! output file), `sudo`
//! (runs the command) and `chown` (users and groups of the installation may not exist), and `bsfg`
//! is the binary under test. Paths of
//! the guide are rewritten to the host's directories; everything else runs as written: `bsfg`,
//! `curl`, `jq`, `openssl`, `cp`, `mv`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use super::{bin, traffic::Traffic, Cluster, CLIENT};

const GUIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md");
/// The zone a step runs on unless it says `on=`.
const DEFAULT_HOST: &str = "plant-a";
/// The bearer token of every host's admin API.
pub const TOKEN: &str = "drill-token";

/// One command block of the guide.
#[derive(Debug, Clone)]
pub struct Block {
    pub drills: Vec<String>,
    pub step: String,
    pub on: String,
    pub script: String,
}

/// Every `sh` block of the guide, with its drill attributes (none for a block no drill runs).
pub fn blocks() -> Vec<(String, Option<Block>)> {
    let text = std::fs::read_to_string(GUIDE).expect("docs/operations.md");
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```sh") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .collect();
        let body = body.join("\n");
        let attrs: BTreeMap<&str, &str> = info.split_whitespace().filter_map(|a| a.split_once('=')).collect();
        let block = attrs.get("drill").map(|drills| Block {
            drills: drills.split(',').map(str::to_owned).collect(),
            step: attrs.get("step").copied().unwrap_or_default().to_owned(),
            on: attrs.get("on").copied().unwrap_or(DEFAULT_HOST).to_owned(),
            script: body.clone(),
        });
        blocks.push((body, block));
    }
    blocks
}

/// The steps of one drill, in the guide's order.
pub struct Drill {
    pub name: String,
    steps: Vec<Block>,
    prelude: String,
}

impl Drill {
    pub fn load(name: &str) -> Self {
        let all: Vec<Block> = blocks().into_iter().filter_map(|(_, b)| b).collect();
        let prelude = all
            .iter()
            .filter(|b| b.drills.iter().any(|d| d == "prelude"))
            .map(|b| b.script.clone())
            .collect::<Vec<_>>()
            .join("\n");
        let steps: Vec<Block> = all.into_iter().filter(|b| b.drills.iter().any(|d| d == name)).collect();
        assert!(!steps.is_empty(), "docs/operations.md has no block of drill {name}");
        Self {
            name: name.to_owned(),
            steps,
            prelude,
        }
    }

    pub fn step(&self, id: &str) -> &Block {
        self.steps
            .iter()
            .find(|b| b.step == id)
            .unwrap_or_else(|| panic!("drill {} has no step {id} in docs/operations.md", self.name))
    }

    /// The ids of its steps, in order (a test checks it ran every one).
    pub fn step_ids(&self) -> Vec<String> {
        self.steps.iter().map(|b| b.step.clone()).collect()
    }
}

/// A cluster whose nodes run as the `bsfg` unit of one host each.
pub struct Estate {
    pub cluster: Cluster,
    hosts: BTreeMap<String, PathBuf>,
    ran: std::cell::RefCell<Vec<String>>,
}

impl Estate {
    /// Turns every node of `cluster` (not started yet) into a host: config, data and token under
    /// the host's directory, shims on its `PATH`, the admin token required.
    pub fn new(mut cluster: Cluster) -> Self {
        let mut hosts = BTreeMap::new();
        let zones: Vec<String> = cluster.net.nodes.keys().cloned().collect();
        for zone in zones {
            let root = cluster.dir().join(format!("host-{zone}"));
            for dir in ["etc/bsfg", "var/lib", "var/tmp", "run", "bin", "backup"] {
                std::fs::create_dir_all(root.join(dir)).expect("host directory");
            }
            std::fs::write(root.join("etc/bsfg/admin.token"), format!("{TOKEN}\n")).expect("token");
            write_shims(&root.join("bin"));
            let node = cluster.net.nodes.get_mut(&zone).expect("zone");
            node.config = root.join("etc/bsfg/bsfg.toml");
            node.data_dir = root.join("var/lib/bsfg");
            let token = root.join("etc/bsfg/admin.token");
            node.extra
                .push_str(&format!("\n[admin]\ntoken_file = \"{}\"\n", token.display()));
            hosts.insert(zone, root);
        }
        cluster.net.write_configs().expect("configs");
        Self {
            cluster,
            hosts,
            ran: Default::default(),
        }
    }

    /// `systemctl start bsfg` on every host, then waits until each is ready.
    pub async fn start_all(&self) {
        for zone in self.hosts.keys() {
            self.shell(zone, "systemctl start bsfg");
        }
        for zone in self.hosts.keys() {
            self.wait_ready(zone).await;
        }
    }

    /// [`Estate::start_all`] for the usual pair, then waits until plant-a's link to idmz is
    /// `normal`.
    pub async fn start_linked(&self) {
        self.start_all().await;
        let linked = self
            .cluster
            .wait_gate("plant-a", "idmz", "normal", Duration::from_secs(20))
            .await;
        assert!(linked.is_some(), "the pair links");
    }

    /// Traffic both ways between plant-a and idmz: a producer in each toward the other, every
    /// 20 ms, and a consumer `mes` in each.
    pub fn traffic_both_ways(&self) -> Traffic {
        let mut traffic = Traffic::default();
        for (zone, peer) in [("plant-a", "idmz"), ("idmz", "plant-a")] {
            traffic.produce(self.cluster.options(zone), zone, peer, Duration::from_millis(20));
            traffic.consume(self.cluster.options(zone), zone, "mes");
        }
        traffic
    }

    pub async fn wait_ready(&self, zone: &str) {
        super::observe::wait_until(Duration::from_secs(30), &format!("{zone} is ready"), || {
            self.cluster.readyz(zone) == 200
        })
        .await;
    }

    pub fn host(&self, zone: &str) -> &Path {
        &self.hosts[zone]
    }

    /// Runs a step of `drill` on its host; fails the test unless it exits 0. Its output.
    pub fn run(&self, drill: &Drill, step: &str) -> String {
        let output = self.attempt(drill, step);
        assert!(
            output.status.success(),
            "drill {} step {step} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            drill.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a step of `drill` on its host, whatever its exit status.
    pub fn attempt(&self, drill: &Drill, step: &str) -> Output {
        let block = drill.step(step);
        self.ran.borrow_mut().push(step.to_owned());
        let script = format!("{}\n{}", drill.prelude, block.script);
        println!("== drill {} step {step} on {}:\n{}", drill.name, block.on, block.script);
        let output = self
            .command(&block.on, &self.rewrite(&block.on, &script))
            .output()
            .expect("bash");
        println!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Fails the test unless every step of `drill` was run.
    pub fn assert_ran_every_step(&self, drill: &Drill) {
        let ran = self.ran.borrow();
        let missed: Vec<String> = drill.step_ids().into_iter().filter(|s| !ran.contains(s)).collect();
        assert!(
            missed.is_empty(),
            "steps of drill {} that no test ran: {missed:?}",
            drill.name
        );
    }

    /// Runs `script` (the test's own doing, not the guide's) on `zone`'s host.
    pub fn shell(&self, zone: &str, script: &str) -> String {
        let output = self.command(zone, script).output().expect("bash");
        assert!(
            output.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn command(&self, zone: &str, script: &str) -> Command {
        let root = &self.hosts[zone];
        let mut command = Command::new("bash");
        command.args(["-euo", "pipefail", "-c", script]).current_dir(root);
        let path = format!(
            "{}:{}",
            root.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command
            .env("PATH", path)
            .env("DRILL_HOST", root)
            .env("DRILL_BSFG", bin())
            .env("DRILL_CONFIG", root.join("etc/bsfg/bsfg.toml"))
            .env("DRILL_JOURNAL", self.cluster.dir().join(format!("{zone}.log")));
        for (name, value) in self.environment(zone) {
            command.env(name, value);
        }
        command
    }

    /// The variables of the guide's host environment block, with this host's values.
    fn environment(&self, zone: &str) -> Vec<(String, String)> {
        let options = self.cluster.net.client(zone, CLIENT).expect("client");
        let known: BTreeMap<&str, String> = [
            ("BSFG_ADMIN", format!("http://{}", self.cluster.admin(zone))),
            (
                "BSFG_ADMIN_TOKEN_FILE",
                self.hosts[zone].join("etc/bsfg/admin.token").display().to_string(),
            ),
            ("BSFG_NODE", options.node.clone()),
            ("BSFG_SERVER_NAME", options.server_name.clone()),
            ("BSFG_CA", options.ca.display().to_string()),
            ("BSFG_CERT", options.cert.display().to_string()),
            ("BSFG_KEY", options.key.display().to_string()),
        ]
        .into();
        env_names()
            .into_iter()
            .map(|name| {
                let value = known
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("the guide exports {name}, which the drills do not know"));
                (name, value.clone())
            })
            .collect()
    }

    /// The guide's paths, moved to the host's directories.
    fn rewrite(&self, zone: &str, script: &str) -> String {
        let root = &self.hosts[zone];
        let pki = self.cluster.net.pki.display().to_string();
        let paths = [
            ("/etc/bsfg/pki", pki),
            ("/etc/bsfg", root.join("etc/bsfg").display().to_string()),
            ("/var/lib/bsfg", root.join("var/lib/bsfg").display().to_string()),
            ("/var/tmp", root.join("var/tmp").display().to_string()),
            ("/srv/backup/bsfg", root.join("backup").display().to_string()),
        ];
        paths
            .iter()
            .fold(script.to_owned(), |text, (from, to)| text.replace(from, to))
    }
}

impl Drop for Estate {
    fn drop(&mut self) {
        for root in self.hosts.values() {
            if let Ok(pid) = std::fs::read_to_string(root.join("run/bsfg.pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
    }
}

/// The names the guide's `drill=env` block exports.
fn env_names() -> Vec<String> {
    let env: Vec<Block> = blocks()
        .into_iter()
        .filter_map(|(_, b)| b)
        .filter(|b| b.drills.iter().any(|d| d == "env"))
        .collect();
    env.iter()
        .flat_map(|b| b.script.lines())
        .filter_map(|l| l.trim().strip_prefix("export "))
        .flat_map(|l| {
            l.split_whitespace()
                .filter_map(|a| a.split_once('=').map(|(n, _)| n.to_owned()))
        })
        .collect()
}

fn write_shims(dir: &Path) {
    // `bsfg` is the binary under test.
    std::os::unix::fs::symlink(bin(), dir.join("bsfg")).expect("bsfg on the host's PATH");
    for (name, text) in [
        ("systemctl", SYSTEMCTL),
        ("journalctl", JOURNALCTL),
        ("sudo", "#!/usr/bin/env bash\nexec \"$@\"\n"),
        ("chown", CHOWN),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("shim");
        let chmod = Command::new("chmod").arg("+x").arg(&path).status().expect("chmod");
        assert!(chmod.success());
    }
}

const SYSTEMCTL: &str = r#"#!/usr/bin/env bash
# systemctl for the one unit of a drill host, bsfg: the node as a background process.
set -u
pidfile="$DRILL_HOST/run/bsfg.pid"
running() {
  [ -f "$pidfile" ] || return 1
  local state; state=$(awk '{print $3}' "/proc/$(cat "$pidfile")/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
stop() {
  running || return 0
  kill -TERM "$(cat "$pidfile")"
  for _ in $(seq 450); do running || return 0; sleep 0.1; done
  kill -KILL "$(cat "$pidfile")"
}
start() {
  running && return 0
  nohup "$DRILL_BSFG" serve --config "$DRILL_CONFIG" >>"$DRILL_JOURNAL" 2>&1 </dev/null &
  echo $! >"$pidfile"
}
action=""
for arg in "$@"; do case "$arg" in -*) ;; *) [ -z "$action" ] && action="$arg" ;; esac; done
case "$action" in
  start|enable) start ;;
  stop) stop ;;
  restart) stop; start ;;
  reload) kill -HUP "$(cat "$pidfile")" ;;
  kill) sig=TERM; for arg in "$@"; do case "$arg" in --signal=*) sig="${arg#--signal=}" ;; esac; done
        if running; then kill -s "${sig#SIG}" "$(cat "$pidfile")"; fi ;;
  is-active) if running; then echo active; else echo failed; exit 3; fi ;;
  status) if running; then echo "bsfg.service: active (running), main PID $(cat "$pidfile")"; else echo "bsfg.service: failed"; exit 3; fi ;;
  reset-failed|daemon-reload) ;;
  *) echo "systemctl (drill host): $action is not supported" >&2; exit 1 ;;
esac
"#;

const JOURNALCTL: &str = r#"#!/usr/bin/env bash
# journalctl for a drill host: the unit's journal is its output file. Knows -n N and -p err|warning;
# --since, -b, -u and -o select everything the unit wrote during the drill.
set -u
n=""; priority=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift ;;
    -p) priority="$2"; shift ;;
    --since|--until|-u|-o) shift ;;
  esac
  shift
done
lines() { if [ -n "$n" ]; then tail -n "$n" "$DRILL_JOURNAL"; else cat "$DRILL_JOURNAL"; fi; }
case "$priority" in
  "") lines ;;
  err|3) lines | grep -E '"level":"(error|critical)"|^error: ' || true ;;
  warning|4) lines | grep -E '"level":"(warning|error|critical)"|^error: ' || true ;;
esac
"#;

const CHOWN: &str = r#"#!/usr/bin/env bash
# chown on a drill host: the installation's user and group (bsfg) may not exist here.
/usr/bin/chown "$@" 2>/dev/null || true
"#;
