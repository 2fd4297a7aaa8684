//! Exporter settings: [`Protocol`], [`Compression`], [`RetryPolicy`], endpoints and headers.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The default gRPC endpoint (OpenTelemetry specification).
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The default HTTP/protobuf endpoint (OpenTelemetry specification).
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";
/// The path appended to a base endpoint for HTTP/protobuf traces.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";
/// The default per-request timeout (OpenTelemetry specification: 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default largest request, before compression: 4 MiB, the OpenTelemetry Collector's
/// default gRPC message limit.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// OTLP/gRPC (`grpc`), default port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`), default port 4318; the specification's
    /// default.
    #[default]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies (`http/json`, the specification's JSON encoding: hex ids,
    /// camelCase keys), default port 4318.
    HttpJson,
}

impl Protocol {
    /// The name used by `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`, `http/json`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        }
    }

    /// Whether it is one of the OTLP/HTTP encodings (the `/v1/traces` path applies).
    #[must_use]
    pub const fn is_http(self) -> bool {
        matches!(self, Protocol::HttpProtobuf | Protocol::HttpJson)
    }

    /// The endpoint used when none is configured.
    #[must_use]
    pub const fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => DEFAULT_GRPC_ENDPOINT,
            Protocol::HttpProtobuf | Protocol::HttpJson => DEFAULT_HTTP_ENDPOINT,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsed from its name, case-insensitively (an unknown name is refused without echoing it).
impl<'de> serde::Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A string that names no supported [`Protocol`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported OTLP protocol: expected `grpc`, `http/protobuf` or `http/json`")]
pub struct UnknownProtocol;

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Ok(Protocol::HttpJson),
            _ => Err(UnknownProtocol),
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// None (default).
    #[default]
    None,
    /// gzip (`grpc-encoding: gzip` / `content-encoding: gzip`).
    Gzip,
}

/// Parsed from its name (`gzip`, `none`), case-insensitively.
impl<'de> serde::Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        })
    }
}

/// A string that names no supported [`Compression`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported compression: expected `gzip` or `none`")]
pub struct UnknownCompression;

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            _ => Err(UnknownCompression),
        }
    }
}

/// Retries with exponential backoff and full jitter, for failures the OTLP specification calls
/// retryable (gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `ABORTED`, `CANCELLED`, `OUT_OF_RANGE`,
/// `DATA_LOSS`, `RESOURCE_EXHAUSTED` with retry info; HTTP 429, 502, 503, 504; connection
/// errors and timeouts). A server's `Retry-After` / `RetryInfo` delay is honoured (capped by
/// `max_elapsed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 5; 1 disables retries).
    pub max_attempts: u32,
    /// The first backoff (default 500 ms); doubles after each attempt.
    pub initial_backoff: Duration,
    /// The largest backoff (default 5 s).
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt (default 30 s).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    #[must_use]
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The backoff before attempt `attempt + 1` (`attempt` >= 1): a uniformly random duration
    /// up to `min(max_backoff, initial_backoff * 2^(attempt-1))` ("full jitter").
    #[must_use]
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let cap = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let nanos = cap.as_nanos().min(u128::from(u64::MAX)) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Never less than a tenth of the cap: a retry storm needs some spacing.
        let floor = nanos / 10;
        Duration::from_nanos(floor + random % (nanos - floor + 1))
    }
}

/// A header sent with every request. The value is a credential: `Debug` hides it, and it is
/// marked sensitive for the HTTP stack.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// The name (lower-cased when sent).
    pub name: String,
    /// The value.
    pub value: String,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <hidden>", self.name)
    }
}

/// Why an exporter could not be built. Names the setting; never echoes header values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid OTLP `{setting}`: {message}")]
#[non_exhaustive]
pub struct BuildError {
    /// The setting (`endpoint`, `headers`, `ca_file`, `timeout`, ...).
    pub setting: &'static str,
    /// What is wrong.
    pub message: String,
}

impl BuildError {
    pub(crate) fn new(setting: &'static str, message: impl Into<String>) -> Self {
        BuildError {
            setting,
            message: message.into(),
        }
    }
}

/// Everything an [`OtlpExporter`](crate::OtlpExporter) is built from. Construct it with
/// [`OtlpExporter::builder`](crate::OtlpExporter::builder).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    pub(crate) protocol: Protocol,
    /// Used as-is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` semantics).
    pub(crate) endpoint: Option<String>,
    /// `/v1/traces` is appended for HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT` semantics).
    pub(crate) base_endpoint: Option<String>,
    pub(crate) headers: Vec<Header>,
    pub(crate) timeout: Duration,
    pub(crate) compression: Compression,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_cert_file: Option<PathBuf>,
    pub(crate) client_key_file: Option<PathBuf>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_request_bytes: usize,
    pub(crate) mapping: crate::mapping::MappingOptions,
    pub(crate) spool: Option<crate::spool::SpoolConfig>,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        OtlpSettings {
            protocol: Protocol::default(),
            endpoint: None,
            base_endpoint: None,
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            compression: Compression::None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            retry: RetryPolicy::default(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            mapping: crate::mapping::MappingOptions::default(),
            spool: None,
        }
    }
}

impl OtlpSettings {
    /// The URL requests go to, following the OpenTelemetry specification: the signal endpoint
    /// as-is; else the base endpoint, with `/v1/traces` appended for HTTP/protobuf; else the
    /// protocol's default.
    ///
    /// # Errors
    /// [`BuildError`] naming `endpoint` when the URL is not `http://` or `https://` with a
    /// host.
    pub fn resolved_endpoint(&self) -> Result<http::Uri, BuildError> {
        let (setting, text) = match (&self.endpoint, &self.base_endpoint) {
            (Some(e), _) if self.completes_endpoint() => (
                "endpoint",
                format!("{}{HTTP_TRACES_PATH}", e.trim().trim_end_matches('/')),
            ),
            (Some(e), _) => ("endpoint", e.trim().to_owned()),
            (None, Some(base)) => (
                "base_endpoint",
                match self.protocol {
                    Protocol::Grpc => base.trim().to_owned(),
                    Protocol::HttpProtobuf | Protocol::HttpJson => {
                        format!("{}{HTTP_TRACES_PATH}", base.trim().trim_end_matches('/'))
                    }
                },
            ),
            (None, None) => ("endpoint", self.protocol.default_endpoint().to_owned()),
        };
        let uri: http::Uri = text.parse().map_err(|_| {
            BuildError::new(
                setting,
                "not a URL: expected http://HOST:PORT or https://HOST:PORT",
            )
        })?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(BuildError::new(
                    setting,
                    "the URL must start with http:// or https://",
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(BuildError::new(setting, "the URL has no host"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(BuildError::new(
                setting,
                "credentials in the URL are not supported: send them as a header",
            ));
        }
        Ok(uri)
    }
}

impl OtlpSettings {
    /// Whether an HTTP/protobuf `endpoint` without a path (`http://collector:4318`) is
    /// completed with `/v1/traces`, as a base endpoint is: no collector serves traces at `/`.
    #[must_use]
    pub fn completes_endpoint(&self) -> bool {
        let Some(e) = &self.endpoint else {
            return false;
        };
        self.protocol.is_http()
            && e.trim()
                .parse::<http::Uri>()
                .is_ok_and(|u| u.authority().is_some() && matches!(u.path(), "" | "/"))
    }
}

/// Whether `host` is a loopback name or address (plaintext there does not leave the machine).
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_resolution_follows_the_spec() {
        let mut s = OtlpSettings::default();
        assert_eq!(
            s.resolved_endpoint().unwrap().to_string(),
            "http://localhost:4318/v1/traces"
        );
        s.protocol = Protocol::Grpc;
        assert_eq!(
            s.resolved_endpoint().unwrap().to_string(),
            "http://localhost:4317/"
        );
        s.base_endpoint = Some("https://collector:4318/".into());
        s.protocol = Protocol::HttpProtobuf;
        assert_eq!(
            s.resolved_endpoint().unwrap().to_string(),
            "https://collector:4318/v1/traces"
        );
        s.endpoint = Some("https://collector:4318".into());
        assert!(s.completes_endpoint());
        assert_eq!(
            s.resolved_endpoint().unwrap().to_string(),
            "https://collector:4318/v1/traces",
            "a path-less HTTP endpoint is completed"
        );
        s.endpoint = Some("https://collector:4318/custom".into());
        assert!(!s.completes_endpoint());
        assert_eq!(
            s.resolved_endpoint().unwrap().to_string(),
            "https://collector:4318/custom"
        );
        for bad in [
            "collector:4317",
            "ftp://x",
            "http://",
            "not a url",
            "http://u:p@h:1",
        ] {
            s.endpoint = Some(bad.into());
            let e = s.resolved_endpoint().unwrap_err();
            assert_eq!(e.setting, "endpoint", "{bad}");
        }
    }

    #[test]
    fn protocol_and_compression_names() {
        assert_eq!("grpc".parse::<Protocol>().unwrap(), Protocol::Grpc);
        assert_eq!(
            "HTTP/protobuf".parse::<Protocol>().unwrap(),
            Protocol::HttpProtobuf
        );
        assert_eq!("http/json".parse::<Protocol>().unwrap(), Protocol::HttpJson);
        assert!("http/xml".parse::<Protocol>().is_err());
        assert_eq!("gzip".parse::<Compression>().unwrap(), Compression::Gzip);
        assert!("zstd".parse::<Compression>().is_err());
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        };
        for r in [0, 1, 12345, u64::MAX] {
            assert!(p.backoff(1, r) <= Duration::from_millis(100));
            assert!(p.backoff(1, r) >= Duration::from_millis(10));
            assert!(p.backoff(3, r) <= Duration::from_millis(400));
            assert!(p.backoff(30, r) <= Duration::from_secs(1));
        }
        assert_ne!(p.backoff(3, 1), p.backoff(3, 987_654_321));
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["collector", "10.0.0.1", "example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn header_debug_hides_the_value() {
        let h = Header {
            name: "authorization".into(),
            value: "Bearer s3cret".into(),
        };
        assert!(!format!("{h:?}").contains("s3cret"));
    }
}

/// The `[otlp]` table of a TraceCraft configuration file (deserializable, `tracecraft config`
/// shows it): where and how processed (redacted) runs are exported. Turn it into an exporter
/// with [`OtlpConfig::exporter`]. Header values are credentials: `Debug` and `Serialize`
/// hide them.
///
/// ```
/// let config: tracecraft_otlp::OtlpConfig = serde_json::from_str(
///     r#"{"enabled": true, "endpoint": "http://127.0.0.1:4318/v1/traces",
///         "headers": {"authorization": "Bearer token"}, "compression": "gzip"}"#,
/// )
/// .unwrap();
/// assert!(!format!("{config:?}").contains("token"));
/// let exporter = config.exporter().unwrap().build().unwrap();
/// assert_eq!(exporter.endpoint().to_string(), "http://127.0.0.1:4318/v1/traces");
/// ```
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// Export over OTLP (default false).
    pub enabled: bool,
    /// The traces URL, used as-is (like `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Default
    /// `http://localhost:4318/v1/traces` for `http/protobuf`, `http://localhost:4317` for
    /// `grpc`.
    pub endpoint: Option<String>,
    /// A base URL (like `OTEL_EXPORTER_OTLP_ENDPOINT`): `/v1/traces` is appended for
    /// `http/protobuf`; `endpoint` wins when both are set.
    pub base_endpoint: Option<String>,
    /// `http/protobuf` (default, as the OpenTelemetry specification says), `http/json` or
    /// `grpc`.
    pub protocol: Option<Protocol>,
    /// Extra headers (e.g. authorization): a table (`[otlp.headers]` with
    /// `authorization = "..."`) or a list of `[name, value]` pairs. Values are credentials:
    /// `Debug` and `Serialize` hide them.
    #[serde(
        deserialize_with = "headers_table_or_pairs",
        serialize_with = "hidden_header_values"
    )]
    pub headers: Vec<(String, String)>,
    /// Per-attempt timeout in milliseconds (default 10000).
    pub timeout_ms: Option<u64>,
    /// `gzip` or `none` (default).
    pub compression: Option<Compression>,
    /// A PEM file of CA certificates trusted for `https://` endpoints besides the public and
    /// platform roots (a private collector's CA).
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) for collectors that require mutual TLS; needs
    /// `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// The PEM private key of `client_cert_file` (its content never appears in errors).
    pub client_key_file: Option<PathBuf>,
    /// `[otlp.mapping]`: what spans carry ([`MappingOptions`](crate::mapping::MappingOptions)):
    /// `dialects` (GenAI, OpenInference, MLflow; default all), `content` (`full` or `none`),
    /// `resource_attributes` (`OTEL_RESOURCE_ATTRIBUTES` adds to them), `service_name`.
    pub mapping: crate::mapping::MappingOptions,
    /// `[otlp.spool]`: a durable spool ([`SpoolConfig`](crate::SpoolConfig): `dir`,
    /// `max_bytes`, ...). Batches that still fail after their retries are written there and
    /// re-sent, in the background and at the next start, instead of being lost.
    pub spool: Option<crate::spool::SpoolConfig>,
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("enabled", &self.enabled)
            .field("endpoint", &self.endpoint)
            .field("base_endpoint", &self.base_endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| (k.as_str(), "<hidden>"))
                    .collect::<Vec<_>>(),
            )
            .field("timeout_ms", &self.timeout_ms)
            .field("compression", &self.compression)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("mapping", &self.mapping)
            .field("spool", &self.spool)
            .finish()
    }
}

impl OtlpConfig {
    /// Checks what can be checked without building: a client certificate comes with its key
    /// and the other way round, and the timeout is not zero.
    ///
    /// # Errors
    /// [`BuildError`] naming the setting as the file names it (`client_key_file`,
    /// `timeout_ms`, ...).
    pub fn validate(&self) -> Result<(), BuildError> {
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => {
                return Err(BuildError::new(
                    "client_key_file",
                    "client_cert_file needs its private key file too",
                ));
            }
            (None, Some(_)) => {
                return Err(BuildError::new(
                    "client_cert_file",
                    "client_key_file needs its certificate file too",
                ));
            }
            _ => {}
        }
        if self.timeout_ms == Some(0) {
            return Err(BuildError::new("timeout_ms", "must be greater than zero"));
        }
        Ok(())
    }

    /// An exporter builder with these settings; set what the table does not hold (the
    /// service name, a retry policy) on it, then `build()`. `enabled` is the caller's to
    /// honour.
    ///
    /// # Errors
    /// [`BuildError`] from [`validate`](Self::validate).
    pub fn exporter(&self) -> Result<crate::OtlpExporterBuilder, BuildError> {
        self.validate()?;
        let mut builder = crate::OtlpExporter::builder();
        if let Some(protocol) = self.protocol {
            builder = builder.protocol(protocol);
        }
        if let Some(e) = &self.endpoint {
            builder = builder.endpoint(e.clone());
        }
        if let Some(e) = &self.base_endpoint {
            builder = builder.base_endpoint(e.clone());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.clone(), value.clone());
        }
        if let Some(ms) = self.timeout_ms {
            builder = builder.timeout(Duration::from_millis(ms));
        }
        if let Some(compression) = self.compression {
            builder = builder.compression(compression);
        }
        if let Some(ca) = &self.ca_file {
            builder = builder.ca_file(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.client_cert_file, &self.client_key_file) {
            builder = builder.client_identity(cert.clone(), key.clone());
        }
        builder = builder.mapping(self.mapping.clone());
        if let Some(spool) = &self.spool {
            builder = builder.spool(spool.clone());
        }
        Ok(builder)
    }
}

/// Header names with their values hidden.
fn hidden_header_values<S: serde::Serializer>(
    headers: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(headers.iter().map(|(k, _)| (k, "<hidden>")))
}

/// `[otlp.headers]` as a table or as `[[name, value], ...]`.
fn headers_table_or_pairs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Table(std::collections::BTreeMap<String, String>),
        Pairs(Vec<(String, String)>),
    }
    match <Headers as serde::Deserialize>::deserialize(d) {
        Ok(Headers::Table(t)) => Ok(t.into_iter().collect()),
        Ok(Headers::Pairs(p)) => Ok(p),
        Err(_) => Err(serde::de::Error::custom(
            "expected a table of name = \"value\" strings or a list of [name, value] pairs",
        )),
    }
}
