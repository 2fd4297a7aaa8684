//! Subcommands, one module each, and what they share: loading the configuration the one
//! way the library does, and the error every command returns.

pub(crate) mod config;
pub(crate) mod doctor;
pub(crate) mod import;
pub(crate) mod redact;
pub(crate) mod scan;
pub(crate) mod serve;
pub(crate) mod spool;
pub(crate) mod traces;
pub(crate) mod ui;
pub(crate) mod view;

use std::fmt;

use tracecraft::config::{Loaded, StorageUrl, TraceCraftConfig};

use crate::Global;

/// A command's failure: one line, no payload values; exit code 2.
#[derive(Debug)]
pub(crate) struct CliError(pub(crate) String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep it to one line whatever the cause says.
        f.write_str(&self.0.replace(['\n', '\r'], " "))
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// The configuration every command starts from: `--config`, else `$TRACECRAFT_CONFIG`, else
/// `./tracecraft.toml`, else `./.tracecraft/config.toml`; then the environment. The same
/// function the library's `TraceCraftConfig::load` uses.
pub(crate) fn load_config(global: &Global) -> Result<Loaded, CliError> {
    let loaded = TraceCraftConfig::load_from(global.config.as_deref())?;
    if let Some(file) = &loaded.file {
        tracing::info!(file = %file.display(), "configuration file");
    }
    Ok(loaded)
}

/// The configuration, with `--store` (if given) applied, and the store it names, opened only
/// if it exists: what every command that reads or erases uses (DESIGN invariant 12).
pub(crate) fn open_existing(
    global: &Global,
    store: Option<&str>,
) -> Result<
    (
        std::sync::Arc<dyn tracecraft_core::TraceStore>,
        String,
        Loaded,
    ),
    CliError,
> {
    let mut loaded = load_config(global)?;
    if let Some(url) = store {
        store_flag(&mut loaded, url)?;
    }
    let storage = &loaded.config.storage;
    let label = storage.url.to_string();
    let opened = tracecraft::open_existing_store(storage).map_err(|e| {
        CliError(format!(
            "store {label} ({}): {e}",
            loaded.source("storage.url")
        ))
    })?;
    let store =
        opened.ok_or_else(|| CliError(format!("store {label}: no store (storage.url = none)")))?;
    Ok((store, label, loaded))
}

/// `--store URL` into `storage.url`, recorded as a flag.
pub(crate) fn store_flag(loaded: &mut Loaded, url: &str) -> Result<(), CliError> {
    loaded.config.storage.url =
        StorageUrl::parse(url).map_err(|e| CliError(format!("--store {url}: {e}")))?;
    loaded.flag("storage.url", "--store");
    Ok(())
}

/// `text` with anything the built-in rules find masked: every message the CLI prints about
/// its inputs (errors, warnings, summaries) goes through it, so that a secret in a path, a
/// flag or a value quoted by a library never reaches the terminal (DESIGN invariant 8).
pub(crate) fn shown(text: &str) -> String {
    static ENGINE: std::sync::OnceLock<Option<tracecraft_redact::Redactor>> =
        std::sync::OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        tracecraft_redact::Redactor::new(&tracecraft_redact::RedactionConfig::default()).ok()
    });
    match engine {
        Some(r) => r
            .redact_str(text, &mut tracecraft_redact::Report::default())
            .into_owned(),
        // The built-in rules always compile; if they did not, show nothing of the text.
        None => "(message withheld)".to_owned(),
    }
}

/// stderr for the log subscriber, each formatted event passed through [`shown`].
#[derive(Clone, Copy)]
pub(crate) struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(shown(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
