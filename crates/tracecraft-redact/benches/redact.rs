//! `cargo bench -p tracecraft-redact --bench redact` (or `cargo xtask bench redact`).
//! Targets: `benches/targets.tsv`. Corpus: `$TRACECRAFT_BENCH_CORPUS` or
//! `../../target/bench-corpus`.
#![allow(missing_docs)]

use std::borrow::Cow;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde_json::{Map, Value};
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

/// The strings and maps of one step that the pipeline redacts (`tracecraft-core`'s `Step`,
/// reduced to those fields, so that the bench measures redaction, not field look-ups).
#[derive(Clone, Deserialize)]
struct Step {
    name: String,
    model_name: Option<String>,
    model_provider: Option<String>,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    outputs: Map<String, Value>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    streaming_chunks: Vec<String>,
    error: Option<String>,
    error_type: Option<String>,
    #[serde(default)]
    children: Vec<Step>,
}

/// The same for a run (`AgentRun`).
#[derive(Clone, Deserialize)]
struct Run {
    name: String,
    description: Option<String>,
    session_id: Option<String>,
    user_id: Option<String>,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    tags: Vec<String>,
    agent_name: Option<String>,
    agent_id: Option<String>,
    agent_description: Option<String>,
    cloud_provider: Option<String>,
    cloud_trace_id: Option<String>,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    attributes: Map<String, Value>,
    error: Option<String>,
    error_type: Option<String>,
    sample_reason: Option<String>,
    #[serde(default)]
    steps: Vec<Step>,
}

fn text(r: &Redactor, s: &mut String, report: &mut Report) {
    if let Cow::Owned(new) = r.redact_str(s, report) {
        *s = new;
    }
}

fn opt(r: &Redactor, s: &mut Option<String>, report: &mut Report) {
    if let Some(s) = s {
        text(r, s, report);
    }
}

/// One step and its children, the way `tracecraft-pipeline/src/redact.rs` walks them.
fn step(r: &Redactor, s: &mut Step, report: &mut Report) {
    text(r, &mut s.name, report);
    opt(r, &mut s.model_name, report);
    opt(r, &mut s.model_provider, report);
    r.redact_map(&mut s.inputs, report);
    r.redact_map(&mut s.outputs, report);
    r.redact_map(&mut s.attributes, report);
    for c in &mut s.streaming_chunks {
        text(r, c, report);
    }
    opt(r, &mut s.error, report);
    opt(r, &mut s.error_type, report);
    for c in &mut s.children {
        step(r, c, report);
    }
}

/// Every string and map of one run, the way the pipeline's `RedactionProcessor` does it.
fn run(r: &Redactor, run: &mut Run, report: &mut Report) {
    text(r, &mut run.name, report);
    opt(r, &mut run.description, report);
    opt(r, &mut run.session_id, report);
    opt(r, &mut run.user_id, report);
    text(r, &mut run.environment, report);
    for t in &mut run.tags {
        text(r, t, report);
    }
    opt(r, &mut run.agent_name, report);
    opt(r, &mut run.agent_id, report);
    opt(r, &mut run.agent_description, report);
    opt(r, &mut run.cloud_provider, report);
    opt(r, &mut run.cloud_trace_id, report);
    r.redact_value(&mut run.input, report);
    r.redact_value(&mut run.output, report);
    r.redact_map(&mut run.attributes, report);
    opt(r, &mut run.error, report);
    opt(r, &mut run.error_type, report);
    opt(r, &mut run.sample_reason, report);
    for s in &mut run.steps {
        step(r, s, report);
    }
}

/// `redact/run_strings`: every string and map of each run of `runs.jsonl`; throughput in
/// bytes of the runs' JSON lines (13.5 KB per run; 900 MB/s is 15 µs per run).
fn run_strings(c: &mut Criterion, r: &Redactor, jsonl: &str) {
    let runs: Vec<Run> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut g = c.benchmark_group("redact");
    g.throughput(Throughput::Bytes(jsonl.len() as u64));
    g.sample_size(10);
    g.bench_function("run_strings", |b| {
        b.iter_batched(
            || runs.clone(),
            |mut runs| {
                let mut report = Report::default();
                for v in &mut runs {
                    run(r, v, &mut report);
                }
                (runs, report)
            },
            BatchSize::LargeInput,
        );
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
    if let Ok(runs) = std::fs::read_to_string(dir.join("runs.jsonl")) {
        run_strings(c, &r, &runs);
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
