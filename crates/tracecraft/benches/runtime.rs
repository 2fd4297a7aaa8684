//! Cost of instrumentation on the traced thread. `cargo xtask bench runtime`.
//!
//! - `runtime/step_two_inputs`: start and end a step with two small inputs inside an active
//!   run of 10 steps (the run's start and end are not timed).
//! - `runtime/attribute_step_two_inputs`: the same step made by a `#[trace_tool]` function of
//!   two arguments (its return value recorded as the output too).
//! - `runtime/run_10_steps_batch`: a run with 10 such steps, end to end on the traced thread,
//!   with background processing (the default of runtimes built from configuration): guards and
//!   the run's hand-over to the processing thread, which builds the run, runs the pipeline
//!   (without redaction: its cost is measured by the redact and pipeline benches) and enqueues
//!   it into a `BatchExporter` around a discarding exporter. The bench checks that the
//!   processing thread kept up (no run dropped).
//! - `runtime/run_empty`: a run without steps, start to end (the per-run cost of the
//!   hand-over to the processing thread).
//! - `runtime/run_10_steps_inline`: the same as `run_10_steps_batch` with processing on the
//!   traced thread.
//!
//! The processing thread builds and processes runs more slowly than a tight loop ends them, so
//! every timed chunk is followed by an untimed `force_flush` (as when runs end at a realistic
//! rate); the bench fails if any run was dropped.
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

fn runtime(background: bool) -> Runtime {
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
    let options = {
        let mut o = RuntimeOptions::default();
        o.background_processing = background;
        o.processing_queue_size = 65_536;
        o
    };
    Runtime::builder()
        .options(options)
        .pipeline(pipeline)
        .build()
        .unwrap()
}

fn ten_steps(rt: &Runtime) {
    let run = rt.run("bench").user_id("u-1").start();
    for _ in 0..10 {
        let _s = run
            .step(StepType::Tool, "lookup")
            .input("order_id", "A-1001")
            .input("limit", &10)
            .start();
    }
}

/// Fails the bench when runs were lost (a processing thread that cannot keep up would make
/// the traced thread's figure meaningless).
fn check_nothing_dropped(rt: &Runtime) {
    rt.force_flush().expect("flush");
    let stats = rt.stats().runs;
    assert!(
        stats.dropped.is_empty(),
        "runs dropped: {:?}",
        stats.dropped
    );
}

/// Times `f` over `iters` iterations in chunks of `chunk`; between chunks (untimed) the
/// runtime is flushed, so its threads keep up as they do when runs end at a realistic rate,
/// and queued runs do not pile up in memory.
fn timed_chunks(rt: &Runtime, iters: u64, chunk: u64, mut f: impl FnMut(u64)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        let t = Instant::now();
        f(n);
        total += t.elapsed();
        rt.force_flush().expect("flush");
    }
    total
}

/// The attribute's version of `step_two_inputs`' step.
#[tracecraft::trace_tool(name = "lookup")]
fn lookup(order_id: &str, limit: u32) -> u32 {
    std::hint::black_box(order_id);
    limit
}

fn bench(c: &mut Criterion) {
    let rt = runtime(true);
    let mut g = c.benchmark_group("runtime");
    g.bench_function("step_two_inputs", |b| {
        b.iter_custom(|iters| {
            // Steps of typical runs (10 steps each); only the steps are timed, not the runs'
            // start and end. The runtime is flushed (untimed) every 256 runs.
            let mut total = Duration::ZERO;
            let mut left = iters;
            let mut runs = 0;
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
                runs += 1;
                if runs % 256 == 0 {
                    rt.force_flush().expect("flush");
                }
            }
            rt.force_flush().expect("flush");
            total
        });
    });
    g.bench_function("attribute_step_two_inputs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            let mut runs = 0;
            while left > 0 {
                let n = left.min(10);
                left -= n;
                let run = rt.run("bench").start();
                let t = Instant::now();
                for _ in 0..n {
                    std::hint::black_box(lookup("A-1001", 10));
                }
                total += t.elapsed();
                drop(run);
                runs += 1;
                if runs % 256 == 0 {
                    rt.force_flush().expect("flush");
                }
            }
            rt.force_flush().expect("flush");
            total
        });
    });
    g.bench_function("run_10_steps_batch", |b| {
        b.iter_custom(|iters| {
            timed_chunks(&rt, iters, 256, |n| {
                for _ in 0..n {
                    ten_steps(&rt);
                }
            })
        });
    });
    g.bench_function("run_empty", |b| {
        b.iter_custom(|iters| {
            timed_chunks(&rt, iters, 256, |n| {
                for _ in 0..n {
                    rt.run("bench").user_id("u-1").start().end();
                }
            })
        });
    });
    check_nothing_dropped(&rt);
    let inline = runtime(false);
    g.bench_function("run_10_steps_inline", |b| {
        b.iter_custom(|iters| {
            timed_chunks(&inline, iters, 256, |n| {
                for _ in 0..n {
                    ten_steps(&inline);
                }
            })
        });
    });
    g.finish();
    check_nothing_dropped(&inline);
    rt.shutdown(Duration::from_secs(10));
    inline.shutdown(Duration::from_secs(10));
}

criterion_group!(benches, bench);
criterion_main!(benches);
