//! [`OtlpExporter`]: sends processed runs to an OTLP collector over gRPC or HTTP/protobuf.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tracecraft_core::{ExportError, Exporter, ProcessedRun};

use crate::config::{
    BuildError, Compression, HTTP_TRACES_PATH, Header, OtlpSettings, Protocol, RetryPolicy,
    is_loopback,
};
use crate::error::{Cause, ExportFailure, transport_cause};
use crate::mapping::{self, MappingOptions};
use crate::resend::{Resender, SpoolFlush, is_content_rejection, resend_pending};
use crate::spool::{Spool, SpoolConfig};

/// The `User-Agent` of every request.
const USER_AGENT_VALUE: &str = concat!("tracecraft-otlp/", env!("CARGO_PKG_VERSION"));
/// The largest response body read (a collector's reply is a few bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest server-supplied partial-success message that is logged.
const MAX_LOGGED_MESSAGE: usize = 256;

/// Counters of an [`OtlpExporter`], readable through a [`StatsHandle`] while a batch exporter
/// owns the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OtlpStats {
    /// Requests the collector accepted (fully or partially).
    pub requests_ok: u64,
    /// Requests that failed after their last attempt.
    pub requests_failed: u64,
    /// Spans in accepted requests (rejected ones of a partial success included).
    pub spans_sent: u64,
    /// Spans a collector reported as rejected in a partial success.
    pub spans_rejected: u64,
    /// Attempts after the first (retries).
    pub retries: u64,
    /// The spool's counters (all zero without a spool).
    pub spool: crate::spool::SpoolStats,
}

#[derive(Debug, Default)]
struct Counters {
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    spans_sent: AtomicU64,
    spans_rejected: AtomicU64,
    retries: AtomicU64,
}

/// A shared view of an exporter's counters.
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<Counters>, Option<Arc<Spool>>);

impl StatsHandle {
    /// The counters now.
    #[must_use]
    pub fn get(&self) -> OtlpStats {
        let c = &self.0;
        OtlpStats {
            requests_ok: c.requests_ok.load(Ordering::Relaxed),
            requests_failed: c.requests_failed.load(Ordering::Relaxed),
            spans_sent: c.spans_sent.load(Ordering::Relaxed),
            spans_rejected: c.spans_rejected.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            spool: self.1.as_ref().map(|s| s.stats()).unwrap_or_default(),
        }
    }
}

/// Builds an [`OtlpExporter`]; see [`OtlpExporter::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct OtlpExporterBuilder {
    settings: OtlpSettings,
}

impl OtlpExporterBuilder {
    /// The transport (default [`Protocol::HttpProtobuf`], as the specification says).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.settings.protocol = protocol;
        self
    }
    /// The URL used as-is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` semantics); wins over
    /// [`base_endpoint`](Self::base_endpoint).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.settings.endpoint = Some(url.into());
        self
    }
    /// A base URL (`OTEL_EXPORTER_OTLP_ENDPOINT` semantics): `/v1/traces` is appended for
    /// HTTP/protobuf, gRPC uses it as-is.
    pub fn base_endpoint(mut self, url: impl Into<String>) -> Self {
        self.settings.base_endpoint = Some(url.into());
        self
    }
    /// Adds a header sent with every request (`authorization`, `x-api-key`, ...). Values are
    /// credentials: never shown in `Debug`, errors or logs.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
    /// The per-attempt timeout (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }
    /// Body compression (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.settings.compression = compression;
        self
    }
    /// A PEM file of CA certificates trusted for `https://` endpoints, besides the public and
    /// platform roots (for private collectors).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.ca_file = Some(path.into());
        self
    }
    /// A client certificate chain and its private key (PEM files) for collectors that
    /// require mutual TLS. The key file's content never appears in errors or logs.
    pub fn client_identity(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.settings.client_cert_file = Some(cert_file.into());
        self.settings.client_key_file = Some(key_file.into());
        self
    }
    /// The retry policy (default: 5 attempts, 500 ms doubling to 5 s, 30 s in all).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.settings.retry = retry;
        self
    }
    /// The largest request before compression (default 4 MiB); larger batches are split.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_request_bytes = bytes;
        self
    }
    /// The resource's `service.name` for runs without a `service.name` attribute.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.settings.mapping.service_name = Some(name.into());
        self
    }
    /// Adds a resource attribute (`service.version`, `openinference.project.name`, ...;
    /// `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings
            .mapping
            .resource_attributes
            .insert(key.into(), value.into());
        self
    }
    /// The attribute dialects (default: GenAI, OpenInference and MLflow).
    pub fn dialects(mut self, dialects: crate::mapping::Dialects) -> Self {
        self.settings.mapping.dialects = dialects;
        self
    }
    /// Whether content is exported (default [`Content::Full`](crate::mapping::Content::Full)).
    pub fn content(mut self, content: crate::mapping::Content) -> Self {
        self.settings.mapping.content = content;
        self
    }
    /// Every mapping setting at once.
    pub fn mapping(mut self, options: MappingOptions) -> Self {
        self.settings.mapping = options;
        self
    }

    /// A durable spool: requests that still fail after their retries are written there
    /// (instead of being lost) and re-sent oldest first, in the background, as soon as the
    /// collector answers, and at the next start of any process using the same directory.
    /// While the collector is down, later requests get one attempt each before being spooled.
    pub fn spool(mut self, config: SpoolConfig) -> Self {
        self.settings.spool = Some(config);
        self
    }

    /// The settings so far.
    #[must_use]
    pub fn settings(&self) -> &OtlpSettings {
        &self.settings
    }

    /// Validates the settings and builds the exporter (no connection is made yet).
    ///
    /// # Errors
    /// [`BuildError`] naming the setting: a malformed endpoint, header name or value, an
    /// unreadable CA file, a zero timeout or request size.
    pub fn build(self) -> Result<OtlpExporter, BuildError> {
        OtlpExporter::from_settings(self.settings)
    }
}

enum Transport {
    Grpc(tonic::client::Grpc<crate::rpc::CheckedChannel>),
    Http(HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// Exports processed runs to an OTLP collector: one span per run and per step (see the crate
/// docs for the mapping), over gRPC or HTTP/protobuf, with TLS (rustls) for `https://`
/// endpoints, retries with backoff on retryable failures, and a timeout on every attempt.
///
/// It owns a small single-threaded tokio runtime, so callers need none; wrap it in the
/// pipeline's `BatchExporter` so traced code never waits for the network. A batch larger than
/// one request is pipelined: a helper thread encodes the next request while the current one
/// is sent (two requests in memory: the one sent and the next, plus at most four buffers of
/// up to 8 MiB that requests sent leave to the next ones); requests are still sent,
/// retried, spooled and counted one after the other, in order. `export` blocks its caller
/// until the batch is sent or has failed for good (at most the retry budget plus one
/// timeout); called from inside an async task it runs on a helper thread, so it never panics
/// there, but it still blocks that task's thread.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use tracecraft_otlp::{OtlpExporter, Protocol, RetryPolicy};
///
/// let exporter = OtlpExporter::builder()
///     .protocol(Protocol::HttpProtobuf)
///     .base_endpoint("https://otlp.example.com")      // POSTs to /v1/traces
///     .header("x-api-key", "<from your secret store>")
///     .retry(RetryPolicy { max_attempts: 3, ..RetryPolicy::default() })
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// let stats = exporter.stats_handle(); // still readable once a BatchExporter owns it
/// # drop((exporter, stats));
/// # Ok::<(), tracecraft_otlp::BuildError>(())
/// ```
pub struct OtlpExporter {
    name: &'static str,
    protocol: Protocol,
    endpoint: http::Uri,
    endpoint_completed: bool,
    headers: HeaderMap,
    timeout: Duration,
    compression: Compression,
    retry: RetryPolicy,
    max_request_bytes: usize,
    mapping: Arc<MappingOptions>,
    runtime: Option<tokio::runtime::Runtime>,
    transport: Option<Transport>,
    counters: Arc<Counters>,
    random: u64,
    spool: Option<Arc<Spool>>,
    resender: Option<Resender>,
    /// What it was built from (for [`OtlpExporter::with_spool`]).
    settings: OtlpSettings,
    /// The last request was spooled: the next gets a single attempt.
    collector_down: bool,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint.to_string())
            .field(
                "headers",
                &self
                    .headers
                    .keys()
                    .map(|k| format!("{k}: <hidden>"))
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("retry", &self.retry)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("shut_down", &self.transport.is_none())
            .finish_non_exhaustive()
    }
}

fn header_map(headers: &[Header]) -> Result<HeaderMap, BuildError> {
    let mut map = HeaderMap::new();
    for h in headers {
        let name = HeaderName::from_bytes(h.name.trim().to_ascii_lowercase().as_bytes()).map_err(
            |_| BuildError::new("headers", "a header name is not a valid HTTP header name"),
        )?;
        let mut value = HeaderValue::from_str(h.value.trim()).map_err(|_| {
            BuildError::new(
                "headers",
                format!("the value of header `{name}` is not a valid HTTP header value"),
            )
        })?;
        value.set_sensitive(true);
        // Reserved for the transport: sending our own would corrupt the request.
        if matches!(
            name.as_str(),
            "content-type" | "content-length" | "content-encoding" | "te" | "host"
        ) || name.as_str().starts_with("grpc-")
        {
            return Err(BuildError::new(
                "headers",
                format!("header `{name}` is set by the exporter and cannot be configured"),
            ));
        }
        map.append(name, value);
    }
    Ok(map)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() | 1
}

/// One attempt's failure: its cause, whether another attempt may help, and the delay the
/// server asked for.
#[derive(Debug)]
struct Failure {
    cause: Cause,
    retryable: bool,
    delay: Option<Duration>,
}

impl Failure {
    fn of(cause: Cause) -> Self {
        Failure {
            cause,
            retryable: cause.is_retryable(),
            delay: None,
        }
    }
}

impl OtlpExporter {
    /// A builder with the specification's defaults (HTTP/protobuf to
    /// `http://localhost:4318/v1/traces`, 10 s timeout, retries on).
    pub fn builder() -> OtlpExporterBuilder {
        OtlpExporterBuilder::default()
    }

    fn from_settings(mut s: OtlpSettings) -> Result<OtlpExporter, BuildError> {
        let Some(spool_config) = s.spool.take() else {
            return Self::without_spool(s);
        };
        let spool = Arc::new(Spool::open(&spool_config).map_err(|e| {
            BuildError::new("spool", format!("cannot open the spool directory: {e}"))
        })?);
        let mut exporter = Self::without_spool(s.clone())?;
        if spool_config.background {
            // The re-sender has its own connection (and runtime), sharing the counters.
            let mut sender = Self::without_spool(s)?;
            sender.counters = Arc::clone(&exporter.counters);
            exporter.resender = Some(
                Resender::start(sender, Arc::clone(&spool), spool_config.resend_interval())
                    .map_err(|e| {
                        BuildError::new("spool", format!("cannot start the re-send thread: {e}"))
                    })?,
            );
        }
        exporter.spool = Some(spool);
        Ok(exporter)
    }

    fn without_spool(s: OtlpSettings) -> Result<OtlpExporter, BuildError> {
        let settings = s.clone();
        let endpoint = s.resolved_endpoint()?;
        let endpoint_completed = s.completes_endpoint();
        if endpoint_completed {
            tracing::info!(
                endpoint = %endpoint,
                "the OTLP/HTTP endpoint has no path: sending to {HTTP_TRACES_PATH}"
            );
        }
        let headers = header_map(&s.headers)?;
        if s.timeout.is_zero() {
            return Err(BuildError::new("timeout", "must be greater than zero"));
        }
        if s.max_request_bytes == 0 {
            return Err(BuildError::new("max_request_bytes", "must be at least 1"));
        }
        if s.retry.max_attempts == 0 {
            return Err(BuildError::new("retry", "max_attempts must be at least 1"));
        }
        let host = endpoint.host().unwrap_or_default();
        if endpoint.scheme_str() == Some("http") && !headers.is_empty() && !is_loopback(host) {
            tracing::warn!(
                host,
                headers = headers.len(),
                "OTLP headers (credentials) are sent over plaintext http:// to a non-loopback host; use https://"
            );
        }
        let identity = match (&s.client_cert_file, &s.client_key_file) {
            (Some(cert_file), Some(key_file)) => Some(crate::tls::ClientIdentity {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(BuildError::new(
                    "client_key_file",
                    "a client certificate needs its private key file too",
                ));
            }
            (None, Some(_)) => {
                return Err(BuildError::new(
                    "client_cert_file",
                    "a client private key needs its certificate file too",
                ));
            }
        };
        let tls = crate::tls::client_config(s.ca_file.as_deref(), identity)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                BuildError::new(
                    "runtime",
                    format!("cannot start the exporter's runtime: {e}"),
                )
            })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(s.timeout));
        let transport = match s.protocol {
            Protocol::Grpc => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http2()
                    .wrap_connector(http);
                let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
                    .map_err(|_| BuildError::new("endpoint", "not a valid gRPC endpoint URL"))?
                    .user_agent(USER_AGENT_VALUE)
                    .map_err(|_| BuildError::new("endpoint", "invalid user agent"))?
                    // Each call is bounded by our own timeout (and `grpc-timeout` tells the
                    // server); a second channel-level timer would race it.
                    .connect_timeout(s.timeout);
                // The channel's worker task is spawned on our runtime.
                let _guard = runtime.enter();
                let channel = channel.connect_with_connector_lazy(connector);
                let mut client = tonic::client::Grpc::new(crate::rpc::CheckedChannel(channel));
                if s.compression == Compression::Gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                Transport::Grpc(client)
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                let client = HyperClient::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_timer(hyper_util::rt::TokioTimer::new())
                    .build(connector);
                Transport::Http(client)
            }
        };
        Ok(OtlpExporter {
            name: match s.protocol {
                Protocol::Grpc => "otlp-grpc",
                Protocol::HttpProtobuf | Protocol::HttpJson => "otlp-http",
            },
            protocol: s.protocol,
            endpoint,
            endpoint_completed,
            headers,
            timeout: s.timeout,
            compression: s.compression,
            retry: s.retry,
            max_request_bytes: s.max_request_bytes,
            mapping: Arc::new(s.mapping),
            runtime: Some(runtime),
            transport: Some(transport),
            counters: Arc::new(Counters::default()),
            random: random_seed(),
            spool: None,
            resender: None,
            settings,
            collector_down: false,
        })
    }

    /// The URL requests go to.
    #[must_use]
    pub fn endpoint(&self) -> &http::Uri {
        &self.endpoint
    }

    /// Whether the configured HTTP endpoint had no path and `/v1/traces` was appended (the
    /// CLI says so).
    #[must_use]
    pub fn endpoint_completed(&self) -> bool {
        self.endpoint_completed
    }

    /// The transport.
    #[must_use]
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// A handle on the counters, still readable once a batch exporter owns the exporter.
    #[must_use]
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.counters), self.spool.clone())
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: jitter only, not cryptography.
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The error a failed request ends with: the typed cause, the collector, the attempts.
    fn failure(&self, cause: Cause, attempts: u32) -> ExportError {
        ExportError::Failed {
            exporter: self.name.to_owned(),
            cause: Box::new(ExportFailure {
                collector: self
                    .endpoint
                    .authority()
                    .map_or_else(String::new, ToString::to_string),
                cause,
                attempts,
            }),
        }
    }

    /// This exporter rebuilt with a spool (for code that received a built exporter, such as
    /// `tracecraft spool flush`).
    ///
    /// # Errors
    /// [`BuildError`] naming `spool` when the directory cannot be opened.
    pub fn with_spool(mut self, config: SpoolConfig) -> Result<OtlpExporter, BuildError> {
        let mut settings = self.settings.clone();
        settings.spool = Some(config);
        let _ = Exporter::shutdown(&mut self, Duration::ZERO);
        Self::from_settings(settings)
    }

    /// The spool, if one is configured.
    #[must_use]
    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_deref()
    }

    /// Re-sends the spool now, oldest first, one attempt per request, until it is empty, the
    /// collector fails, or `timeout` passes (`tracecraft spool flush`). What is not sent stays
    /// spooled.
    ///
    /// # Errors
    /// [`ExportError::Shutdown`] after `shutdown`; a collector failure is reported in
    /// [`SpoolFlush::error`], not as an error.
    pub fn flush_spool(&mut self, timeout: Duration) -> Result<SpoolFlush, ExportError> {
        if self.transport.is_none() {
            return Err(ExportError::Shutdown {
                exporter: self.name.to_owned(),
            });
        }
        let Some(spool) = self.spool.clone() else {
            return Ok(SpoolFlush::default());
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        Ok(resend_pending(
            self,
            &spool,
            &stop,
            Some(Instant::now() + timeout),
        ))
    }

    /// Sends one request with at most `max_attempts` attempts (the policy's other limits
    /// apply).
    pub(crate) fn send_with_attempts(
        &mut self,
        request: &ExportTraceServiceRequest,
        max_attempts: u32,
    ) -> Result<(), ExportError> {
        self.send(
            Outgoing::Tree(request),
            max_attempts.min(self.retry.max_attempts).max(1),
        )
    }

    /// Sends the requests of one batch in order: retries within the policy, spools what
    /// fails for good (later requests then get one attempt each while the collector is down),
    /// and stops at the first failure that the next request would meet too.
    fn send_all(&mut self, requests: impl Iterator<Item = Request>) -> Result<(), ExportError> {
        let mut first_error = None;
        for request in requests {
            let attempts = if self.collector_down {
                1
            } else {
                self.retry.max_attempts
            };
            let result = self.send(request.as_outgoing(), attempts);
            if let Some(spool) = &self.spool {
                match &result {
                    Ok(()) => {
                        self.collector_down = false;
                        if let Some(resender) = &self.resender {
                            resender.collector_answered();
                        }
                    }
                    Err(e) if !is_content_rejection(e) && e.cause().is_some() => {
                        let spans = request.as_outgoing().spans();
                        let written = match &request {
                            Request::Encoded(e) => spool.write_encoded(e),
                            Request::Tree(t) => spool.write_request(t),
                        };
                        match written {
                            Ok(()) => {
                                tracing::warn!(
                                    exporter = self.name,
                                    spans,
                                    "OTLP export failed, spooled for later: {e}"
                                );
                                self.collector_down = true;
                                if let Some(resender) = &self.resender {
                                    resender.mark_pending();
                                }
                                continue;
                            }
                            Err(spool_error) => tracing::error!(
                                exporter = self.name,
                                spans,
                                "OTLP export failed and the spool cannot take the request: {spool_error}"
                            ),
                        }
                    }
                    Err(_) => {}
                }
            }
            if let Err(e) = result {
                // Fatal errors (and exhausted retries) do not get better for the next
                // request of the same batch if the collector is down; rejected content might.
                let stop = e
                    .cause()
                    .and_then(|c| c.downcast_ref::<ExportFailure>())
                    .is_none_or(|f| {
                        matches!(
                            f.cause,
                            Cause::Connect(_) | Cause::Timeout { .. } | Cause::Tls(_)
                        )
                    });
                first_error.get_or_insert(e);
                if stop {
                    break;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The body this exporter's protocol sends: protobuf (gRPC, HTTP/protobuf) or OTLP/JSON,
    /// uncompressed.
    fn raw_body(&self, request: Outgoing<'_>) -> Option<Bytes> {
        match (self.protocol, request) {
            (Protocol::HttpJson, Outgoing::Tree(r)) => serde_json::to_vec(r).ok().map(Bytes::from),
            (Protocol::HttpJson, Outgoing::Encoded(e)) => {
                let r = ExportTraceServiceRequest::decode(e.body().clone()).ok()?;
                serde_json::to_vec(&r).ok().map(Bytes::from)
            }
            (_, Outgoing::Encoded(e)) => Some(e.body().clone()),
            (_, Outgoing::Tree(r)) => Some(Bytes::from(r.encode_to_vec())),
        }
    }

    /// Sends one request, retrying retryable failures within the policy.
    fn send(&mut self, request: Outgoing<'_>, max_attempts: u32) -> Result<(), ExportError> {
        let spans = request.spans();
        let body = match self.raw_body(request) {
            Some(raw) if self.protocol == Protocol::Grpc => Some(raw),
            Some(raw) => self.http_body(raw),
            None => None,
        };
        let Some(body) = body else {
            return Err(self.failure(Cause::Encode, 1));
        };
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = match self.protocol {
                Protocol::Grpc => self.attempt_grpc(body.clone()),
                Protocol::HttpProtobuf | Protocol::HttpJson => self.attempt_http(body.clone()),
            };
            let Failure {
                cause,
                retryable,
                delay,
            } = match result {
                Ok(response) => {
                    self.record_success(spans, response);
                    return Ok(());
                }
                Err(failure) => failure,
            };
            if !retryable {
                self.counters
                    .requests_failed
                    .fetch_add(1, Ordering::Relaxed);
                let error = self.failure(cause, attempt);
                tracing::warn!(exporter = self.name, spans, "OTLP export failed: {error}");
                return Err(error);
            }
            let random = self.next_random();
            let backoff = self.retry.backoff(attempt, random);
            let wait = delay.map_or(backoff, |d| d.max(backoff));
            let out_of_time = started.elapsed() + wait > self.retry.max_elapsed;
            if attempt >= max_attempts || out_of_time {
                self.counters
                    .requests_failed
                    .fetch_add(1, Ordering::Relaxed);
                let error = self.failure(cause, attempt);
                tracing::warn!(
                    exporter = self.name,
                    attempts = attempt,
                    spans,
                    "OTLP export failed after retries: {error}"
                );
                return Err(error);
            }
            tracing::debug!(
                exporter = self.name,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "OTLP export failed, retrying: {cause}"
            );
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(wait);
        }
    }

    fn record_success(&self, spans: u64, response: ExportTraceServiceResponse) {
        self.counters.requests_ok.fetch_add(1, Ordering::Relaxed);
        self.counters.spans_sent.fetch_add(spans, Ordering::Relaxed);
        if let Some(partial) = response.partial_success {
            let rejected = u64::try_from(partial.rejected_spans).unwrap_or(0);
            if rejected > 0 || !partial.error_message.is_empty() {
                self.counters
                    .spans_rejected
                    .fetch_add(rejected, Ordering::Relaxed);
                let mut message = partial.error_message;
                if message.len() > MAX_LOGGED_MESSAGE {
                    let mut end = MAX_LOGGED_MESSAGE;
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    message.truncate(end);
                }
                tracing::warn!(
                    exporter = self.name,
                    rejected_spans = rejected,
                    "OTLP collector accepted the request partially: {message}"
                );
            }
        }
    }

    /// The HTTP body: `raw`, gzip-compressed when configured.
    fn http_body(&self, raw: Bytes) -> Option<Bytes> {
        match self.compression {
            Compression::None => Some(raw),
            Compression::Gzip => {
                use std::io::Write;
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&raw)
                    .and_then(|()| enc.finish())
                    .map(Bytes::from)
                    .ok()
            }
        }
    }

    fn attempt_grpc(&mut self, body: Bytes) -> Result<ExportTraceServiceResponse, Failure> {
        let timeout = self.timeout;
        let mut req = tonic::Request::new(body);
        *req.metadata_mut() = MetadataMap::from_headers(self.headers.clone());
        req.set_timeout(timeout);
        req.extensions_mut()
            .insert(tonic::GrpcMethod::new(crate::rpc::TRACE_SERVICE, "Export"));
        let (Some(runtime), Some(Transport::Grpc(client))) = (&self.runtime, &mut self.transport)
        else {
            return Err(Failure::of(Cause::Connect(
                crate::error::ConnectProblem::Closed,
            )));
        };
        let result = block_on(runtime, async {
            tokio::time::timeout(timeout, async {
                client
                    .ready()
                    .await
                    .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
                client
                    .unary(
                        req,
                        http::uri::PathAndQuery::from_static(crate::rpc::EXPORT_PATH),
                        crate::rpc::RawCodec,
                    )
                    .await
            })
            .await
        });
        match result {
            Err(_) => Err(Failure::of(Cause::Timeout { after: timeout })),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(classify_grpc(timeout, &status)),
        }
    }

    fn attempt_http(&mut self, body: Bytes) -> Result<ExportTraceServiceResponse, Failure> {
        let timeout = self.timeout;
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.endpoint.clone();
        let headers = req.headers_mut();
        headers.clone_from(&self.headers);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(if self.protocol == Protocol::HttpJson {
                "application/json"
            } else {
                "application/x-protobuf"
            }),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if self.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let (Some(runtime), Some(Transport::Http(client))) = (&self.runtime, &self.transport)
        else {
            return Err(Failure::of(Cause::Connect(
                crate::error::ConnectProblem::Closed,
            )));
        };
        let result = block_on(runtime, async {
            tokio::time::timeout(timeout, async {
                let response = client
                    .request(req)
                    .await
                    .map_err(|e| Failure::of(transport_cause(&e)))?;
                let (parts, body) = response.into_parts();
                let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Ok::<_, Failure>((parts, bytes))
            })
            .await
        });
        let (parts, bytes) = match result {
            Err(_) => return Err(Failure::of(Cause::Timeout { after: timeout })),
            Ok(Err(failure)) => return Err(failure),
            Ok(Ok(ok)) => ok,
        };
        let status = parts.status;
        if status.is_success() {
            // An empty or undecodable body is a full success (some collectors send none).
            let json = parts
                .headers
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            return Ok(if json {
                serde_json::from_slice(&bytes).unwrap_or_default()
            } else {
                ExportTraceServiceResponse::decode(bytes).unwrap_or_default()
            });
        }
        let mut failure = Failure::of(Cause::Http {
            status: status.as_u16(),
        });
        if failure.retryable {
            failure.delay = parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
        }
        Err(failure)
    }
}

/// Runs `future` on the exporter's runtime. Called from inside another runtime's task (where
/// `block_on` would panic), it runs on a scoped helper thread instead: the exporter is safe to
/// call from anywhere, though a plain thread (the batch exporter's) is where it belongs.
fn block_on<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(future);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A request to send or spool.
enum Request {
    Encoded(mapping::EncodedRequest),
    Tree(ExportTraceServiceRequest),
}

impl Request {
    fn as_outgoing(&self) -> Outgoing<'_> {
        match self {
            Request::Encoded(e) => Outgoing::Encoded(e),
            Request::Tree(t) => Outgoing::Tree(t),
        }
    }
}

/// A request to send, borrowed.
#[derive(Clone, Copy)]
pub(crate) enum Outgoing<'a> {
    Encoded(&'a mapping::EncodedRequest),
    Tree(&'a ExportTraceServiceRequest),
}

impl Outgoing<'_> {
    fn spans(self) -> u64 {
        match self {
            Outgoing::Encoded(e) => e.spans(),
            Outgoing::Tree(t) => span_count(t),
        }
    }
}

fn span_count(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn classify_grpc(timeout: Duration, status: &tonic::Status) -> Failure {
    use tonic::Code as C;
    let code = status.code();
    // RetryInfo in the status details (`grpc-status-details-bin`) or as its own trailer.
    let retry_delay = crate::rpc::retry_delay(status.details()).or_else(|| {
        status
            .metadata()
            .get_bin(crate::rpc::RETRY_INFO_TRAILER)
            .and_then(|v| v.to_bytes().ok())
            .and_then(|b| crate::rpc::retry_info_delay(&b))
    });
    // The channel enforces the `grpc-timeout` we send and reports its expiry as CANCELLED
    // with tonic's `TimeoutExpired` text; that is our timeout, not a cancellation.
    let timed_out = code == C::DeadlineExceeded
        || (code == C::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string());
    if timed_out {
        return Failure {
            cause: Cause::Timeout { after: timeout },
            retryable: true,
            delay: retry_delay,
        };
    }
    // A status made on our side from a connection, TLS or HTTP/2 failure carries that error as
    // its source (UNAVAILABLE for a refused connection, CANCELLED or UNKNOWN for a connection
    // the server closed, e.g. with a TLS alert); one that the collector sent has none.
    let mut failure = match std::error::Error::source(status) {
        Some(source) => Failure::of(transport_cause(source)),
        None => Failure::of(Cause::Grpc { code }),
    };
    // The specification: retry RESOURCE_EXHAUSTED only when the server says when.
    if code == C::ResourceExhausted && retry_delay.is_some() {
        failure.retryable = true;
    }
    if failure.retryable {
        failure.delay = retry_delay;
    }
    failure
}

impl Exporter for OtlpExporter {
    fn name(&self) -> &str {
        self.name
    }

    /// Maps the batch to OTLP and sends it: one request, or several when it exceeds
    /// `max_request_bytes` (the next encoded while one is sent). A request that fails for good
    /// is spooled when a spool is configured (unless the collector rejected its content);
    /// otherwise the batch stops at the first failure the next request would meet too
    /// (connection, timeout, TLS).
    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        if self.transport.is_none() {
            return Err(ExportError::Shutdown {
                exporter: self.name.to_owned(),
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        if self.protocol == Protocol::HttpJson {
            let requests = mapping::to_requests(batch, &self.mapping, self.max_request_bytes);
            return self.send_all(requests.into_iter().map(Request::Tree));
        }
        let options = Arc::clone(&self.mapping);
        let mut encoder = mapping::RequestEncoder::new(batch, &options, self.max_request_bytes);
        let Some(first) = encoder.next() else {
            return Ok(());
        };
        if encoder.is_done() {
            return self.send_all(std::iter::once(Request::Encoded(first)));
        }
        // Several requests: a helper thread encodes the next while this one sends (and the
        // collector decodes) the current one. The rendezvous channel bounds memory to the
        // request being sent and the next (waiting, or being encoded; only a run larger than
        // a request closes several at once); requests are sent, spooled and counted in
        // order, exactly as one by one.
        let mut encoder = Some(encoder);
        let first = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<mapping::EncodedRequest>(0);
            let slot = &mut encoder;
            let producer = std::thread::Builder::new()
                .name("tracecraft-otlp-encode".to_owned())
                .spawn_scoped(scope, move || {
                    for request in slot.take().into_iter().flatten() {
                        if tx.send(request).is_err() {
                            // The export stopped at a failed request: the rest is not sent.
                            break;
                        }
                    }
                });
            let Ok(producer) = producer else {
                return Err(first);
            };
            let requests = std::iter::once(first).chain(rx);
            let result = self.send_all(requests.map(Request::Encoded));
            // `send_all` dropped the receiver: the producer ends at its next request.
            if let Err(panic) = producer.join() {
                std::panic::resume_unwind(panic);
            }
            Ok(result)
        });
        match first {
            Ok(result) => result,
            // No thread to spare: encode and send one after the other.
            Err(first) => self.send_all(
                std::iter::once(first)
                    .chain(encoder.into_iter().flatten())
                    .map(Request::Encoded),
            ),
        }
    }

    /// Nothing is buffered: every `export` has finished sending when it returns.
    fn force_flush(&mut self) -> Result<(), ExportError> {
        if self.transport.is_none() {
            return Err(ExportError::Shutdown {
                exporter: self.name.to_owned(),
            });
        }
        Ok(())
    }

    /// Writes the batch to the spool without sending it (no network): `Ok(false)` without a
    /// spool. The batch exporter calls it at shutdown for runs its deadline left unexported.
    fn persist(&mut self, batch: &[ProcessedRun]) -> Result<bool, ExportError> {
        if self.transport.is_none() {
            return Err(ExportError::Shutdown {
                exporter: self.name.to_owned(),
            });
        }
        let Some(spool) = &self.spool else {
            return Ok(false);
        };
        for request in mapping::encode_requests(batch, &self.mapping, self.max_request_bytes) {
            spool.write_encoded(&request)?;
        }
        if let Some(resender) = &self.resender {
            resender.mark_pending();
        }
        Ok(true)
    }

    /// Closes connections and stops the runtime; later calls to `export` fail with
    /// [`ExportError::Shutdown`].
    fn shutdown(&mut self, timeout: Duration) -> Result<(), ExportError> {
        let _ = timeout; // nothing is buffered (a failed request is already spooled)
        // The re-sender's attempt in flight is bounded by the exporter's timeout; what it did
        // not send stays spooled for the next start.
        if let Some(mut resender) = self.resender.take() {
            resender.stop();
        }
        self.transport = None;
        // Never blocks (and never panics inside an async context); pending DNS look-ups on
        // the blocking pool finish on their own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        Ok(())
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        if let Some(mut resender) = self.resender.take() {
            resender.stop();
        }
        self.transport = None;
        // Never blocks: dropping a runtime inside another runtime's task would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn header_validation_names_the_header_not_the_value() {
        let e = header_map(&[Header {
            name: "authorization".into(),
            value: "Bearer \n s3cret".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("authorization"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(
            header_map(&[Header {
                name: "bad name".into(),
                value: "v".into()
            }])
            .is_err()
        );
        assert!(
            header_map(&[Header {
                name: "content-type".into(),
                value: "v".into()
            }])
            .is_err()
        );
    }

    #[test]
    fn grpc_classification() {
        let t = Duration::from_secs(1);
        for code in [tonic::Code::Unavailable, tonic::Code::Aborted] {
            assert!(classify_grpc(t, &tonic::Status::new(code, "m")).retryable);
        }
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::Unauthenticated,
            tonic::Code::ResourceExhausted,
        ] {
            let f = classify_grpc(t, &tonic::Status::new(code, "secret m"));
            assert!(!f.retryable, "{code:?} retried");
            assert_eq!(f.cause, Cause::Grpc { code });
            assert!(f.cause.to_string().contains(crate::error::code_name(code)));
        }
        // RetryInfo as its own trailer.
        let mut status = tonic::Status::new(tonic::Code::ResourceExhausted, "m");
        status.metadata_mut().insert_bin(
            crate::rpc::RETRY_INFO_TRAILER,
            tonic::metadata::MetadataValue::from_bytes(&crate::rpc::retry_info(
                Duration::from_secs(2),
            )),
        );
        let f = classify_grpc(t, &status);
        assert!(f.retryable);
        assert_eq!(f.delay, Some(Duration::from_secs(2)));
    }
}
