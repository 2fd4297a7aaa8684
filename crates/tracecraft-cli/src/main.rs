//! `tracecraft`: the TraceCraft command line.
//!
//! One module per subcommand under `cmd/`; each exposes `Args` (clap) and
//! `run(args, &Global) -> Result<Exit, CliError>`. Errors print as one line on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_macros)]

mod cmd;
mod parallel;

/// The allocator of the binary (feature `mimalloc`, on by default): the gateway's receive and
/// processing threads allocate and free a message tree per span on different threads, where
/// glibc's malloc spent a third of the time (docs/perf/gateway.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  everything was done
  1  partly done: some lines malformed, some runs not stored or exported, nothing erased
     for an id, or findings (each cause is named once in the summary on stderr)
  2  nothing done: bad usage, bad configuration, unreadable input or store

Configuration (the same for every command and the library), in increasing precedence:
  the file (--config FILE, else $TRACECRAFT_CONFIG, else ./tracecraft.toml, else
  ./.tracecraft/config.toml), then TRACECRAFT_* / OTEL_* environment variables, then flags.
  `tracecraft config` shows the effective configuration and where each value came from.

Logging: warnings go to stderr by default; -v for info, -vv for debug, -q for errors only;
RUST_LOG (e.g. RUST_LOG=tracecraft=debug) overrides.";

/// TraceCraft: security-first tracing for LLM agents.
#[derive(Debug, Parser)]
#[command(name = "tracecraft", version, about, after_long_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct Global {
    /// The configuration file (else $TRACECRAFT_CONFIG, ./tracecraft.toml,
    /// ./.tracecraft/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr (summaries are still printed).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Redact secrets and PII from stdin (text, or JSON lines with --jsonl) to stdout.
    Redact(cmd::redact::Args),
    /// Import AgentRun JSONL through the pipeline (enrich, redact, sample) into stores, an
    /// OTLP collector, or stdout.
    Import(cmd::import::Args),
    /// Query and manage stored traces: list, show, rm, purge, stats.
    Traces(cmd::traces::Args),
    /// Show the effective configuration and where each value came from, or check a file.
    Config(cmd::config::Args),
    /// Check the deployment against the production checklist: PASS / WARN / FAIL per item
    /// with the fix; exit 1 when anything fails.
    Doctor(cmd::doctor::Args),
    /// Audit stored runs or written files for residual secrets (rule, place, byte range;
    /// never the value); --fix rewrites them redacted.
    Scan(cmd::scan::Args),
    /// Browse stored runs in a local web app: waterfalls, chat views, sessions, overview.
    Ui(cmd::ui::Args),
    /// Look into, re-send or empty an OTLP spool directory: status, flush, drop.
    Spool(cmd::spool::Args),
    /// The redacting OTLP gateway: receive spans from any OpenTelemetry SDK, redact, store,
    /// forward.
    Serve(cmd::serve::Args),
}

/// How a command that did not fail outright ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Everything was done: exit 0.
    Done,
    /// Part was done; the summary says what was not: exit 1.
    Partial,
}

fn init_logging(global: &Global) {
    use tracing_subscriber::EnvFilter;
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(default))
        }
        _ => EnvFilter::new(default),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(cmd::RedactingStderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// mimalloc asks for transparent huge pages on its arenas (`MADV_HUGEPAGE`), so the first
/// touch of each fresh 2 MiB zeroes all of it: for the batch commands (`redact`, `import`,
/// `traces`, `scan`, ...) that doubled peak RSS (`redact < corpus_dirty.txt` 73 MB -> 37 MB,
/// `import runs.jsonl` 72 MB -> 40 MB without them) for no speed. They are turned off before
/// the first allocation (parsing the command line zeroed a first 2 MiB, ~0.2 ms of a process
/// that takes 3 ms on an empty input), and on again for the long-running server, where
/// mimalloc's speed was measured. A kernel without the `prctl` leaves things as they were.
fn small_pages(on: bool) {
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    let _ = rustix::thread::disable_transparent_huge_pages(on);
    #[cfg(not(all(feature = "mimalloc", target_os = "linux")))]
    let _ = on;
}

fn main() -> ExitCode {
    small_pages(true);
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        small_pages(false);
    }
    init_logging(&cli.global);
    let result = match cli.command {
        Command::Redact(args) => cmd::redact::run(args, &cli.global),
        Command::Import(args) => cmd::import::run(args, &cli.global),
        Command::Traces(args) => cmd::traces::run(args, &cli.global),
        Command::Config(args) => cmd::config::run(args, &cli.global),
        Command::Scan(args) => cmd::scan::run(args, &cli.global),
        Command::Doctor(args) => cmd::doctor::run(args, &cli.global),
        Command::Ui(args) => cmd::ui::run(args, &cli.global),
        Command::Spool(args) => cmd::spool::run(args, &cli.global),
        Command::Serve(args) => cmd::serve::run(args, &cli.global),
    };
    match result {
        Ok(Exit::Done) => ExitCode::SUCCESS,
        Ok(Exit::Partial) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tracecraft: {}", cmd::shown(&e.to_string()));
            ExitCode::from(2)
        }
    }
}
