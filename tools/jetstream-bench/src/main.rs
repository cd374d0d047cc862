//! `bsfg-jetstream-bench`: the JetStream side of `scripts/bench-vs-jetstream.sh`.
//!
//! - `run` drives two already started NATS servers (zone A the hub, zone B a leafnode) with the
//!   workloads of `bsfg bench` (`append`, `replicate`) and prints a report with the same fields.
//! - `compare` prints bsfg's and JetStream's reports side by side with the ratios.

mod compare;
mod connect;
mod consume;
mod load;
mod payload;
mod procstat;
mod report;
mod run;
mod setup;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure one workload against running servers.
    Run(Box<run::RunArgs>),
    /// Print reports side by side with ratios.
    Compare(compare::CompareArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = runtime.block_on(run::run(&args))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.summary());
            }
        }
        Command::Compare(args) => {
            let columns = args
                .columns
                .iter()
                .map(compare::Column::read)
                .collect::<anyhow::Result<Vec<_>>>()?;
            print!("{}", compare::render(&columns, args.markdown));
        }
    }
    Ok(())
}
