//! `tracecraft scan`: audit what is already stored or written for residual secrets with the
//! redaction engine, and optionally fix it.
//!
//! Reports rule names, counts, trace ids, files, lines and byte ranges: never the values.
//! Exit 0 when nothing is found, 1 when something is (or was fixed), 2 when nothing could be
//! scanned.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tracecraft_core::{ProcessedRun, TraceQuery, TraceStore};
use tracecraft_redact::{Finding, PieceContext, Redactor, Report};

use super::{CliError, load_config, shown, store_flag};
use crate::{Exit, Global};

/// Arguments of `tracecraft scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files to scan: AgentRun JSONL, OTLP/JSON, plain logs: scanned as text, in chunks of
    /// whole lines (a key block or a table spanning lines is found).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Scan every run of this store (`sqlite:PATH` or `jsonl:DIR`); it must exist.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Rewrite what was found through the redaction rules: files atomically (a temporary
    /// file renamed over the original, its mode kept); store runs erased and saved again
    /// redacted.
    #[arg(long)]
    fix: bool,
    /// Machine-readable output: one JSON object per finding, then a summary object.
    #[arg(long)]
    json: bool,
}

/// Already-redacted text: a match that is only a placeholder is not a residual secret.
fn is_placeholder(text: &str) -> bool {
    let t = text.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    t.contains("[REDACTED]")
        || t.starts_with("[HASH:")
        || t.eq_ignore_ascii_case("<redacted>")
        || (!t.is_empty() && t.chars().all(|c| c == '*'))
}

/// The findings in `text` (a piece of a file in its context, or a run's text), placeholders
/// left out.
fn findings(redactor: &Redactor, context: &PieceContext, text: &str) -> Vec<Finding> {
    redactor
        .explain_piece(context, text)
        .into_iter()
        .filter(|f| !text.get(f.start..f.end).is_some_and(is_placeholder))
        .collect()
}

#[derive(Default)]
struct Tally {
    by_rule: BTreeMap<String, u64>,
    places: u64,
}

impl Tally {
    fn add(&mut self, found: &[Finding]) {
        if !found.is_empty() {
            self.places += 1;
        }
        for f in found {
            *self.by_rule.entry(f.rule.clone()).or_default() += 1;
        }
    }
}

fn report_line(
    out: &mut dyn Write,
    json: bool,
    place: &str,
    found: &[Finding],
) -> Result<(), CliError> {
    for f in found {
        if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"place": place, "rule": f.rule, "start": f.start, "end": f.end})
            )?;
        } else {
            writeln!(out, "{place}: {} {}..{}", f.rule, f.start, f.end)?;
        }
    }
    Ok(())
}

/// Scans (and with `fix`, rewrites) one file, in chunks of whole lines as `tracecraft redact`
/// streams stdin: a private key block or a CSV/TSV table that spans lines is found as in the
/// whole file (its body lines and rows too), not line by line. Findings are reported at the
/// line where they begin, byte ranges from that line's start.
fn scan_file(
    redactor: &Redactor,
    path: &Path,
    fix: bool,
    json: bool,
    out: &mut dyn Write,
    tally: &mut Tally,
) -> Result<(), CliError> {
    let file = std::fs::File::open(path)
        .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
    let place = shown(&path.display().to_string());
    let mut fixed: Option<Vec<u8>> = fix.then(Vec::new);
    let mut any = false;
    let mut input = crate::parallel::Chunks::new(file);
    let mut stream = redactor.stream_tracker();
    let mut context = stream.context();
    let mut first_line = 1usize;
    let mut starts = Vec::new();
    loop {
        let chunk = input
            .next_chunk(&mut |lines| !stream.feed(lines))
            .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        let Some(chunk) = chunk else {
            break;
        };
        let text = String::from_utf8_lossy(&chunk);
        let found = findings(redactor, &context, &text);
        // The findings by line: line starts of the chunk, then each finding's line.
        starts.clear();
        starts.push(0);
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        let mut by_line: BTreeMap<usize, Vec<Finding>> = BTreeMap::new();
        for mut f in found {
            let line = starts.partition_point(|&s| s <= f.start) - 1;
            f.start -= starts[line];
            f.end -= starts[line];
            by_line.entry(line).or_default().push(f);
        }
        for (line, found) in &by_line {
            any = true;
            tally.add(found);
            report_line(out, json, &format!("{place}:{}", first_line + line), found)?;
        }
        if let Some(buf) = fixed.as_mut() {
            if by_line.is_empty() {
                // Kept byte for byte (invalid UTF-8 included) when nothing was found.
                buf.extend_from_slice(&chunk);
            } else {
                let mut report = Report::default();
                let redacted = redactor.redact_piece(&context, &text, &mut report);
                buf.extend_from_slice(redacted.as_bytes());
            }
        }
        first_line += memchr::memchr_iter(b'\n', &chunk).count();
        context = stream.context();
    }
    if let (Some(buf), true) = (fixed, any) {
        let mode = std::fs::metadata(path).map(|m| m.permissions());
        tracecraft_core::fs::replace_atomically(path, |w| {
            w.write_all(&buf)
                .map_err(|e| tracecraft_core::fs::io_err(path, e))
        })?;
        if let Ok(perms) = mode {
            // The rewrite is created 0600; the file keeps the mode its owner gave it.
            let _ = std::fs::set_permissions(path, perms);
        }
    }
    Ok(())
}

/// Scans every run of a store (and with `fix`, saves it again redacted).
fn scan_store(
    redactor: &Redactor,
    store: &dyn TraceStore,
    fix: bool,
    json: bool,
    out: &mut dyn Write,
    tally: &mut Tally,
) -> Result<u64, CliError> {
    const PAGE: usize = 500;
    let mut offset = 0;
    let mut to_fix = Vec::new();
    loop {
        let mut q = TraceQuery::new().limit(PAGE);
        q.offset = offset;
        let page = store.query(&q)?;
        if page.is_empty() {
            break;
        }
        offset += page.len();
        for run in page {
            let text = tracecraft_core::json::to_json(&run);
            let found = findings(redactor, &PieceContext::default(), &text);
            if !found.is_empty() {
                tally.add(&found);
                report_line(out, json, &format!("trace {}", run.id), &found)?;
                if fix {
                    to_fix.push(run);
                }
            }
        }
    }
    let mut fixed = 0;
    for mut run in to_fix {
        let mut value =
            serde_json::to_value(&run).map_err(|e| CliError(format!("trace {}: {e}", run.id)))?;
        redactor.redact_value(&mut value, &mut Report::default());
        run = serde_json::from_value(value).map_err(|e| {
            CliError(format!(
                "trace {}: {}",
                run.id,
                tracecraft_core::json::elide_values(&e.to_string())
            ))
        })?;
        // Erase, then save the redacted run: the store's own atomic erasure, so no copy
        // of the secret is left behind (SQLite secure_delete, JSONL file rewrite).
        store.delete(run.id)?;
        #[allow(clippy::disallowed_methods)] // redacted just above by the engine
        store.save(&ProcessedRun::assume_processed(run))?;
        fixed += 1;
    }
    store.flush()?;
    Ok(fixed)
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    if args.files.is_empty() && args.store.is_none() {
        return Err(CliError(
            "nothing to scan: give FILE... and/or --store URL".into(),
        ));
    }
    let mut loaded = load_config(global)?;
    if let Some(url) = &args.store {
        store_flag(&mut loaded, url)?;
    }
    // Scanning looks for what the rules would catch, whatever `enabled` says.
    let mut rules = loaded.config.redaction.clone();
    rules.enabled = true;
    let redactor = Redactor::new(&rules)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    let mut scanned = 0;
    for file in &args.files {
        match scan_file(&redactor, file, args.fix, args.json, &mut out, &mut tally) {
            Ok(()) => scanned += 1,
            Err(e) => errors.push(e.0),
        }
    }
    let mut fixed_runs = 0;
    if args.store.is_some() {
        let storage = &loaded.config.storage;
        let store = tracecraft::open_existing_store(storage)
            .map_err(|e| CliError(format!("store {}: {e}", storage.url)))?
            .ok_or_else(|| CliError("--store none: nothing to scan".into()))?;
        fixed_runs = scan_store(
            &redactor, &*store, args.fix, args.json, &mut out, &mut tally,
        )?;
        scanned += 1;
    }
    let total: u64 = tally.by_rule.values().sum();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"summary": {"findings": total, "places": tally.places,
                "by_rule": tally.by_rule, "fixed": args.fix, "fixed_runs": fixed_runs,
                "errors": errors.iter().map(|e| shown(e)).collect::<Vec<_>>()}})
        )?;
    }
    drop(out);
    let by_rule = tally
        .by_rule
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    for e in &errors {
        eprintln!("tracecraft scan: error: {}", shown(e));
    }
    eprintln!(
        "tracecraft scan: {total} finding(s) in {} place(s){}{}",
        tally.places,
        if by_rule.is_empty() {
            String::new()
        } else {
            format!(" ({by_rule})")
        },
        if args.fix && total > 0 {
            format!(
                "; fixed (rewritten redacted{})",
                if fixed_runs > 0 {
                    format!(", {fixed_runs} stored run(s)")
                } else {
                    String::new()
                }
            )
        } else {
            String::new()
        }
    );
    if scanned == 0 {
        return Err(CliError("nothing could be scanned".into()));
    }
    Ok(if total > 0 || !errors.is_empty() {
        Exit::Partial
    } else {
        Exit::Done
    })
}
