//! OTLP mapping, encoding, spooling and export throughput on the shared corpus (`runs.jsonl`:
//! 2,000 runs, ~13.5 KB, ~20 steps each). `cargo xtask bench otlp`. Throughput is in spans
//! (one per run and one per step). The export benches send to the in-process mock collector on
//! 127.0.0.1 (it decodes every request, so they include its cost too).
#![allow(
    missing_docs,
    clippy::print_stderr,
    clippy::disallowed_macros,
    clippy::disallowed_methods
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tracecraft_core::{Exporter, ProcessedRun, read_jsonl};
use tracecraft_otlp::mapping::{self, MappingOptions};
use tracecraft_otlp::testing::MockCollector;
use tracecraft_otlp::{OtlpExporter, Protocol, Spool, SpoolConfig};

fn corpus_runs() -> Option<Vec<ProcessedRun>> {
    let dir = std::env::var_os("TRACECRAFT_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus")
        });
    let file = std::fs::File::open(dir.join("runs.jsonl")).ok()?;
    Some(
        read_jsonl(std::io::BufReader::new(file))
            .filter_map(|(_, r)| r.ok())
            .map(ProcessedRun::assume_processed)
            .collect(),
    )
}

fn spans(runs: &[ProcessedRun]) -> u64 {
    runs.iter().map(|r| 1 + r.run().step_count() as u64).sum()
}

fn bench(c: &mut Criterion) {
    let Some(runs) = corpus_runs() else {
        eprintln!("skipping otlp benches: corpus missing (run `cargo xtask bench otlp`)");
        return;
    };
    let options = MappingOptions::default();
    let mut g = c.benchmark_group("otlp");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(spans(&runs)));
    // Mapping (every dialect, content) and protobuf encoding: what one core does per span.
    // The direct encoder as the exporter runs it (requests of at most 4 MiB), then the
    // message tree in one request.
    let max = tracecraft_otlp::DEFAULT_MAX_REQUEST_BYTES;
    g.bench_function("map_encode", |b| {
        b.iter(|| {
            // One request at a time, each dropped before the next is done (the exporter
            // sends a request while the next is encoded, then drops it).
            for request in mapping::RequestEncoder::new(&runs, &options, max) {
                std::hint::black_box(request);
            }
        })
    });
    // The same on 32 runs encoded again and again: their trees stay in the CPU caches, as a
    // batch just processed by the pipeline can be; the 2,000 runs above are read from memory.
    let hot = &runs[..runs.len().min(32)];
    g.throughput(Throughput::Elements(spans(hot)));
    g.bench_function("map_encode_hot_32", |b| {
        b.iter(|| {
            for request in mapping::RequestEncoder::new(hot, &options, max) {
                std::hint::black_box(request);
            }
        })
    });
    g.throughput(Throughput::Elements(spans(&runs)));
    g.bench_function("map_encode_tree", |b| {
        b.iter(|| {
            let request = mapping::to_request(&runs, &options);
            std::hint::black_box(request.encode_to_vec());
        })
    });

    // Spooling a failed 512-run batch (encode + MessagePack + write + fsync + rename + directory
    // fsync) against encoding it alone.
    let batch = &runs[..runs.len().min(512)];
    g.throughput(Throughput::Elements(spans(batch)));
    g.bench_function("encode_512", |b| {
        b.iter(|| std::hint::black_box(mapping::encode_request(batch, &options)))
    });
    // What the mock collector does with each request (prost decoding into the message
    // tree): the ceiling of the export benches, whose collector decodes on one thread.
    let encoded = mapping::encode_request(batch, &options).into_body();
    // (The tree is dropped outside the timing, as the collector keeps what it receives.)
    g.bench_function("collector_decode_512", |b| {
        b.iter_with_large_drop(|| {
            tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest::decode(
                encoded.clone(),
            )
            .expect("decodes")
        })
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        &SpoolConfig::builder(dir.path().join("spool"))
            .max_bytes(u64::MAX)
            .build(),
    )
    .expect("spool");
    let spool_dir = dir.path().join("spool");
    g.bench_function("spool_512", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let encoded = mapping::encode_request(batch, &options);
                spool.write_encoded(&encoded).expect("spooled");
                spent += started.elapsed();
                for e in std::fs::read_dir(&spool_dir).expect("spool dir").flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            spent
        })
    });

    let collector = MockCollector::start().expect("mock collector");
    for (name, protocol, endpoint) in [
        (
            "export_grpc_loopback",
            Protocol::Grpc,
            collector.grpc_endpoint(),
        ),
        (
            "export_http_loopback",
            Protocol::HttpProtobuf,
            collector.http_endpoint(),
        ),
    ] {
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(endpoint)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("exporter");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    exporter.export(batch).expect("export");
                    spent += started.elapsed();
                    collector.clear();
                }
                spent
            })
        });
    }
    g.finish();
}

/// This process's CPU time (user + system) from `/proc/self/stat`, Linux only: on a shared
/// machine, spans per CPU-second is the one-core figure that wall time cannot give.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux the project builds for.
    Some(Duration::from_millis(ticks * 10))
}

/// Mapping + encoding per CPU-second (printed, not a criterion figure).
fn cpu_figures(_: &mut Criterion) {
    let (Some(runs), Some(_)) = (corpus_runs(), cpu_time()) else {
        return;
    };
    let options = MappingOptions::default();
    let n = spans(&runs);
    let rounds = 5u32;
    let cpu0 = cpu_time().unwrap_or_default();
    let wall0 = Instant::now();
    let mut bytes = 0;
    let max = tracecraft_otlp::DEFAULT_MAX_REQUEST_BYTES;
    for _ in 0..rounds {
        bytes = mapping::RequestEncoder::new(&runs, &options, max)
            .map(|r| std::hint::black_box(r).body().len())
            .sum();
    }
    let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu0);
    let wall = wall0.elapsed();
    let total = n as f64 * f64::from(rounds);
    eprintln!(
        "otlp/map_encode per CPU-second: {:.0} spans/s, {:.0} MB/s of protobuf (CPU {:?}, wall {:?}, {} spans, {} bytes per span)",
        total / cpu.as_secs_f64().max(1e-9),
        bytes as f64 * f64::from(rounds) / cpu.as_secs_f64().max(1e-9) / 1e6,
        cpu,
        wall,
        total,
        bytes / n.max(1) as usize,
    );
}

/// Export to the mock collector per CPU-second of the process (exporter and collector
/// together, both on this machine), printed.
fn cpu_export_figures(_: &mut Criterion) {
    let (Some(runs), Some(_)) = (corpus_runs(), cpu_time()) else {
        return;
    };
    let batch = &runs[..runs.len().min(512)];
    let n = spans(batch);
    let collector = MockCollector::start().expect("mock collector");
    for (name, protocol, endpoint) in [
        ("grpc", Protocol::Grpc, collector.grpc_endpoint()),
        ("http", Protocol::HttpProtobuf, collector.http_endpoint()),
    ] {
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(endpoint)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("exporter");
        exporter.export(batch).expect("export");
        collector.clear();
        // Twelve rounds (~130k spans): CPU time is counted in 10 ms ticks.
        let rounds = 12u32;
        let cpu0 = cpu_time().unwrap_or_default();
        let wall0 = Instant::now();
        for _ in 0..rounds {
            exporter.export(batch).expect("export");
            collector.clear();
        }
        let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu0);
        let total = n as f64 * f64::from(rounds);
        eprintln!(
            "otlp/export_{name}_loopback per CPU-second (exporter + mock collector): {:.0} spans/s (CPU {:?}, wall {:?})",
            total / cpu.as_secs_f64().max(1e-9),
            cpu,
            wall0.elapsed()
        );
    }
}

criterion_group!(benches, bench, cpu_figures, cpu_export_figures);
criterion_main!(benches);
