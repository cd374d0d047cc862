//! The `bsfg` binary: parses the command line and runs one command. Errors end here: printed as
//! `error: CODE: message` with exit code 1 (permanent) or 75 (retryable); usage errors exit 2.

use std::process::ExitCode;

use bsfg::{cli::Cli, commands, CommandError};

fn main() -> ExitCode {
    if let Some(missing) = missing_cpu_features() {
        eprintln!(
            "error: INTERNAL: this bsfg was built for x86-64 CPUs with SSE4.2 and PCLMULQDQ (.cargo/config.toml: \
             RocksDB's checksums in hardware), and this CPU lacks {missing}; build it on this machine with \
             RUSTFLAGS=\"-C target-cpu=native\" instead"
        );
        return ExitCode::from(1);
    }
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

/// The CPU features this build assumes (`.cargo/config.toml`) that this CPU lacks, checked before
/// anything else runs so that an older CPU gets a message rather than an illegal instruction.
fn missing_cpu_features() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        let missing: Vec<&str> = [
            (
                "sse4.2",
                cfg!(target_feature = "sse4.2") && !std::arch::is_x86_feature_detected!("sse4.2"),
            ),
            (
                "pclmulqdq",
                cfg!(target_feature = "pclmulqdq") && !std::arch::is_x86_feature_detected!("pclmulqdq"),
            ),
        ]
        .into_iter()
        .filter_map(|(name, lacking)| lacking.then_some(name))
        .collect();
        (!missing.is_empty()).then(|| missing.join(" and "))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}
