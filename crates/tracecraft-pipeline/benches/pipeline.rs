//! Pipeline throughput on the shared corpus (`runs.jsonl`: 2,000 runs, ~13.5 KB, ~20 steps),
//! and the cost a batch exporter adds to the traced thread. `cargo xtask bench pipeline`.
#![allow(
    missing_docs,
    clippy::print_stderr,
    clippy::disallowed_macros,
    clippy::disallowed_methods
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tracecraft_core::{AgentRun, ExportError, Exporter, ProcessedRun, read_jsonl};
use tracecraft_pipeline::{
    BatchConfig, BatchExporter, EnrichmentProcessor, Pipeline, PipelineConfig, SamplingConfig,
    SamplingProcessor,
};

fn corpus_runs() -> Option<Vec<AgentRun>> {
    let dir = std::env::var_os("TRACECRAFT_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus")
        });
    let file = std::fs::File::open(dir.join("runs.jsonl")).ok()?;
    Some(
        read_jsonl(std::io::BufReader::new(file))
            .filter_map(|(_, r)| r.ok())
            .collect(),
    )
}

struct Discard;
impl Exporter for Discard {
    fn name(&self) -> &str {
        "discard"
    }
    fn export(&mut self, _: &[ProcessedRun]) -> Result<(), ExportError> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let Some(runs) = corpus_runs() else {
        eprintln!("skipping pipeline benches: corpus missing (run `cargo xtask bench pipeline`)");
        return;
    };
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Elements(runs.len() as u64));

    // The default SAFETY pipeline: enrich -> redact (17 rules, mask) -> sample at rate 1.0.
    let full = PipelineConfig::default()
        .builder()
        .unwrap()
        .build()
        .unwrap();
    let no_redaction = Pipeline::builder()
        .enrichment(EnrichmentProcessor::default())
        .without_redaction()
        .sampling(SamplingProcessor::new(SamplingConfig::default()).unwrap())
        .build()
        .unwrap();

    // How the runtime hands a run over: just assembled, so in cache. Each run is cloned right
    // before it is processed (not timed); only `process` is timed. The processed runs are
    // freed after the clock stops: freeing is the exporter's side (the batch thread), measured
    // on its own below.
    let hot = |p: &Pipeline, runs: &[AgentRun], iters: u64| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let mut out = Vec::with_capacity(runs.len());
            for r in runs {
                let r = r.clone();
                let t = Instant::now();
                out.push(std::hint::black_box(p.process(r)));
                total += t.elapsed();
            }
            drop(out);
        }
        total
    };
    g.bench_function("enrich_redact_sample", |b| {
        b.iter_custom(|iters| hot(&full, &runs, iters))
    });
    g.bench_function("enrich_sample", |b| {
        b.iter_custom(|iters| hot(&no_redaction, &runs, iters))
    });
    // The same work on runs that are not in cache (all 2,000 cloned first, ~60 MB), freed in
    // the timed loop: the pessimistic figure.
    g.bench_function("enrich_redact_sample_cold", |b| {
        b.iter_batched(
            || runs.clone(),
            |runs| {
                for r in runs {
                    std::hint::black_box(full.process(r));
                }
            },
            BatchSize::LargeInput,
        )
    });
    // Freeing processed runs (what the batch thread pays after exporting them).
    g.bench_function("free_run", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for r in &runs {
                    let r = r.clone();
                    let t = Instant::now();
                    drop(std::hint::black_box(r));
                    total += t.elapsed();
                }
            }
            total
        })
    });

    // Traced-thread cost of handing a processed run to a batch exporter.
    let processed: Vec<ProcessedRun> = runs
        .iter()
        .cloned()
        .map(ProcessedRun::assume_processed)
        .collect();
    let batched = Pipeline::builder()
        .without_redaction()
        .exporter(BatchExporter::new(
            Discard,
            BatchConfig {
                max_queue_size: 1 << 16,
                ..BatchConfig::default()
            },
        ))
        .build()
        .unwrap();
    g.bench_function("batch_enqueue", |b| {
        b.iter(|| {
            for p in &processed {
                batched.export(std::slice::from_ref(p));
            }
        })
    });
    g.finish();
    batched.shutdown(Duration::from_secs(10));
}

criterion_group!(benches, bench);
criterion_main!(benches);
