//! `bsfg completions SHELL` and `bsfg man`: the shell completions and manual pages a host
//! installs beside the binary, generated from the clap definitions of `crate::cli`, so they name
//! exactly the commands and options this binary takes. `scripts/package-deb.sh` runs both.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

const BIN: &str = "bsfg";

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    print(&script)
}

/// Prints bsfg(1), or writes it and one page per subcommand into `dir`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    match dir {
        None => {
            let mut page = Vec::new();
            manual(command).render(&mut page)?;
            print(&page)
        }
        Some(dir) => {
            let written = write_pages(command, dir)?;
            println!("{}", serde_json::json!({ "dir": dir, "pages": written.len() }));
            Ok(())
        }
    }
}

/// The page of `command` (`bsfg`, or a subcommand such as `bsfg-admin-drain`).
fn manual(command: clap::Command) -> clap_mangen::Man {
    let title = command.get_display_name().unwrap_or(BIN).to_uppercase();
    clap_mangen::Man::new(command)
        .title(title)
        .date(page_date())
        .manual("bsfg manual")
}

/// The page's date (`.TH`; an empty one would shift the fields after it): `SOURCE_DATE_EPOCH`
/// when set, as reproducible packaging sets it to the last commit's time, else today.
fn page_date() -> String {
    // Before the year 10000, which RFC 3339 cannot write.
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&secs| secs < 253_402_300_800);
    let when = epoch.map_or_else(SystemTime::now, |secs| UNIX_EPOCH + Duration::from_secs(secs));
    humantime::format_rfc3339_seconds(when).to_string()[..10].to_owned()
}

/// Writes the page of `command` and of each of its subcommands, depth first; returns the paths.
fn write_pages(command: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(write_pages(sub.clone(), dir)?);
    }
    let man = manual(command);
    let path = man
        .generate_to(dir)
        .with_context(|| format!("writing a manual page into {}", dir.display()))?;
    written.push(path);
    Ok(written)
}

/// Writes `bytes` to stdout; a closed pipe is an error, never a panic.
fn print(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}
