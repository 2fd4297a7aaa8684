//! [`TraceCraftConfig`]: `tracecraft.toml` (or `.tracecraft/config.toml`), overridden by
//! `TRACECRAFT_*` and `OTEL_*` environment variables, overridden by code.
//!
//! ```
//! use tracecraft::config::TraceCraftConfig;
//!
//! let mut config: TraceCraftConfig = TraceCraftConfig::from_toml_str(r#"
//!     service_name = "support-bot"
//!     [sampling]
//!     rate = 0.25
//!     [storage]
//!     url = "none"
//! "#)?;
//! config.apply_env_from(|name| (name == "TRACECRAFT_SAMPLING_RATE").then(|| "0.5".to_owned()))?;
//! config.environment = Some("staging".into()); // code wins over file and environment
//! assert_eq!(config.sampling.rate, 0.5);
//! assert!(config.redaction.enabled, "redaction is on unless turned off explicitly");
//! # Ok::<(), tracecraft::config::ConfigError>(())
//! ```
//!
//! Every setting declared here is used; a setting that names something this build cannot do
//! (OTLP export without the `otlp` feature) is an error when the runtime is built, not a
//! silent no-op. A malformed environment value is an error naming the variable.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracecraft_pipeline::{EnrichmentConfig, ProcessorOrder, SamplingConfig};
use tracecraft_redact::RedactionConfig;

mod env;
mod load;

pub use env::{ENV, EnvVar, env_vars_markdown};
pub use load::{Loaded, Source};

/// Where processed runs are stored: `sqlite:PATH`, `jsonl:PATH` (a directory) or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageUrl {
    /// The embedded SQLite store at this path.
    Sqlite(PathBuf),
    /// The JSONL store in this directory.
    Jsonl(PathBuf),
    /// No store.
    None,
}

impl StorageUrl {
    /// The embedded default: `sqlite:traces/tracecraft.db`.
    #[must_use]
    pub fn default_sqlite() -> Self {
        StorageUrl::Sqlite(PathBuf::from("traces/tracecraft.db"))
    }

    /// Parses `sqlite:PATH`, `jsonl:PATH` or `none`.
    ///
    /// # Errors
    /// A message saying which forms are accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(StorageUrl::None);
        }
        let (scheme, path) = s
            .split_once(':')
            .ok_or_else(|| "expected `sqlite:PATH`, `jsonl:PATH` or `none`".to_owned())?;
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(format!("`{scheme}:` needs a path"));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(StorageUrl::Sqlite(PathBuf::from(path))),
            "jsonl" => Ok(StorageUrl::Jsonl(PathBuf::from(path))),
            other => Err(format!(
                "unknown store `{other}`: expected `sqlite:PATH`, `jsonl:PATH` or `none`"
            )),
        }
    }
}

impl std::str::FromStr for StorageUrl {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        StorageUrl::parse(s).map_err(|message| ConfigError::Invalid {
            field: "storage.url".into(),
            message,
        })
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StorageUrl::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
            StorageUrl::None => f.write_str("none"),
        }
    }
}

impl Serialize for StorageUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StorageUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StorageUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The `[storage]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageConfig {
    /// Where runs go (default `sqlite:traces/tracecraft.db`).
    pub url: StorageUrl,
    /// Keep runs this long: `retention = "90d"` (any humantime age: `12h`, `2weeks`). Runs
    /// that started earlier are purged when the store opens and then periodically in the
    /// background by the runtime and the gateway (counted and logged).
    pub retention: Option<Retention>,
    /// The older form of `retention`, in days (setting both is an error).
    pub retention_days: Option<u32>,
    /// Existing store files or directories looser than 0600 / 0700: `warn` (default; the
    /// mode is left as it is), `error` (refuse to open), or `tighten` (change the mode).
    pub permissions: tracecraft_core::fs::PermissionPolicy,
    /// `[storage.sqlite]`: the SQLite store's own settings (busy timeout, synchronous, ...),
    /// the crate's [`SqliteConfig`](tracecraft_store_sqlite::SqliteConfig). Its path comes from
    /// `url`, its retention and permissions from this table.
    #[cfg(feature = "sqlite")]
    pub sqlite: tracecraft_store_sqlite::SqliteConfig,
    /// `[storage.jsonl]`: the JSONL store's own settings (fsync, rotation, ...), the crate's
    /// [`JsonlConfig`](tracecraft_store_jsonl::JsonlConfig). Its directory comes from `url`
    /// (or `jsonl.path` for the extra JSONL export), its retention and permissions from this
    /// table.
    #[cfg(feature = "jsonl")]
    pub jsonl: tracecraft_store_jsonl::JsonlConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: StorageUrl::default_sqlite(),
            retention: None,
            retention_days: None,
            permissions: tracecraft_core::fs::PermissionPolicy::default(),
            #[cfg(feature = "sqlite")]
            sqlite: tracecraft_store_sqlite::SqliteConfig::default(),
            #[cfg(feature = "jsonl")]
            jsonl: tracecraft_store_jsonl::JsonlConfig::default(),
        }
    }
}

/// A retention age, written as humantime text (`"90d"`, `"12h"`, `"2weeks"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub std::time::Duration);

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match humantime::parse_duration(s.trim()) {
            Ok(age) if !age.is_zero() => Ok(Retention(age)),
            _ => Err(serde::de::Error::custom(
                "expected an age such as \"90d\", \"12h\" or \"2weeks\"",
            )),
        }
    }
}

impl StorageConfig {
    /// How long runs are kept (`retention`, else `retention_days`), if limited.
    #[must_use]
    pub fn max_age(&self) -> Option<std::time::Duration> {
        self.retention.map(|r| r.0).or_else(|| {
            self.retention_days
                .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400))
        })
    }

    /// Refuses store sub-table settings that `[storage]` owns, so that no setting the user
    /// wrote is silently overridden.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "jsonl")),
        allow(unused_variables)
    )]
    pub(crate) fn validate_owned(&self) -> Result<(), ConfigError> {
        if self.retention.is_some() && self.retention_days.is_some() {
            return Err(ConfigError::Invalid {
                field: "storage.retention_days".into(),
                message: "set storage.retention or storage.retention_days, not both".into(),
            });
        }
        let owned = |field: &str, set: bool, instead: &str| {
            if set {
                Err(ConfigError::Invalid {
                    field: format!("storage.{field}"),
                    message: format!("set {instead} instead"),
                })
            } else {
                Ok(())
            }
        };
        #[cfg(feature = "sqlite")]
        {
            let d = tracecraft_store_sqlite::SqliteConfig::default();
            let s = &self.sqlite;
            owned(
                "sqlite.path",
                s.path != d.path,
                "storage.url = \"sqlite:PATH\"",
            )?;
            owned(
                "sqlite.retention_days",
                s.retention_days != d.retention_days,
                "storage.retention_days",
            )?;
            owned(
                "sqlite.permissions",
                s.permissions != d.permissions,
                "storage.permissions",
            )?;
            owned(
                "sqlite.create",
                s.create != d.create,
                "nothing (commands decide)",
            )?;
        }
        #[cfg(feature = "jsonl")]
        {
            let d = tracecraft_store_jsonl::JsonlConfig::default();
            let j = &self.jsonl;
            owned(
                "jsonl.dir",
                j.dir != d.dir,
                "storage.url = \"jsonl:DIR\" or jsonl.path",
            )?;
            owned(
                "jsonl.retention_days",
                j.retention_days != d.retention_days,
                "storage.retention_days",
            )?;
            owned(
                "jsonl.permissions",
                j.permissions != d.permissions,
                "storage.permissions",
            )?;
            owned(
                "jsonl.create",
                j.create != d.create,
                "nothing (commands decide)",
            )?;
        }
        Ok(())
    }
}

/// The `[console]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsoleConfig {
    /// Print each processed (redacted) run as a tree to stdout (default false).
    pub enabled: bool,
    /// Also print inputs and outputs (redacted; default false).
    pub verbose: bool,
}

/// The `[jsonl]` table: an extra JSONL export beside the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct JsonlExportConfig {
    /// Write processed runs as JSONL (default false).
    pub enabled: bool,
    /// The directory (default `traces/`).
    pub path: Option<PathBuf>,
}

/// The `[otlp]` table: the OTLP crate's own `OtlpConfig`, re-exported.
#[cfg(feature = "otlp")]
pub use tracecraft_otlp::OtlpConfig;

/// The `[otlp]` table in a build without the `otlp` feature: only `enabled` is read, and
/// setting it is an error ([`TraceCraftConfig::validate`]); the other keys are accepted
/// unread, so that one file serves builds with and without the feature.
#[cfg(not(feature = "otlp"))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// Export over OTLP: an error in this build.
    pub enabled: bool,
}

/// Everything TraceCraft can be configured with. `Debug` and `Serialize` hide credentials
/// (serialization is for showing a configuration: `tracecraft config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TraceCraftConfig {
    /// The service name, recorded as the `service.name` attribute of each run.
    pub service_name: Option<String>,
    /// The environment recorded on runs that do not set one (`production`, ...).
    pub environment: Option<String>,
    /// `safety` (default: enrich -> redact -> sample) or `efficiency`.
    pub processor_order: ProcessorOrder,
    /// Steps deeper than this are not recorded (counted in `tracecraft.steps_dropped`);
    /// default 100, `0` means unlimited.
    pub max_step_depth: Option<usize>,
    /// Record step inputs (default true).
    pub capture_inputs: bool,
    /// Record step outputs (default true).
    pub capture_outputs: bool,
    /// Input names recorded as `"[EXCLUDED]"` at any depth.
    pub exclude_inputs: Vec<String>,
    /// Build, process (enrich, redact, sample) and export finished runs on the runtime's own
    /// thread (default true), so ending a run costs the traced thread a queue push. Its queue
    /// holds `batch.max_queue_size` runs. `false` processes runs on the thread that ends them.
    pub background_processing: bool,
    /// `[redaction]`: on by default.
    pub redaction: RedactionConfig,
    /// `[sampling]`.
    pub sampling: SamplingConfig,
    /// `[enrichment]`.
    pub enrichment: EnrichmentConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[console]`.
    pub console: ConsoleConfig,
    /// `[jsonl]`.
    pub jsonl: JsonlExportConfig,
    /// `[otlp]`.
    pub otlp: OtlpConfig,
    /// `[batch]`: the queue between traced code and exporters (invariant 5), the pipeline
    /// crate's own settings.
    pub batch: tracecraft_pipeline::BatchConfig,
    /// `[gateway]`: `tracecraft serve` (feature `gateway`).
    #[cfg(feature = "gateway")]
    pub gateway: tracecraft_gateway::GatewayConfig,
}

impl Default for TraceCraftConfig {
    fn default() -> Self {
        TraceCraftConfig {
            service_name: None,
            environment: None,
            processor_order: ProcessorOrder::default(),
            max_step_depth: None,
            capture_inputs: true,
            capture_outputs: true,
            exclude_inputs: Vec::new(),
            background_processing: true,
            redaction: RedactionConfig::default(),
            sampling: SamplingConfig::default(),
            enrichment: EnrichmentConfig::default(),
            storage: StorageConfig::default(),
            console: ConsoleConfig::default(),
            jsonl: JsonlExportConfig::default(),
            otlp: OtlpConfig::default(),
            batch: tracecraft_pipeline::BatchConfig::default(),
            #[cfg(feature = "gateway")]
            gateway: tracecraft_gateway::GatewayConfig::default(),
        }
    }
}

/// A configuration problem: names the file and line, or the variable, or the field.
///
/// `Debug` prints the same message as `Display` (fit for an error returned from `main`).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file (`<string>` for in-memory text).
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong (values elided).
        message: String,
    },
    /// An environment variable has a malformed value.
    #[error("environment variable {variable}: {message}")]
    Env {
        /// The variable.
        variable: &'static str,
        /// What is expected (the value is not echoed).
        message: String,
    },
    /// A field is invalid or names something this build cannot do.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The field's path.
        field: String,
        /// Why.
        message: String,
    },
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl TraceCraftConfig {
    /// Parses TOML text (no environment applied).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with the line and what is wrong; values are never echoed.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse_toml(text, Path::new("<string>"))
    }

    fn parse_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            message: tracecraft_core::json::elide_values(e.message()),
        })
    }

    /// Reads a TOML file (no environment applied).
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`] naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse_toml(&text, path)
    }

    /// The configuration file to use: `$TRACECRAFT_CONFIG`, else `tracecraft.toml`, else
    /// `.tracecraft/config.toml` in the current directory; `None` when there is none.
    #[must_use]
    pub fn discover() -> Option<PathBuf> {
        load::config_file(None, |n| std::env::var_os(n))
    }

    /// The file found by [`discover`](Self::discover) (or defaults), then the process
    /// environment. Change fields afterwards to override in code. The same function as
    /// every CLI command uses ([`load_from`](Self::load_from)).
    ///
    /// # Errors
    /// File or environment problems, naming the file/line or the variable.
    pub fn load() -> Result<Self, ConfigError> {
        Ok(Self::load_from(None)?.config)
    }

    /// Applies the process environment (see [`ENV`]).
    ///
    /// # Errors
    /// [`ConfigError::Env`] naming the first malformed variable.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_env_from(|name| std::env::var(name).ok())
    }

    /// Applies variables from `get` (a map in tests, the process environment in
    /// [`apply_env`](Self::apply_env)), in the order of [`ENV`]: TRACECRAFT_* wins over the
    /// OTEL_* equivalents, `OTEL_EXPORTER_OTLP_TRACES_*` over `OTEL_EXPORTER_OTLP_*`.
    ///
    /// # Errors
    /// [`ConfigError::Env`] naming the first malformed variable (never its value).
    pub fn apply_env_from(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        env::apply(self, get).map(|_| ())
    }

    /// The processing part: order, redaction, sampling, enrichment.
    #[must_use]
    pub fn pipeline_config(&self) -> tracecraft_pipeline::PipelineConfig {
        tracecraft_pipeline::PipelineConfig {
            processor_order: self.processor_order,
            redaction: self.redaction.clone(),
            sampling: self.sampling.clone(),
            enrichment: self.enrichment.clone(),
        }
    }

    /// Checks everything that can be checked without building: sampling rates, and that
    /// nothing asks for what this build lacks.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.storage.validate_owned()?;
        self.sampling.validate().map_err(|e| ConfigError::Invalid {
            field: e.field().to_owned(),
            message: e.to_string(),
        })?;
        #[cfg(feature = "otlp")]
        if self.otlp.enabled {
            self.otlp.validate().map_err(|e| ConfigError::Invalid {
                field: format!("otlp.{}", e.setting),
                message: e.message,
            })?;
        }
        #[cfg(not(feature = "otlp"))]
        if self.otlp.enabled {
            return Err(ConfigError::Invalid {
                field: "otlp.enabled".into(),
                message: "OTLP export needs the `otlp` feature of the tracecraft crate, which this build lacks; enable the feature or set otlp.enabled = false".into(),
            });
        }
        if self.batch.max_queue_size == 0 || self.batch.batch_size == 0 {
            return Err(ConfigError::Invalid {
                field: "batch".into(),
                message: "max_queue_size and batch_size must be at least 1".into(),
            });
        }
        #[cfg(feature = "gateway")]
        self.gateway.validate().map_err(|e| match e {
            tracecraft_gateway::ConfigError::Invalid { field, message } => ConfigError::Invalid {
                field: format!("gateway.{field}"),
                message,
            },
            other => ConfigError::Invalid {
                field: "gateway".into(),
                message: other.to_string(),
            },
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tracecraft_redact::RedactionMode;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_secure_and_embedded() {
        let c = TraceCraftConfig::default();
        assert!(c.redaction.enabled);
        assert!(c.capture_inputs);
        assert_eq!(c.storage.url, StorageUrl::default_sqlite());
        assert!(!c.console.enabled && !c.otlp.enabled);
        assert_eq!(c.processor_order, ProcessorOrder::Safety);
    }

    #[test]
    fn env_overrides_file() {
        let mut c = TraceCraftConfig::from_toml_str(
            "service_name = \"file\"\n[sampling]\nrate = 0.2\n[storage]\nurl = \"jsonl:/tmp/x\"\n",
        )
        .unwrap();
        c.apply_env_from(env(&[
            ("TRACECRAFT_SERVICE_NAME", "env"),
            ("TRACECRAFT_SAMPLING_RATE", "0.7"),
            ("TRACECRAFT_SAMPLING_KEEP_ERRORS", "false"),
            ("TRACECRAFT_STORAGE", "sqlite:/tmp/t.db"),
            ("TRACECRAFT_REDACTION_MODE", "REMOVE"),
            ("TRACECRAFT_CONSOLE_ENABLED", "1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer abc"),
            ("TRACECRAFT_REDACTION_HASH_KEY", "hmac-key-do-not-print"),
        ]))
        .unwrap();
        assert_eq!(c.service_name.as_deref(), Some("env"));
        assert_eq!(c.sampling.rate, 0.7);
        assert!(!c.sampling.always_keep_errors);
        assert_eq!(c.storage.url, StorageUrl::Sqlite("/tmp/t.db".into()));
        assert_eq!(c.redaction.mode, RedactionMode::Remove);
        assert!(c.console.enabled);
        assert!(
            !format!("{c:?}").contains("Bearer abc"),
            "Debug shows OTLP headers"
        );
    }

    #[test]
    fn malformed_env_values_name_the_variable() {
        for (var, value) in [
            ("TRACECRAFT_SAMPLING_RATE", "abc"),
            ("TRACECRAFT_SAMPLING_RATE", "1.5"),
            ("TRACECRAFT_REDACTION_ENABLED", "maybe"),
            ("TRACECRAFT_STORAGE", "postgres:db"),
            ("TRACECRAFT_REDACTION_MODE", "shred"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
        ] {
            let mut c = TraceCraftConfig::default();
            let e = c.apply_env_from(env(&[(var, value)])).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
            assert!(!e.to_string().contains(value), "echoes the value: {e}");
        }
    }

    #[test]
    fn toml_errors_name_the_line_and_not_the_value() {
        let e = TraceCraftConfig::from_toml_str("service_name = \"x\"\n\n[sampling]\nrat = 0.1\n")
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(":4:") && msg.contains("rat"), "{msg}");
        let e = TraceCraftConfig::from_toml_str("[redaction]\nhash_key = 12345678\n").unwrap_err();
        assert!(e.to_string().contains(":2:"), "{e}");
    }

    #[test]
    fn storage_urls() {
        assert_eq!(StorageUrl::parse("none").unwrap(), StorageUrl::None);
        assert_eq!(
            StorageUrl::parse("jsonl:traces").unwrap(),
            StorageUrl::Jsonl("traces".into())
        );
        assert_eq!(
            StorageUrl::parse("sqlite://data/t.db").unwrap(),
            StorageUrl::Sqlite("data/t.db".into())
        );
        assert!(StorageUrl::parse("sqlite:").is_err());
        assert!(StorageUrl::parse("nonsense").is_err());
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn otlp_enabled_without_the_feature_is_an_error_not_a_silent_no_op() {
        let mut c = TraceCraftConfig::default();
        c.otlp.enabled = true;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("otlp.enabled") && e.contains("`otlp` feature"),
            "{e}"
        );
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_settings_are_validated_naming_the_field() {
        let mut c = TraceCraftConfig::default();
        c.otlp.enabled = true;
        c.validate().unwrap();
        // Protocol and compression are the OTLP crate's types: a file names them
        // case-insensitively, and an unknown name is refused naming the setting, never
        // echoing the value.
        let c2 = TraceCraftConfig::from_toml_str(
            "[otlp]\nprotocol = \"GRPC\"\ncompression = \"gzip\"\n",
        )
        .unwrap();
        assert_eq!(c2.otlp.protocol, Some(tracecraft_otlp::Protocol::Grpc));
        assert_eq!(
            c2.otlp.compression,
            Some(tracecraft_otlp::Compression::Gzip)
        );
        for (toml, setting) in [
            ("[otlp]\nprotocol = \"http/xml-sk-proj-1\"\n", "protocol"),
            ("[otlp]\ncompression = \"zstd-sk-proj-1\"\n", "compression"),
        ] {
            let e = TraceCraftConfig::from_toml_str(toml)
                .unwrap_err()
                .to_string();
            assert!(e.contains(setting) && !e.contains("sk-proj-1"), "{e}");
        }
        c.otlp.client_cert_file = Some("c.pem".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("otlp.client_key_file")
        );
        c.otlp.client_cert_file = None;
        c.otlp.client_key_file = Some("c.key".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("otlp.client_cert_file")
        );
        c.otlp.client_key_file = None;
        c.otlp.timeout_ms = Some(0);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("otlp.timeout_ms")
        );
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_environment_follows_the_opentelemetry_specification() {
        let mut c = TraceCraftConfig::from_toml_str(
            "[otlp]\nendpoint = \"http://file:4318/v1/traces\"\nheaders = [[\"x-file\", \"1\"]]\n",
        )
        .unwrap();
        c.apply_env_from(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://base:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "HTTP/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc,x-a=1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-a=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/client.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/client.key"),
            ("TRACECRAFT_OTLP_ENABLED", "true"),
        ]))
        .unwrap();
        let o = &c.otlp;
        assert!(o.enabled);
        assert_eq!(o.base_endpoint.as_deref(), Some("https://base:4318"));
        assert_eq!(
            o.endpoint, None,
            "the environment's base replaces the file's endpoint"
        );
        assert_eq!(o.protocol, Some(tracecraft_otlp::Protocol::HttpProtobuf));
        assert_eq!(
            o.headers,
            vec![
                ("authorization".to_owned(), "Bearer abc".to_owned()),
                ("x-a".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(o.timeout_ms, Some(2500));
        assert_eq!(o.compression, Some(tracecraft_otlp::Compression::Gzip));
        assert_eq!(o.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            o.client_cert_file.as_deref(),
            Some(Path::new("/etc/client.pem"))
        );
        assert_eq!(
            o.client_key_file.as_deref(),
            Some(Path::new("/etc/client.key"))
        );
        assert!(!format!("{c:?}").contains("Bearer abc"));
        c.apply_env_from(env(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/v1/traces",
            ),
            ("TRACECRAFT_OTLP_ENDPOINT", "http://own:4318/v1/traces"),
        ]))
        .unwrap();
        assert_eq!(
            c.otlp.endpoint.as_deref(),
            Some("http://own:4318/v1/traces")
        );
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_headers_as_a_table_or_pairs() {
        let c = TraceCraftConfig::from_toml_str(
            "[otlp.headers]\nauthorization = \"Bearer t\"\nx-tenant = \"acme\"\n",
        )
        .unwrap();
        assert_eq!(
            c.otlp.headers,
            vec![
                ("authorization".to_owned(), "Bearer t".to_owned()),
                ("x-tenant".to_owned(), "acme".to_owned())
            ]
        );
        let c = TraceCraftConfig::from_toml_str("[otlp]\nheaders = [[\"k\", \"v\"]]\n").unwrap();
        assert_eq!(c.otlp.headers, vec![("k".to_owned(), "v".to_owned())]);
        let e = TraceCraftConfig::from_toml_str("[otlp.headers]\nauthorization = 12345\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":1:") || e.contains(":2:"), "{e}");
        assert!(!e.contains("12345"), "{e}");
    }

    #[test]
    fn malformed_otlp_env_values_name_the_variable() {
        let mut cases = vec![
            ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign-secret"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=bad%zzsecret"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "later"),
        ];
        // Protocol and compression are read only where there is an OTLP exporter to
        // configure (the `otlp` feature).
        if cfg!(feature = "otlp") {
            cases.extend([
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
            ]);
        }
        for (var, value) in cases {
            let mut c = TraceCraftConfig::default();
            let e = c.apply_env_from(env(&[(var, value)])).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
            assert!(!e.to_string().contains(value), "echoes the value: {e}");
        }
    }

    #[test]
    fn invalid_sampling_rate_in_file_names_the_field() {
        let c = TraceCraftConfig::from_toml_str("[sampling]\nrate = 2.0\n").unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("sampling.rate"), "{e}");
    }
}

#[cfg(all(test, feature = "sqlite", feature = "jsonl"))]
mod store_settings_tests {
    use super::*;

    #[test]
    fn store_settings_load_from_their_sub_tables() {
        let c = TraceCraftConfig::from_toml_str(
            "[storage]\nurl = \"jsonl:t\"\n[storage.jsonl]\nfsync = \"never\"\nrotate_bytes = 1024\n[storage.sqlite]\nsynchronous = \"full\"\nbusy_timeout_ms = 99\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.storage.jsonl.fsync, tracecraft_store_jsonl::Fsync::Never);
        assert_eq!(c.storage.jsonl.rotate_bytes, Some(1024));
        assert_eq!(
            c.storage.sqlite.synchronous,
            tracecraft_store_sqlite::Synchronous::Full
        );
        assert_eq!(c.storage.sqlite.busy_timeout_ms, 99);
    }

    #[test]
    fn settings_owned_by_storage_are_refused_in_the_sub_tables() {
        for (toml, field) in [
            ("[storage.sqlite]\npath = \"x.db\"\n", "storage.sqlite.path"),
            (
                "[storage.sqlite]\nretention_days = 3\n",
                "storage.sqlite.retention_days",
            ),
            ("[storage.jsonl]\ndir = \"d\"\n", "storage.jsonl.dir"),
            (
                "[storage.jsonl]\npermissions = \"error\"\n",
                "storage.jsonl.permissions",
            ),
        ] {
            let c = TraceCraftConfig::from_toml_str(toml).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{toml}: {e}");
        }
    }
}
