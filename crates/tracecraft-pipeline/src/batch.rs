//! [`BatchExporter`]: a bounded queue in front of any exporter, drained by a dedicated thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracecraft_core::{ExportError, Exporter, ProcessedRun};

use crate::queue::{Consumer, QueueConfig, WorkQueue};

/// Batch exporter settings: the `[batch]` table of a TraceCraft configuration file
/// (`max_queue_size`, `batch_size`, `flush_interval_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Queue capacity in runs (default 2048). A full queue drops new runs.
    pub max_queue_size: usize,
    /// Runs per export call (default 512).
    pub batch_size: usize,
    /// Longest time a queued run waits before export (default 5 s; `flush_interval_ms` in
    /// configuration files).
    #[serde(rename = "flush_interval_ms", with = "millis")]
    pub flush_interval: Duration,
}

/// A `Duration` as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: 2048,
            batch_size: 512,
            flush_interval: Duration::from_secs(5),
        }
    }
}

/// Counters of a batch exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchStats {
    /// Runs accepted into the queue.
    pub enqueued: u64,
    /// Runs dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Runs the inner exporter accepted.
    pub exported: u64,
    /// Runs in batches the inner exporter rejected.
    pub failed: u64,
    /// Runs a shutdown's deadline left unexported that the inner exporter kept for later
    /// (`Exporter::persist`: the OTLP spool).
    pub persisted: u64,
}

/// What [`BatchExporter::shutdown_report`] found: every run accepted before shutdown is in
/// `exported`, `failed`, `persisted` or (if the timeout expired first and the inner exporter
/// could not keep them) `unexported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchShutdown {
    /// Final counters.
    pub stats: BatchStats,
    /// Runs still queued when the timeout expired.
    pub unexported: u64,
}

#[derive(Debug, Default)]
struct Shared {
    exported: AtomicU64,
    failed: AtomicU64,
    persisted: AtomicU64,
}

/// Wraps an exporter with a bounded queue and a dedicated thread that owns it.
///
/// - `export` **never blocks** the caller: runs go into the queue with `try_send`; a full
///   queue drops the new run and counts it (one warning at the first drop, the total at
///   shutdown). Needs no async runtime.
/// - The thread exports when `batch_size` runs are queued (half the queue when that is
///   smaller) or when `flush_interval` has passed since the last export, whichever comes
///   first — also under a steady trickle. Below that mark an enqueue wakes nothing: no system
///   call on the traced thread.
/// - `force_flush` returns once everything enqueued before it was exported (or failed).
/// - `shutdown(timeout)` drains the queue, flushes, shuts the inner exporter down, and reports
///   what could not be exported.
///
/// ```
/// use std::time::Duration;
/// use tracecraft_core::{AgentRun, Exporter, ProcessedRun, testing::MemoryExporter};
/// use tracecraft_pipeline::{BatchConfig, BatchExporter};
///
/// let sink = MemoryExporter::new();
/// let mut batch = BatchExporter::new(sink.clone(), BatchConfig::default());
/// # #[allow(clippy::disallowed_methods)]
/// let run = ProcessedRun::assume_processed(AgentRun::new("r"));
/// batch.export(&[run])?;
/// batch.shutdown(Duration::from_secs(5))?;
/// assert_eq!(sink.len(), 1);
/// # Ok::<(), tracecraft_core::ExportError>(())
/// ```
#[derive(Debug)]
pub struct BatchExporter {
    name: String,
    queue: WorkQueue<ProcessedRun>,
    shared: Arc<Shared>,
    shut_down: bool,
}

impl BatchExporter {
    /// Starts the export thread that owns `inner`.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    #[must_use]
    pub fn new<E: Exporter + 'static>(inner: E, config: BatchConfig) -> Self {
        let name = format!("batch({})", inner.name());
        let shared = Arc::new(Shared::default());
        let consumer = BatchConsumer {
            inner: Box::new(inner),
            shared: Arc::clone(&shared),
        };
        let queue = WorkQueue::start(
            consumer,
            QueueConfig::new(
                name.clone(),
                config.max_queue_size,
                config.batch_size,
                config.flush_interval,
            )
            .thread_name("tracecraft-batch"),
        )
        .expect("spawn tracecraft-batch thread");
        BatchExporter {
            name,
            queue,
            shared,
            shut_down: false,
        }
    }

    /// Enqueues one run without blocking; `false` when it was dropped (queue full or shut
    /// down).
    pub fn enqueue(&self, run: ProcessedRun) -> bool {
        self.queue.try_enqueue(run).is_ok()
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> BatchStats {
        let q = self.queue.counters();
        BatchStats {
            enqueued: q.enqueued.load(Ordering::Relaxed),
            dropped_queue_full: q.dropped_full.load(Ordering::Relaxed),
            exported: self.shared.exported.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            persisted: self.shared.persisted.load(Ordering::Relaxed),
        }
    }

    /// Drains, flushes and shuts the inner exporter down within `timeout`; reports what
    /// could not be exported. Later calls return the same counters.
    pub fn shutdown_report(
        &mut self,
        timeout: Duration,
    ) -> (Result<(), ExportError>, BatchShutdown) {
        if self.shut_down {
            return (
                Ok(()),
                BatchShutdown {
                    stats: self.stats(),
                    unexported: 0,
                },
            );
        }
        self.shut_down = true;
        let (result, unexported) = self.queue.stop(timeout);
        let report = BatchShutdown {
            stats: self.stats(),
            unexported,
        };
        if report.stats.dropped_queue_full > 0 || unexported > 0 || report.stats.failed > 0 {
            tracing::warn!(
                exporter = %self.name,
                dropped_queue_full = report.stats.dropped_queue_full,
                failed = report.stats.failed,
                unexported,
                "tracecraft: batch exporter shut down with runs not exported"
            );
        }
        (result, report)
    }
}

impl Exporter for BatchExporter {
    fn name(&self) -> &str {
        &self.name
    }

    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        if self.shut_down {
            return Err(ExportError::Shutdown {
                exporter: self.name.clone(),
            });
        }
        for run in batch {
            self.enqueue(run.clone());
        }
        Ok(())
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        if self.shut_down {
            return Ok(());
        }
        self.queue.flush()
    }

    fn shutdown(&mut self, timeout: Duration) -> Result<(), ExportError> {
        self.shutdown_report(timeout).0
    }
}

impl Drop for BatchExporter {
    fn drop(&mut self) {
        if !self.shut_down {
            let _ = self.shutdown_report(Duration::from_secs(5));
        }
    }
}

/// The worker side: exports each batch the queue hands over, counting the outcome.
struct BatchConsumer {
    inner: Box<dyn Exporter>,
    shared: Arc<Shared>,
}

impl Consumer<ProcessedRun> for BatchConsumer {
    fn consume(&mut self, batch: &mut Vec<ProcessedRun>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.export(batch)));
        match result {
            Ok(Ok(())) => {
                self.shared.exported.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(err)) => {
                self.shared.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(exporter = self.inner.name(), runs = n, error = %err, "tracecraft: batch export failed");
            }
            Err(_) => {
                self.shared.failed.fetch_add(n, Ordering::Relaxed);
                tracing::error!(
                    exporter = self.inner.name(),
                    runs = n,
                    "tracecraft: exporter panicked"
                );
            }
        }
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.inner.force_flush()
    }

    fn stop(&mut self, remaining: Duration) -> Result<(), ExportError> {
        self.inner.shutdown(remaining)
    }

    fn abandon(&mut self, items: Vec<ProcessedRun>) -> u64 {
        let n = items.len() as u64;
        if n == 0 {
            return 0;
        }
        match self.inner.persist(&items) {
            Ok(true) => {
                self.shared.persisted.fetch_add(n, Ordering::Relaxed);
                tracing::info!(
                    exporter = self.inner.name(),
                    runs = n,
                    "tracecraft: shutdown deadline passed; runs kept for a later export"
                );
                n
            }
            Ok(false) => 0,
            Err(err) => {
                tracing::warn!(exporter = self.inner.name(), runs = n, error = %err, "tracecraft: runs left at shutdown could not be kept");
                0
            }
        }
    }
}
