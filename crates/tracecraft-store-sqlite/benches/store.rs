//! SQLite store throughput and latency on the shared corpus (`runs.jsonl`, 2,000 runs of
//! ~13.5 KB). Run with `cargo bench -p tracecraft-store-sqlite --bench store` or
//! `cargo xtask bench store`; targets are in `benches/targets.tsv`.
#![allow(
    missing_docs,
    clippy::print_stderr,
    clippy::disallowed_macros,
    clippy::disallowed_methods
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tracecraft_core::{AgentRun, ProcessedRun, TraceQuery, TraceStore, Uuid, read_jsonl};
use tracecraft_store_sqlite::{SqliteConfig, SqliteStore};

fn corpus_dir() -> PathBuf {
    std::env::var_os("TRACECRAFT_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus")
        })
}

fn load() -> Option<Vec<ProcessedRun>> {
    let path = corpus_dir().join("runs.jsonl");
    let Ok(file) = std::fs::File::open(&path) else {
        eprintln!(
            "skipping store benches: {} missing (run `cargo xtask bench store`)",
            path.display()
        );
        return None;
    };
    Some(
        read_jsonl(std::io::BufReader::new(file))
            .map(|(_, r)| ProcessedRun::assume_processed(r.expect("corpus parses")))
            .collect(),
    )
}

/// `n` runs cloned from the corpus with fresh ids, 10 runs per session.
fn population(corpus: &[ProcessedRun], n: usize) -> impl Iterator<Item = ProcessedRun> + '_ {
    (0..n).map(move |i| {
        let mut run: AgentRun = corpus[i % corpus.len()].run().clone();
        run.id = Uuid::from_u128(i as u128 + 1);
        run.session_id = Some(format!("sess-{}", i % (n / 10).max(1)));
        run.start_time += chrono::Duration::seconds(i as i64);
        ProcessedRun::assume_processed(run)
    })
}

/// Runs shaped as the gateway stores them (`docs/perf/gateway.md`): an agent run with one
/// agent step and nine LLM steps, each with a model, a redacted prompt and GenAI attributes.
/// 10 spans per run.
fn gateway_runs(n: usize) -> Vec<ProcessedRun> {
    use tracecraft_core::{Step, StepType};
    (0..n)
        .map(|i| {
            let id = Uuid::from_u128(0x6761_7465_7761_7900_0000_0000_0000_0000 | i as u128);
            let mut root = Step::builder(id, StepType::Agent, "invoke_agent")
                .attribute("gen_ai.operation.name", "invoke_agent")
                .build();
            for _ in 0..9 {
                root.push_child(
                    Step::builder(id, StepType::Llm, "chat gpt-4o")
                        .model("gpt-4o", "openai")
                        .attribute("gen_ai.operation.name", "chat")
                        .attribute(
                            "gen_ai.prompt",
                            "Summarize the ticket from [EMAIL] about order 1234",
                        )
                        .build(),
                );
            }
            let mut run = AgentRun::builder("invoke_agent").step(root).build();
            run.id = id;
            ProcessedRun::assume_processed(run)
        })
        .collect()
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(SqliteConfig::new(dir.path().join("traces.db"))).expect("open")
}

/// Writes `runs` into a fresh store in batches of `size`, a fresh store per iteration.
fn write_in_batches(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    runs: &[ProcessedRun],
    size: usize,
) {
    g.bench_function(name, |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = open(&dir);
                (dir, store)
            },
            |(dir, store)| {
                for chunk in runs.chunks(size) {
                    store.save_batch(chunk).expect("save");
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("store/sqlite");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));

    // The gateway's store thread: 40,000 runs of 10 spans, in batches of 400 (what the
    // store thread takes at once under load: 8 requests of 50 traces).
    let gateway = gateway_runs(40_000);
    g.throughput(Throughput::Elements(gateway.len() as u64 * 10));
    write_in_batches(&mut g, "write_gateway", &gateway, 400);
    drop(gateway);

    let Some(runs) = load() else { return };

    g.throughput(Throughput::Elements(runs.len() as u64));
    write_in_batches(&mut g, "write_batched", &runs, 256);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.save_batch(&runs).expect("save");
    let ids: Vec<Uuid> = runs.iter().map(|r| r.run().id).collect();
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            std::hint::black_box(store.get(ids[i]).expect("get").expect("present"))
        })
    });
    // Criterion calls the closure more than once (warm-up, samples): the cursor lives outside.
    let mut next = 0usize;
    g.bench_function("delete", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if next == ids.len() {
                    store.save_batch(&runs).expect("refill");
                    next = 0;
                }
                let t = Instant::now();
                assert!(store.delete(ids[next]).expect("delete"));
                total += t.elapsed();
                next += 1;
            }
            total
        })
    });
    drop(store);
    drop(dir);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let n = 100_000;
    let pop: Vec<ProcessedRun> = population(&runs, n).collect();
    for chunk in pop.chunks(1000) {
        store.save_batch(chunk).expect("fill");
    }
    drop(pop);
    let mut s = 0;
    g.bench_function("query_session_100k", |b| {
        b.iter(|| {
            s = (s + 613) % (n / 10);
            let found = store
                .query(&TraceQuery::new().session_id(format!("sess-{s}")))
                .expect("query");
            assert_eq!(found.len(), 10);
            found
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
