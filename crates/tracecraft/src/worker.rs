//! Background processing: finished runs leave the traced thread as compact records and are
//! built, processed (enriched, redacted, sampled) and exported on the runtime's own thread.
//!
//! The traced thread only moves the run into a bounded queue: it never waits, never makes a
//! system call below the wake-up mark, and never frees what the processing allocated. Runs
//! are processed in the order they ended. Nothing leaves this thread unprocessed: the queue
//! holds raw runs, and only the pipeline hands runs to exporters.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select, unbounded};
use tracecraft_core::ExportError;
use tracecraft_pipeline::Pipeline;

use crate::runtime::RawRun;

/// How long a run below the wake-up mark may wait before it is processed.
pub(crate) const PROCESS_INTERVAL: Duration = Duration::from_millis(100);
/// Queued runs that wake the thread at once (half the queue when that is smaller).
const WAKE_AT: usize = 64;

enum Control {
    /// Process everything queued before, then acknowledge.
    Flush(Sender<()>),
    /// Process everything queued, acknowledge, and stop.
    Stop(Sender<()>),
}

/// Counters of the processing thread.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    /// Runs dropped because the queue was full.
    pub(crate) dropped_queue_full: AtomicU64,
    /// Runs whose building panicked (never exported).
    pub(crate) panicked: AtomicU64,
    /// Runs still queued when a shutdown timed out (the thread may still process them, but
    /// the exporters are closed by then).
    pub(crate) unfinished: AtomicU64,
    warned: AtomicBool,
}

/// The handle of a runtime's processing thread.
pub(crate) struct Worker {
    runs: Sender<RawRun>,
    wake: Sender<()>,
    wake_at: usize,
    control: Sender<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    pub(crate) stats: Arc<WorkerStats>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queued", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts the thread that processes runs through `pipeline`, with room for `queue` runs.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    pub(crate) fn start(pipeline: Arc<Pipeline>, queue: usize) -> Worker {
        let queue = queue.max(1);
        let (run_tx, run_rx) = bounded(queue);
        let (wake_tx, wake_rx) = bounded(1);
        let (ctl_tx, ctl_rx) = unbounded();
        let stats = Arc::new(WorkerStats::default());
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("tracecraft-process".into())
            .spawn(move || work(&pipeline, &run_rx, &wake_rx, &ctl_rx, &thread_stats))
            .expect("spawn tracecraft-process thread");
        Worker {
            runs: run_tx,
            wake: wake_tx,
            wake_at: WAKE_AT.min(queue.div_ceil(2)).max(1),
            control: ctl_tx,
            thread: Mutex::new(Some(thread)),
            stopped: AtomicBool::new(false),
            stats,
        }
    }

    /// Queues a finished run without blocking; `false` when it was dropped (queue full).
    pub(crate) fn enqueue(&self, raw: RawRun) -> bool {
        match self.runs.try_send(raw) {
            Ok(()) => {
                if self.runs.len() >= self.wake_at {
                    // Full when a wake-up is already pending: nothing to do.
                    let _ = self.wake.try_send(());
                }
                true
            }
            Err(TrySendError::Full(raw) | TrySendError::Disconnected(raw)) => {
                let id = raw.id();
                // Freed here; no payload is logged.
                drop(raw);
                self.stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                if !self.stats.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(run_id = %id, "tracecraft: processing queue full; dropping runs (counted in stats)");
                }
                false
            }
        }
    }

    /// Returns once every run queued before the call has been processed and handed to the
    /// exporters.
    pub(crate) fn flush(&self) {
        let (ack_tx, ack_rx) = bounded(1);
        if self.control.send(Control::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// Processes what is queued and stops the thread, within `timeout`. Idempotent.
    ///
    /// # Errors
    /// [`ExportError::Timeout`] when the queue was not processed in time (the thread goes on
    /// in the background and is not joined).
    pub(crate) fn stop(&self, timeout: Duration) -> Result<(), ExportError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (ack_tx, ack_rx) = bounded(1);
        if self.control.send(Control::Stop(ack_tx)).is_ok() && ack_rx.recv_timeout(timeout).is_err()
        {
            // Counted, never lost silently (the run being processed now is not included).
            let left = self.runs.len();
            self.stats.unfinished.store(left as u64, Ordering::Relaxed);
            tracing::warn!(
                unfinished = left,
                "tracecraft: shutdown timed out with runs still queued for processing"
            );
            return Err(ExportError::Timeout {
                exporter: "tracecraft-process".to_owned(),
                timeout,
            });
        }
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A runtime dropped without `shutdown`: its queued runs are still processed.
        let _ = self.stop(crate::runtime::DEFAULT_SHUTDOWN_TIMEOUT);
    }
}

fn work(
    pipeline: &Pipeline,
    runs: &Receiver<RawRun>,
    wake: &Receiver<()>,
    control: &Receiver<Control>,
    stats: &WorkerStats,
) {
    let drain = || {
        while let Ok(raw) = runs.try_recv() {
            process(pipeline, raw, stats);
        }
    };
    loop {
        select! {
            recv(control) -> msg => match msg {
                Ok(Control::Flush(ack)) => {
                    drain();
                    let _ = ack.send(());
                }
                Ok(Control::Stop(ack)) => {
                    drain();
                    let _ = ack.send(());
                    return;
                }
                Err(_) => {
                    drain();
                    return;
                }
            },
            recv(wake) -> _ => drain(),
            default(PROCESS_INTERVAL) => drain(),
        }
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
