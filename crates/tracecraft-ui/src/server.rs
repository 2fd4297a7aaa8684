//! The HTTP server: builder, accept loop, authentication, security headers and routing.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tracecraft_core::{TraceStore, Uuid};

use crate::api::{self, ApiError, State};
use crate::assets;
use crate::params::Params;

/// The address `tracecraft ui` binds by default.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6007);

/// The cookie that carries the access token after the first visit.
const TOKEN_COOKIE: &str = "tracecraft_token";

/// The header an erasure request must carry: a cross-site form or `fetch` cannot set it
/// without a CORS preflight, which this server never grants.
pub const ERASE_HEADER: &str = "x-tracecraft-erase";

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The shortest access token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a [`Server`] could not be built. Never shows the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No store was given.
    #[error("no store: call `.store(..)` on the builder")]
    NoStore,
    /// A non-loopback address was given without a token.
    #[error(
        "binding {addr} exposes traces beyond this machine: set an access token (--token) or bind a loopback address"
    )]
    TokenRequired {
        /// The address.
        addr: SocketAddr,
    },
    /// The token is too short or has characters a cookie cannot carry.
    #[error(
        "the access token must be at least {MIN_TOKEN_LEN} characters of A-Z, a-z, 0-9, '-', '_' or '.'"
    )]
    BadToken,
    /// The socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Builds a [`Server`]; see [`Server::builder`].
#[must_use]
pub struct ServerBuilder {
    store: Option<Arc<dyn TraceStore>>,
    bind: SocketAddr,
    token: Option<String>,
    allow_erase: bool,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("store", &self.store.as_ref().map(|s| s.name().to_owned()))
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("allow_erase", &self.allow_erase)
            .finish()
    }
}

impl ServerBuilder {
    /// The store to browse (required).
    pub fn store(mut self, store: Arc<dyn TraceStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The address to listen on; [`DEFAULT_ADDR`] (`127.0.0.1:6007`) unless set. Port 0 picks
    /// a free port (see [`Server::local_addr`]). A non-loopback address requires a token.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// An access token: every request must carry it (as `?token=` once, then a cookie, or
    /// `Authorization: Bearer`). Optional on loopback, required elsewhere.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Whether the erase action is offered (`DELETE /api/runs/{id}`); off by default.
    pub fn allow_erase(mut self, allow: bool) -> Self {
        self.allow_erase = allow;
        self
    }

    /// Checks the settings and binds the socket.
    ///
    /// # Errors
    /// [`BuildError`] when the store is missing, a non-loopback address has no token, the
    /// token is unusable, or the address cannot be bound.
    pub fn build(self) -> Result<Server, BuildError> {
        let store = self.store.ok_or(BuildError::NoStore)?;
        if let Some(t) = &self.token
            && (t.len() < MIN_TOKEN_LEN
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        {
            return Err(BuildError::BadToken);
        }
        let loopback = self.bind.ip().is_loopback();
        if !loopback && self.token.is_none() {
            return Err(BuildError::TokenRequired { addr: self.bind });
        }
        let bind_err = |source| BuildError::Bind {
            addr: self.bind,
            source,
        };
        let listener = std::net::TcpListener::bind(self.bind).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        Ok(Server {
            state: Arc::new(State::new(store, self.allow_erase)),
            token: self.token,
            loopback,
            listener,
            addr,
        })
    }
}

/// The trace browser's HTTP server: the JSON API (`/api/...`) and the embedded front end.
///
/// Build it with [`Server::builder`], then [`serve_until`](Server::serve_until) inside a
/// tokio runtime or [`spawn`](Server::spawn) it on a thread of its own.
pub struct Server {
    state: Arc<State>,
    token: Option<String>,
    loopback: bool,
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder: loopback `127.0.0.1:6007`, no token, read-only.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            store: None,
            bind: DEFAULT_ADDR,
            token: None,
            allow_erase: false,
        }
    }

    /// The address actually bound (the real port when 0 was asked for).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open in a browser; it carries the token when one is set (the server then
    /// moves it into a cookie and out of the address bar).
    #[must_use]
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        match &self.token {
            Some(t) => format!("http://{host}:{}/?token={t}", self.addr.port()),
            None => format!("http://{host}:{}/", self.addr.port()),
        }
    }

    /// Serves until `shutdown` completes; then stops accepting and closes open connections.
    /// Must run inside a tokio runtime (store reads run on its blocking pool).
    ///
    /// # Errors
    /// When the listener cannot be registered with the runtime.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let conn = Arc::new(Conn {
            state: self.state,
            token: self.token,
            loopback: self.loopback,
            port: self.addr.port(),
        });
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let conn = Arc::clone(&conn);
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let conn = Arc::clone(&conn);
                            async move { Ok::<_, Infallible>(conn.handle(req).await) }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        // A client that goes away mid-request is not an error worth reporting.
                        let _ = hyper::server::conn::http1::Builder::new()
                            // A client that opens a connection and sends nothing is dropped.
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(io, service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
        Ok(())
    }

    /// Serves on a thread of its own (with its own runtime) until the handle is shut down or
    /// dropped.
    ///
    /// # Errors
    /// When the thread or the runtime cannot be started.
    pub fn spawn(self) -> std::io::Result<ServerHandle> {
        let addr = self.addr;
        let url = self.url();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("tracecraft-ui".into())
            .spawn(move || {
                runtime.block_on(self.serve_until(async {
                    let _ = rx.await;
                }))
            })?;
        Ok(ServerHandle {
            addr,
            url,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A server running on its own thread; stops on [`shutdown`](ServerHandle::shutdown) or drop.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl ServerHandle {
    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open (with the token when one is set).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until the process ends (or the server fails).
    ///
    /// # Errors
    /// The server's own error, if it failed.
    pub fn wait(mut self) -> std::io::Result<()> {
        // Keep the stop channel open: dropping it would stop the server.
        let _stop = self.stop.take();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }

    /// Stops the server and waits for its thread.
    ///
    /// # Errors
    /// The server's own error, if it failed.
    pub fn shutdown(mut self) -> std::io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// What every connection shares.
struct Conn {
    state: Arc<State>,
    token: Option<String>,
    loopback: bool,
    port: u16,
}

type Resp = Response<Full<Bytes>>;

impl Conn {
    async fn handle(&self, req: Request<Incoming>) -> Resp {
        let mut resp = self.route(&req).await;
        security_headers(resp.headers_mut());
        resp
    }

    async fn route(&self, req: &Request<Incoming>) -> Resp {
        // DNS rebinding: a page on another site that resolves its name to 127.0.0.1 would
        // otherwise read this API with the user's browser. On loopback only loopback names.
        if self.loopback && !self.host_ok(req.headers()) {
            return text(StatusCode::MISDIRECTED_REQUEST, "unexpected Host header\n");
        }
        let path = req.uri().path().to_owned();
        let params = Params::parse(req.uri().query().unwrap_or(""));
        if let Some(token) = &self.token
            && !self.authorized(req.headers(), token)
        {
            return Self::first_visit(req, &path, &params, token);
        }
        match (req.method(), path.as_str()) {
            (&Method::GET | &Method::HEAD, p) if p.starts_with("/api/") => {
                self.api_get(p, params).await
            }
            (&Method::DELETE, p) if p.starts_with("/api/runs/") => self.erase(req, p).await,
            (&Method::GET | &Method::HEAD, p) => match assets::page(p, &params) {
                Some(page) => Response::builder()
                    .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(Full::new(Bytes::from(page)))
                    .unwrap_or_default(),
                None => Self::asset(p),
            },
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        }
    }

    fn asset(p: &str) -> Resp {
        match assets::get(p) {
            Some((mime, body)) => Response::builder()
                .header(header::CONTENT_TYPE, mime)
                .header(header::CACHE_CONTROL, "no-cache")
                .body(Full::new(Bytes::from_static(body)))
                .unwrap_or_default(),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// An unauthorized request: the first visit through the printed URL (`GET /?token=...`)
    /// moves the token into a cookie; anything else is refused.
    fn first_visit(req: &Request<Incoming>, path: &str, params: &Params, token: &str) -> Resp {
        if req.method() == Method::GET
            && !path.starts_with("/api/")
            && params
                .get("token")
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        {
            return Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, "/")
                .header(
                    header::SET_COOKIE,
                    format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
                )
                .body(Full::new(Bytes::new()))
                .unwrap_or_default();
        }
        text(
            StatusCode::UNAUTHORIZED,
            "this trace browser needs its access token: open the URL that `tracecraft ui` printed\n",
        )
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if !n.is_empty() && !p.contains(']') => (n, Some(p)),
            _ => (host, None),
        };
        let name_ok = name.eq_ignore_ascii_case("localhost")
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        name_ok && port.is_none_or(|p| p.parse::<u16>().ok() == Some(self.port))
    }

    fn authorized(&self, headers: &HeaderMap, token: &str) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| constant_time_eq(b.as_bytes(), token.as_bytes())) {
            return true;
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == TOKEN_COOKIE && constant_time_eq(v.as_bytes(), token.as_bytes()))
    }

    async fn api_get(&self, path: &str, params: Params) -> Resp {
        let state = Arc::clone(&self.state);
        let path = path.to_owned();
        let result = tokio::task::spawn_blocking(move || api::get(&state, &path, &params)).await;
        match result {
            Ok(Ok(body)) => json_bytes(StatusCode::OK, body),
            Ok(Err(e)) => api_error(&e),
            Err(_) => api_error(&ApiError::Internal("the request handler failed".into())),
        }
    }

    async fn erase(&self, req: &Request<Incoming>, path: &str) -> Resp {
        if !self.state.allow_erase {
            return api_error(&ApiError::Forbidden(
                "erasure is off: start `tracecraft ui` with --allow-erase",
            ));
        }
        let Some(id) = path
            .strip_prefix("/api/runs/")
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            return api_error(&ApiError::NotFound);
        };
        // The confirmation the page asks for travels as this header; a cross-site request
        // cannot set it.
        let confirmed = req
            .headers()
            .get(ERASE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::parse_str(v).ok())
            == Some(id);
        if !confirmed {
            return api_error(&ApiError::BadRequest(format!(
                "erasure needs the {ERASE_HEADER} header set to the trace id"
            )));
        }
        let state = Arc::clone(&self.state);
        match tokio::task::spawn_blocking(move || api::erase(&state, id)).await {
            Ok(Ok(body)) => json_bytes(StatusCode::OK, body),
            Ok(Err(e)) => api_error(&e),
            Err(_) => api_error(&ApiError::Internal("the request handler failed".into())),
        }
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Content-Security-Policy of every response: scripts and styles only from this origin
/// (no inline script, no `eval`), no frames, no plugins, requests only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

fn security_headers(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_default()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn api_error(e: &ApiError) -> Resp {
    let status = match e {
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::NotFound => StatusCode::NOT_FOUND,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if let ApiError::Store(_) | ApiError::Internal(_) = e {
        tracing::warn!(error = %e, "trace browser request failed");
    }
    json(status, &serde_json::json!({ "error": e.to_string() }))
}
