//! `tracecraft config`: the effective configuration and where each value came from;
//! `tracecraft config --check FILE`: validate a file.

use std::io::Write;
use std::path::PathBuf;

use tracecraft::config::{Loaded, TraceCraftConfig};

use super::{CliError, load_config};
use crate::{Exit, Global};

/// Arguments of `tracecraft config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Validate this file alone (syntax, every setting, redaction rules compiled) and exit:
    /// 0 when it is valid, 2 with an error naming the setting otherwise.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Machine-readable output: one object per setting with its value and source.
    #[arg(long)]
    json: bool,
}

/// Everything that can be checked without opening stores: the settings, then the pipeline
/// (which compiles every redaction rule and checks sampling).
fn check(config: &TraceCraftConfig) -> Result<(), CliError> {
    config.validate()?;
    drop(config.pipeline_config().builder()?);
    Ok(())
}

fn show(loaded: &Loaded, json: bool) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let settings = loaded.settings();
    if json {
        let list: Vec<_> = settings
            .iter()
            .map(|(k, v, s)| serde_json::json!({"setting": k, "value": v, "source": s.to_string()}))
            .collect();
        writeln!(out, "{}", serde_json::Value::from(list))?;
        return Ok(());
    }
    match &loaded.file {
        Some(f) => writeln!(out, "# file: {}", f.display())?,
        None => writeln!(
            out,
            "# file: none (no --config, $TRACECRAFT_CONFIG, ./tracecraft.toml or ./.tracecraft/config.toml)"
        )?,
    }
    let width = settings
        .iter()
        .map(|(k, v, _)| k.len() + v.len())
        .max()
        .unwrap_or(0)
        + 3;
    for (k, v, source) in settings {
        let line = format!("{k} = {v}");
        writeln!(out, "{line:<width$}  # {source}")?;
    }
    Ok(())
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    if let Some(file) = &args.check {
        let config = TraceCraftConfig::from_file(file)?;
        check(&config)?;
        println!("{}: ok", file.display());
        return Ok(Exit::Done);
    }
    let loaded = load_config(global)?;
    show(&loaded, args.json)?;
    check(&loaded.config)?;
    if !loaded.config.redaction.enabled {
        tracing::warn!("redaction is DISABLED by this configuration");
    }
    Ok(Exit::Done)
}
