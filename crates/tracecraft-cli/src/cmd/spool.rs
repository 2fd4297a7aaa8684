//! `tracecraft spool status|flush|drop`: look into, re-send or empty an OTLP spool directory
//! (the requests an exporter could not deliver; see `tracecraft_otlp::Spool`).
//!
//! `status` and `drop` never create the directory. `flush` sends with the configured OTLP
//! exporter (`--config`, `TRACECRAFT_*` / `OTEL_EXPORTER_OTLP_*`, or `--otlp`), oldest first;
//! exit 0 when the spool ends empty, 1 when part was sent, 2 when nothing could be.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tracecraft::otlp::{Spool, SpoolConfig, SpoolStatus};

use super::{CliError, load_config};
use crate::{Exit, Global};

/// `tracecraft spool ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// What the spool holds: requests, spans, bytes, the oldest, corrupt files.
    Status {
        /// The spool directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Re-send spooled requests to the collector now, oldest first.
    Flush {
        /// The spool directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The collector (an OTLP/HTTP URL, or gRPC with --otlp-protocol grpc).
        #[arg(long, value_name = "URL")]
        otlp: Option<String>,
        /// The OTLP protocol for `--otlp`: `http/protobuf` (default), `http/json` or `grpc`.
        #[arg(long, value_name = "PROTOCOL", requires = "otlp")]
        otlp_protocol: Option<tracecraft::otlp::Protocol>,
        /// The longest the flush may take.
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        timeout: humantime::Duration,
    },
    /// Delete every spooled request (and the files set aside as corrupt).
    Drop {
        /// The spool directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

fn describe(status: &SpoolStatus) -> String {
    let oldest = status
        .oldest
        .and_then(|t| t.elapsed().ok())
        .map(|age| {
            format!(
                ", oldest {} ago",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            )
        })
        .unwrap_or_default();
    let corrupt = if status.corrupt_files > 0 {
        format!(", {} corrupt file(s) set aside", status.corrupt_files)
    } else {
        String::new()
    };
    format!(
        "{} request(s), {} span(s), {} byte(s){oldest}{corrupt}",
        status.batches, status.spans, status.bytes
    )
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let mut out = std::io::stdout().lock();
    match args.command {
        Command::Status { dir } => match Spool::open_existing(&dir)? {
            None => writeln!(
                out,
                "spool {}: does not exist (nothing spooled)",
                dir.display()
            )?,
            Some(spool) => writeln!(
                out,
                "spool {}: {}",
                dir.display(),
                describe(&spool.status()?)
            )?,
        },
        Command::Drop { dir } => match Spool::open_existing(&dir)? {
            None => writeln!(
                out,
                "spool {}: does not exist (nothing spooled)",
                dir.display()
            )?,
            Some(spool) => {
                let dropped = spool.drop_all()?;
                let left = spool.status()?;
                writeln!(
                    out,
                    "spool {}: dropped {}; {} request(s) left (being sent by another process)",
                    dir.display(),
                    describe(&dropped),
                    left.batches
                )?;
            }
        },
        Command::Flush {
            dir,
            otlp,
            otlp_protocol,
            timeout,
        } => {
            let Some(existing) = Spool::open_existing(&dir)? else {
                writeln!(
                    out,
                    "spool {}: does not exist (nothing spooled)",
                    dir.display()
                )?;
                return Ok(Exit::Done);
            };
            let before = existing.status()?;
            let mut config = load_config(global)?.config;
            if let Some(endpoint) = otlp {
                config.otlp.enabled = true;
                config.otlp.endpoint = Some(endpoint);
                if let Some(protocol) = otlp_protocol {
                    config.otlp.protocol = Some(protocol);
                }
            }
            config.validate()?;
            let exporter = tracecraft::open_otlp_export(&config)?.ok_or_else(|| {
                CliError(
                    "no collector: give --otlp URL, or enable [otlp] in the configuration".into(),
                )
            })?;
            let mut exporter = exporter.with_spool(SpoolConfig::builder(&dir).build())?;
            let stats = exporter.stats_handle();
            let flush = exporter.flush_spool(timeout.into())?;
            tracecraft_core::Exporter::shutdown(&mut exporter, Duration::from_secs(5))?;
            let after = existing.status()?;
            let spool = stats.get().spool;
            writeln!(
                out,
                "spool {}: sent {} request(s) ({} span(s)){}; {} left",
                dir.display(),
                spool.resent_batches,
                spool.resent_spans,
                if spool.rejected_batches > 0 {
                    format!(
                        ", {} rejected by the collector for their content and removed",
                        spool.rejected_batches
                    )
                } else {
                    String::new()
                },
                describe(&after)
            )?;
            if after.batches > 0 {
                let why = flush
                    .error
                    .map_or_else(|| "the timeout passed".to_owned(), |e| e.to_string());
                if after.batches < before.batches {
                    drop(out);
                    eprintln!("tracecraft: spool partly flushed: {}", super::shown(&why));
                    return Ok(Exit::Partial);
                }
                return Err(CliError(format!("spool not flushed: {why}")));
            }
        }
    }
    Ok(Exit::Done)
}
