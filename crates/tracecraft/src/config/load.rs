//! Loading the configuration the same way everywhere (DESIGN invariant 10), and remembering
//! where each setting came from (`tracecraft config`).
//!
//! Sources, in increasing precedence: defaults; the file (`--config`, else
//! `$TRACECRAFT_CONFIG`, else `./tracecraft.toml`, else `./.tracecraft/config.toml`); the
//! environment ([`ENV`](super::ENV)); flags (set by the caller with [`Loaded::flag`]); code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, TraceCraftConfig, env};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The built-in default.
    Default,
    /// A configuration file, at this 1-based line.
    File {
        /// The file.
        path: PathBuf,
        /// The line of the key (or of its table).
        line: usize,
    },
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A loaded configuration and where each setting came from. `Debug` hides credentials.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded {
    /// The effective configuration (file, then environment; flags once the caller applied
    /// them).
    pub config: TraceCraftConfig,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Setting path (`redaction.mode`, `otlp.headers.authorization`) -> where it was set.
    sources: BTreeMap<String, Source>,
}

impl Loaded {
    /// Records that a flag set `setting` (call it after changing `config`).
    pub fn flag(&mut self, setting: &str, flag: &str) {
        self.sources
            .retain(|k, _| k != setting && !k.starts_with(&format!("{setting}.")));
        self.sources
            .insert(setting.to_owned(), Source::Flag(flag.to_owned()));
    }

    /// Where `setting` (a dotted path as [`settings`](Self::settings) names it) came from:
    /// the source recorded for it, for a key below it, or for the table above it.
    #[must_use]
    pub fn source(&self, setting: &str) -> Source {
        if let Some(s) = self.sources.get(setting) {
            return s.clone();
        }
        let below = format!("{setting}.");
        if let Some((_, s)) = self.sources.iter().find(|(k, _)| k.starts_with(&below)) {
            return s.clone();
        }
        let mut cur = setting;
        while let Some((parent, _)) = cur.rsplit_once('.') {
            if let Some(s) = self.sources.get(parent) {
                return s.clone();
            }
            cur = parent;
        }
        Source::Default
    }

    /// Every setting of the effective configuration as (dotted path, value as TOML-like
    /// text, source). Credentials (`redaction.hash_key`, OTLP header values) show as
    /// `"<hidden>"`.
    #[must_use]
    pub fn settings(&self) -> Vec<(String, String, Source)> {
        let mut flat = Vec::new();
        match serde_json::to_value(&self.config) {
            Ok(v) => flatten("", &v, &mut flat),
            Err(e) => flat.push(("(error)".to_owned(), e.to_string())),
        }
        flat.into_iter()
            .map(|(k, v)| {
                let source = self.source(&k);
                (k, v, source)
            })
            .collect()
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Null => out.push((prefix.to_owned(), "(unset)".to_owned())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// The configuration file: `explicit` (`--config`), else `$TRACECRAFT_CONFIG`, else
/// `./tracecraft.toml`, else `./.tracecraft/config.toml`.
pub(super) fn config_file(
    explicit: Option<&Path>,
    var: impl Fn(&str) -> Option<OsString>,
) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = var("TRACECRAFT_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    ["tracecraft.toml", ".tracecraft/config.toml"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The line of each `key = ...` of a TOML text, as dotted setting paths (tables included):
/// enough to say where a setting was written.
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            table = name.replace(['"', ' '], "");
            lines.entry(table.clone()).or_insert(i + 1);
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().replace(['"', ' '], "");
            let path = if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            };
            lines.entry(path).or_insert(i + 1);
        }
    }
    // The Python package's `custom_patterns` become `custom_rules`.
    if let Some(&l) = lines.get("redaction.custom_patterns") {
        lines
            .entry("redaction.custom_rules".to_owned())
            .or_insert(l);
    }
    lines
}

impl TraceCraftConfig {
    /// Loads the configuration as every command and the library do: the file (`explicit`,
    /// i.e. `--config`, else `$TRACECRAFT_CONFIG`, else `./tracecraft.toml`, else
    /// `./.tracecraft/config.toml`; none: defaults), then the process environment. Flags are
    /// the caller's: change `config` and record them with [`Loaded::flag`].
    ///
    /// A file that is named (by `--config` or `TRACECRAFT_CONFIG`) and missing is an error,
    /// never a silent fall-back to defaults.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and line, or the variable; values are never echoed.
    pub fn load_from(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
        Self::load_with(explicit, |n| std::env::var_os(n), |n| std::env::var(n).ok())
    }

    /// [`load_from`](Self::load_from) with the environment given as functions (tests).
    ///
    /// # Errors
    /// As [`load_from`](Self::load_from).
    pub fn load_with(
        explicit: Option<&Path>,
        var_os: impl Fn(&str) -> Option<OsString>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let file = config_file(explicit, var_os);
        let mut sources = BTreeMap::new();
        let mut config = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let config = Self::parse_toml(&text, path)?;
                for (key, line) in key_lines(&text) {
                    sources.insert(
                        key,
                        Source::File {
                            path: path.clone(),
                            line,
                        },
                    );
                }
                config
            }
            None => TraceCraftConfig::default(),
        };
        for applied in env::apply(&mut config, var)? {
            sources.retain(|k: &String, _| {
                k != applied.setting && !k.starts_with(&format!("{}.", applied.setting))
            });
            sources.insert(applied.setting.to_owned(), Source::Env(applied.name));
            if applied.name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
                sources.remove("otlp.endpoint");
            }
        }
        Ok(Loaded {
            config,
            file,
            sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn file_then_environment_then_flags_with_their_sources() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "service_name = \"file\"\n\n[redaction]\nmode = \"hash\"\nhash_key = \"k-do-not-print\"\ncustom_patterns = [\"EMP-\\\\d{6}\"]\n[sampling]\nrate = 0.5\n",
        )
        .unwrap();
        let mut loaded = TraceCraftConfig::load_with(Some(&path), none, |n| {
            (n == "TRACECRAFT_SAMPLING_RATE").then(|| "0.25".to_owned())
        })
        .unwrap();
        assert_eq!(loaded.config.sampling.rate, 0.25);
        assert_eq!(loaded.config.redaction.custom_rules[0].name, "custom_1");
        assert_eq!(
            loaded.source("service_name"),
            Source::File {
                path: path.clone(),
                line: 1
            }
        );
        assert_eq!(
            loaded.source("redaction.mode"),
            Source::File {
                path: path.clone(),
                line: 4
            }
        );
        assert!(matches!(
            loaded.source("redaction.custom_rules"),
            Source::File { line: 6, .. }
        ));
        assert_eq!(
            loaded.source("sampling.rate"),
            Source::Env("TRACECRAFT_SAMPLING_RATE")
        );
        assert_eq!(loaded.source("storage.url"), Source::Default);
        loaded.config.storage.url = super::super::StorageUrl::None;
        loaded.flag("storage.url", "--store");
        assert_eq!(loaded.source("storage.url"), Source::Flag("--store".into()));
        let shown = loaded
            .settings()
            .into_iter()
            .map(|(k, v, s)| format!("{k} = {v}  # {s}\n"))
            .collect::<String>();
        assert!(!shown.contains("k-do-not-print"), "{shown}");
        assert!(
            shown.contains("redaction.hash_key = \"<hidden>\""),
            "{shown}"
        );
        assert!(
            shown.contains("sampling.rate = 0.25  # environment TRACECRAFT_SAMPLING_RATE"),
            "{shown}"
        );
    }

    #[test]
    fn the_file_is_found_in_the_documented_order() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("given.toml");
        let from_env = OsString::from(dir.path().join("env.toml"));
        assert_eq!(
            config_file(Some(&given), |_| Some(from_env.clone())),
            Some(given.clone())
        );
        assert_eq!(
            config_file(None, |_| Some(from_env.clone())),
            Some(PathBuf::from(&from_env))
        );
        // A named file that does not exist is an error, not defaults.
        let e = TraceCraftConfig::load_with(None, |_| Some(from_env.clone()), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("env.toml"), "{e}");
    }
}
