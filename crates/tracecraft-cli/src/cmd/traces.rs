//! `tracecraft traces list|show|rm|purge|stats`: query and manage a store.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tracecraft_core::{AgentRun, TraceQuery, TraceStore, Uuid};

use super::{CliError, load_config, store_flag};
use crate::{Exit, Global};

/// Arguments of `tracecraft traces`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store (`sqlite:PATH` or `jsonl:DIR`); default: the configured one
    /// (`[storage] url`, `TRACECRAFT_STORAGE`, else `sqlite:traces/tracecraft.db`). It must
    /// exist: these commands never create a store.
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// List traces, newest first.
    List(ListArgs),
    /// Show one trace as a tree (or its JSON with --json).
    Show {
        /// The trace id.
        id: String,
    },
    /// Erase one trace, its steps and tags (GDPR erasure). Exit 1 when there is no such
    /// trace (nothing erased is not success).
    Rm {
        /// The trace id.
        id: String,
    },
    /// Delete traces that started before a cut-off (retention).
    Purge {
        /// Age, e.g. `30d`, `12h`, `2weeks`.
        #[arg(long, value_name = "AGE")]
        older_than: String,
    },
    /// Totals: traces, steps, errors, tokens, cost, bytes.
    Stats,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Exact run name.
    #[arg(long)]
    name: Option<String>,
    /// Session id.
    #[arg(long)]
    session: Option<String>,
    /// User id.
    #[arg(long)]
    user: Option<String>,
    /// Only traces with an error.
    #[arg(long)]
    errors: bool,
    /// Started within this age (`24h`, `7d`) or since this date or time (`2025-01-06`,
    /// `2025-01-06T10:00`, `2025-01-06 10:00:00`, RFC 3339; without a zone: UTC).
    #[arg(long, value_name = "AGE|DATE|TIME")]
    since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

/// The store named by `--store`, else by the configuration; opened only if it exists.
fn open(args: &Args, global: &Global) -> Result<(Arc<dyn TraceStore>, String), CliError> {
    let mut loaded = load_config(global)?;
    if let Some(url) = &args.store {
        store_flag(&mut loaded, url)?;
    }
    let storage = &loaded.config.storage;
    let label = storage.url.to_string();
    let store = tracecraft::open_existing_store(storage)
        .map_err(|e| {
            CliError(format!(
                "store {label} ({}): {e}",
                loaded.source("storage.url")
            ))
        })?
        .ok_or_else(|| {
            CliError(format!(
                "store {label}: no store to query (storage.url = none)"
            ))
        })?;
    Ok((store, label))
}

fn parse_id(id: &str) -> Result<Uuid, CliError> {
    // The argument is not echoed: a pasted value may be anything.
    Uuid::parse_str(id.trim())
        .map_err(|_| CliError("the argument is not a trace id (a UUID)".into()))
}

fn age(text: &str) -> Result<chrono::Duration, CliError> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| CliError("--older-than: expected an age like 30d or 12h".into()))?;
    chrono::Duration::from_std(d).map_err(|_| CliError("--older-than: the age is too long".into()))
}

fn since(text: &str) -> Result<DateTime<Utc>, CliError> {
    let t = text.trim();
    if let Ok(t) = tracecraft_core::time::parse(t) {
        return Ok(t);
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    humantime::parse_duration(t)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| Utc::now() - d)
        .ok_or_else(|| {
            CliError(
                "--since: expected an age (30d, 12h) or a date/time (2025-01-06, 2025-01-06T10:00, RFC 3339)"
                    .into(),
            )
        })
}

fn summary_json(run: &AgentRun) -> serde_json::Value {
    serde_json::json!({
        "id": run.id,
        "name": run.name,
        "start_time": tracecraft_core::time::format(&run.start_time),
        "duration_ms": run.duration_ms,
        "session_id": run.session_id,
        "user_id": run.user_id,
        "total_tokens": run.total_tokens,
        "total_cost_usd": run.total_cost_usd,
        "error_count": run.error_count,
        "steps": run.step_count(),
    })
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let (store, label) = open(&args, global)?;
    let mut exit = Exit::Done;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.command {
        Sub::List(l) => {
            let mut q = TraceQuery::new().limit(l.limit);
            if let Some(n) = l.name {
                q = q.name(n);
            }
            if let Some(s) = l.session {
                q = q.session_id(s);
            }
            if let Some(u) = l.user {
                q = q.user_id(u);
            }
            if l.errors {
                q = q.has_error(true);
            }
            if let Some(s) = l.since {
                q = q.started(Some(since(&s)?), None);
            }
            let runs = store.query(&q)?;
            if args.json {
                let list: Vec<_> = runs.iter().map(summary_json).collect();
                writeln!(out, "{}", serde_json::Value::from(list))?;
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<20}  {:<24}  {:>10}  {:>8}  {:>10}  {:>6}",
                    "ID", "STARTED", "NAME", "DURATION", "TOKENS", "COST", "ERRORS"
                )?;
                for r in &runs {
                    writeln!(
                        out,
                        "{:<36}  {:<20}  {:<24}  {:>8.0}ms  {:>8}  ${:>9.5}  {:>6}",
                        r.id,
                        r.start_time.format("%Y-%m-%d %H:%M:%S"),
                        r.name.chars().take(24).collect::<String>(),
                        r.duration_ms.unwrap_or(0.0),
                        r.total_tokens,
                        r.total_cost_usd,
                        r.error_count
                    )?;
                }
            }
        }
        Sub::Show { id } => {
            let id = parse_id(&id)?;
            let run = store
                .get(id)?
                .ok_or_else(|| CliError(format!("no trace {id} in {label}")))?;
            if args.json {
                writeln!(out, "{}", tracecraft_core::json::to_json(&run))?;
            } else {
                drop(out);
                // The run comes from a store: it was processed (redacted) before it was saved.
                #[allow(clippy::disallowed_methods)]
                let processed = tracecraft_core::ProcessedRun::assume_processed(run);
                let mut console = tracecraft::ConsoleExporter::new().verbose(true);
                tracecraft_core::Exporter::export(&mut console, &[processed])?;
                return Ok(Exit::Done);
            }
        }
        Sub::Rm { id } => {
            let id = parse_id(&id)?;
            let existed = store.delete(id)?;
            store.flush()?;
            if args.json {
                writeln!(out, "{}", serde_json::json!({"id": id, "existed": existed}))?;
            } else if existed {
                writeln!(out, "deleted trace {id}")?;
            } else {
                writeln!(out, "no trace {id} in {label}: nothing deleted")?;
            }
            if !existed {
                exit = Exit::Partial;
            }
        }
        Sub::Purge { older_than } => {
            let cutoff = Utc::now() - age(&older_than)?;
            let n = store.purge_older_than(cutoff)?;
            store.flush()?;
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"purged": n, "cutoff": tracecraft_core::time::format(&cutoff)})
                )?;
            } else {
                writeln!(out, "purged {n} trace(s) older than {older_than}")?;
            }
        }
        Sub::Stats => {
            let s = store.stats()?;
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"traces": s.traces, "steps": s.steps, "errors": s.errors,
                        "total_tokens": s.total_tokens, "total_cost_usd": s.total_cost_usd, "bytes": s.bytes})
                )?;
            } else {
                writeln!(
                    out,
                    "traces: {}\nsteps: {}\nwith errors: {}\ntokens: {}\ncost: ${:.6}\nbytes: {}",
                    s.traces, s.steps, s.errors, s.total_tokens, s.total_cost_usd, s.bytes
                )?;
            }
        }
    }
    Ok(exit)
}
