//! The environment overlay: one table of (variable, setting, how it is read), used to apply
//! the environment and to generate the documentation's list
//! ([`env_vars_markdown`], checked against `docs/configuration.md` by a test).
//!
//! Rules, the same for every variable:
//! - the table's order is the order of application: a later variable for the same setting wins
//!   (`OTEL_EXPORTER_OTLP_*`, then `OTEL_EXPORTER_OTLP_TRACES_*`, then `TRACECRAFT_*`);
//! - a malformed value is an error naming the variable and what is expected, never the value;
//! - an empty boolean (`TRACECRAFT_REDACTION_ENABLED=`) is an error, not a default; other
//!   empty variables count as unset, as the OpenTelemetry specification says.

use std::path::PathBuf;

use tracecraft_redact::{HashKey, RedactionMode};

use super::{ConfigError, StorageUrl, TraceCraftConfig};

/// What a variable's value is, for reading it and for the documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`; empty is an error.
    Bool,
    /// Anything; empty counts as unset.
    Text,
}

/// One environment variable TraceCraft reads.
#[derive(Clone, Copy)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// The setting it overrides (`redaction.mode`), as `tracecraft config` names it.
    pub setting: &'static str,
    /// What it accepts and how it combines with others (for the documentation).
    pub accepts: &'static str,
    kind: Kind,
    apply: fn(&mut Overlay<'_>, &str) -> Result<(), String>,
}

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvVar")
            .field("name", &self.name)
            .field("setting", &self.setting)
            .finish_non_exhaustive()
    }
}

/// The configuration being overlaid, and what earlier variables of the same pass did.
pub(super) struct Overlay<'a> {
    pub(super) config: &'a mut TraceCraftConfig,
    /// OTLP headers came from the environment in this pass: later header variables merge
    /// into them instead of replacing the file's.
    #[cfg(feature = "otlp")]
    headers_from_env: bool,
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        "" => Err("is empty: expected true or false (or 1/0, yes/no, on/off)".into()),
        _ => Err("expected true or false (or 1/0, yes/no, on/off)".into()),
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(_) => Err("must be a number between 0 and 1".into()),
        Err(_) => Err("expected a number between 0 and 1".into()),
    }
}

/// Decodes `%XX` escapes (OTEL_EXPORTER_OTLP_HEADERS values are percent-encoded).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    // The `percent-encoding` crate passes malformed escapes through; the specification
    // makes them errors, so check first.
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Parses `k=v,k2=v2` (values percent-decoded).
pub(super) fn parse_headers(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for pair in value.split(',').filter(|p| !p.trim().is_empty()) {
        let parsed = pair.split_once('=').and_then(|(k, v)| {
            let k = k.trim();
            (!k.is_empty()).then_some(())?;
            Some((percent_decode(k)?, percent_decode(v.trim())?))
        });
        headers.push(parsed.ok_or_else(|| {
            "expected comma-separated key=value pairs (values percent-encoded)".to_owned()
        })?);
    }
    Ok(headers)
}

/// Sets `[otlp]` settings. A build without the `otlp` feature has none but `enabled`
/// (setting which is an error, see `TraceCraftConfig::validate`) and leaves the rest: the
/// standard `OTEL_*` variables may be set for other programs.
macro_rules! otlp {
    ($o:expr, $v:expr, |$c:ident| $set:expr) => {{
        #[cfg(feature = "otlp")]
        {
            let $c = &mut $o.config.otlp;
            $set;
        }
        #[cfg(not(feature = "otlp"))]
        let _ = (&$o, &$v);
    }};
}

fn set_headers(o: &mut Overlay<'_>, v: &str) -> Result<(), String> {
    let parsed = parse_headers(v)?;
    #[cfg(feature = "otlp")]
    {
        let headers = &mut o.config.otlp.headers;
        if !o.headers_from_env {
            headers.clear();
            o.headers_from_env = true;
        }
        for (k, val) in parsed {
            headers.retain(|(old, _)| !old.eq_ignore_ascii_case(&k));
            headers.push((k, val));
        }
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (o, parsed);
    Ok(())
}

fn set_resource_attributes(o: &mut Overlay<'_>, v: &str) -> Result<(), String> {
    let parsed = parse_headers(v)?;
    #[cfg(feature = "otlp")]
    for (k, val) in parsed {
        o.config.otlp.mapping.resource_attributes.insert(k, val);
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (o, parsed);
    Ok(())
}

fn set_spool_dir(o: &mut Overlay<'_>, v: &str) -> Result<(), String> {
    #[cfg(feature = "otlp")]
    {
        let dir = PathBuf::from(v.trim());
        o.config.otlp.spool = Some(match o.config.otlp.spool.take() {
            Some(mut spool) => {
                spool.dir = dir;
                spool
            }
            None => tracecraft_otlp::SpoolConfig::builder(dir).build(),
        });
        Ok(())
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (o, v);
        Err("the OTLP spool needs the `otlp` feature of the tracecraft crate".into())
    }
}

fn set_protocol(o: &mut Overlay<'_>, v: &str) -> Result<(), String> {
    #[cfg(feature = "otlp")]
    {
        o.config.otlp.protocol = Some(v.parse().map_err(|e| format!("{e}"))?);
        Ok(())
    }
    #[cfg(not(feature = "otlp"))]
    {
        // Without the feature there is no OTLP export to configure (enabling it is an
        // error); the standard variable may be set for other programs.
        let _ = (o, v);
        Ok(())
    }
}

fn set_timeout(o: &mut Overlay<'_>, v: &str) -> Result<(), String> {
    let ms: u64 = v
        .trim()
        .parse()
        .map_err(|_| "expected a whole number of milliseconds".to_owned())?;
    otlp!(o, ms, |c| c.timeout_ms = Some(ms));
    Ok(())
}

fn set_compression(o: &mut Overlay<'_>, v: &str) -> Result<(), String> {
    #[cfg(feature = "otlp")]
    {
        o.config.otlp.compression = Some(v.parse().map_err(|e| format!("{e}"))?);
        Ok(())
    }
    #[cfg(not(feature = "otlp"))]
    {
        // Without the feature there is no OTLP export to configure (enabling it is an
        // error); the standard variable may be set for other programs.
        let _ = (o, v);
        Ok(())
    }
}

macro_rules! var {
    ($name:literal, $setting:literal, $kind:ident, $accepts:literal, $apply:expr) => {
        EnvVar {
            name: $name,
            setting: $setting,
            accepts: $accepts,
            kind: Kind::$kind,
            apply: $apply,
        }
    };
}

/// Every environment variable TraceCraft reads, in the order they are applied (a later one
/// for the same setting wins). `docs/configuration.md` lists them from this table.
pub const ENV: &[EnvVar] = &[
    var!(
        "TRACECRAFT_CONFIG",
        "(file)",
        Text,
        "the configuration file to read, instead of `./tracecraft.toml` or `.tracecraft/config.toml` (`--config` wins)",
        |_, _| Ok(())
    ),
    var!(
        "OTEL_SERVICE_NAME",
        "service_name",
        Text,
        "the service name",
        |o, v| {
            o.config.service_name = Some(v.to_owned());
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_SERVICE_NAME",
        "service_name",
        Text,
        "the service name (wins over `OTEL_SERVICE_NAME`)",
        |o, v| {
            o.config.service_name = Some(v.to_owned());
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_ENVIRONMENT",
        "environment",
        Text,
        "the environment of runs that set none",
        |o, v| {
            o.config.environment = Some(v.to_owned());
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_REDACTION_ENABLED",
        "redaction.enabled",
        Bool,
        "true/false; `false` is logged at every start and marks runs `tracecraft.redaction = \"disabled\"`",
        |o, v| {
            o.config.redaction.enabled = parse_bool(v)?;
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_REDACTION_MODE",
        "redaction.mode",
        Text,
        "`mask`, `hash` or `remove`",
        |o, v| {
            o.config.redaction.mode = v
                .parse::<RedactionMode>()
                .map_err(|_| "expected mask, hash or remove".to_owned())?;
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_REDACTION_HASH_KEY",
        "redaction.hash_key",
        Text,
        "the HMAC key of `hash` mode (never shown)",
        |o, v| {
            o.config.redaction.hash_key = Some(HashKey::new(v));
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_SAMPLING_RATE",
        "sampling.rate",
        Text,
        "a number from 0 to 1",
        |o, v| {
            o.config.sampling.rate = parse_rate(v)?;
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_SAMPLING_KEEP_ERRORS",
        "sampling.always_keep_errors",
        Bool,
        "true/false",
        |o, v| {
            o.config.sampling.always_keep_errors = parse_bool(v)?;
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_CONSOLE_ENABLED",
        "console.enabled",
        Bool,
        "true/false",
        |o, v| {
            o.config.console.enabled = parse_bool(v)?;
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_JSONL_ENABLED",
        "jsonl.enabled",
        Bool,
        "true/false",
        |o, v| {
            o.config.jsonl.enabled = parse_bool(v)?;
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_JSONL_PATH",
        "jsonl.path",
        Text,
        "a directory",
        |o, v| {
            o.config.jsonl.path = Some(PathBuf::from(v));
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_STORAGE",
        "storage.url",
        Text,
        "`sqlite:PATH`, `jsonl:DIR` or `none`",
        |o, v| {
            o.config.storage.url = StorageUrl::parse(v)?;
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "otlp.base_endpoint",
        Text,
        "a base URL: `/v1/traces` is appended for HTTP; clears a file's `otlp.endpoint`",
        |o, v| {
            otlp!(o, v, |c| {
                c.base_endpoint = Some(v.trim().to_owned());
                c.endpoint = None;
            });
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "otlp.endpoint",
        Text,
        "the traces URL, used as-is",
        |o, v| {
            otlp!(o, v, |c| c.endpoint = Some(v.trim().to_owned()));
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_OTLP_ENDPOINT",
        "otlp.endpoint",
        Text,
        "the traces URL, used as-is (wins over the `OTEL_*` ones)",
        |o, v| {
            otlp!(o, v, |c| c.endpoint = Some(v.trim().to_owned()));
            Ok(())
        }
    ),
    var!(
        "TRACECRAFT_OTLP_ENABLED",
        "otlp.enabled",
        Bool,
        "true/false",
        |o, v| {
            o.config.otlp.enabled = parse_bool(v)?;
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "otlp.protocol",
        Text,
        "`grpc` or `http/protobuf`",
        set_protocol
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "otlp.protocol",
        Text,
        "as above; wins over the generic one",
        set_protocol
    ),
    var!(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "otlp.headers",
        Text,
        "`k=v,k2=v2`, values percent-encoded; replaces the file's headers (values never shown)",
        set_headers
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "otlp.headers",
        Text,
        "as above; its keys win over the generic variable's",
        set_headers
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "otlp.timeout_ms",
        Text,
        "milliseconds",
        set_timeout
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "otlp.timeout_ms",
        Text,
        "milliseconds; wins over the generic one",
        set_timeout
    ),
    var!(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "otlp.compression",
        Text,
        "`gzip` or `none`",
        set_compression
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "otlp.compression",
        Text,
        "as above; wins over the generic one",
        set_compression
    ),
    var!(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "otlp.ca_file",
        Text,
        "a PEM file of CA certificates",
        |o, v| {
            otlp!(o, v, |c| c.ca_file = Some(PathBuf::from(v.trim())));
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "otlp.ca_file",
        Text,
        "as above; wins over the generic one",
        |o, v| {
            otlp!(o, v, |c| c.ca_file = Some(PathBuf::from(v.trim())));
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "otlp.client_cert_file",
        Text,
        "a PEM client certificate (mTLS)",
        |o, v| {
            otlp!(o, v, |c| c.client_cert_file = Some(PathBuf::from(v.trim())));
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        "otlp.client_cert_file",
        Text,
        "as above; wins over the generic one",
        |o, v| {
            otlp!(o, v, |c| c.client_cert_file = Some(PathBuf::from(v.trim())));
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "otlp.client_key_file",
        Text,
        "its PEM private key (never shown)",
        |o, v| {
            otlp!(o, v, |c| c.client_key_file = Some(PathBuf::from(v.trim())));
            Ok(())
        }
    ),
    var!(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "otlp.client_key_file",
        Text,
        "as above; wins over the generic one",
        |o, v| {
            otlp!(o, v, |c| c.client_key_file = Some(PathBuf::from(v.trim())));
            Ok(())
        }
    ),
    var!(
        "OTEL_RESOURCE_ATTRIBUTES",
        "otlp.mapping.resource_attributes",
        Text,
        "`k=v,k2=v2` (values percent-encoded): resource attributes of exported spans (`service.version`, `deployment.environment.name`, `openinference.project.name`, ...)",
        set_resource_attributes
    ),
    var!(
        "TRACECRAFT_OTLP_SPOOL_DIR",
        "otlp.spool.dir",
        Text,
        "a directory for the durable OTLP spool (created 0700): batches the collector does not take are kept there and re-sent",
        set_spool_dir
    ),
];

/// Applies every variable of [`ENV`] that `get` returns, in table order; returns the
/// variables that were applied (for `tracecraft config`'s provenance).
pub(super) fn apply(
    config: &mut TraceCraftConfig,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Vec<&'static EnvVar>, ConfigError> {
    let mut overlay = Overlay {
        config,
        #[cfg(feature = "otlp")]
        headers_from_env: false,
    };
    let mut applied = Vec::new();
    for var in ENV {
        let Some(value) = get(var.name) else {
            continue;
        };
        if var.kind == Kind::Text && value.trim().is_empty() {
            continue;
        }
        (var.apply)(&mut overlay, &value).map_err(|message| ConfigError::Env {
            variable: var.name,
            message,
        })?;
        applied.push(var);
    }
    Ok(applied)
}

/// The documentation's table of environment variables, generated from [`ENV`].
#[must_use]
pub fn env_vars_markdown() -> String {
    let mut out = String::from("| variable | setting | accepts |\n|---|---|---|\n");
    for v in ENV {
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            v.name, v.setting, v.accepts
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documentation_lists_every_variable_from_the_table() {
        let doc = include_str!("../../../../docs/configuration.md");
        let table = env_vars_markdown();
        assert!(
            doc.contains(&table),
            "docs/configuration.md's environment table is out of date; replace it with:\n{table}"
        );
    }

    #[test]
    fn empty_booleans_are_errors_and_empty_text_is_unset() {
        for var in ENV.iter().filter(|v| v.kind == Kind::Bool) {
            let mut c = TraceCraftConfig::default();
            let e = apply(&mut c, |n| (n == var.name).then(String::new)).unwrap_err();
            assert!(e.to_string().contains(var.name), "{e}");
            assert!(e.to_string().contains("empty"), "{e}");
        }
        let mut c = TraceCraftConfig::default();
        let applied = apply(&mut c, |n| {
            (n == "TRACECRAFT_STORAGE").then(|| " ".to_owned())
        })
        .unwrap();
        assert!(applied.is_empty());
        assert_eq!(c.storage.url, StorageUrl::default_sqlite());
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn headers_from_the_traces_variable_alone_replace_the_files() {
        let mut c = TraceCraftConfig::default();
        c.otlp.headers = vec![("x-file".into(), "1".into())];
        apply(&mut c, |n| {
            (n == "OTEL_EXPORTER_OTLP_TRACES_HEADERS").then(|| "x-env=2".to_owned())
        })
        .unwrap();
        assert_eq!(c.otlp.headers, vec![("x-env".to_owned(), "2".to_owned())]);
    }
}
