//! `tracecraft redact`: stdin to stdout through the redaction engine.

use std::io::Write;

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

/// What one chunk of text mode produced.
struct TextOut {
    redacted: String,
    /// Invalid UTF-8 sequences replaced.
    replaced: usize,
    /// `--explain` lines, offsets already global.
    explain: Vec<String>,
}

/// What one chunk of `--jsonl` produced.
struct JsonlOut {
    bytes: Vec<u8>,
    /// (line number, column, why) of each line that is not JSON.
    bad: Vec<(u64, usize, &'static str)>,
    explain: Vec<String>,
}

/// A chunk of text mode: its offset in the input, its bytes, and whether it begins inside a
/// private key block that the chunk before left open.
struct TextChunk {
    at: u64,
    bytes: Vec<u8>,
    /// What the text before leaves open (a private key block, a table's rows).
    context: tracecraft_redact::PieceContext,
}

fn redact_text_chunk(redactor: &Redactor, chunk: TextChunk, explain: bool) -> TextOut {
    let TextChunk {
        at,
        bytes: chunk,
        context,
    } = chunk;
    let (text, replaced) = match String::from_utf8(chunk) {
        Ok(s) => (s, 0),
        Err(e) => {
            // Never pass raw bytes through: invalid sequences become U+FFFD, and the text
            // around them is redacted as usual. Chunks end on line boundaries, so no UTF-8
            // sequence is split between two of them.
            let bytes = e.into_bytes();
            let mut text = String::with_capacity(bytes.len() + 16);
            let mut replaced = 0;
            for piece in bytes.utf8_chunks() {
                text.push_str(piece.valid());
                if !piece.invalid().is_empty() {
                    text.push('\u{FFFD}');
                    replaced += 1;
                }
            }
            (text, replaced)
        }
    };
    let mut report = Report::default();
    let explain = if explain {
        redactor
            .explain_piece(&context, &text)
            .into_iter()
            .map(|f| format!("{} {}..{}", f.rule, at + f.start as u64, at + f.end as u64))
            .collect()
    } else {
        Vec::new()
    };
    // In the context the chunks before leave: a private key block they left open is
    // continued, the rows of a table are redacted under its header.
    // In the context the chunks before leave: a private key block left open is continued, the
    // rows of a table are redacted under its header, the line before the cut is looked at.
    // An unchanged chunk is handed on as it is, not copied.
    let redacted = match redactor.redact_piece(&context, &text, &mut report) {
        std::borrow::Cow::Owned(changed) => changed,
        std::borrow::Cow::Borrowed(_) => text,
    };
    TextOut {
        redacted,
        replaced,
        explain,
    }
}

fn redact_jsonl_chunk(
    redactor: &Redactor,
    first_line: u64,
    chunk: &[u8],
    explain: bool,
) -> JsonlOut {
    let mut out = JsonlOut {
        bytes: Vec::with_capacity(chunk.len() + chunk.len() / 8),
        bad: Vec::new(),
        explain: Vec::new(),
    };
    for (i, line) in chunk.split_inclusive(|&b| b == b'\n').enumerate() {
        let n = first_line + i as u64;
        let mut bytes = line.strip_suffix(b"\n").unwrap_or(line);
        if n == 1 {
            bytes = bytes
                .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .unwrap_or(bytes);
        }
        if bytes.trim_ascii().is_empty() {
            out.bytes.push(b'\n');
            continue;
        }
        let mut value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                let what = match e.classify() {
                    serde_json::error::Category::Data => "not valid UTF-8 or not JSON",
                    _ => "not valid JSON",
                };
                out.bad.push((n, e.column(), what));
                continue;
            }
        };
        let mut report = Report::default();
        redactor.redact_value(&mut value, &mut report);
        // Writing JSON to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out.bytes, &value);
        out.bytes.push(b'\n');
        if explain {
            for f in report.findings() {
                out.explain
                    .push(format!("line {n}: {} {}..{}", f.rule, f.start, f.end));
            }
        }
    }
    out
}

/// Runs the command.
pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let redactor = redactor(&args, global)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let stderr = std::io::stderr();
    let mut input = crate::parallel::Chunks::new(std::io::stdin());
    let workers = crate::parallel::workers();
    let read_err = |e: std::io::Error| CliError(format!("cannot read stdin: {e}"));
    let mut exit = Exit::Done;
    if args.jsonl {
        let mut next_line = 1u64;
        let mut bad = 0u64;
        let mut first_bad = None;
        crate::parallel::ordered(
            workers,
            || {
                let chunk = input.next_chunk(&mut |_| false).map_err(read_err)?;
                Ok(chunk.map(|c| {
                    let first = next_line;
                    next_line += memchr::memchr_iter(b'\n', &c).count() as u64
                        + u64::from(!c.ends_with(b"\n"));
                    (first, c)
                }))
            },
            |(first, chunk): (u64, Vec<u8>)| {
                redact_jsonl_chunk(&redactor, first, &chunk, args.explain)
            },
            |o: JsonlOut| -> Result<(), CliError> {
                for (n, column, what) in &o.bad {
                    bad += 1;
                    first_bad.get_or_insert(*n);
                    tracing::warn!(line = n, column, "{what}; nothing written for this line");
                }
                out.write_all(&o.bytes)?;
                if !o.explain.is_empty() {
                    let mut err = stderr.lock();
                    for l in &o.explain {
                        writeln!(err, "{l}")?;
                    }
                }
                Ok(())
            },
        )?;
        if bad > 0 {
            writeln!(
                stderr.lock(),
                "tracecraft redact: {bad} line(s) not JSON (first: line {}); nothing written for them",
                first_bad.unwrap_or(0)
            )?;
            exit = Exit::Partial;
        }
    } else {
        let mut base = 0u64;
        let mut replaced = 0usize;
        // A chunk may end inside a private key block or a table (the next chunk continues
        // it), never where a wrapped token may run on (it grows, up to a bound, instead).
        let mut stream = redactor.stream_tracker();
        let mut context = stream.context();
        crate::parallel::ordered(
            workers,
            || {
                let chunk = input
                    .next_chunk(&mut |lines| !stream.feed(lines))
                    .map_err(read_err)?;
                Ok(chunk.map(|bytes| {
                    let chunk = TextChunk {
                        at: base,
                        context: std::mem::replace(&mut context, stream.context()),
                        bytes,
                    };
                    base += chunk.bytes.len() as u64;
                    chunk
                }))
            },
            |chunk: TextChunk| redact_text_chunk(&redactor, chunk, args.explain),
            |o: TextOut| -> Result<(), CliError> {
                replaced += o.replaced;
                out.write_all(o.redacted.as_bytes())?;
                if !o.explain.is_empty() {
                    let mut err = stderr.lock();
                    for l in &o.explain {
                        writeln!(err, "{l}")?;
                    }
                }
                Ok(())
            },
        )?;
        if replaced > 0 {
            tracing::warn!(
                sequences = replaced,
                "stdin is not valid UTF-8: invalid byte sequences replaced by U+FFFD"
            );
        }
    }
    out.flush()?;
    Ok(exit)
}
