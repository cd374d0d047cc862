//! Command-line interface (SPEC §8): every subcommand and its options, with environment-variable
//! fallbacks for the connection settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "bsfg", version, about = "Bidirectional Store-and-Forward Gateway", long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const LONG_ABOUT: &str = "Bidirectional Store-and-Forward Gateway: one node per network zone. Producers append facts \
to their local node, which makes them durable and acknowledges at once; the node of the destination zone pulls them over \
QUIC with mutual TLS and stores each exactly once for its local consumers.\n\nExit codes: 0 ok, 1 permanent error, \
2 usage, 75 retryable error (retry later). Errors are printed to stderr as `error: CODE: message`.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. SIGTERM or Ctrl-C stops it cleanly (exit 0).
    Serve {
        /// The node's TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Development and test PKI: a CA and certificates for zones and clients.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Append facts to the node's store buffer (one from flags, or many from JSON lines).
    Append(AppendArgs),
    /// Fetch facts from the node's forward buffer under a durable consumer name; prints JSON lines.
    Fetch {
        #[command(flatten)]
        conn: ConnArgs,
        /// Durable consumer name; its confirmed position survives restarts.
        #[arg(long)]
        consumer: String,
        #[arg(long, default_value_t = 100)]
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
        #[arg(long)]
        consumer: String,
        #[arg(long)]
        offset: u64,
    },
    /// Store FILE as an artifact on the node; prints its reference as JSON
    /// `{bucket, key, digest, size, media_type, file_name}`: the `object_json` of a fact that
    /// references it (append it with `--object-media-type`). Identical content under the same key
    /// is a no-op; other content under a key a fact references fails with ALREADY_EXISTS.
    PutObject(PutObjectArgs),
    /// Read an artifact from the node into FILE (written only once its digest is verified), or to
    /// stdout (verified at the end: a mismatch exits 1 after the bytes were written).
    GetObject(GetObjectArgs),
    /// Load generator: two zones on loopback, durable appends in one, replication to the other;
    /// prints a JSON report with throughput and end-to-end latency.
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
    /// acknowledged fact arrived exactly once, prints a summary and the directory with the
    /// configs, data and node logs. About 30 s (`--fast`: about 15 s). Exits 1 if any
    /// acknowledged fact was lost or duplicated.
    Demo(crate::commands::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create (or reuse) a CA in DIR and issue certificates for zones and clients.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Zone names, comma-separated: one node certificate each (CN = zone).
        #[arg(long, value_delimiter = ',', required = true)]
        zones: Vec<String>,
        /// Client identities, comma-separated: one client certificate each (CN = identity).
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        /// Validity of the issued certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// How to reach a node as a client.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// The node's QUIC address, HOST:PORT.
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
    /// JSON lines file (or - for stdin), one {"envelope": {...}, "fact": {...}} per line.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to", "subject", "predicate", "object_json"])]
    pub jsonl: Option<String>,
    /// Destination zone.
    #[arg(long, required_unless_present = "jsonl")]
    pub to: Option<String>,
    #[arg(long, required_unless_present = "jsonl")]
    pub subject: Option<String>,
    #[arg(long, required_unless_present = "jsonl")]
    pub predicate: Option<String>,
    /// The object, as JSON text.
    #[arg(long, required_unless_present = "jsonl")]
    pub object_json: Option<String>,
    /// Idempotency key; a random one is chosen when omitted.
    #[arg(long)]
    pub message_id: Option<String>,
    /// A label, KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Marks the fact as referencing an artifact: --object-json must then be an artifact
    /// reference {bucket, key, digest, size, media_type, file_name?} (as printed by put-object)
    /// of an artifact stored on the node.
    #[arg(long, conflicts_with = "jsonl")]
    pub object_media_type: Option<String>,
    /// Schema of the object (an envelope field, passed through unchanged).
    #[arg(long, conflicts_with = "jsonl")]
    pub object_schema: Option<String>,
    /// Appends in flight at once with --jsonl; 1 stores the lines in file order.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
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
