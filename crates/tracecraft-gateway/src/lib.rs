//! # tracecraft-gateway
//!
//! The redacting OTLP gateway behind `tracecraft serve`: agents written in any language send
//! their OpenTelemetry spans here (OTLP/gRPC or OTLP/HTTP, protobuf or JSON); each trace is
//! mapped to an [`AgentRun`](tracecraft_core::AgentRun), run through the TraceCraft
//! [`Pipeline`](tracecraft_pipeline::Pipeline) (enrich, **redact**, sample), then stored and
//! optionally forwarded.
//!
//! **Guarantee:** no span reaches a store or a forwarder without passing the pipeline's
//! redaction (stores and exporters accept only processed runs); a request is either accepted
//! (every valid span will be processed, or counted), or refused with a status that tells a
//! well-behaved SDK what to do (`UNAVAILABLE` with `RetryInfo` / 503 with `Retry-After`: retry;
//! `INVALID_ARGUMENT`/400: do not); memory is bounded by the queue capacity times the request
//! size limit plus the pending-span bound. Nothing panics on any input; error messages and
//! logs name problems, never payload values or tokens.
//!
//! ```no_run
//! use tracecraft_gateway::{Gateway, GatewayConfig};
//! use tracecraft_pipeline::Pipeline;
//!
//! let config = GatewayConfig::default(); // 127.0.0.1:4317 (gRPC) and :4318 (HTTP)
//! let mut gateway = Gateway::start(&config, |_tenant: Option<&str>| {
//!     // The same pipeline the library builds from `tracecraft.toml`, with stores.
//!     Pipeline::builder().build().map_err(|e| e.to_string())
//! })?;
//! // ... until SIGTERM:
//! let summary = gateway.shutdown(std::time::Duration::from_secs(30));
//! assert!(summary.is_clean());
//! # Ok::<(), tracecraft_gateway::StartError>(())
//! ```
//!
//! ## What is redacted, what is kept
//! The reverse mapping ([`tracecraft_otlp::reverse`]) keeps span names, every attribute it
//! does not map to a field (as JSON values: strings inside arrays and key-value lists
//! included), inputs/outputs/messages/documents/tool calls, `exception` events and error
//! status messages, session/user ids, span links (`tracecraft.links`) and resource attributes
//! (`service.name`, `tracecraft.resource`, `deployment.environment.name` as the environment);
//! the pipeline's redaction covers every string of the run it builds, and the forwarder sends
//! links and resource attributes again. Other events and scope attributes are **not stored**
//! at all.
//!
//! ## Merging
//! Spans of one trace arriving in several requests are merged (per tenant and trace id). A
//! trace is processed when its root span has arrived and every parent it references is
//! present, else after `quiet_period_ms` without a new span, else when `max_pending_spans`
//! forces the oldest out, and at shutdown. Spans arriving after their trace was processed
//! are counted (`tracecraft_gateway_spans_late_total`) and processed as a second part with
//! the same run id, which stores merge into the stored run (`TraceStore` contract).
//!
//! ## Security
//! Loopback by default; another address needs TLS (rustls, optional client-certificate
//! verification) or `allow_insecure`. Bearer tokens are held as SHA-256 digests and
//! compared in constant time (`subtle`); each may be bound to a tenant whose runs go to its
//! own store. Without a valid token: 401 / `UNAUTHENTICATED`, nothing stored.
//!
//! ## Performance
//! Decoding and admission run on a 2-thread tokio runtime; merging, the reverse mapping and
//! redaction on one thread behind a bounded [`WorkQueue`](tracecraft_pipeline::queue::WorkQueue)
//! (large batches spread over scoped threads, one core fewer than the machine has, at most
//! four); each tenant's stores and forwarder on their own
//! thread, several batches per store transaction. See `docs/perf/gateway.md`.

mod auth;
mod config;
pub mod decode;
mod metrics;
mod process;
mod server;

pub use auth::token_digest;
pub use config::{
    ConfigError, DEFAULT_GRPC_ADDR, DEFAULT_HTTP_ADDR, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_SPANS_PER_REQUEST, DEFAULT_QUEUE_CAPACITY, DEFAULT_QUIET_PERIOD, GatewayConfig,
    GatewayConfigBuilder, TlsFiles, TokenConfig, valid_tenant,
};
pub use metrics::{Metrics, MetricsSnapshot, Reject};
pub use process::Router;
pub use server::{Gateway, ShutdownSummary, StartError};
