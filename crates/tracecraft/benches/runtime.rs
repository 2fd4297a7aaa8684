//! Cost of instrumentation on the traced thread. `cargo xtask bench runtime`.
//!
//! - `runtime/step_two_inputs`: start and end a step with two small inputs inside an active
//!   run of 10 steps (the run's start and end are not timed).
//! - `runtime/run_10_steps_batch`: a run with 10 such steps, end to end: guards, tree assembly,
//!   the pipeline (without redaction: its cost is measured by the redact bench) and the
//!   non-blocking enqueue into a `BatchExporter` around a discarding exporter.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tracecraft::core::{ExportError, Exporter, ProcessedRun};
use tracecraft::pipeline::{BatchConfig, BatchExporter, Pipeline};
use tracecraft::{Runtime, RuntimeOptions, StepType};

struct Discard;
impl Exporter for Discard {
    fn name(&self) -> &str {
        "discard"
    }
    fn export(&mut self, _: &[ProcessedRun]) -> Result<(), ExportError> {
        Ok(())
    }
}

fn runtime() -> Runtime {
    let batch = BatchExporter::new(
        Discard,
        BatchConfig {
            max_queue_size: 65_536,
            ..BatchConfig::default()
        },
    );
    let pipeline = Pipeline::builder()
        .without_redaction()
        .exporter(batch)
        .build()
        .expect("pipeline");
    Runtime::from_pipeline(RuntimeOptions::default(), pipeline)
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("runtime");
    g.bench_function("step_two_inputs", |b| {
        b.iter_custom(|iters| {
            // Steps of typical runs (10 steps each); only the steps are timed. Runs of
            // thousands of steps would measure the allocator's page faults instead (a queued
            // run holds every step until its batch is exported).
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(10);
                left -= n;
                let run = rt.run("bench").start();
                let t = Instant::now();
                for _ in 0..n {
                    let _s = run
                        .step(StepType::Tool, "lookup")
                        .input("order_id", "A-1001")
                        .input("limit", &10)
                        .start();
                }
                total += t.elapsed();
                drop(run);
            }
            total
        });
    });
    g.bench_function("run_10_steps_batch", |b| {
        b.iter(|| {
            let run = rt.run("bench").user_id("u-1").start();
            for _ in 0..10 {
                let _s = run
                    .step(StepType::Tool, "lookup")
                    .input("order_id", "A-1001")
                    .input("limit", &10)
                    .start();
            }
        });
    });
    g.finish();
    rt.shutdown(Duration::from_secs(10));
}

criterion_group!(benches, bench);
criterion_main!(benches);
