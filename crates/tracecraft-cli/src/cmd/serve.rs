//! `tracecraft serve`: the redacting OTLP gateway. Agents in any language point their
//! OpenTelemetry exporter at it (`OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318`); each
//! trace goes through the configured pipeline (enrich, redact, sample), then into the store
//! (per tenant with `tenant_store`) and, with `--forward`, on to a collector (with an optional
//! spool). Settings: `[gateway]` in the configuration file, overridden by these flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tracecraft::config::{StorageUrl, TraceCraftConfig};
use tracecraft::gateway::{Gateway, Router, TlsFiles, TokenConfig};
use tracecraft::otlp::{SpoolConfig, StatsHandle};
use tracecraft::pipeline::Pipeline;

use super::{CliError, load_config, shown, store_flag};
use crate::{Exit, Global};

/// Arguments of `tracecraft serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// OTLP/gRPC address (default 127.0.0.1:4317). A non-loopback address needs
    /// --tls-cert/--tls-key or --allow-insecure.
    #[arg(long, value_name = "ADDR")]
    grpc: Option<SocketAddr>,
    /// OTLP/HTTP address (default 127.0.0.1:4318).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Serve without gRPC.
    #[arg(long, conflicts_with = "grpc")]
    no_grpc: bool,
    /// Serve without HTTP.
    #[arg(long, conflicts_with = "http")]
    no_http: bool,
    /// TLS certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (a warning is logged).
    #[arg(long)]
    allow_insecure: bool,
    /// Accept the bearer token in this file (repeatable). Tenants: `[[gateway.tokens]]`.
    #[arg(long = "token-file", value_name = "FILE")]
    token_files: Vec<PathBuf>,
    /// Accept the bearer token in this environment variable (repeatable).
    #[arg(long = "token-env", value_name = "VAR")]
    token_envs: Vec<String>,
    /// Store runs without a tenant here (`sqlite:PATH` or `jsonl:DIR`).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Store each tenant's runs here; `{tenant}` is replaced (e.g. `sqlite:traces/{tenant}.db`).
    #[arg(long, value_name = "PATTERN")]
    tenant_store: Option<String>,
    /// Forward processed runs to this OTLP endpoint (trace and span ids preserved). Headers,
    /// TLS and protocol come from `[otlp]` and `OTEL_EXPORTER_OTLP_*`.
    #[arg(long, value_name = "URL")]
    forward: Option<String>,
    /// Keep what the forwarder cannot deliver in this directory and re-send it later.
    #[arg(long, value_name = "DIR", requires = "forward")]
    spool: Option<PathBuf>,
    /// A trace is processed after this long without a new span, complete or not (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    quiet_period: Option<Duration>,
    /// Largest request body in bytes (default 4194304).
    #[arg(long, value_name = "BYTES")]
    max_request_bytes: Option<usize>,
    /// How long shutdown may take to drain and flush (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    shutdown_timeout: Duration,
}

fn configure(args: &Args, global: &Global) -> Result<tracecraft::config::Loaded, CliError> {
    let mut loaded = load_config(global)?;
    if let Some(url) = &args.store {
        store_flag(&mut loaded, url)?;
    }
    let mut flags: Vec<(&str, &str)> = Vec::new();
    let g = &mut loaded.config.gateway;
    if let Some(a) = args.grpc {
        g.grpc = Some(a);
        flags.push(("gateway.grpc", "--grpc"));
    }
    if args.no_grpc {
        g.grpc = None;
        flags.push(("gateway.grpc", "--no-grpc"));
    }
    if let Some(a) = args.http {
        g.http = Some(a);
        flags.push(("gateway.http", "--http"));
    }
    if args.no_http {
        g.http = None;
        flags.push(("gateway.http", "--no-http"));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let mut tls = TlsFiles::new(cert, key);
        if let Some(ca) = &args.tls_client_ca {
            tls = tls.client_ca(ca);
        }
        g.tls = Some(tls);
        flags.push(("gateway.tls", "--tls-cert"));
    }
    if args.allow_insecure {
        g.allow_insecure = true;
        flags.push(("gateway.allow_insecure", "--allow-insecure"));
    }
    for f in &args.token_files {
        g.tokens.push(TokenConfig::file(f));
        flags.push(("gateway.tokens", "--token-file"));
    }
    for v in &args.token_envs {
        g.tokens.push(TokenConfig::env(v));
        flags.push(("gateway.tokens", "--token-env"));
    }
    if let Some(p) = &args.tenant_store {
        g.tenant_store = Some(p.clone());
        flags.push(("gateway.tenant_store", "--tenant-store"));
    }
    if let Some(f) = &args.forward {
        g.forward = Some(f.clone());
        flags.push(("gateway.forward", "--forward"));
    }
    if let Some(d) = args.quiet_period {
        g.quiet_period_ms = d.as_millis() as u64;
        flags.push(("gateway.quiet_period_ms", "--quiet-period"));
    }
    if let Some(n) = args.max_request_bytes {
        g.max_request_bytes = n;
        flags.push(("gateway.max_request_bytes", "--max-request-bytes"));
    }
    for (key, flag) in flags {
        loaded.flag(key, flag);
    }
    loaded.config.validate()?;
    if let Some(pattern) = &loaded.config.gateway.tenant_store {
        StorageUrl::parse(&pattern.replace("{tenant}", "t"))
            .map_err(|e| CliError(format!("gateway.tenant_store: {e}")))?;
    }
    Ok(loaded)
}

/// Opens each tenant's pipeline: the configured processors, the tenant's store, and the
/// forwarder.
struct CliRouter {
    config: TraceCraftConfig,
    spool: Option<PathBuf>,
    forwarders: Mutex<Vec<StatsHandle>>,
}

impl CliRouter {
    fn forward_config(&self) -> Option<TraceCraftConfig> {
        let url = self.config.gateway.forward.as_ref()?;
        let mut c = self.config.clone();
        c.otlp.enabled = true;
        // A URL with a path is the traces URL; a bare base URL gets `/v1/traces` for HTTP.
        let base_only = url
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.trim_end_matches('/').contains('/'));
        if base_only {
            c.otlp.endpoint = None;
            c.otlp.base_endpoint = Some(url.clone());
        } else {
            c.otlp.endpoint = Some(url.clone());
            c.otlp.base_endpoint = None;
        }
        Some(c)
    }
}

impl Router for CliRouter {
    fn open(&self, tenant: Option<&str>) -> Result<Pipeline, String> {
        let mut builder = self
            .config
            .pipeline_config()
            .builder()
            .map_err(|e| e.to_string())?;
        let mut storage = self.config.storage.clone();
        if let (Some(t), Some(pattern)) = (tenant, &self.config.gateway.tenant_store) {
            storage.url = StorageUrl::parse(&pattern.replace("{tenant}", t))?;
        }
        let label = storage.url.to_string();
        if let Some(store) =
            tracecraft::open_store(&storage).map_err(|e| format!("store {label}: {e}"))?
        {
            // Retention runs by itself for as long as the gateway holds the store.
            if let Some(age) = storage.max_age() {
                tracecraft::spawn_retention(&store, age);
            }
            builder = builder.exporter(store);
        }
        if let Some(c) = self.forward_config() {
            let mut exporter = tracecraft::open_otlp_export(&c)
                .map_err(|e| format!("forward: {e}"))?
                .ok_or("forward: OTLP export is disabled")?;
            if let Some(dir) = &self.spool {
                exporter = exporter
                    .with_spool(SpoolConfig::builder(dir).build())
                    .map_err(|e| format!("spool: {e}"))?;
            }
            if let Ok(mut f) = self.forwarders.lock() {
                f.push(exporter.stats_handle());
            }
            builder = builder.exporter(exporter);
        }
        builder.build().map_err(|e| e.to_string())
    }

    fn forward_counts(&self) -> (u64, u64) {
        let Ok(f) = self.forwarders.lock() else {
            return (0, 0);
        };
        f.iter().map(StatsHandle::get).fold((0, 0), |(a, b), s| {
            (a + s.spans_sent, b + s.spool.spooled_spans)
        })
    }
}

/// Waits for Ctrl-C or SIGTERM.
fn wait_for_signal() -> Result<&'static str, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("signal handling: {e}")))?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())
                .map_err(|e| CliError(format!("signal handling: {e}")))?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Ok("interrupt"),
                _ = term.recv() => Ok("SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| CliError(format!("signal handling: {e}")))?;
            Ok("interrupt")
        }
    })
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let loaded = configure(&args, global)?;
    let config = loaded.config.clone();
    let g = &config.gateway;
    if config.storage.url == StorageUrl::None && g.forward.is_none() && g.tenant_store.is_none() {
        return Err(CliError(
            "nothing to do with received spans: set a store (--store, [storage] url), \
             --tenant-store or --forward"
                .into(),
        ));
    }
    let router = CliRouter {
        config: config.clone(),
        spool: args.spool.clone(),
        forwarders: Mutex::new(Vec::new()),
    };
    // Open the default pipeline now: a store that cannot be opened fails the start.
    router
        .open(None)
        .map_err(CliError)?
        .shutdown(Duration::from_secs(5));
    let mut gateway = Gateway::start(g, router).map_err(|e| CliError(e.to_string()))?;
    let mut listening = Vec::new();
    let scheme = if g.tls.is_some() { "https" } else { "http" };
    if let Some(a) = gateway.grpc_addr() {
        listening.push(format!("OTLP/gRPC on {scheme}://{a}"));
    }
    if let Some(a) = gateway.http_addr() {
        listening.push(format!("OTLP/HTTP on {scheme}://{a}/v1/traces"));
    }
    let mut dest = Vec::new();
    if config.storage.url != StorageUrl::None {
        dest.push(format!("storing in {}", config.storage.url));
    }
    if let Some(p) = &g.tenant_store {
        dest.push(format!("tenants in {p}"));
    }
    if let Some(f) = &g.forward {
        dest.push(format!("forwarding to {f}"));
    }
    eprintln!(
        "{}",
        shown(&format!(
            "tracecraft serve: {}; {}{}",
            listening.join(", "),
            dest.join(", "),
            if g.tokens.is_empty() {
                ""
            } else {
                "; bearer tokens required"
            }
        ))
    );
    let signal = wait_for_signal()?;
    eprintln!("tracecraft serve: {signal}: draining");
    let summary = gateway.shutdown(args.shutdown_timeout);
    let metrics = gateway.metrics().summary_line();
    eprintln!("{}", shown(&format!("tracecraft serve: {metrics}")));
    if let Some(e) = &summary.error {
        eprintln!("{}", shown(&format!("  error: {e}")));
    }
    if summary.unfinished > 0 || summary.requests_cut > 0 {
        eprintln!(
            "  not finished by the deadline: {} queued requests, {} requests in flight",
            summary.unfinished, summary.requests_cut
        );
    }
    Ok(if summary.is_clean() {
        Exit::Done
    } else {
        Exit::Partial
    })
}
