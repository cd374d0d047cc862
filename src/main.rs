//! The `bsfg` binary: parses the command line and runs one command. Errors end here: printed as
//! `error: CODE: message` with exit code 1 (permanent) or 75 (retryable); usage errors exit 2.

use std::process::ExitCode;

use bsfg::{cli::Cli, commands, CommandError};

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let (code, exit) = match error.downcast_ref::<CommandError>() {
                Some(e) => (e.code.as_str(), if e.retryable { 75 } else { 1 }),
                None => ("INTERNAL", 1),
            };
            // journald files it as an error (`journalctl -p err`), as the node's own lines.
            let journal = bsfg::logging::is_journal_stream(std::path::Path::new("/proc/self/fd/2"));
            let prefix = if journal { "<3>" } else { "" };
            eprintln!("{prefix}error: {code}: {error:#}");
            ExitCode::from(exit)
        }
    }
}
