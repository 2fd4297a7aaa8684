//! `cargo bench -p tracecraft-redact --bench redact` (or `cargo xtask bench redact`).
//! Targets: `benches/targets.tsv`. Corpus: `$TRACECRAFT_BENCH_CORPUS` or
//! `../../target/bench-corpus`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracecraft_redact::{RedactionConfig, Redactor, Report};

fn corpus_dir() -> PathBuf {
    std::env::var_os("TRACECRAFT_BENCH_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus"),
        PathBuf::from,
    )
}

fn chunks(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

fn run_chunks(c: &mut Criterion, r: &Redactor, id: &str, text: &str, size: usize) {
    let parts = chunks(text, size);
    let mut g = c.benchmark_group("redact");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function(id, |b| {
        b.iter(|| {
            let mut report = Report::default();
            for p in &parts {
                black_box(r.redact_str(p, &mut report));
            }
            report
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let r = Redactor::new(&RedactionConfig::default()).unwrap();
    let dir = corpus_dir();
    if let Ok(clean) = std::fs::read_to_string(dir.join("corpus_clean.txt")) {
        run_chunks(c, &r, "clean_1mib", &clean, 1 << 20);
    }
    if let Ok(dirty) = std::fs::read_to_string(dir.join("corpus_dirty.txt")) {
        run_chunks(c, &r, "dirty_4kib", &dirty, 4096);
    }
    {
        let mut g = c.benchmark_group("redact");
        let tiny = "The agent called search twice.";
        g.bench_function("tiny_clean", |b| {
            b.iter(|| {
                let mut report = Report::default();
                black_box(r.redact_str(black_box(tiny), &mut report).len())
            });
        });
        g.finish();
    }
    let n = 1 << 18;
    let adversarial: Vec<(&str, String)> = vec![
        ("adversarial_digits", "7".repeat(n)),
        ("adversarial_digit_groups", "555-123-4567-".repeat(n / 13)),
        ("adversarial_alnum", "aB3".repeat(n / 3)),
        (
            "adversarial_a_at",
            format!("{}@", "a".repeat(50_000)).repeat(n / 50_001),
        ),
        ("adversarial_at_runs", "a@".repeat(n / 2)),
        (
            "adversarial_base64",
            "QUJDREVGR0hJSktMTU5PUFFS+/".repeat(n / 26),
        ),
        (
            "adversarial_pem",
            format!("-----BEGIN PRIVATE KEY-----\n{}", "QUJD\n".repeat(n / 5)),
        ),
        (
            "adversarial_keywords",
            "password token secret aws sk- ".repeat(n / 30),
        ),
    ];
    for (id, text) in &adversarial {
        let mut g = c.benchmark_group("redact");
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.sample_size(10);
        g.bench_function(*id, |b| {
            b.iter(|| {
                let mut report = Report::default();
                black_box(r.redact_str(text, &mut report).len())
            });
        });
        g.finish();
    }
}

criterion_group!(redact, benches);
criterion_main!(redact);
