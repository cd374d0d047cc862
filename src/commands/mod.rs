//! One module per command. Each returns `anyhow::Result`; a [`CommandError`] inside carries the
//! wire code and whether retrying may help, which `main` turns into the exit code.

pub mod admin;
pub mod append;
pub mod bench;
pub mod check;
pub mod consumers;
pub mod demo;
pub mod fetch;
pub mod manual;
pub mod objects;
pub mod serve;
pub mod status;
pub mod storage;
pub mod trace;

use bsfg_proto::{ErrorCode, RpcError};

use crate::{
    cli::{Command, ConnArgs, PkiCommand, StorageCommand},
    client::{Client, ClientError, ClientOptions},
};

/// An error with its wire code, for the `error: CODE: message` line and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: ErrorCode,
    pub retryable: bool,
    pub message: String,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            retryable: code.is_retryable(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
}

impl From<ClientError> for CommandError {
    fn from(error: ClientError) -> Self {
        Self {
            code: error.code(),
            retryable: error.retryable(),
            message: error.to_string(),
        }
    }
}

impl From<RpcError> for CommandError {
    fn from(error: RpcError) -> Self {
        Self {
            code: error.code,
            retryable: error.retryable,
            message: error.message,
        }
    }
}

/// Runs one command to completion.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve::run(&config),
        Command::Check { config, peers, json } => check::run(&config, peers, json),
        Command::Pki(PkiCommand::Init {
            dir,
            zones,
            clients,
            days,
        }) => {
            let summary =
                crate::pki::init(&dir, &zones, &clients, days).map_err(|e| CommandError::invalid(format!("{e:#}")))?;
            println!(
                "{}",
                serde_json::json!({"dir": summary.dir, "ca_created": summary.ca_created, "issued": summary.issued})
            );
            Ok(())
        }
        Command::Pki(PkiCommand::Revoke { dir, certs, days }) => {
            let written =
                crate::pki::revoke(&dir, &certs, days).map_err(|e| CommandError::invalid(format!("{e:#}")))?;
            let next_update = humantime::format_rfc3339_seconds(written.next_update).to_string();
            println!(
                "{}",
                serde_json::json!({"crl": written.crl, "revoked": written.revoked, "added": written.added, "next_update": next_update})
            );
            Ok(())
        }
        Command::Storage(StorageCommand::AcceptLoss { config }) => storage::accept_loss(&config),
        Command::Append(args) => client_runtime()?.block_on(append::run(args)),
        Command::Fetch {
            conn,
            consumer,
            limit,
            max_wait_ms,
            after,
        } => client_runtime()?.block_on(fetch::fetch(conn, consumer, limit, max_wait_ms, after)),
        Command::Confirm { conn, consumer, offset } => {
            client_runtime()?.block_on(fetch::confirm(conn, consumer, offset))
        }
        Command::Status { admin, json } => status::run(&admin, json),
        Command::Admin { admin, action } => admin::run(&admin, &action),
        Command::Trace {
            admin,
            message_id,
            from_zone,
        } => trace::run(&admin, &message_id, from_zone.as_deref()),
        Command::Consumers { admin, action } => consumers::run(&admin, &action),
        Command::PutObject(args) => client_runtime()?.block_on(objects::put(args)),
        Command::GetObject(args) => client_runtime()?.block_on(objects::get(args)),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Completions { shell } => manual::completions(shell),
        Command::Man { dir } => manual::man(dir.as_deref()),
    }
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Connects as a client with the command's connection arguments.
pub async fn connect(conn: &ConnArgs) -> Result<Client, CommandError> {
    let options = ClientOptions {
        node: conn.node.clone(),
        ca: conn.ca.clone(),
        cert: conn.cert.clone(),
        key: conn.key.clone(),
        server_name: conn.server_name.clone(),
    };
    Ok(Client::connect(&options).await?)
}

/// SIGTERM and SIGINT (Ctrl-C), taken over from the moment this is made: what asks a node to stop
/// (`serve`) or a long command to wind down (`append --jsonl`).
pub(crate) struct StopSignals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next one's name: `SIGTERM` or `SIGINT`.
    pub(crate) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
