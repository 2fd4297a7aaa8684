//! `tracecraft redact`: stdin to stdout through the redaction engine.

use std::io::{BufRead, Read, Write};

use tracecraft_redact::{RedactionMode, Redactor, Report};

use super::{CliError, load_config};
use crate::{Exit, Global};

/// Arguments of `tracecraft redact`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Treat each input line as a JSON value; write one redacted JSON value per line. A line
    /// that is not JSON is reported by number (never its text), nothing is written for it,
    /// and the command goes on (exit 1 at the end).
    #[arg(long)]
    jsonl: bool,
    /// Replacement mode (overrides the configuration and TRACECRAFT_REDACTION_MODE).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Print one line per finding to stderr: rule name and byte range (never the value).
    #[arg(long)]
    explain: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Mask,
    Hash,
    Remove,
}

fn redactor(args: &Args, global: &Global) -> Result<Redactor, CliError> {
    let mut loaded = load_config(global)?;
    if let Some(m) = args.mode {
        loaded.config.redaction.mode = match m {
            Mode::Mask => RedactionMode::Mask,
            Mode::Hash => RedactionMode::Hash,
            Mode::Remove => RedactionMode::Remove,
        };
        loaded.flag("redaction.mode", "--mode");
    }
    if !loaded.config.redaction.enabled {
        tracing::warn!(
            "redaction is DISABLED by the configuration ({}): input is copied as it is",
            loaded.source("redaction.enabled")
        );
    }
    Ok(Redactor::new(&loaded.config.redaction)?)
}

/// Runs the command.
pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let redactor = redactor(&args, global)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let mut exit = Exit::Done;
    if args.jsonl {
        let stdin = std::io::stdin();
        let mut bad = 0u64;
        let mut first_bad = None;
        for (i, line) in stdin.lock().split(b'\n').enumerate() {
            let n = i + 1;
            let line = line.map_err(|e| CliError(format!("stdin, line {n}: {e}")))?;
            let mut bytes = line.as_slice();
            if n == 1 {
                bytes = bytes
                    .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                    .unwrap_or(bytes);
            }
            if bytes.trim_ascii().is_empty() {
                writeln!(out)?;
                continue;
            }
            let mut value: serde_json::Value = match serde_json::from_slice(bytes) {
                Ok(v) => v,
                Err(e) => {
                    bad += 1;
                    first_bad.get_or_insert(n);
                    let what = match e.classify() {
                        serde_json::error::Category::Data => "not valid UTF-8 or not JSON",
                        _ => "not valid JSON",
                    };
                    tracing::warn!(
                        line = n,
                        column = e.column(),
                        "{what}; nothing written for this line"
                    );
                    continue;
                }
            };
            let mut report = Report::default();
            redactor.redact_value(&mut value, &mut report);
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
            if args.explain {
                for f in report.findings() {
                    writeln!(err, "line {n}: {} {}..{}", f.rule, f.start, f.end)?;
                }
            }
        }
        if bad > 0 {
            writeln!(
                err,
                "tracecraft redact: {bad} line(s) not JSON (first: line {}); nothing written for them",
                first_bad.unwrap_or(0)
            )?;
            exit = Exit::Partial;
        }
    } else {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError(format!("cannot read stdin: {e}")))?;
        let input = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                // Never pass raw bytes through: invalid sequences become U+FFFD, and the text
                // around them is redacted as usual.
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                let replaced = lossy.matches('\u{FFFD}').count();
                tracing::warn!(
                    sequences = replaced,
                    "stdin is not valid UTF-8: invalid byte sequences replaced by U+FFFD"
                );
                lossy
            }
        };
        let mut report = Report::default();
        let redacted = redactor.redact_str(&input, &mut report);
        out.write_all(redacted.as_bytes())?;
        if args.explain {
            for f in redactor.explain(&input) {
                writeln!(err, "{} {}..{}", f.rule, f.start, f.end)?;
            }
        }
    }
    out.flush()?;
    Ok(exit)
}
