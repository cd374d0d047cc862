//! The `bsfg` package: command line, configuration, wiring, and the client library.
//!
//! - [`admin`]: the admin HTTP API of SPEC §10, its `/v1/status` type, and the small HTTP client
//!   of `bsfg status` and `bsfg admin`.
//! - [`cli`]: the command line of SPEC §8; [`commands`]: one module per command.
//! - [`config`]: the TOML configuration of SPEC §9, loaded once and typed.
//! - [`client`]: connect to a node and call it (used by commands, the demo and tests).
//! - [`pki`]: the development PKI behind `bsfg pki init` and `bsfg pki revoke`.
//! - [`reload`]: SIGHUP and `POST /v1/admin/reload`: TLS material and the client list.
//! - [`logging`]: JSON or text logs (SPEC §12).
//! - [`systemd`]: readiness, watchdog and status for a `Type=notify` unit.

pub mod admin;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod devnet;
pub mod logging;
pub mod pki;
pub mod reload;
pub mod systemd;

pub use commands::CommandError;
