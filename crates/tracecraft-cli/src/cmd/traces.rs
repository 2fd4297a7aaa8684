//! `tracecraft traces list|show|rm|purge|stats`: query and manage a store.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracecraft::config::{StorageConfig, StorageUrl};
use tracecraft_core::{AgentRun, TraceQuery, TraceStore, Uuid};

use super::CliError;

/// Arguments of `tracecraft traces`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store (`sqlite:PATH` or `jsonl:DIR`).
    #[arg(
        long,
        global = true,
        default_value = "sqlite:traces/tracecraft.db",
        value_name = "URL"
    )]
    store: String,
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
    /// Erase one trace, its steps and tags (GDPR erasure).
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
    /// Started within this age (`24h`) or since this time (RFC 3339).
    #[arg(long, value_name = "AGE|TIME")]
    since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

fn open(url: &str) -> Result<Arc<dyn TraceStore>, CliError> {
    let storage = StorageConfig {
        url: StorageUrl::parse(url).map_err(|e| CliError(format!("--store {url}: {e}")))?,
        ..StorageConfig::default()
    };
    tracecraft::open_store(&storage)?
        .ok_or_else(|| CliError(format!("--store {url}: no store to query")))
}

fn parse_id(id: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(id).map_err(|_| CliError(format!("`{id}` is not a trace id (a UUID)")))
}

fn age(text: &str) -> Result<chrono::Duration, CliError> {
    let d = humantime::parse_duration(text)
        .map_err(|e| CliError(format!("`{text}` is not an age like 30d or 12h: {e}")))?;
    chrono::Duration::from_std(d).map_err(|_| CliError(format!("`{text}` is too long")))
}

fn since(text: &str) -> Result<DateTime<Utc>, CliError> {
    match tracecraft_core::time::parse(text) {
        Ok(t) => Ok(t),
        Err(_) => Ok(Utc::now() - age(text)?),
    }
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

pub(crate) fn run(args: Args) -> Result<(), CliError> {
    let store = open(&args.store)?;
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
                .ok_or_else(|| CliError(format!("no trace {id} in {}", args.store)))?;
            if args.json {
                writeln!(out, "{}", tracecraft_core::json::to_json(&run))?;
            } else {
                drop(out);
                // The run comes from a store: it was processed (redacted) before it was saved.
                #[allow(clippy::disallowed_methods)]
                let processed = tracecraft_core::ProcessedRun::assume_processed(run);
                let mut console = tracecraft::ConsoleExporter::new().verbose(true);
                tracecraft_core::Exporter::export(&mut console, &[processed])?;
                return Ok(());
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
                writeln!(out, "no trace {id}: nothing deleted")?;
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
    Ok(())
}
