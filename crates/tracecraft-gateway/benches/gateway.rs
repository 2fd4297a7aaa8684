//! `cargo xtask bench gateway`: a bounded load generator on loopback against a gateway that
//! redacts and stores into SQLite. Prints sustained spans/s (received, redacted and stored)
//! and the p99 request latency at half that load, beside the targets. About 20 s.
//!
//! With `TRACECRAFT_BENCH_PYTHON` naming a Python that has the reference package (tracecraft
//! 0.2.1) and its receiver's extras (`starlette`, `uvicorn`), the same load then goes to the
//! reference's OTLP receiver (`OTLPReceiverServer` with its SQLite store, on 127.0.0.1) for
//! the same time, and its figure is printed beside ours.
#![allow(clippy::print_stdout, clippy::disallowed_macros, missing_docs)]

/// The allocator `tracecraft serve` runs with (the CLI's default `mimalloc` feature), so the
/// bench measures what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tracecraft_core::testing::MemoryStore;
use tracecraft_gateway::{Gateway, GatewayConfig};
use tracecraft_pipeline::PipelineConfig;

const TRACES_PER_REQUEST: usize = 50;
const SPANS_PER_TRACE: usize = 10;
const SPANS_PER_REQUEST: u64 = (TRACES_PER_REQUEST * SPANS_PER_TRACE) as u64;
const TARGET_SPANS_PER_S: f64 = 100_000.0;
const TARGET_P99_MS: f64 = 20.0;

fn attr(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One request of complete traces (root + children), distinct trace ids per `seq`.
fn request(seq: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut spans = Vec::with_capacity(TRACES_PER_REQUEST * SPANS_PER_TRACE);
    for t in 0..TRACES_PER_REQUEST as u64 {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&seq.to_be_bytes());
        trace_id[8..].copy_from_slice(&(t + 1).to_be_bytes());
        // Span ids unique across requests (the reference receiver keys steps by span id).
        let id = |s: u64| {
            ((seq << 24) | ((t + 1) << 8) | (s + 1))
                .to_be_bytes()
                .to_vec()
        };
        for s in 0..SPANS_PER_TRACE as u64 {
            let span_id = id(s);
            let parent = if s == 0 { Vec::new() } else { id(0) };
            spans.push(Span {
                trace_id: trace_id.to_vec(),
                span_id,
                parent_span_id: parent,
                name: if s == 0 {
                    "invoke_agent"
                } else {
                    "chat gpt-4o"
                }
                .into(),
                start_time_unix_nano: now - 1_000_000 + s,
                end_time_unix_nano: now,
                attributes: vec![
                    attr(
                        "gen_ai.operation.name",
                        if s == 0 { "invoke_agent" } else { "chat" },
                    ),
                    attr("gen_ai.request.model", "gpt-4o"),
                    attr(
                        "gen_ai.prompt",
                        "Summarize the ticket from jane.doe@corp-mail.com about order 1234",
                    ),
                ],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The request bodies, built once: body `i` is `request(i % N)` with its trace ids made
/// unique by the generation `i / N`, written into the (otherwise zero) first four bytes of
/// each trace id. Every request the load generator sends thus carries new traces: the store
/// measures inserts, never merges with runs of an earlier request.
struct Pool {
    bodies: Vec<Bytes>,
    /// Offsets of the 16 trace-id bytes of every span in `bodies[i]`.
    trace_ids: Vec<Vec<usize>>,
}

impl Pool {
    fn new(n: u64) -> Pool {
        let mut bodies = Vec::new();
        let mut trace_ids = Vec::new();
        for seq in 0..n {
            let body = request(seq);
            // A span's trace id is field 1, 16 bytes: 0x0a 0x10, then `seq` big-endian.
            let mut pattern = vec![0x0a, 0x10];
            pattern.extend_from_slice(&seq.to_be_bytes());
            let offsets: Vec<usize> = body
                .windows(pattern.len())
                .enumerate()
                .filter(|(_, w)| w[0] == 0x0a && w[1] == 0x10 && *w == pattern.as_slice())
                .map(|(i, _)| i + 2)
                .collect();
            assert_eq!(offsets.len(), TRACES_PER_REQUEST * SPANS_PER_TRACE);
            bodies.push(Bytes::from(body));
            trace_ids.push(offsets);
        }
        Pool { bodies, trace_ids }
    }

    fn body(&self, i: u64) -> Bytes {
        let n = self.bodies.len() as u64;
        let (generation, k) = (i / n, (i % n) as usize);
        if generation == 0 {
            return self.bodies[k].clone();
        }
        let mut body = self.bodies[k].to_vec();
        let generation = u32::try_from(generation).unwrap().to_be_bytes();
        for &at in &self.trace_ids[k] {
            body[at..at + 4].copy_from_slice(&generation);
        }
        Bytes::from(body)
    }
}

/// Spans/s of the gateway's protobuf decoding alone on these bodies, one thread (best of
/// three passes): the kernel beside the whole-process figure.
fn decoding(bodies: &[Bytes]) -> f64 {
    use tracecraft_gateway::decode::{Format, decode};
    let spans = (bodies.len() as u64 * SPANS_PER_REQUEST) as f64;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for b in bodies {
            std::hint::black_box(decode(b, Format::Protobuf).unwrap());
        }
        best = best.min(t.elapsed());
    }
    spans / best.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let config = GatewayConfig::builder()
        .grpc(None)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .queue_capacity(64)
        .log_interval_s(0)
        .build()
        .unwrap();
    let store = Arc::new(
        tracecraft_store_sqlite::SqliteStore::open(tracecraft_store_sqlite::SqliteConfig::new(&db))
            .unwrap(),
    );
    let s = Arc::clone(&store);
    // TRACECRAFT_BENCH_STORE=memory: the same without SQLite, to see what the store costs.
    let memory = std::env::var("TRACECRAFT_BENCH_STORE").is_ok_and(|v| v == "memory");
    let mut gateway = Gateway::start(&config, move |_: Option<&str>| {
        let b = PipelineConfig::default()
            .builder()
            .map_err(|e| e.to_string())?;
        let b = if memory {
            b.store(Arc::new(MemoryStore::new()))
        } else {
            b.store(Arc::clone(&s))
        };
        b.build().map_err(|e| e.to_string())
    })
    .unwrap();
    let store_name = if memory { "memory" } else { "sqlite" };
    let url: http::Uri = format!("http://{}/v1/traces", gateway.http_addr().unwrap())
        .parse()
        .unwrap();
    let bodies = Arc::new(Pool::new(4096));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let seq = Arc::new(AtomicU64::new(0));

    // Phase 1: as fast as the gateway accepts (503s are retried by the client after 5 ms),
    // for 8 s; then the drain. Sustained = spans stored / (load + drain time).
    let stored_runs = || {
        gateway
            .metrics()
            .snapshot()
            .exporters
            .get(store_name)
            .map_or(0, |(ok, _)| *ok)
    };
    let load = Duration::from_secs(8);
    let start = Instant::now();
    let (accepted, refused) = rt.block_on(drive(&url, &bodies, &seq, load, None, 4));
    let sent_traces = accepted * TRACES_PER_REQUEST as u64;
    while stored_runs() < sent_traces && start.elapsed() < load * 4 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stored_spans = stored_runs() * SPANS_PER_TRACE as u64;
    let rate = stored_spans as f64 / elapsed;

    // Phase 2: half that load, paced; p99 request latency.
    let half = rate / 2.0;
    let interval = Duration::from_secs_f64(SPANS_PER_REQUEST as f64 / half.max(1.0));
    let (latencies, _) = rt.block_on(async {
        let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, _) = drive(
            &url,
            &bodies,
            &seq,
            Duration::from_secs(6),
            Some((interval, Arc::clone(&lat))),
            8,
        )
        .await;
        let v = lat.lock().unwrap().clone();
        (v, n)
    });
    let mut l = latencies;
    l.sort_unstable();
    let p = |q: f64| {
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .map_or(f64::NAN, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    let summary = gateway.shutdown(Duration::from_secs(30));
    println!(
        "gateway bench: {TRACES_PER_REQUEST} traces x {SPANS_PER_TRACE} spans per HTTP/protobuf request, redaction on, {store_name} store"
    );
    println!(
        "  sustained (received, redacted, stored): {:>9.0} spans/s   target >= {:.0}   {}",
        rate,
        TARGET_SPANS_PER_S,
        if rate >= TARGET_SPANS_PER_S {
            "ok"
        } else {
            "BELOW TARGET"
        }
    );
    println!(
        "  requests accepted {accepted}, refused with 503 (backpressure) {refused}; {stored_spans} spans stored in {elapsed:.1} s"
    );
    println!(
        "  at half load ({half:.0} spans/s, {} requests): p50 {:.2} ms, p99 {:.2} ms   target p99 <= {TARGET_P99_MS} ms   {}",
        l.len(),
        p(0.50),
        p(0.99),
        if p(0.99) <= TARGET_P99_MS {
            "ok"
        } else {
            "ABOVE TARGET"
        }
    );
    println!("  shutdown clean: {}", summary.is_clean());
    println!(
        "  decoding alone (prost message tree), one thread, after the load: {:.0} spans/s",
        decoding(&bodies.bodies[..256])
    );
    if let Some(python) = std::env::var_os("TRACECRAFT_BENCH_PYTHON") {
        reference(&python, &bodies, load, &rt);
    }
}

/// The reference package's receiver under the same load (phase 1): it stores each request
/// before answering, so accepted requests are stored ones.
fn reference(
    python: &std::ffi::OsStr,
    bodies: &Arc<Pool>,
    load: Duration,
    rt: &tokio::runtime::Runtime,
) {
    const SCRIPT: &str = "import os, sys\n\
        from tracecraft.storage.sqlite import SQLiteTraceStore\n\
        from tracecraft.receiver import OTLPReceiverServer\n\
        store = SQLiteTraceStore(os.path.join(sys.argv[2], 'reference.db'))\n\
        OTLPReceiverServer(store, host='127.0.0.1', port=int(sys.argv[1])).run()\n";
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut child = match std::process::Command::new(python)
        .args(["-c", SCRIPT, &port.to_string()])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!(
                "  reference: cannot start {}: {e}",
                python.to_string_lossy()
            );
            return;
        }
    };
    let health: http::Uri = format!("http://127.0.0.1:{port}/health").parse().unwrap();
    let up = rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        for _ in 0..200 {
            let req = http::Request::get(health.clone())
                .body(Full::new(Bytes::new()))
                .unwrap();
            if client
                .request(req)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    if up {
        let url: http::Uri = format!("http://127.0.0.1:{port}/v1/traces")
            .parse()
            .unwrap();
        let seq = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let (accepted, failed) = rt.block_on(drive(&url, bodies, &seq, load, None, 4));
        let rate = (accepted * SPANS_PER_REQUEST) as f64 / start.elapsed().as_secs_f64();
        println!(
            "  reference (Python tracecraft 0.2.1 OTLPReceiverServer, no redaction, SQLite): {rate:>9.0} spans/s received and stored ({accepted} requests, {failed} failed)"
        );
    } else {
        println!("  reference: its receiver did not answer /health within 20 s");
    }
    // The child this bench started, by its handle.
    let _ = child.kill();
    let _ = child.wait();
}

/// `conns` connections send bodies until `duration` passes; paced when `pace` is given
/// (each connection's share of the interval), recording each request's latency.
async fn drive(
    url: &http::Uri,
    bodies: &Arc<Pool>,
    seq: &Arc<AtomicU64>,
    duration: Duration,
    pace: Option<(Duration, Arc<std::sync::Mutex<Vec<Duration>>>)>,
    conns: usize,
) -> (u64, u64) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let deadline = Instant::now() + duration;
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let client = client.clone();
        let url = url.clone();
        let bodies = Arc::clone(bodies);
        let seq = Arc::clone(seq);
        let accepted = Arc::clone(&accepted);
        let refused = Arc::clone(&refused);
        let pace = pace.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now() + Duration::from_micros(c as u64 * 137);
            while Instant::now() < deadline {
                if let Some((interval, _)) = &pace {
                    tokio::time::sleep_until(next.into()).await;
                    next += *interval * conns as u32;
                }
                let body = bodies.body(seq.fetch_add(1, Ordering::Relaxed));
                // A refused request is sent again, as SDKs retry a batch, until accepted or
                // the time is up.
                while Instant::now() < deadline {
                    let req = http::Request::post(url.clone())
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    let t = Instant::now();
                    let Ok(resp) = client.request(req).await else {
                        continue;
                    };
                    let status = resp.status();
                    let _ = resp.into_body().collect().await;
                    let took = t.elapsed();
                    if status == 200 {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        if let Some((_, lat)) = &pace {
                            lat.lock().unwrap().push(took);
                        }
                        break;
                    }
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}
