//! BatchExporter: never blocks, drains on shutdown, flushes on a timer and on demand.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use tracecraft_core::testing::MemoryExporter;
use tracecraft_core::{AgentRun, ExportError, Exporter, ProcessedRun};
use tracecraft_pipeline::{BatchConfig, BatchExporter};

fn run() -> ProcessedRun {
    ProcessedRun::assume_processed(AgentRun::new("r"))
}

#[test]
fn hundred_thousand_enqueued_then_shutdown_all_exported() {
    let sink = MemoryExporter::new();
    let mut batch = BatchExporter::new(
        sink.clone(),
        BatchConfig {
            max_queue_size: 100_000,
            ..BatchConfig::default()
        },
    );
    let one = run();
    for _ in 0..100_000 {
        assert!(batch.enqueue(one.clone()));
    }
    let (result, report) = batch.shutdown_report(Duration::from_secs(60));
    result.unwrap();
    assert_eq!(report.stats.enqueued, 100_000);
    assert_eq!(report.stats.exported, 100_000);
    assert_eq!(report.unexported, 0);
    assert_eq!(sink.len(), 100_000);
    assert!(sink.is_shut_down());
}

/// An exporter that takes its time, to fill the queue.
struct Slow(MemoryExporter);
impl Exporter for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.export(batch)
    }
}

#[test]
fn full_queue_drops_and_counts_never_blocks_and_nothing_is_silently_lost() {
    let sink = MemoryExporter::new();
    let mut batch = BatchExporter::new(
        Slow(sink.clone()),
        BatchConfig {
            max_queue_size: 8,
            batch_size: 4,
            flush_interval: Duration::from_millis(5),
        },
    );
    let accepted = (0..1_000).filter(|_| batch.enqueue(run())).count() as u64;
    let (result, report) = batch.shutdown_report(Duration::from_secs(30));
    result.unwrap();
    assert!(report.stats.dropped_queue_full > 0, "queue never filled");
    assert_eq!(report.stats.enqueued, accepted);
    assert_eq!(
        report.stats.enqueued + report.stats.dropped_queue_full,
        1_000
    );
    // Invariant 6: every accepted run is exported (or counted as failed/unexported).
    assert_eq!(
        report.stats.exported + report.stats.failed + report.unexported,
        accepted
    );
    assert_eq!(sink.len() as u64, report.stats.exported);
}

#[test]
fn flush_interval_fires_under_a_steady_trickle() {
    let sink = MemoryExporter::new();
    let batch = BatchExporter::new(
        sink.clone(),
        BatchConfig {
            max_queue_size: 1000,
            batch_size: 1000,
            flush_interval: Duration::from_millis(50),
        },
    );
    // A run every 5 ms: the batch never fills, and each arrival must not postpone the flush.
    let give_up = Instant::now() + Duration::from_secs(10);
    while sink.is_empty() && Instant::now() < give_up {
        batch.enqueue(run());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !sink.is_empty(),
        "the flush interval never fired under a trickle"
    );
    drop(batch);
}

/// Polls until `done` or 10 s pass.
fn eventually(done: impl Fn() -> bool) -> bool {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() >= give_up {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

#[test]
fn a_full_batch_is_exported_without_waiting_for_the_flush_interval() {
    let sink = MemoryExporter::new();
    let batch = BatchExporter::new(
        sink.clone(),
        BatchConfig {
            max_queue_size: 1000,
            batch_size: 10,
            flush_interval: Duration::from_secs(3600),
        },
    );
    for _ in 0..9 {
        batch.enqueue(run());
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sink.len(), 0, "exported before a batch was full");
    batch.enqueue(run());
    assert!(eventually(|| sink.len() == 10), "a full batch waited");

    // A queue smaller than the batch size wakes the thread at half its capacity, so it is
    // drained before it fills and drops.
    let small = MemoryExporter::new();
    let batch = BatchExporter::new(
        small.clone(),
        BatchConfig {
            max_queue_size: 8,
            batch_size: 512,
            flush_interval: Duration::from_secs(3600),
        },
    );
    for _ in 0..4 {
        assert!(batch.enqueue(run()));
    }
    assert!(eventually(|| small.len() == 4), "a small queue waited");
    assert_eq!(batch.stats().dropped_queue_full, 0);
}

#[test]
fn force_flush_waits_for_everything_enqueued_before_it() {
    let sink = MemoryExporter::new();
    let mut batch = BatchExporter::new(
        sink.clone(),
        BatchConfig {
            max_queue_size: 10_000,
            batch_size: 10_000,
            flush_interval: Duration::from_secs(3600),
        },
    );
    for _ in 0..777 {
        batch.enqueue(run());
    }
    batch.force_flush().unwrap();
    assert_eq!(sink.len(), 777);
    assert_eq!(sink.flushes(), 1);
}

#[test]
fn export_after_shutdown_is_an_error_and_drop_drains() {
    let sink = MemoryExporter::new();
    {
        let batch = BatchExporter::new(sink.clone(), BatchConfig::default());
        for _ in 0..5 {
            batch.enqueue(run());
        }
    } // dropped without shutdown: drains
    assert_eq!(sink.len(), 5);

    let mut batch = BatchExporter::new(MemoryExporter::new(), BatchConfig::default());
    batch.shutdown(Duration::from_secs(1)).unwrap();
    assert!(matches!(
        batch.export(&[run()]),
        Err(ExportError::Shutdown { .. })
    ));
}

#[test]
fn inner_failures_are_counted() {
    let mut batch = BatchExporter::new(MemoryExporter::failing(), BatchConfig::default());
    for _ in 0..3 {
        batch.enqueue(run());
    }
    let (_, report) = batch.shutdown_report(Duration::from_secs(5));
    assert_eq!(report.stats.failed, 3);
    assert_eq!(report.stats.exported, 0);
}

#[test]
fn batch_exporter_follows_the_exporter_contract() {
    tracecraft_core::exporter_contract::run_all(|| {
        tracecraft_pipeline::BatchExporter::new(
            tracecraft_core::testing::MemoryExporter::new(),
            tracecraft_pipeline::BatchConfig::default(),
        )
    });
}

/// An inner exporter slower than the shutdown timeout: the batch exporter still returns in
/// time, and counts what it could not export.
#[test]
fn batch_shutdown_never_blocks_past_its_timeout() {
    struct Slow;
    impl tracecraft_core::Exporter for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        fn export(
            &mut self,
            _: &[tracecraft_core::ProcessedRun],
        ) -> Result<(), tracecraft_core::ExportError> {
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        }
    }
    let mut batch = tracecraft_pipeline::BatchExporter::new(
        Slow,
        tracecraft_pipeline::BatchConfig {
            batch_size: 1,
            ..tracecraft_pipeline::BatchConfig::default()
        },
    );
    tracecraft_core::exporter_contract::check_shutdown_within_timeout(&mut batch);
    let (_, report) = batch.shutdown_report(std::time::Duration::from_secs(1));
    let s = report.stats;
    assert!(s.exported < 50, "{s:?}");
}

/// Runs the shutdown deadline leaves unexported go to the inner exporter's `persist` (the OTLP
/// spool) instead of being dropped.
#[test]
fn runs_left_at_the_shutdown_deadline_are_persisted() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct SlowKeeper(Arc<Mutex<(usize, usize)>>);
    impl tracecraft_core::Exporter for SlowKeeper {
        fn name(&self) -> &str {
            "slow-keeper"
        }
        fn export(
            &mut self,
            batch: &[tracecraft_core::ProcessedRun],
        ) -> Result<(), tracecraft_core::ExportError> {
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.0.lock().unwrap().0 += batch.len();
            Ok(())
        }
        fn persist(
            &mut self,
            batch: &[tracecraft_core::ProcessedRun],
        ) -> Result<bool, tracecraft_core::ExportError> {
            self.0.lock().unwrap().1 += batch.len();
            Ok(true)
        }
    }
    let keeper = SlowKeeper::default();
    let mut batch = tracecraft_pipeline::BatchExporter::new(
        keeper.clone(),
        tracecraft_pipeline::BatchConfig {
            batch_size: 1,
            ..tracecraft_pipeline::BatchConfig::default()
        },
    );
    #[allow(clippy::disallowed_methods)]
    let runs: Vec<_> = (0..30)
        .map(|i| {
            tracecraft_core::ProcessedRun::assume_processed(tracecraft_core::AgentRun::new(
                format!("r{i}"),
            ))
        })
        .collect();
    tracecraft_core::Exporter::export(&mut batch, &runs).unwrap();
    let (result, report) = batch.shutdown_report(std::time::Duration::from_millis(350));
    result.unwrap();
    let (exported, persisted) = *keeper.0.lock().unwrap();
    assert_eq!(report.unexported, 0, "{report:?}");
    assert_eq!(exported + persisted, 30);
    assert!(persisted > 0);
    assert_eq!(report.stats.persisted, persisted as u64);
    assert_eq!(report.stats.exported, exported as u64);
}
