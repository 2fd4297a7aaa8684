//! AgentRun JSON parse and serialize throughput on the shared corpus (`runs.jsonl`).
//! Run with `cargo xtask bench json` (generates the corpus if missing).
#![allow(missing_docs, clippy::print_stderr, clippy::disallowed_macros)]

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracecraft_core::{json, parse_run};

fn corpus_dir() -> PathBuf {
    std::env::var_os("TRACECRAFT_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus")
        })
}

fn bench(c: &mut Criterion) {
    let path = corpus_dir().join("runs.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "skipping json benches: {} missing (run `cargo xtask bench json`)",
            path.display()
        );
        return;
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let runs: Vec<_> = lines
        .iter()
        .map(|l| parse_run(l).expect("corpus parses"))
        .collect();
    let mut g = c.benchmark_group("json");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse_runs", |b| {
        b.iter(|| {
            for l in &lines {
                std::hint::black_box(parse_run(l).expect("parses"));
            }
        })
    });
    g.bench_function("serialize_runs", |b| {
        b.iter(|| {
            for r in &runs {
                std::hint::black_box(json::to_json(r));
            }
        })
    });
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_bytes", |b| {
        b.iter(|| {
            for l in &lines {
                std::hint::black_box(parse_run(l).expect("parses"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
