//! `tracecraft redact`: stdin to stdout through the redaction engine.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use serde::Deserialize;
use tracecraft_redact::{RedactionConfig, RedactionMode, Redactor, Report};

use super::CliError;

/// Arguments of `tracecraft redact`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Treat each input line as a JSON value; write one redacted JSON value per line.
    #[arg(long)]
    jsonl: bool,
    /// Replacement mode (overrides the config file and TRACECRAFT_REDACTION_MODE).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// A TOML file with a `[redaction]` table.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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

/// The parts of a `tracecraft.toml` this command reads; other tables are ignored.
#[derive(Deserialize, Default)]
struct FileConfig {
    #[serde(default)]
    redaction: RedactionConfig,
}

fn load_config(args: &Args) -> Result<RedactionConfig, CliError> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
            let file: FileConfig = toml::from_str(&text)
                .map_err(|e| CliError(format!("bad config {}: {}", path.display(), e.message())))?;
            file.redaction
        }
        None => RedactionConfig::default(),
    };
    cfg.apply_env()?;
    if let Some(m) = args.mode {
        cfg.mode = match m {
            Mode::Mask => RedactionMode::Mask,
            Mode::Hash => RedactionMode::Hash,
            Mode::Remove => RedactionMode::Remove,
        };
    }
    Ok(cfg)
}

/// Runs the command.
pub(crate) fn run(args: Args) -> Result<(), CliError> {
    let cfg = load_config(&args)?;
    let redactor = Redactor::new(&cfg)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    if args.jsonl {
        let stdin = std::io::stdin();
        for (i, line) in stdin.lock().lines().enumerate() {
            let n = i + 1;
            let line = line.map_err(|e| CliError(format!("line {n}: {e}")))?;
            if line.trim().is_empty() {
                writeln!(out)?;
                continue;
            }
            let mut value: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| CliError(format!("line {n}: invalid JSON: {e}")))?;
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
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| CliError(format!("cannot read stdin: {e}")))?;
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
    Ok(())
}
