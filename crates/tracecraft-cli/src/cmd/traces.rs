//! `tracecraft traces list|show|rm|purge|stats`: query and manage a store.

use std::io::Write;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tracecraft_core::{AgentRun, TraceQuery, TraceStore, Uuid};

use super::{CliError, view};
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
    /// Show one trace as a waterfall: every step on one time axis (or its JSON with --json).
    Show {
        /// The trace id, or a unique prefix of it (`568cca74`).
        id: String,
        /// Print every input and output in full below its step.
        #[arg(long)]
        full: bool,
        /// Times in UTC instead of the local zone.
        #[arg(long)]
        utc: bool,
    },
    /// Erase one trace, its steps and tags (GDPR erasure). Exit 1 when there is no such
    /// trace (nothing erased is not success).
    Rm {
        /// The trace id, or a unique prefix of it.
        #[arg(required_unless_present_any = ["user", "session"])]
        id: Option<String>,
        /// Erase every run of this person (the real id: it is pseudonymized the way the
        /// pipeline stores it).
        #[arg(long, conflicts_with_all = ["id", "session"])]
        user: Option<String>,
        /// Erase every run of this session.
        #[arg(long, conflicts_with_all = ["id", "user"])]
        session: Option<String>,
    },
    /// Write every stored run of a person as JSONL to stdout (a subject access request).
    Export {
        /// The person's real id (pseudonymized the way the pipeline stores it).
        #[arg(long, required_unless_present = "session", conflicts_with = "session")]
        user: Option<String>,
        /// Every run of this session instead.
        #[arg(long)]
        session: Option<String>,
    },
    /// Delete traces that started before a cut-off (retention).
    Purge {
        /// Age, e.g. `30d`, `12h`, `2weeks`.
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Count what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
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
    /// Only traces with this tag (repeatable: all of them).
    #[arg(long)]
    tag: Vec<String>,
    /// Only traces with a step whose model name contains this (case-insensitive).
    #[arg(long)]
    model: Option<String>,
    /// Only traces that lasted at least this long (`500ms`, `2s`).
    #[arg(long, value_name = "DURATION")]
    min_duration: Option<String>,
    /// Only traces that cost at least this many dollars.
    #[arg(long, value_name = "USD")]
    min_cost: Option<f64>,
    /// Only traces whose names or stored (redacted) content have these words: each word of
    /// TEXT begins a word of the trace, case-insensitively (indexed in SQLite stores).
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Skip this many matching traces first (paging).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Times in UTC instead of the local zone.
    #[arg(long)]
    utc: bool,
}

/// The forms an identifier may be stored in: its keyed pseudonym (when the configuration
/// pseudonymizes `field` and has a key), and the value itself (runs stored without
/// pseudonymization).
fn stored_forms(loaded: &tracecraft::config::Loaded, field: &str, value: &str) -> Vec<String> {
    let r = &loaded.config.redaction;
    let mut forms = Vec::new();
    if r.pseudonymize.iter().any(|f| f == field)
        && let Some(key) = &r.hash_key
        && !tracecraft_redact::HashKey::is_pseudonym(value)
    {
        forms.push(key.pseudonym(value));
    }
    forms.push(value.to_owned());
    forms
}

/// Every run whose `field` (`user_id` or `session_id`) is one of `forms`, oldest first.
fn runs_of(
    store: &dyn TraceStore,
    field: &str,
    forms: &[String],
) -> Result<Vec<AgentRun>, CliError> {
    const PAGE: usize = 1000;
    let mut runs = Vec::new();
    for form in forms {
        let mut offset = 0;
        loop {
            let mut q = match field {
                "user_id" => TraceQuery::new().user_id(form.clone()),
                _ => TraceQuery::new().session_id(form.clone()),
            }
            .limit(PAGE);
            q.offset = offset;
            let page = store.query(&q)?;
            if page.is_empty() {
                break;
            }
            offset += page.len();
            runs.extend(page);
        }
    }
    runs.sort_by_key(|r| (r.start_time, r.id));
    runs.dedup_by_key(|r| r.id);
    Ok(runs)
}

/// A full trace id, or the one trace whose id starts with `text` (at least 4 hex digits), as
/// git resolves commit prefixes; an ambiguous prefix lists the candidates.
fn resolve(store: &dyn TraceStore, text: &str) -> Result<Uuid, CliError> {
    let text = text.trim();
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(id);
    }
    let is_prefix = text.len() >= 4
        && text.len() < 36
        && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if !is_prefix {
        return parse_id(text);
    }
    let found = store.query(&TraceQuery::new().id_prefix(text).limit(11))?;
    match found.as_slice() {
        [] => Err(CliError(format!("no trace id starts with {text}"))),
        [one] => Ok(one.id),
        many => {
            let list = many
                .iter()
                .take(10)
                .map(|r| format!("{} {}", r.id, view::cut(&view::safe(&r.name), 30)))
                .collect::<Vec<_>>()
                .join("; ");
            Err(CliError(format!(
                "{text} is ambiguous: {}{list}",
                if many.len() > 10 {
                    "more than 10 traces, e.g. "
                } else {
                    ""
                }
            )))
        }
    }
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
    let (store, label, loaded) = super::open_existing(global, args.store.as_deref())?;
    let mut exit = Exit::Done;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.command {
        Sub::List(l) => {
            let mut q = TraceQuery::new();
            if let Some(n) = l.name {
                q = q.name(n);
            }
            if let Some(s) = l.session {
                q = q.session_id(stored_forms(&loaded, "session_id", &s).remove(0));
            }
            if let Some(u) = l.user {
                q = q.user_id(stored_forms(&loaded, "user_id", &u).remove(0));
            }
            if l.errors {
                q = q.has_error(true);
            }
            if let Some(s) = l.since {
                q = q.started(Some(since(&s)?), None);
            }
            for t in l.tag {
                q = q.tag(t);
            }
            if let Some(d) = &l.min_duration {
                let d = humantime::parse_duration(d.trim()).map_err(|_| {
                    CliError("--min-duration: expected a duration like 500ms or 2s".into())
                })?;
                q = q.duration_ms(Some(d.as_secs_f64() * 1000.0), None);
            }
            if let Some(c) = l.min_cost {
                q = q.cost_usd(Some(c), None);
            }
            if let Some(t) = l.search {
                q = q.text(t);
            }
            if let Some(m) = l.model {
                q = q.model(m);
            }
            // Paged through the store and written as it goes: memory stays at one page
            // whatever --limit says.
            const PAGE: usize = 500;
            let mut shown_n = 0usize;
            let mut store_offset = l.offset;
            if args.json {
                write!(out, "[")?;
            }
            'pages: while shown_n < l.limit {
                let want = (l.limit - shown_n).min(PAGE);
                let mut page_q = q.clone().limit(want);
                page_q.offset = store_offset;
                let page = store.query(&page_q)?;
                if page.is_empty() {
                    break;
                }
                store_offset += page.len();
                for r in &page {
                    if args.json {
                        if shown_n > 0 {
                            write!(out, ",")?;
                        }
                        write!(out, "{}", summary_json(r))?;
                    } else {
                        if shown_n == 0 {
                            writeln!(
                                out,
                                "{:<36}  {:<25}  {:<24}  {:>9}  {:>5}  {:>8}  {:>8}  {:>6}  USER",
                                "ID",
                                "STARTED",
                                "NAME",
                                "TOOK",
                                "STEPS",
                                "TOKENS",
                                "COST",
                                "ERRORS"
                            )?;
                        }
                        writeln!(
                            out,
                            "{:<36}  {:<25}  {:<24}  {:>9}  {:>5}  {:>8}  {:>8}  {:>6}  {}",
                            r.id,
                            view::time(&r.start_time, l.utc),
                            view::cut(&view::safe(&r.name), 24),
                            view::duration(r.duration_ms),
                            r.step_count(),
                            r.total_tokens,
                            view::cost(r.total_cost_usd),
                            r.error_count,
                            view::cut(&view::safe(r.user_id.as_deref().unwrap_or("")), 30),
                        )?;
                    }
                    shown_n += 1;
                    if shown_n >= l.limit {
                        break 'pages;
                    }
                }
                if page.len() < want {
                    break;
                }
            }
            if args.json {
                writeln!(out, "]")?;
            } else if shown_n == 0 {
                writeln!(out, "no traces match")?;
            }
        }
        Sub::Show { id, full, utc } => {
            let id = resolve(&*store, &id)?;
            let run = store
                .get(id)?
                .ok_or_else(|| CliError(format!("no trace {id} in {label}")))?;
            if args.json {
                writeln!(out, "{}", tracecraft_core::json::to_json(&run))?;
            } else {
                let width = std::env::var("COLUMNS")
                    .ok()
                    .and_then(|c| c.parse::<usize>().ok())
                    .map_or(48, |c| c.saturating_sub(72).clamp(20, 100));
                write!(out, "{}", view::waterfall(&run, utc, full, width))?;
            }
        }
        Sub::Rm { id: Some(id), .. } => {
            let id = resolve(&*store, &id)?;
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
        Sub::Rm {
            id: None,
            user,
            session,
        } => {
            let (field, value, what) = match (&user, &session) {
                (Some(u), _) => ("user_id", u, "user"),
                (None, Some(s)) => ("session_id", s, "session"),
                (None, None) => {
                    return Err(CliError("give a trace id, --user or --session".into()));
                }
            };
            let runs = runs_of(&*store, field, &stored_forms(&loaded, field, value))?;
            let mut erased = 0u64;
            for run in &runs {
                if store.delete(run.id)? {
                    erased += 1;
                }
            }
            store.flush()?;
            if args.json {
                writeln!(out, "{}", serde_json::json!({"erased": erased, "of": what}))?;
            } else {
                writeln!(out, "erased {erased} trace(s) of that {what} from {label}")?;
            }
            if erased == 0 {
                exit = Exit::Partial;
            }
        }
        Sub::Export { user, session } => {
            let (field, value) = match (&user, &session) {
                (Some(u), _) => ("user_id", u),
                (None, Some(s)) => ("session_id", s),
                (None, None) => return Err(CliError("give --user or --session".into())),
            };
            let runs = runs_of(&*store, field, &stored_forms(&loaded, field, value))?;
            for run in &runs {
                writeln!(out, "{}", tracecraft_core::json::to_json(run))?;
            }
            drop(out);
            eprintln!("tracecraft traces export: {} run(s)", runs.len());
            return Ok(exit);
        }
        Sub::Purge {
            older_than,
            dry_run,
        } => {
            let cutoff = Utc::now() - age(&older_than)?;
            let n = if dry_run {
                store.count(&TraceQuery::new().started(None, Some(cutoff)))?
            } else {
                let n = store.purge_older_than(cutoff)?;
                store.flush()?;
                n
            };
            let verb = if dry_run { "would purge" } else { "purged" };
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"purged": if dry_run { 0 } else { n }, "matching": n, "dry_run": dry_run,
                        "cutoff": tracecraft_core::time::format(&cutoff)})
                )?;
            } else {
                writeln!(out, "{verb} {n} trace(s) older than {older_than}")?;
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
