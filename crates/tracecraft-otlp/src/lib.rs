//! # tracecraft-otlp
//!
//! Sends processed [`AgentRun`](tracecraft_core::AgentRun)s to an OpenTelemetry collector.
//! **Guarantee:** the exporter accepts only [`ProcessedRun`](tracecraft_core::ProcessedRun)s
//! (redacted by the pipeline); every network attempt is bounded by a timeout and every retry
//! loop by a total time; errors, logs and `Debug` output never contain header values
//! (credentials) or span payloads.
//!
//! ```no_run
//! use std::time::Duration;
//! use tracecraft_otlp::{Compression, OtlpExporter, Protocol};
//!
//! let exporter = OtlpExporter::builder()
//!     .protocol(Protocol::Grpc)
//!     .endpoint("https://collector.internal:4317")
//!     .header("authorization", "Bearer <token>")
//!     .ca_file("/etc/tracecraft/collector-ca.pem")
//!     .compression(Compression::Gzip)
//!     .timeout(Duration::from_secs(5))
//!     .service_name("support-bot")
//!     .build()?;
//! // Hand it to the pipeline behind a BatchExporter so traced code never waits:
//! // builder.exporter(BatchExporter::new(exporter, BatchConfig::default()))
//! # drop(exporter);
//! # Ok::<(), tracecraft_otlp::BuildError>(())
//! ```
//!
//! ## Mapping
//! One trace per run (trace id = the run's UUID bytes), one span for the run and one per
//! step (span id = the first 8 bytes of the UUID), attributes after the OpenTelemetry GenAI
//! semantic conventions with the OpenInference and MLflow keys LLM trace backends read, plus
//! `tracecraft.*` keys; see [`mapping`] and the crate README. [`reverse`] reads it all back
//! (and spans of other SDKs).
//!
//! ## Durable spool
//! With [`OtlpExporterBuilder::spool`], a request that still fails after its retries is
//! written to disk (fsync'd, 0600) and re-sent later, oldest first, with the same span ids;
//! see [`spool`].
//!
//! ## Transport
//! OTLP/gRPC (tonic) or OTLP/HTTP with protobuf bodies (hyper), over rustls (ring provider)
//! for `https://` endpoints: Mozilla's roots, the platform's roots, and an optional CA file;
//! an optional client certificate for collectors that require mutual TLS.
//! Retryable failures (gRPC `UNAVAILABLE`, HTTP 429/502/503/504, connection errors,
//! timeouts, ...) are retried with exponential backoff and jitter, honouring `Retry-After`
//! and `RetryInfo`; others (TLS certificate problems included) fail at once. Every failure is
//! an [`ExportError::Failed`](tracecraft_core::ExportError::Failed) whose cause downcasts to
//! [`ExportFailure`]: HTTP status, gRPC code, TLS problem, connection problem or timeout, with
//! a one-line `Display`. The exporter owns a single-threaded tokio runtime: callers need none.
//!
//! ## Performance
//! `cargo xtask bench otlp`; figures in the crate README and `docs/perf/otlp.md`.
//!
//! ## Security
//! - Header values are marked sensitive, hidden in `Debug`, never in errors or logs.
//! - Sending headers over plaintext `http://` to a host other than loopback logs a warning
//!   when the exporter is built.
//! - Error messages name gRPC/HTTP statuses, never the server's free-text message.
//!
//! ## Crate features
//! - `testing`: `testing::MockCollector`, an in-process collector (gRPC and HTTP/protobuf on
//!   one `127.0.0.1:0` port, optional TLS) that records requests and plays scripted replies.

mod config;
mod error;
mod exporter;
pub mod mapping;
mod resend;
pub mod reverse;
pub mod rpc;
pub mod spool;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

pub use config::{
    BuildError, Compression, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_TIMEOUT, HTTP_TRACES_PATH, Header, OtlpConfig, OtlpSettings,
    Protocol, RetryPolicy, UnknownCompression, UnknownProtocol,
};
pub use error::{Cause, ConnectProblem, ExportFailure, TlsProblem};
pub use exporter::{OtlpExporter, OtlpExporterBuilder, OtlpStats, StatsHandle};
/// The OTLP protobuf types (from `opentelemetry-proto`), for code that inspects requests.
pub use opentelemetry_proto::tonic as proto;
pub use resend::SpoolFlush;
pub use spool::{Spool, SpoolConfig, SpoolConfigBuilder, SpoolStats, SpoolStatus};
