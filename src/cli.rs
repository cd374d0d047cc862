//! Command-line interface (SPEC §8): every subcommand and its options, with environment-variable
//! fallbacks for the connection settings.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "bsfg", version, about = "Bidirectional Store-and-Forward Gateway", long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line, with the checks clap cannot express; a usage error exits 2.
    pub fn parse_checked() -> Self {
        let cli = Self::parse();
        let checked = match &cli.command {
            Command::Append(args) => args.check(),
            _ => Ok(()),
        };
        if let Err(message) = checked {
            Self::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
        cli
    }
}

const LONG_ABOUT: &str = "Bidirectional Store-and-Forward Gateway: one node per network zone. Producers append facts \
to their local node, which makes them durable and acknowledges at once; the node of the destination zone pulls them over \
QUIC with mutual TLS and stores each exactly once for its local consumers.\n\nExit codes: 0 ok, 1 permanent error, \
2 usage, 75 retryable error (retry later). Errors are printed to stderr as `error: CODE: message`.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. SIGTERM or Ctrl-C drains it and stops it cleanly (exit 0); SIGHUP reloads its
    /// TLS material and its client list.
    Serve {
        /// The node's TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Preflight: checks a node's configuration, certificate (and CRL), data directory, disk
    /// space and listen ports as `serve` would find them, without changing anything; one line
    /// per check (`ok`, `warn`, `FAIL`). Exits 0 when nothing failed, 1 otherwise. Run it as the
    /// node's user, with the node stopped (its own ports are in use while it runs).
    Check {
        /// The node's TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Also handshake with every peer this node dials (mutual TLS, the node's certificate).
        #[arg(long)]
        peers: bool,
        /// One JSON object {"ok", "checks": [{"check", "status", "detail"}]} instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Development and test PKI: a CA and certificates for zones and clients.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// A stopped node's storage: going on without damaged data.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Append facts to the node's store buffer: one from flags, or many from JSON lines, stored in
    /// file order unless --unordered.
    ///
    /// Appending is idempotent on the message id: the same id with the same content (the send
    /// time `produced_at_unix_ms` aside) answers the original offset with "duplicate": true; the
    /// same id with other content fails with ALREADY_EXISTS, naming the original offset.
    Append(AppendArgs),
    /// Fetch facts from the node's forward buffer under a durable consumer name; prints JSON lines.
    Fetch {
        #[command(flatten)]
        conn: ConnArgs,
        /// Durable consumer name; its confirmed position survives restarts.
        #[arg(long)]
        consumer: String,
        /// The most facts to return, 1 to 10 000 (what the node serves at most); fewer when they
        /// would not fit in one frame.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Wait this long for the first fact when none is ready.
        #[arg(long, default_value_t = 0)]
        max_wait_ms: u32,
        /// Read after this offset instead of the consumer's confirmed position.
        #[arg(long)]
        after: Option<u64>,
    },
    /// Confirm receipt up to OFFSET for a consumer (its cursor never moves back).
    Confirm {
        #[command(flatten)]
        conn: ConnArgs,
        /// Durable consumer name, as given to fetch.
        #[arg(long)]
        consumer: String,
        /// The offset of the last fact processed: it and every fact before it are confirmed, and
        /// the next fetch starts after it. An offset past the last stored fact is refused.
        #[arg(long)]
        offset: u64,
    },
    /// Store FILE as an artifact on the node; prints its reference as JSON
    /// `{bucket, key, digest, size, media_type, file_name}`: the `object_json` of a fact that
    /// references it (append it with `--object-media-type`). Identical content under the same key
    /// is a no-op; other content under a key a fact references fails with ALREADY_EXISTS. A file
    /// whose length changes while it is sent fails (exit 1, no reference printed): put it once
    /// it is complete.
    PutObject(PutObjectArgs),
    /// Read an artifact from the node into FILE (written only once its digest is verified), or to
    /// stdout (verified at the end: a mismatch exits 1 after the bytes were written).
    GetObject(GetObjectArgs),
    /// The node's status from its admin API: zone, drain, certificate, one row per peer (gate
    /// state, frontier, backlog, lag) and per consumer (cursor, backlog, lag).
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the JSON of `GET /v1/status` instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Operate the node through its admin API; prints the node's JSON answer. Needs the token
    /// file when the node has `admin.token_file`.
    Admin {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Where a fact is on the node: in its store buffer (produced here: its offset, destination,
    /// age, and whether the destination confirmed it), in its forward buffer (received: its offset
    /// here and at the sender, and which consumers confirmed it), or unknown. Without
    /// --from-zone the node's own zone is tried first, then each of its peers, then the zones its
    /// [[routes]] reach. Prints the node's
    /// JSON (`GET /v1/trace/{from_zone}/{message_id}`). Run it against each zone's node to follow a
    /// fact from its producer to its consumers.
    Trace {
        #[command(flatten)]
        admin: AdminArgs,
        /// The fact's message id (its envelope's `message_id`).
        #[arg(long)]
        message_id: String,
        /// The zone the fact was produced in (its envelope's `from_zone`).
        #[arg(long, value_parser = zone_name)]
        from_zone: Option<String>,
    },
    /// Manage the consumers of the node's forward buffer (admin API; changes are audited).
    Consumers {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: ConsumersAction,
    },
    /// Load generator: measures the performance bars on real nodes on loopback.
    ///
    /// Starts `enterprise` and `plant-a` nodes (real processes, RocksDB with fsync'd group
    /// commit, QUIC with mutual TLS; a generated dev PKI), appends facts into `enterprise`
    /// addressed to `plant-a` from `--producers` connections with `--concurrency` calls in flight
    /// each, and measures by `--mode`: `append` (durable appends alone; the peer is not started),
    /// `replicate` (a consumer in `plant-a` fetches and confirms; end-to-end latency from
    /// `produced_at_unix_ms`), `relay` (as replicate, with `enterprise` reaching `plant-a` only
    /// through a relaying `idmz` node: two hops), `replay` (a backlog appended during a partition, then healed:
    /// reconnect and replay times), `startup` (a filled node restarted after kill -9 and after
    /// SIGTERM: spawn to `/readyz` 200). Every mode reports each node's peak RSS and CPU seconds
    /// and the generator's own. Nodes log at `warning` with the audit log off unless told
    /// otherwise. A progress bar on a terminal's stderr; a table on stdout, or JSON with `--json`.
    Bench(crate::commands::bench::BenchArgs),
    /// A guided tour: two zones on loopback, traffic both ways, a partition and its heal, live.
    ///
    /// Starts two real nodes, `enterprise` and `plant-a`, with a generated dev PKI; each reaches
    /// the other through a fault-injecting UDP proxy. In each zone a producer appends facts
    /// addressed to the other zone at a steady rate and a consumer fetches and confirms what
    /// arrives, while a live status shows each zone's gate, backlog and delivery rate.
    ///
    /// The story: link up (5 s; gates `normal`), partition (12 s; producers keep getting
    /// acknowledgements, backlogs grow, gates go `autonomous`), heal (the backlog replays through
    /// `reconciliation` back to `normal`). Then the producers stop and the demo checks that every
    /// acknowledged fact arrived exactly once and in the order it was appended, prints a summary
    /// and the directory with the configs, data and node logs. About 30 s (`--fast`: about 15 s).
    /// Exits 1 if any acknowledged fact was lost, duplicated or reordered.
    ///
    /// `--estate` tours the reference estate instead: enterprise, idmz (the industrial DMZ) and
    /// plants plant-a and plant-b, where the enterprise and the plants reach each other only
    /// through idmz, which relays. Producers on the four flows enterprise ↔ plant-a, plant-b; the
    /// partition cuts the plant-a leg alone (plant-b's flows go on); the status per hop shows
    /// what waits where; the summary proves every fact arrived exactly once at its final zone and
    /// nowhere else (the DMZ included).
    Demo(crate::commands::demo::DemoArgs),
    /// Print a shell completion script, generated from this command line.
    ///
    /// bash: `bsfg completions bash > /usr/share/bash-completion/completions/bsfg` (or
    /// `source <(bsfg completions bash)`); zsh: save as `_bsfg` in a directory of `$fpath`;
    /// fish: `bsfg completions fish > ~/.config/fish/completions/bsfg.fish`. The Debian package
    /// installs the bash, zsh and fish scripts.
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page bsfg(1) (roff), generated from this command line: `bsfg man | man -l -`.
    ///
    /// With --dir, writes bsfg.1 and one page per subcommand (bsfg-serve.1, bsfg-admin-drain.1,
    /// ...) into DIR instead, as the Debian package installs them.
    Man {
        /// Write every page into this directory instead of printing bsfg(1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Go on without damaged data, once the node refused to start over a damaged write-ahead
    /// log or reported damaged data (`storage_damaged`, `/readyz` 503). Stop the node first.
    ///
    /// Keeps everything still readable (a copy of the database next to it, swapped in at the
    /// end), leaves out the damaged facts and their index entries (a producer or peer that sends
    /// one again is taken as new), records the lost offset ranges and who accepted them in the
    /// data directory (`/v1/status` and the node's start-up log show them), and moves the damaged
    /// files into `damaged-<time>/` in the data directory. Prints one JSON line saying what was
    /// lost: the audit of this action. With nothing damaged, changes nothing.
    AcceptLoss {
        /// The node's TOML configuration file (for `node.data_dir` and `node.zone`).
        #[arg(long)]
        config: PathBuf,
    },
}

/// Validity in days that `pki` takes: up to a century (dates past the year 9999 cannot be
/// written in a certificate).
const DAYS: std::ops::RangeInclusive<i64> = 1..=36_500;

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create (or reuse) a CA in DIR and issue certificates for zones and clients.
    Init {
        /// Directory for the CA (ca.pem, ca.key) and one NAME.pem and NAME.key per certificate;
        /// created (mode 0700) if missing. A CA already there is reused.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Zone names, comma-separated: one node certificate each (CN = zone).
        #[arg(long, value_delimiter = ',', required = true)]
        zones: Vec<String>,
        /// Client identities, comma-separated: one client certificate each (CN = identity).
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        /// Validity of the issued certificates, in days (1 to 36 500).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(DAYS))]
        days: u32,
    },
    /// Revoke certificates of the CA in DIR: (re)writes DIR/ca.crl, signed by DIR/ca.key, with
    /// the certificates revoked before and those given now. Without --cert it only refreshes
    /// the list (a node refuses a list past its nextUpdate). Install it where `[tls] crl`
    /// points, then reload every node. Prints {"crl", "revoked", "added", "next_update"}.
    Revoke {
        /// Directory of the CA (as made by `pki init`): its ca.pem and ca.key sign DIR/ca.crl.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A certificate (PEM) to revoke; repeatable.
        #[arg(long = "cert", value_name = "FILE")]
        certs: Vec<PathBuf>,
        /// Days until the list's nextUpdate (1 to 36 500).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(DAYS))]
        days: u32,
    },
}

/// How to reach a node's admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The node's admin listener (`listen.admin`), as http://HOST:PORT.
    #[arg(
        long = "admin",
        value_name = "URL",
        env = "BSFG_ADMIN",
        default_value = "http://127.0.0.1:9180",
        global = true
    )]
    pub url: String,
    /// The file with the node's bearer token (a copy of its `admin.token_file`), sent with every call.
    #[arg(long, value_name = "FILE", env = "BSFG_ADMIN_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// Stop accepting client calls (they get UNAVAILABLE) and wait up to 30 s for those in
    /// flight; replication goes on. Prints {"drained", "in_flight"}.
    Drain,
    /// Accept client calls again.
    Resume,
    /// Reload now (like SIGHUP): the certificate, key, CA and CRL, and the config file's
    /// [[clients]]. Prints the certificate in use, the clients added, removed or changed, and
    /// the sections that changed but need a restart (`restart_needed`); a refused file exits 1
    /// with the reason, and nothing changes.
    Reload,
    /// On the active instance of an HA zone: stop writing, release the zone's lease and leave it
    /// to a standby for one lease TTL (rolling upgrades). Clients with an address list move on.
    /// Exits 1 on a single node or a standby.
    StepDown,
    /// Isolate PEER: close the link to it and refuse its calls; facts for it wait here.
    GateClose {
        /// The peer's zone, as configured in `[[peers]]`.
        #[arg(value_parser = zone_name)]
        peer: String,
    },
    /// Let PEER's link come back after a gate-close.
    GateOpen {
        /// The peer's zone, as configured in `[[peers]]`.
        #[arg(value_parser = zone_name)]
        peer: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConsumersAction {
    /// Every consumer with its cursor, backlog and lag (JSON).
    List,
    /// Forget a consumer that is gone for good: its cursor, its metric series, and its hold on
    /// forward facts (which can then be reclaimed). A consumer that fetches again starts over at
    /// the oldest retained fact.
    Delete {
        /// The consumer name its application uses.
        name: String,
    },
    /// Move a consumer's cursor back to OFFSET: the facts after it that are still retained are
    /// delivered again (facts already reclaimed are gone). Stop the consumer's application first.
    Rewind {
        /// The consumer name its application uses.
        name: String,
        /// The new cursor: the next fetch starts after this offset.
        #[arg(long)]
        to_offset: u64,
    },
}

/// `KEY=VALUE` with a non-empty key, split at the first `=`.
/// A message id given on the command line: not empty (an empty variable would otherwise turn into
/// a random id, and a retry into a second fact).
fn message_id(text: &str) -> Result<String, String> {
    match text.is_empty() {
        true => Err("a message id is 1 to 256 bytes; leave the flag out for a random one".to_owned()),
        false => Ok(text.to_owned()),
    }
}

fn label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// A zone name as the configuration accepts it (it becomes part of a URL path).
fn zone_name(name: &str) -> Result<String, String> {
    use serde::{
        de::{value::StrDeserializer, IntoDeserializer},
        Deserialize,
    };
    let name: StrDeserializer<'_, serde::de::value::Error> = name.into_deserializer();
    crate::config::Zone::deserialize(name)
        .map(|zone| zone.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// How to reach a node as a client.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// The node's QUIC address, HOST:PORT; for an HA zone, every instance's, comma-separated
    /// (a:9443,b:9443): the client moves on to the next after a lost connection or a standby's
    /// UNAVAILABLE, for up to 15 s.
    #[arg(long, env = "BSFG_NODE")]
    pub node: String,
    /// CA certificate (PEM) that signed the node's certificate.
    #[arg(long, env = "BSFG_CA")]
    pub ca: PathBuf,
    /// This client's certificate (PEM); its CN is the client identity.
    #[arg(long, env = "BSFG_CERT")]
    pub cert: PathBuf,
    /// This client's private key (PEM).
    #[arg(long, env = "BSFG_KEY")]
    pub key: PathBuf,
    /// The node's zone; the node's certificate CN must equal it.
    #[arg(long, env = "BSFG_SERVER_NAME")]
    pub server_name: String,
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// JSON lines file (or - for stdin), one {"envelope": {...}, "fact": {...}} per line; blank
    /// lines are skipped.
    ///
    /// Lines are sent in AppendFacts calls of up to 1024 lines (and 1 MiB; a call over the node's
    /// limits.max_frame_bytes is sent again in halves); one call is in flight
    /// at a time, so the lines are stored in file order (see --unordered). Prints one summary line
    /// {"appended", "duplicates", "first_offset", "last_offset"}. The first failing line stops the
    /// run: it is reported on stderr with its line number and code, and nothing after it is
    /// stored. Give every line a message_id: running the file again after a failure then stores
    /// each line once (its produced_at_unix_ms may differ; the send time is not content).
    /// SIGTERM or SIGINT stops the sending: the calls in flight are answered, the summary is
    /// printed, and the command exits 75 naming the last line sent (every line up to it is
    /// stored, none after it); a second signal stops waiting. After the whole input was sent a
    /// signal changes nothing: the answers finish the run, which exits as it would have.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to", "subject", "predicate", "object_json"])]
    pub jsonl: Option<String>,
    /// Destination zone.
    #[arg(long, required_unless_present = "jsonl")]
    pub to: Option<String>,
    /// What the fact is about, e.g. batch/42.
    #[arg(long, required_unless_present = "jsonl")]
    pub subject: Option<String>,
    /// What happened to the subject, e.g. completed.
    #[arg(long, required_unless_present = "jsonl")]
    pub predicate: Option<String>,
    /// The object, as JSON text.
    #[arg(long, required_unless_present = "jsonl")]
    pub object_json: Option<String>,
    /// Idempotency key; a random one is chosen when omitted (and named in a retryable error, to
    /// retry with). The same key with the same content (the send time aside) is a duplicate: the
    /// original offset, "duplicate": true, exit 0.
    #[arg(long, conflicts_with = "jsonl", value_parser = message_id)]
    pub message_id: Option<String>,
    /// A label, KEY=VALUE (a non-empty key; the value may be empty); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label, conflicts_with = "jsonl")]
    pub labels: Vec<(String, String)>,
    /// Marks the fact as referencing an artifact: --object-json must then be an artifact
    /// reference {bucket, key, digest, size, media_type, file_name?} (as printed by put-object)
    /// of an artifact stored on the node.
    #[arg(long, conflicts_with = "jsonl")]
    pub object_media_type: Option<String>,
    /// Schema of the object (an envelope field, passed through unchanged).
    #[arg(long, conflicts_with = "jsonl")]
    pub object_schema: Option<String>,
    /// With --jsonl: give up file order for throughput. Several calls are in flight
    /// (--concurrency) and their lines may be stored in any order.
    ///
    /// When a line fails, no new call is sent, but the calls already in flight complete: lines
    /// after the failing one may be stored too (at most --concurrency calls of 1024 lines), and
    /// the summary counts them. Every line before the reported one is stored.
    #[arg(long, requires = "jsonl")]
    pub unordered: bool,
    /// AppendFacts calls in flight at once with --unordered (default 4). In file order one call
    /// is in flight; only 1 is accepted without --unordered.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
}

impl AppendArgs {
    /// Calls of `--jsonl` in flight at once.
    pub fn calls_in_flight(&self) -> usize {
        match (self.unordered, self.concurrency) {
            (true, Some(n)) => usize::from(n),
            (true, None) => 4,
            (false, _) => 1,
        }
    }

    /// What clap cannot check: more than one call in flight needs `--unordered`.
    fn check(&self) -> Result<(), String> {
        match self.concurrency {
            Some(n) if n > 1 && !self.unordered => Err(format!(
                "--concurrency {n} needs --unordered: in file order one call is in flight at a time"
            )),
            _ => Ok(()),
        }
    }
}

/// Where an artifact lives, and how to reach its node. `--key` names the object here (SPEC §8),
/// so the TLS private key is `--tls-key` (or `BSFG_KEY`).
#[derive(Debug, Args)]
#[command(mut_arg("key", |tls_key| tls_key.long("tls-key").value_name("FILE")))]
pub struct ObjectArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Bucket name: [a-z0-9][a-z0-9.-]{0,62}.
    #[arg(long)]
    pub bucket: String,
    /// The object's key within the bucket (1..=1024 bytes of text).
    #[arg(id = "object_key", long = "key", value_name = "KEY")]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct PutObjectArgs {
    #[command(flatten)]
    pub object: ObjectArgs,
    /// Media type kept with the artifact and written into its reference.
    #[arg(long, default_value = "application/octet-stream")]
    pub media_type: String,
    /// A regular file (its size is announced before its bytes).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct GetObjectArgs {
    #[command(flatten)]
    pub object: ObjectArgs,
    /// Write the artifact here and print its metadata as JSON; without it the bytes go to stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn pki_days_out_of_range_are_refused_naming_the_value() {
        for args in [
            ["bsfg", "pki", "init", "--dir", "d", "--zones", "a", "--days", "3000000"].as_slice(),
            &["bsfg", "pki", "revoke", "--dir", "d", "--days", "0"],
        ] {
            let error = Cli::try_parse_from(args).expect_err("out of range").to_string();
            assert!(error.contains("--days") && error.contains("1..=36500"), "{error}");
        }
        assert!(Cli::try_parse_from(["bsfg", "pki", "init", "--dir", "d", "--zones", "a", "--days", "36500"]).is_ok());
    }

    #[test]
    fn a_label_that_is_not_key_value_is_a_usage_error_naming_it() {
        let append = |label: &str| {
            let conn = "--node [::1]:1 --ca ca --cert c --key k --server-name z";
            let fact = "--to plant-a --subject s --predicate p --object-json {}";
            let args = format!("bsfg append {conn} {fact} --label");
            Cli::try_parse_from(args.split(' ').chain([label]))
        };
        for bad in ["line", "=3"] {
            let error = append(bad).expect_err("not KEY=VALUE");
            assert_eq!(error.exit_code(), 2, "a usage error");
            assert!(
                error.to_string().contains(&format!("{bad:?} is not KEY=VALUE")),
                "{error}"
            );
        }
        let empty = append("line=").map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(empty, Ok(()), "an empty value is a value");
    }

    /// `--limit 0` used to return one fact, as the node clamps a page to at least one.
    #[test]
    fn a_fetch_limit_outside_what_the_node_serves_is_a_usage_error() {
        let fetch = |limit: &str| {
            let conn = "--node [::1]:1 --ca ca --cert c --key k --server-name z";
            let args = format!("bsfg fetch {conn} --consumer mes --limit {limit}");
            Cli::try_parse_from(args.split(' '))
        };
        for bad in ["0", "10001"] {
            let error = fetch(bad).expect_err("out of range");
            assert_eq!(error.exit_code(), 2, "a usage error: {error}");
            assert!(error.to_string().contains("--limit"), "{error}");
        }
        assert!(fetch("10000").is_ok() && fetch("1").is_ok());
    }

    #[test]
    fn jsonl_takes_no_flag_of_a_single_fact() {
        let conn = "--node [::1]:1 --ca ca --cert c --key k --server-name z";
        for flag in [
            "--message-id wo-7",
            "--label batch=7",
            "--object-schema s",
            "--to plant-a",
        ] {
            let args = format!("bsfg append {conn} --jsonl lines.jsonl {flag}");
            let error = Cli::try_parse_from(args.split(' ')).expect_err("the lines carry their own");
            assert_eq!(error.exit_code(), 2, "a usage error: {error}");
            let name = flag.split(' ').next().unwrap_or_default();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
