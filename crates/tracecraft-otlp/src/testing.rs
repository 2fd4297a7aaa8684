//! [`MockCollector`]: an in-process OTLP collector for tests (feature `testing`).
//!
//! It listens on `127.0.0.1:0` only, speaks OTLP/gRPC and OTLP/HTTP (protobuf, optionally
//! gzip) on the same port, optionally over TLS, records every request with its headers, and
//! answers from a script of [`Reply`]s (then `Ok`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tonic::codec::CompressionEncoding;

use crate::config::Protocol;

/// What the collector answers to one request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// Success.
    Ok,
    /// Success with a partial-success report.
    Partial {
        /// Spans reported as rejected.
        rejected_spans: i64,
        /// The collector's message.
        message: String,
    },
    /// "Try again": gRPC `UNAVAILABLE`, or HTTP 503.
    Unavailable,
    /// A gRPC status (HTTP requests get 500), with an optional `RetryInfo` delay.
    Grpc {
        /// The status code.
        code: tonic::Code,
        /// The `RetryInfo` delay to send.
        retry_delay: Option<Duration>,
    },
    /// An HTTP status (gRPC requests get `UNKNOWN`), with an optional `Retry-After` in seconds.
    Http {
        /// The status.
        status: u16,
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// Waits this long, then succeeds (to test timeouts).
    Stall(Duration),
    /// A gRPC status (trailers-only) whose `grpc-status-details-bin` is not base64, as a
    /// broken or hostile collector may send; the request is not recorded (HTTP requests get
    /// 500).
    GrpcBadDetails {
        /// The status code.
        code: tonic::Code,
    },
    /// A gRPC status with a bare `RetryInfo` in a `google.rpc.retryinfo-bin` trailer
    /// (HTTP requests get 503).
    GrpcRetryTrailer {
        /// The status code.
        code: tonic::Code,
        /// The delay.
        retry_delay: Duration,
    },
}

/// One request that reached the collector.
#[derive(Debug, Clone)]
pub struct Received {
    /// How it came.
    pub protocol: Protocol,
    /// Its headers (gRPC metadata for gRPC).
    pub headers: HeaderMap,
    /// The decoded request.
    pub request: ExportTraceServiceRequest,
    /// Whether the body was gzip-compressed.
    pub gzip: bool,
    /// What the collector answered.
    pub reply: Reply,
}

impl Received {
    /// Whether the collector accepted it.
    #[must_use]
    pub fn accepted(&self) -> bool {
        matches!(
            self.reply,
            Reply::Ok | Reply::Partial { .. } | Reply::Stall(_)
        )
    }

    /// Every span in the request.
    #[must_use]
    pub fn spans(&self) -> Vec<Span> {
        self.request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    fn next_reply(&self) -> Reply {
        lock(&self.script).pop_front().unwrap_or(Reply::Ok)
    }
    fn record(&self, r: Received) {
        lock(&self.received).push(r);
        self.changed.notify_all();
    }
}

/// An in-process OTLP collector on `127.0.0.1:0`. Stops when dropped.
pub struct MockCollector {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCollector")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The collector's gRPC codec: it decodes a request from one contiguous, zero-copy `Bytes`
/// of tonic's receive buffer, as the HTTP path decodes its body (prost reading through tonic's
/// `DecodeBuf` wrapper costs more per field), so that both export benches measure the
/// exporter, not two decoding paths of the mock.
#[derive(Debug, Clone, Copy, Default)]
struct CollectorCodec;

#[derive(Debug, Clone, Copy, Default)]
struct ResponseEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct RequestDecoder;

impl tonic::codec::Codec for CollectorCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = ExportTraceServiceRequest;
    type Encoder = ResponseEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> ResponseEncoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

impl tonic::codec::Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: ExportTraceServiceResponse,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(buf)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Decoder for RequestDecoder {
    type Item = ExportTraceServiceRequest;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceRequest>, tonic::Status> {
        use bytes::Buf;
        let message = buf.copy_to_bytes(buf.remaining());
        ExportTraceServiceRequest::decode(message)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

#[derive(Clone)]
struct Grpc(Arc<State>);

impl tonic::server::UnaryService<ExportTraceServiceRequest> for Grpc {
    type Response = ExportTraceServiceResponse;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status>,
                > + Send,
        >,
    >;

    fn call(&mut self, request: tonic::Request<ExportTraceServiceRequest>) -> Self::Future {
        Box::pin(self.clone().export(request))
    }
}

impl Grpc {
    async fn export(
        self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let gzip = headers
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() == b"gzip");
        let reply = self.0.next_reply();
        self.0.record(Received {
            protocol: Protocol::Grpc,
            headers,
            request: request.into_inner(),
            gzip,
            reply: reply.clone(),
        });
        match reply {
            Reply::Ok => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            Reply::Stall(d) => {
                tokio::time::sleep(d).await;
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
            Reply::Partial {
                rejected_spans,
                message,
            } => Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans,
                    error_message: message,
                }),
            })),
            Reply::Unavailable => Err(tonic::Status::unavailable("try later")),
            Reply::Grpc { code, retry_delay } => Err(match retry_delay {
                Some(d) => tonic::Status::with_details(
                    code,
                    "scripted",
                    Bytes::from(crate::rpc::status_details_with_retry(code as i32, d)),
                ),
                None => tonic::Status::new(code, "scripted"),
            }),
            Reply::Http { .. } | Reply::GrpcBadDetails { .. } => {
                Err(tonic::Status::unknown("scripted"))
            }
            Reply::GrpcRetryTrailer { code, retry_delay } => {
                let mut status = tonic::Status::new(code, "scripted");
                status.metadata_mut().insert_bin(
                    crate::rpc::RETRY_INFO_TRAILER,
                    tonic::metadata::MetadataValue::from_bytes(&crate::rpc::retry_info(
                        retry_delay,
                    )),
                );
                Err(status)
            }
        }
    }
}

type RespBody = tonic::body::Body;

/// The trace service's `Export` method (any other path: `UNIMPLEMENTED`), gzip accepted.
async fn handle_grpc(state: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    if req.uri().path() != crate::rpc::EXPORT_PATH {
        let mut response = Response::new(RespBody::default());
        let headers = response.headers_mut();
        headers.insert(
            tonic::Status::GRPC_STATUS,
            (tonic::Code::Unimplemented as i32).into(),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            tonic::metadata::GRPC_CONTENT_TYPE,
        );
        return response;
    }
    let bad_details = {
        let mut script = lock(&state.script);
        match script.front() {
            Some(Reply::GrpcBadDetails { code }) => {
                let code = *code;
                script.pop_front();
                Some(code)
            }
            _ => None,
        }
    };
    if let Some(code) = bad_details {
        let mut response = Response::new(RespBody::default());
        let headers = response.headers_mut();
        headers.insert(tonic::Status::GRPC_STATUS, (code as i32).into());
        headers.insert(
            http::header::CONTENT_TYPE,
            tonic::metadata::GRPC_CONTENT_TYPE,
        );
        headers.insert(
            "grpc-status-details-bin",
            http::HeaderValue::from_static("not*base64!"),
        );
        return response;
    }
    tonic::server::Grpc::new(CollectorCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .unary(Grpc(state), req)
        .await
}

fn plain(
    status: StatusCode,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Response<RespBody> {
    let mut r = Response::new(tonic::body::Body::new(Full::new(body)));
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

async fn handle_http(state: Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    if req.uri().path() != crate::config::HTTP_TRACES_PATH {
        return plain(StatusCode::NOT_FOUND, &[], Bytes::new());
    }
    if req.method() != http::Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, &[], Bytes::new());
    }
    let (parts, body) = req.into_parts();
    let protocol = match parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(http::HeaderValue::as_bytes)
    {
        Some(b"application/x-protobuf") => Protocol::HttpProtobuf,
        Some(b"application/json") => Protocol::HttpJson,
        _ => return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, &[], Bytes::new()),
    };
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return plain(StatusCode::BAD_REQUEST, &[], Bytes::new());
    };
    let gzip = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = if gzip {
        use std::io::Read;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return plain(StatusCode::BAD_REQUEST, &[], Bytes::new());
        }
        Bytes::from(out)
    } else {
        body
    };
    let decoded = match protocol {
        Protocol::HttpJson => serde_json::from_slice::<ExportTraceServiceRequest>(&body).ok(),
        _ => ExportTraceServiceRequest::decode(body).ok(),
    };
    let Some(request) = decoded else {
        return plain(StatusCode::BAD_REQUEST, &[], Bytes::new());
    };
    let reply = state.next_reply();
    state.record(Received {
        protocol,
        headers: parts.headers,
        request,
        gzip,
        reply: reply.clone(),
    });
    let ok = |resp: ExportTraceServiceResponse| match protocol {
        Protocol::HttpJson => plain(
            StatusCode::OK,
            &[("content-type", "application/json".to_owned())],
            Bytes::from(serde_json::to_vec(&resp).unwrap_or_default()),
        ),
        _ => plain(
            StatusCode::OK,
            &[("content-type", "application/x-protobuf".to_owned())],
            Bytes::from(resp.encode_to_vec()),
        ),
    };
    match reply {
        Reply::Ok => ok(ExportTraceServiceResponse::default()),
        Reply::Stall(d) => {
            tokio::time::sleep(d).await;
            ok(ExportTraceServiceResponse::default())
        }
        Reply::Partial {
            rejected_spans,
            message,
        } => ok(ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans,
                error_message: message,
            }),
        }),
        Reply::Unavailable | Reply::GrpcRetryTrailer { .. } => {
            plain(StatusCode::SERVICE_UNAVAILABLE, &[], Bytes::new())
        }
        Reply::Grpc { .. } | Reply::GrpcBadDetails { .. } => {
            plain(StatusCode::INTERNAL_SERVER_ERROR, &[], Bytes::new())
        }
        Reply::Http {
            status,
            retry_after,
        } => plain(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &retry_after
                .map(|s| vec![("retry-after", s.to_string())])
                .unwrap_or_default(),
            Bytes::new(),
        ),
    }
}

async fn serve_io<I>(io: I, state: Arc<State>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = Arc::clone(&state);
        async move {
            let is_grpc = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            if is_grpc {
                Ok::<_, Infallible>(handle_grpc(state, req).await)
            } else {
                Ok(handle_http(state, req).await)
            }
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Flow-control windows the size of a request (gRPC servers such as the Collector's grow
    // theirs with the bandwidth-delay product): a 4 MiB request is not sent 64 KiB per round
    // trip.
    builder
        .http2()
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20);
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

fn acceptor(
    cert_chain_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    };
    let certs = |pem: &str| -> std::io::Result<Vec<CertificateDer<'static>>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(&e))
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| invalid(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| invalid(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs(cert_chain_pem)?, key)
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl MockCollector {
    /// Starts a plaintext collector on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When the port cannot be bound or the thread not started.
    pub fn start() -> std::io::Result<MockCollector> {
        Self::start_inner(None, 0)
    }

    /// Starts a plaintext collector on `127.0.0.1:port` (a collector that comes back on the
    /// port a stopped one used).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start_on_port(port: u16) -> std::io::Result<MockCollector> {
        Self::start_inner(None, port)
    }

    /// Starts a TLS collector on `127.0.0.1:0` with this certificate chain and private key
    /// (PEM).
    ///
    /// # Errors
    /// When the certificate or key is unusable, or the port cannot be bound.
    pub fn start_tls(cert_chain_pem: &str, key_pem: &str) -> std::io::Result<MockCollector> {
        Self::start_inner(Some(acceptor(cert_chain_pem, key_pem, None)?), 0)
    }

    /// Starts a collector that requires mutual TLS: clients must present a certificate
    /// signed by `client_ca_pem`; handshakes without one fail.
    ///
    /// # Errors
    /// When a certificate or key is unusable, or the port cannot be bound.
    pub fn start_mtls(
        cert_chain_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
    ) -> std::io::Result<MockCollector> {
        Self::start_inner(
            Some(acceptor(cert_chain_pem, key_pem, Some(client_ca_pem))?),
            0,
        )
    }

    fn start_inner(
        tls: Option<tokio_rustls::TlsAcceptor>,
        port: u16,
    ) -> std::io::Result<MockCollector> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let is_tls = tls.is_some();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("mock-otlp-collector".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                // Small HTTP/2 frames (window updates, replies) go out at
                                // once, as a collector's would.
                                let _ = stream.set_nodelay(true);
                                let state = Arc::clone(&thread_state);
                                let tls = tls.clone();
                                tokio::spawn(async move {
                                    match tls {
                                        None => serve_io(stream, state).await,
                                        Some(acceptor) => {
                                            if let Ok(s) = acceptor.accept(stream).await {
                                                serve_io(s, state).await;
                                            }
                                        }
                                    }
                                });
                            }
                        }
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(MockCollector {
            addr,
            tls: is_tls,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gRPC endpoint (`http://127.0.0.1:PORT`, `https://` with TLS).
    #[must_use]
    pub fn grpc_endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The HTTP/protobuf endpoint (`http://127.0.0.1:PORT/v1/traces`).
    #[must_use]
    pub fn http_endpoint(&self) -> String {
        format!(
            "{}{}",
            self.grpc_endpoint(),
            crate::config::HTTP_TRACES_PATH
        )
    }

    /// Queues replies for the next requests (after them, `Ok`).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state.script).extend(replies);
    }

    /// Every request received so far, accepted or not.
    #[must_use]
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Forgets the requests received so far (long-running benches).
    pub fn clear(&self) {
        lock(&self.state.received).clear();
    }

    /// Every span of every accepted request.
    #[must_use]
    pub fn spans(&self) -> Vec<Span> {
        self.received()
            .iter()
            .filter(|r| r.accepted())
            .flat_map(Received::spans)
            .collect()
    }

    /// Waits until accepted requests hold at least `n` spans; `false` if `timeout` passed
    /// first.
    #[must_use]
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut received = lock(&self.state.received);
        loop {
            let count: usize = received
                .iter()
                .filter(|r| r.accepted())
                .map(|r| r.spans().len())
                .sum();
            if count >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            received = self
                .state
                .changed
                .wait_timeout(received, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for MockCollector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
