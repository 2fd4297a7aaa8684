//! Background processing: finished runs leave the traced thread as compact records and are
//! built, processed (enriched, redacted, sampled) and exported on the runtime's own thread.
//!
//! The traced thread only moves the run into a bounded queue: it never waits, never makes a
//! system call below the wake-up mark, and never frees what the processing allocated. Runs
//! are processed in the order they ended. Nothing leaves this thread unprocessed: the queue
//! holds raw runs, and only the pipeline hands runs to exporters.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracecraft_core::ExportError;
use tracecraft_pipeline::Pipeline;
use tracecraft_pipeline::queue::{Consumer, QueueConfig, WorkQueue};

use crate::run::RawRun;

/// How long shutting the processing down may take when it is dropped (and the timeout of the
/// shutdown that follows the drop of the handle `init` returned).
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a run below the wake-up mark may wait before it is processed.
pub(crate) const PROCESS_INTERVAL: Duration = Duration::from_millis(100);
/// Queued runs that wake the thread at once (half the queue when that is smaller).
const WAKE_AT: usize = 64;

/// Counters of the processing thread.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    /// Runs dropped because the queue was full.
    pub(crate) dropped_queue_full: AtomicU64,
    /// Runs whose building panicked (never exported).
    pub(crate) panicked: AtomicU64,
    /// Runs still queued when a shutdown's timeout passed (never exported; counted).
    pub(crate) unfinished: AtomicU64,
}

/// The handle of a runtime's processing thread: the shared [`WorkQueue`] with a consumer that
/// builds and submits runs.
pub(crate) struct Worker {
    queue: WorkQueue<RawRun>,
    pub(crate) stats: Arc<WorkerStats>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

struct Process {
    pipeline: Arc<Pipeline>,
    stats: Arc<WorkerStats>,
}

impl Consumer<RawRun> for Process {
    fn consume(&mut self, items: &mut Vec<RawRun>) {
        for raw in items.drain(..) {
            process(&self.pipeline, raw, &self.stats);
        }
    }
}

impl Worker {
    /// Starts the thread that processes runs through `pipeline`, with room for `queue` runs.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    pub(crate) fn start(pipeline: Arc<Pipeline>, queue: usize) -> Worker {
        let stats = Arc::new(WorkerStats::default());
        let consumer = Process {
            pipeline,
            stats: Arc::clone(&stats),
        };
        let queue = WorkQueue::start(
            consumer,
            // One run per call: a run stuck in processing holds only itself, and a timed-out
            // shutdown counts every other run as unfinished.
            QueueConfig::new("tracecraft-process", queue, 1, PROCESS_INTERVAL)
                .wake_at(WAKE_AT)
                .thread_name("tracecraft-process"),
        )
        .expect("spawn tracecraft-process thread");
        Worker { queue, stats }
    }

    /// Queues a finished run without blocking; `false` when it was dropped (queue full; the
    /// queue logs one warning at the first drop, without payload).
    pub(crate) fn enqueue(&self, raw: RawRun) -> bool {
        match self.queue.try_enqueue(raw) {
            Ok(()) => true,
            Err(raw) => {
                // Freed here; no payload is logged.
                drop(raw);
                self.stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Returns once every run queued before the call has been processed and handed to the
    /// exporters.
    pub(crate) fn flush(&self) {
        let _ = self.queue.flush();
    }

    /// Processes what is queued and stops the thread, within `timeout`. Idempotent.
    ///
    /// # Errors
    /// [`ExportError::Timeout`] when the queue was not processed in time (what was left is
    /// counted in `unfinished`).
    pub(crate) fn stop(&self, timeout: Duration) -> Result<(), ExportError> {
        let (result, left) = self.queue.stop(timeout);
        if left > 0 {
            self.stats.unfinished.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(
                unfinished = left,
                "tracecraft: shutdown timed out with runs still queued for processing"
            );
            return Err(result.err().unwrap_or(ExportError::Timeout {
                exporter: "tracecraft-process".to_owned(),
                timeout,
            }));
        }
        result
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A runtime dropped without `shutdown`: its queued runs are still processed.
        let _ = self.stop(DEFAULT_SHUTDOWN_TIMEOUT);
    }
}

fn process(pipeline: &Pipeline, raw: RawRun, stats: &WorkerStats) {
    let id = raw.id();
    // The pipeline contains processor and exporter panics itself; this guards building the
    // run. A run that cannot be built is dropped (never exported in any form) and counted.
    if std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = pipeline.submit(raw.finish());
    }))
    .is_err()
    {
        stats.panicked.fetch_add(1, Ordering::Relaxed);
        tracing::error!(run_id = %id, "tracecraft: building a finished run panicked; run dropped");
    }
}
