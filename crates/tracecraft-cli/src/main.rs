//! `tracecraft`: the TraceCraft command line.
//!
//! One module per subcommand under `cmd/`; each exposes `Args` (clap) and
//! `run(args) -> Result<(), CliError>`. Errors print as one line on stderr, exit code 2.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_macros)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// TraceCraft: security-first tracing for LLM agents.
#[derive(Debug, Parser)]
#[command(name = "tracecraft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Redact secrets and PII from stdin (text, or JSON lines with --jsonl) to stdout.
    Redact(cmd::redact::Args),
    /// Import AgentRun JSONL through the pipeline (enrich, redact, sample) into stores or stdout.
    Import(cmd::import::Args),
    /// Query and manage stored traces: list, show, rm, purge, stats.
    Traces(cmd::traces::Args),
    /// Look into, re-send or empty an OTLP spool directory: status, flush, drop.
    Spool(cmd::spool::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Redact(args) => cmd::redact::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Traces(args) => cmd::traces::run(args),
        Command::Spool(args) => cmd::spool::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracecraft: {e}");
            ExitCode::from(2)
        }
    }
}
