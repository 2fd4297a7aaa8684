//! Pipeline throughput on the shared corpus (`runs.jsonl`: 2,000 runs, ~13.5 KB, ~20 steps),
//! and the cost a batch exporter adds to the traced thread. `cargo xtask bench pipeline`.
#![allow(
    missing_docs,
    clippy::print_stderr,
    clippy::disallowed_macros,
    clippy::disallowed_methods
)]

use std::path::PathBuf;
use std::time::Duration;

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
    g.bench_function("enrich_redact_sample", |b| {
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

    let no_redaction = Pipeline::builder()
        .enrichment(EnrichmentProcessor::default())
        .without_redaction()
        .sampling(SamplingProcessor::new(SamplingConfig::default()).unwrap())
        .build()
        .unwrap();
    g.bench_function("enrich_sample", |b| {
        b.iter_batched(
            || runs.clone(),
            |runs| {
                for r in runs {
                    std::hint::black_box(no_redaction.process(r));
                }
            },
            BatchSize::LargeInput,
        )
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
