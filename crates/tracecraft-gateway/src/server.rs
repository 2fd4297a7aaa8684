//! [`Gateway`]: the listeners (OTLP/gRPC and OTLP/HTTP, optionally TLS), authentication,
//! limits and backpressure in front of the processing queue.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;
use tracecraft_core::ExportError;
use tracecraft_pipeline::queue::{QueueConfig, WorkQueue};

use crate::auth::{Caller, Tokens};
use crate::config::{ConfigError, GatewayConfig, TlsFiles, invalid};
use crate::decode::{self, DecodeError, Format};
use crate::metrics::{Metrics, Reject};
use crate::process::{Item, Router, Worker};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound, or a thread or runtime not started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`binding 127.0.0.1:4317`).
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// How a [`Gateway::shutdown`] ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Requests still being handled when the deadline passed.
    pub requests_cut: usize,
    /// Queued requests not processed by the deadline (counted, never silently lost).
    pub unfinished: u64,
    /// The first flush/shutdown error of a store or forwarder.
    pub error: Option<ExportError>,
}

impl ShutdownSummary {
    /// Everything accepted was processed and every exporter shut down cleanly.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.requests_cut == 0 && self.unfinished == 0 && self.error.is_none()
    }
}

struct Shared {
    tokens: Tokens,
    metrics: Arc<Metrics>,
    queue: WorkQueue<Item>,
    max_request_bytes: usize,
    max_spans: usize,
    max_concurrent: usize,
    closing: AtomicBool,
    in_flight: AtomicUsize,
}

/// How long a client refused for backpressure is told to wait (`Retry-After` over HTTP,
/// `RetryInfo` in the gRPC status details).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a request was refused: the reason and a message naming the problem (no payload).
struct Refusal(Reject, String);

impl Refusal {
    fn grpc(&self) -> tonic::Status {
        let code = match self.0 {
            Reject::Unauthenticated => tonic::Code::Unauthenticated,
            Reject::TooLarge | Reject::TooManySpans => tonic::Code::ResourceExhausted,
            Reject::Malformed | Reject::InvalidSpan => tonic::Code::InvalidArgument,
            Reject::QueueFull | Reject::Busy | Reject::ShuttingDown => tonic::Code::Unavailable,
        };
        if code == tonic::Code::Unavailable {
            // `RetryInfo` in the details: OpenTelemetry SDKs wait that long before retrying
            // (the gRPC form of the HTTP `Retry-After`).
            let details = tracecraft_otlp::rpc::status_details_with_retry(code as i32, RETRY_AFTER);
            return tonic::Status::with_details(code, self.1.clone(), Bytes::from(details));
        }
        tonic::Status::new(code, self.1.clone())
    }

    fn http(&self, format: Format) -> Response<Body> {
        let status = match self.0 {
            Reject::Unauthenticated => StatusCode::UNAUTHORIZED,
            Reject::TooLarge | Reject::TooManySpans => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::Malformed | Reject::InvalidSpan => StatusCode::BAD_REQUEST,
            Reject::QueueFull | Reject::Busy | Reject::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let rpc = RpcStatus {
            code: self.grpc().code() as i32,
            message: self.1.clone(),
        };
        let body = match format {
            Format::Protobuf => rpc.encode_to_vec(),
            Format::Json => serde_json::to_vec(&serde_json::json!({
                "code": rpc.code,
                "message": rpc.message,
            }))
            .unwrap_or_default(),
        };
        let mut resp = respond(status, format.content_type(), body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER.as_secs()),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// `google.rpc.Status` (without details), the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// Admission: not closing, under the concurrency limit.
    fn admit(&self) -> Result<InFlight<'_>, Refusal> {
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(&self.in_flight);
        if self.closing.load(Ordering::Acquire) {
            return Err(Refusal(
                Reject::ShuttingDown,
                "the gateway is shutting down".into(),
            ));
        }
        if n >= self.max_concurrent {
            return Err(Refusal(
                Reject::Busy,
                "too many requests at once; retry".into(),
            ));
        }
        Ok(guard)
    }

    fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Caller, Refusal> {
        self.tokens
            .check(header.map(HeaderValue::as_bytes))
            .map_err(|e| Refusal(Reject::Unauthenticated, e.message().to_owned()))
    }

    /// Limits, validation, then the queue: the common path of both protocols.
    fn accept(
        &self,
        caller: Caller,
        mut request: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, Refusal> {
        let total = decode::span_count(&request);
        if total > self.max_spans {
            return Err(Refusal(
                Reject::TooManySpans,
                format!(
                    "{total} spans in one request; the limit is {}",
                    self.max_spans
                ),
            ));
        }
        let (rejected, message) = decode::retain_valid(&mut request.resource_spans);
        if rejected > 0 {
            self.metrics.reject_spans(Reject::InvalidSpan, rejected);
        }
        let kept = total as u64 - rejected;
        if kept > 0 {
            self.metrics.queued_requests.fetch_add(1, Ordering::Relaxed);
            let item = Item::Spans {
                tenant: caller.tenant,
                resource_spans: request.resource_spans,
            };
            if self.queue.try_enqueue(item).is_err() {
                self.metrics.queued_requests.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal(
                    Reject::QueueFull,
                    "the processing queue is full; retry later".into(),
                ));
            }
            self.metrics.received(kept);
        }
        Ok(ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: message,
            }),
        })
    }

    fn refuse(&self, r: &Refusal, spans: u64) {
        self.metrics.reject(r.0, spans);
    }
}

#[derive(Clone)]
struct Grpc(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| tonic::Status::unauthenticated("not authenticated"))?;
        let request = request.into_inner();
        let spans = decode::span_count(&request) as u64;
        match self.0.accept(caller, request) {
            Ok(r) => Ok(tonic::Response::new(r)),
            Err(refusal) => {
                self.0.refuse(&refusal, spans);
                Err(refusal.grpc())
            }
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    grpc: TraceServiceServer<Grpc>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        shared.metrics.request(true);
        let _guard = match shared.admit() {
            Ok(g) => g,
            Err(r) => {
                shared.refuse(&r, 0);
                return r.grpc().into_http();
            }
        };
        let caller = match shared.authenticate(req.headers().get(http::header::AUTHORIZATION)) {
            Ok(c) => c,
            Err(r) => {
                shared.refuse(&r, 0);
                return r.grpc().into_http();
            }
        };
        req.extensions_mut().insert(caller);
        let mut grpc = grpc;
        return match grpc.call(req).await {
            Ok(mut resp) => {
                // Decoding failures (too large, malformed) are answered by tonic itself, as a
                // trailers-only response. tonic says OUT_OF_RANGE for a message above the
                // limit; OTLP says RESOURCE_EXHAUSTED.
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .map(|v| v.as_bytes().to_vec());
                match code.as_deref() {
                    None | Some(b"0") => {}
                    Some(b"11") => {
                        resp.headers_mut()
                            .insert("grpc-status", HeaderValue::from_static("8"));
                        shared.metrics.reject(Reject::TooLarge, 0);
                    }
                    // tonic answers INTERNAL for an undecodable message (the handler never
                    // does); OTLP says INVALID_ARGUMENT, so SDKs do not retry it.
                    Some(b"13") => {
                        resp.headers_mut()
                            .insert("grpc-status", HeaderValue::from_static("3"));
                        shared.metrics.reject(Reject::Malformed, 0);
                    }
                    Some(b"3") => shared.metrics.reject(Reject::Malformed, 0),
                    // Refusals of `accept` were counted there.
                    Some(_) => {}
                }
                resp
            }
            Err(never) => match never {},
        };
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        (&Method::GET, "/metrics") => {
            if let Err(r) = shared.authenticate(req.headers().get(http::header::AUTHORIZATION)) {
                return r.http(Format::Json);
            }
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                shared.metrics.prometheus().into_bytes(),
            )
        }
        (&Method::POST, "/v1/traces") => {
            shared.metrics.request(false);
            http_export(&shared, req).await
        }
        (_, "/v1/traces" | "/health" | "/metrics") => {
            respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Vec::new())
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", Vec::new()),
    }
}

async fn http_export(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let format = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| Format::from_content_type(v.as_bytes()));
    let Some(format) = format else {
        let r = Refusal(
            Reject::Malformed,
            "unsupported content type: use application/x-protobuf or application/json".into(),
        );
        shared.refuse(&r, 0);
        let mut resp = r.http(Format::Protobuf);
        *resp.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return resp;
    };
    let result = async {
        let _guard = shared.admit()?;
        let caller = shared.authenticate(req.headers().get(http::header::AUTHORIZATION))?;
        let limit = shared.max_request_bytes;
        let too_large = || {
            Refusal(
                Reject::TooLarge,
                DecodeError::TooLarge { limit }.to_string(),
            )
        };
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let gzip = match req
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .map(HeaderValue::as_bytes)
        {
            None | Some(b"identity") => false,
            Some(b"gzip") => true,
            Some(_) => {
                return Err(Refusal(
                    Reject::Malformed,
                    "unsupported content encoding: use gzip or none".into(),
                ));
            }
        };
        let body = match Limited::new(req.into_body(), limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(_) => {
                return Err(Refusal(
                    Reject::Malformed,
                    "the request body could not be read".into(),
                ));
            }
        };
        let request = decode::decode_body(&body, format, gzip, limit).map_err(|e| match e {
            DecodeError::TooLarge { .. } => too_large(),
            other => Refusal(Reject::Malformed, other.to_string()),
        })?;
        let spans = decode::span_count(&request) as u64;
        shared.accept(caller, request).inspect_err(|r| {
            shared.metrics.reject_spans(r.0, spans);
        })
    }
    .await;
    match result {
        Ok(resp) => {
            let body = match format {
                Format::Protobuf => resp.encode_to_vec(),
                Format::Json => serde_json::to_vec(&resp).unwrap_or_default(),
            };
            respond(StatusCode::OK, format.content_type(), body)
        }
        Err(r) => {
            shared.metrics.reject(r.0, 0);
            r.http(format)
        }
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |field: &str, path: &std::path::Path| {
        CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format!("tls.{field}"), format!("{}: {e}", path.display())))
            .and_then(|c| {
                if c.is_empty() {
                    Err(invalid(
                        format!("tls.{field}"),
                        "no certificate in the file",
                    ))
                } else {
                    Ok(c)
                }
            })
    };
    let chain = certs("cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| invalid("tls.key", format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs("client_ca", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid("tls.client_ca", e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid("tls.client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid("tls", e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_io<I>(io: I, shared: Arc<Shared>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let grpc = TraceServiceServer::new(Grpc(Arc::clone(&shared)))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(shared.max_request_bytes);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let grpc = grpc.clone();
        async move { Ok::<_, Infallible>(handle(shared, grpc, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its headers is dropped (slowloris).
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    // Flow-control windows that grow with the bandwidth-delay product (as grpc-go sizes
    // them), so that large gRPC requests are not sent 64 KiB per round trip.
    builder.http2().adaptive_window(true);
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_io(stream, shared).await,
                        Some(acceptor) => {
                            let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                            if let Ok(Ok(s)) = hs.await {
                                serve_io(s, shared).await;
                            }
                        }
                    }
                });
            }
        }
    }
}

/// A running gateway. Stop it with [`shutdown`](Gateway::shutdown) (dropping it shuts down
/// with a 10 s deadline).
pub struct Gateway {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("grpc", &self.grpc_addr)
            .field("http", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Validates `config`, loads tokens and TLS files, binds the listeners and starts
    /// serving; runs go to the pipelines `router` opens.
    ///
    /// # Errors
    /// [`StartError::Config`] naming an unusable setting (tokens, TLS files, addresses);
    /// [`StartError::Io`] when a port cannot be bound.
    pub fn start(config: &GatewayConfig, router: impl Router) -> Result<Gateway, StartError> {
        config.validate()?;
        let tokens = Tokens::load(&config.tokens)?;
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        if tls.is_none() {
            for addr in [config.grpc, config.http].into_iter().flatten() {
                if !addr.ip().is_loopback() {
                    tracing::warn!(
                        "serving plaintext on {addr} (allow_insecure): spans and tokens cross the \
                         network unencrypted"
                    );
                }
            }
        }
        let metrics = Arc::new(Metrics::default());
        let worker = Worker::new(
            Arc::new(router),
            Arc::clone(&metrics),
            config.quiet_period(),
            config.max_pending_spans,
        );
        let queue = WorkQueue::start(
            worker,
            QueueConfig::new(
                "gateway",
                config.queue_capacity,
                64,
                Duration::from_millis(20),
            )
            .thread_name("tracecraft-gateway")
            .wake_at(8),
        )
        .map_err(io_err("starting the processing thread"))?;
        let shared = Arc::new(Shared {
            tokens,
            metrics,
            queue,
            max_request_bytes: config.max_request_bytes,
            max_spans: config.max_spans_per_request,
            max_concurrent: config.max_concurrent_requests,
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tracecraft-gateway-io")
            .enable_all()
            .build()
            .map_err(io_err("starting the I/O runtime"))?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut bound = [None, None];
        for (slot, addr) in bound.iter_mut().zip([config.grpc, config.http]) {
            let Some(addr) = addr else { continue };
            let listener =
                std::net::TcpListener::bind(addr).map_err(io_err(format!("binding {addr}")))?;
            listener
                .set_nonblocking(true)
                .map_err(io_err(format!("binding {addr}")))?;
            *slot = Some(
                listener
                    .local_addr()
                    .map_err(io_err(format!("binding {addr}")))?,
            );
            let _enter = runtime.enter();
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(io_err(format!("binding {addr}")))?;
            runtime.spawn(accept_loop(
                listener,
                tls.clone(),
                Arc::clone(&shared),
                stop_rx.clone(),
            ));
        }
        // Ticks for the quiet period, and the periodic metrics line.
        let quiet = config.quiet_period();
        let tick = (quiet / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let log_every = Duration::from_secs(config.log_interval_s);
        let tick_shared = Arc::clone(&shared);
        let mut tick_stop = stop_rx;
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_log = Instant::now();
            loop {
                tokio::select! {
                    _ = tick_stop.changed() => break,
                    _ = interval.tick() => {
                        let _ = tick_shared.queue.try_enqueue(Item::Tick);
                        if !log_every.is_zero() && last_log.elapsed() >= log_every {
                            last_log = Instant::now();
                            tracing::info!("gateway: {}", tick_shared.metrics.summary_line());
                        }
                    }
                }
            }
        });
        Ok(Gateway {
            runtime: Some(runtime),
            shared,
            stop,
            grpc_addr: bound[0],
            http_addr: bound[1],
        })
    }

    /// The bound OTLP/gRPC address (with the actual port when configured with port 0).
    #[must_use]
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The bound OTLP/HTTP address.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The gateway's counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Processes every trace received so far, complete or not, and flushes stores and
    /// forwarders (for tests and `SIGUSR`-style checkpoints).
    ///
    /// # Errors
    /// The first store or forwarder flush error.
    pub fn flush(&self) -> Result<(), ExportError> {
        self.shared.queue.flush()
    }

    /// Stops accepting (new requests get 503 / `UNAVAILABLE`), waits for requests in
    /// flight, processes everything accepted (incomplete traces as they are), flushes and
    /// shuts down stores and forwarders (the forwarder spools what it cannot send), all
    /// within `timeout`. Idempotent.
    pub fn shutdown(&mut self, timeout: Duration) -> ShutdownSummary {
        let deadline = Instant::now() + timeout;
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        while self.shared.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let requests_cut = self.shared.in_flight.load(Ordering::Acquire);
        let (result, unfinished) = self
            .shared
            .queue
            .stop(deadline.saturating_duration_since(Instant::now()));
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
        ShutdownSummary {
            requests_cut,
            unfinished,
            error: result.err(),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            let _ = self.shutdown(Duration::from_secs(10));
        }
    }
}
