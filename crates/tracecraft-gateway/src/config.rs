//! [`GatewayConfig`]: the `[gateway]` table of `tracecraft.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default OTLP/gRPC address: loopback only.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:4317";
/// Default OTLP/HTTP address: loopback only.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:4318";
/// Default largest request body (compressed and decompressed): 4 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Default largest number of spans in one request.
pub const DEFAULT_MAX_SPANS_PER_REQUEST: usize = 50_000;
/// Default number of accepted requests waiting for the pipeline.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Default quiet period after which an incomplete trace is processed as it is.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_secs(5);

/// `[gateway]`: how `tracecraft serve` listens, whom it accepts, and where tenants' runs go.
/// `Debug` and `Serialize` never show token digests' sources' values (only their names).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// OTLP/gRPC listen address (default `127.0.0.1:4317`); `None` disables it.
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address (default `127.0.0.1:4318`); `None` disables it.
    pub http: Option<SocketAddr>,
    /// TLS for both listeners.
    pub tls: Option<TlsFiles>,
    /// Serve plaintext on a non-loopback address (logged as a warning). Without TLS or this,
    /// a non-loopback bind is refused.
    pub allow_insecure: bool,
    /// Largest request body in bytes, before and after decompression (default 4 MiB).
    pub max_request_bytes: usize,
    /// Largest number of spans in one request (default 50,000).
    pub max_spans_per_request: usize,
    /// Requests handled at once; more get 503 / `UNAVAILABLE` (default 512).
    pub max_concurrent_requests: usize,
    /// Accepted requests waiting for the pipeline (default 256); when full, 503 /
    /// `UNAVAILABLE` with `Retry-After`.
    pub queue_capacity: usize,
    /// Milliseconds without a new span after which an incomplete trace is processed
    /// (default 5000).
    pub quiet_period_ms: u64,
    /// Spans held in incomplete traces at most; beyond, the oldest traces are processed
    /// early (default 1,000,000).
    pub max_pending_spans: usize,
    /// Accepted bearer tokens. Empty: no authentication (loopback use).
    pub tokens: Vec<TokenConfig>,
    /// Where a tenant's runs are stored: a store URL with `{tenant}`
    /// (e.g. `sqlite:traces/{tenant}.db`). Runs without a tenant go to `[storage] url`.
    pub tenant_store: Option<String>,
    /// Forward processed runs to this OTLP endpoint (with the spool of `[otlp]`).
    pub forward: Option<String>,
    /// Seconds between metrics lines in the log (default 60; 0 disables).
    pub log_interval_s: u64,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("grpc", &self.grpc)
            .field("http", &self.http)
            .field("tls", &self.tls)
            .field("allow_insecure", &self.allow_insecure)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_spans_per_request", &self.max_spans_per_request)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("queue_capacity", &self.queue_capacity)
            .field("quiet_period_ms", &self.quiet_period_ms)
            .field("max_pending_spans", &self.max_pending_spans)
            .field("tokens", &self.tokens.len())
            .field("tenant_store", &self.tenant_store)
            .field("forward", &self.forward.as_ref().map(|_| "<set>"))
            .field("log_interval_s", &self.log_interval_s)
            .finish()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            grpc: DEFAULT_GRPC_ADDR.parse().ok(),
            http: DEFAULT_HTTP_ADDR.parse().ok(),
            tls: None,
            allow_insecure: false,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_spans_per_request: DEFAULT_MAX_SPANS_PER_REQUEST,
            max_concurrent_requests: 512,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            quiet_period_ms: DEFAULT_QUIET_PERIOD.as_millis() as u64,
            max_pending_spans: 1_000_000,
            tokens: Vec::new(),
            tenant_store: None,
            forward: None,
            log_interval_s: 60,
        }
    }
}

/// Server certificate files (PEM), and the CA that client certificates must chain to for
/// mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Require client certificates signed by this CA (PEM).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Certificate chain and key files.
    #[must_use]
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        }
    }

    /// Also require client certificates signed by this CA.
    #[must_use]
    pub fn client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca.into());
        self
    }
}

/// One accepted bearer token: its SHA-256 digest (hex), or a file or environment variable
/// holding the token itself; optionally bound to a tenant.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenConfig {
    /// SHA-256 of the token, 64 hex digits (`printf %s "$TOKEN" | sha256sum`). Serialized
    /// (shown) as `"<hidden>"`: a digest of a weak token can be brute-forced.
    #[serde(serialize_with = "hidden_digest")]
    pub sha256: Option<String>,
    /// A file whose content (trimmed) is the token.
    pub file: Option<PathBuf>,
    /// An environment variable whose value is the token.
    pub env: Option<String>,
    /// The tenant whose store receives this token's spans (`[A-Za-z0-9_-]`, at most 64).
    pub tenant: Option<String>,
}

fn hidden_digest<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<hidden>"),
        None => s.serialize_none(),
    }
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("sha256", &self.sha256.as_ref().map(|_| "<hidden>"))
            .field("file", &self.file)
            .field("env", &self.env)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl TokenConfig {
    /// A token given by its SHA-256 digest (hex).
    #[must_use]
    pub fn sha256(digest: impl Into<String>) -> Self {
        TokenConfig {
            sha256: Some(digest.into()),
            ..TokenConfig::default()
        }
    }

    /// A token read from a file.
    #[must_use]
    pub fn file(path: impl Into<PathBuf>) -> Self {
        TokenConfig {
            file: Some(path.into()),
            ..TokenConfig::default()
        }
    }

    /// A token read from an environment variable.
    #[must_use]
    pub fn env(var: impl Into<String>) -> Self {
        TokenConfig {
            env: Some(var.into()),
            ..TokenConfig::default()
        }
    }

    /// Binds the token to a tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

/// A setting that cannot be used; names the field, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field's value is unusable.
    #[error("gateway.{field}: {message}")]
    Invalid {
        /// The field, e.g. `tokens[0].sha256`.
        field: String,
        /// What is wrong (never the value of a credential).
        message: String,
    },
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether `name` is a usable tenant name: 1..=64 of `[A-Za-z0-9_-]` (it becomes part of
/// a file name).
#[must_use]
pub fn valid_tenant(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl GatewayConfig {
    /// A builder from the defaults.
    pub fn builder() -> GatewayConfigBuilder {
        GatewayConfigBuilder(GatewayConfig::default())
    }

    /// The quiet period.
    #[must_use]
    pub fn quiet_period(&self) -> Duration {
        Duration::from_millis(self.quiet_period_ms)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first unusable field: zero limits, a non-loopback
    /// address without TLS or `allow_insecure`, a malformed digest, a token with no source
    /// or several, a bad tenant name, a `tenant_store` without `{tenant}` while tokens
    /// name tenants.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.grpc.is_none() && self.http.is_none() {
            return Err(invalid("grpc", "both listeners are disabled"));
        }
        for (name, v) in [
            ("max_request_bytes", self.max_request_bytes),
            ("max_spans_per_request", self.max_spans_per_request),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("queue_capacity", self.queue_capacity),
            ("max_pending_spans", self.max_pending_spans),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if self.tls.is_none() && !self.allow_insecure {
            for (name, addr) in [("grpc", self.grpc), ("http", self.http)] {
                if let Some(a) = addr
                    && !a.ip().is_loopback()
                {
                    return Err(invalid(
                        name,
                        format!(
                            "{a} is not a loopback address: configure [gateway.tls] (cert, key) \
                             or allow_insecure (--allow-insecure)"
                        ),
                    ));
                }
            }
        }
        let mut tenants = false;
        for (i, t) in self.tokens.iter().enumerate() {
            let sources = usize::from(t.sha256.is_some())
                + usize::from(t.file.is_some())
                + usize::from(t.env.is_some());
            if sources != 1 {
                return Err(invalid(
                    format!("tokens[{i}]"),
                    "give exactly one of sha256, file, env",
                ));
            }
            if let Some(d) = &t.sha256
                && (d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(invalid(
                    format!("tokens[{i}].sha256"),
                    "expected 64 hex digits (a SHA-256 digest)",
                ));
            }
            if let Some(tenant) = &t.tenant {
                tenants = true;
                if !valid_tenant(tenant) {
                    return Err(invalid(
                        format!("tokens[{i}].tenant"),
                        "expected 1 to 64 of A-Z a-z 0-9 _ -",
                    ));
                }
            }
        }
        if let Some(pattern) = &self.tenant_store
            && !pattern.contains("{tenant}")
        {
            return Err(invalid("tenant_store", "must contain {tenant}"));
        }
        if tenants && self.tenant_store.is_none() {
            return Err(invalid(
                "tenant_store",
                "tokens name tenants: set tenant_store (e.g. \"sqlite:traces/{tenant}.db\")",
            ));
        }
        Ok(())
    }
}

/// Builds a [`GatewayConfig`]; [`build`](GatewayConfigBuilder::build) validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct GatewayConfigBuilder(GatewayConfig);

impl GatewayConfigBuilder {
    /// OTLP/gRPC address (`None` disables it).
    pub fn grpc(mut self, addr: Option<SocketAddr>) -> Self {
        self.0.grpc = addr;
        self
    }
    /// OTLP/HTTP address (`None` disables it).
    pub fn http(mut self, addr: Option<SocketAddr>) -> Self {
        self.0.http = addr;
        self
    }
    /// TLS files.
    pub fn tls(mut self, tls: TlsFiles) -> Self {
        self.0.tls = Some(tls);
        self
    }
    /// Allow plaintext on non-loopback addresses.
    pub fn allow_insecure(mut self, yes: bool) -> Self {
        self.0.allow_insecure = yes;
        self
    }
    /// Largest request body.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.0.max_request_bytes = n;
        self
    }
    /// Largest number of spans per request.
    pub fn max_spans_per_request(mut self, n: usize) -> Self {
        self.0.max_spans_per_request = n;
        self
    }
    /// Requests handled at once.
    pub fn max_concurrent_requests(mut self, n: usize) -> Self {
        self.0.max_concurrent_requests = n;
        self
    }
    /// Requests waiting for the pipeline.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.0.queue_capacity = n;
        self
    }
    /// Quiet period of incomplete traces.
    pub fn quiet_period(mut self, d: Duration) -> Self {
        self.0.quiet_period_ms = d.as_millis() as u64;
        self
    }
    /// Spans held in incomplete traces at most.
    pub fn max_pending_spans(mut self, n: usize) -> Self {
        self.0.max_pending_spans = n;
        self
    }
    /// Adds an accepted token.
    pub fn token(mut self, token: TokenConfig) -> Self {
        self.0.tokens.push(token);
        self
    }
    /// The tenant store pattern.
    pub fn tenant_store(mut self, pattern: impl Into<String>) -> Self {
        self.0.tenant_store = Some(pattern.into());
        self
    }
    /// Forward processed runs to this OTLP endpoint.
    pub fn forward(mut self, url: impl Into<String>) -> Self {
        self.0.forward = Some(url.into());
        self
    }
    /// Seconds between metrics log lines (0 disables).
    pub fn log_interval_s(mut self, s: u64) -> Self {
        self.0.log_interval_s = s;
        self
    }
    /// The validated configuration.
    ///
    /// # Errors
    /// As [`GatewayConfig::validate`].
    pub fn build(self) -> Result<GatewayConfig, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_valid() {
        let c = GatewayConfig::default();
        assert!(c.grpc.unwrap().ip().is_loopback());
        assert!(c.http.unwrap().ip().is_loopback());
        c.validate().unwrap();
    }

    #[test]
    fn non_loopback_needs_tls_or_allow_insecure() {
        let addr = Some("0.0.0.0:4317".parse().unwrap());
        let e = GatewayConfig::builder().grpc(addr).build().unwrap_err();
        assert!(e.to_string().contains("gateway.grpc"), "{e}");
        GatewayConfig::builder()
            .grpc(addr)
            .allow_insecure(true)
            .build()
            .unwrap();
        GatewayConfig::builder()
            .grpc(addr)
            .tls(TlsFiles::new("c.pem", "k.pem"))
            .build()
            .unwrap();
    }

    #[test]
    fn bad_tokens_are_named_without_values() {
        let e = GatewayConfig::builder()
            .token(TokenConfig::sha256("secretish-not-hex"))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("tokens[0].sha256"));
        assert!(!e.to_string().contains("secretish"));
        let e = GatewayConfig::builder()
            .token(TokenConfig::env("T").tenant("../etc"))
            .tenant_store("sqlite:t/{tenant}.db")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("tokens[0].tenant"));
        let e = GatewayConfig::builder()
            .token(TokenConfig::env("T").tenant("a"))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("tenant_store"));
    }

    #[test]
    fn toml_table_round_trips_and_debug_hides_digests() {
        let c: GatewayConfig = serde_json::from_value(serde_json::json!({
            "http": "127.0.0.1:9999",
            "tokens": [{"sha256": "ab".repeat(32), "tenant": "acme"}],
            "tenant_store": "sqlite:traces/{tenant}.db",
        }))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.http.unwrap().port(), 9999);
        assert!(!format!("{c:?}").contains("abab"));
        let shown = serde_json::to_string(&c).unwrap();
        assert!(
            !shown.contains("abab") && shown.contains("<hidden>"),
            "{shown}"
        );
    }
}
