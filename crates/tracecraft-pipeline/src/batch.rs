//! [`BatchExporter`]: a bounded queue in front of any exporter, drained by a dedicated thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select, unbounded};
use tracecraft_core::{ExportError, Exporter, ProcessedRun};

/// Batch exporter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Queue capacity in runs (default 2048). A full queue drops new runs.
    pub max_queue_size: usize,
    /// Runs per export call (default 512).
    pub batch_size: usize,
    /// Longest time a queued run waits before export (default 5 s).
    pub flush_interval: Duration,
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
}

/// What [`BatchExporter::shutdown_report`] found: every run accepted before shutdown is in
/// `exported`, `failed` or (if the timeout expired first) `unexported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchShutdown {
    /// Final counters.
    pub stats: BatchStats,
    /// Runs still queued when the timeout expired.
    pub unexported: u64,
}

enum Control {
    Flush(Sender<Result<(), ExportError>>),
    Shutdown(Duration, Sender<(Result<(), ExportError>, u64)>),
}

#[derive(Debug, Default)]
struct Shared {
    enqueued: AtomicU64,
    dropped: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    warned: AtomicBool,
}

impl Shared {
    fn stats(&self) -> BatchStats {
        BatchStats {
            enqueued: self.enqueued.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped.load(Ordering::Relaxed),
            exported: self.exported.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
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
    runs: Option<Sender<ProcessedRun>>,
    /// Wakes the worker when the queue holds `wake_at` runs (the worker does not wait on the
    /// run queue itself, so an enqueue below that costs no wake-up and no system call).
    wake: Sender<()>,
    wake_at: usize,
    control: Sender<Control>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    shut_down: bool,
}

impl BatchExporter {
    /// Starts the export thread that owns `inner`.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    #[must_use]
    pub fn new<E: Exporter + 'static>(inner: E, config: BatchConfig) -> Self {
        let config = BatchConfig {
            max_queue_size: config.max_queue_size.max(1),
            batch_size: config.batch_size.max(1),
            flush_interval: config.flush_interval.max(Duration::from_millis(1)),
        };
        let name = format!("batch({})", inner.name());
        let (run_tx, run_rx) = bounded(config.max_queue_size);
        let (ctl_tx, ctl_rx) = unbounded();
        let (wake_tx, wake_rx) = bounded(1);
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            inner: Box::new(inner),
            runs: run_rx,
            wake: wake_rx,
            control: ctl_rx,
            shared: Arc::clone(&shared),
            config,
            buffer: Vec::with_capacity(config.batch_size),
        };
        let thread = std::thread::Builder::new()
            .name("tracecraft-batch".into())
            .spawn(move || worker.run())
            .expect("spawn tracecraft-batch thread");
        BatchExporter {
            name,
            runs: Some(run_tx),
            wake: wake_tx,
            // Half the queue at most, so a small queue is drained before it fills.
            wake_at: config
                .batch_size
                .min(config.max_queue_size.div_ceil(2))
                .max(1),
            control: ctl_tx,
            shared,
            thread: Some(thread),
            shut_down: false,
        }
    }

    /// Enqueues one run without blocking; `false` when it was dropped (queue full or shut
    /// down).
    pub fn enqueue(&self, run: ProcessedRun) -> bool {
        let Some(tx) = &self.runs else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match tx.try_send(run) {
            Ok(()) => {
                self.shared.enqueued.fetch_add(1, Ordering::Relaxed);
                if tx.len() >= self.wake_at {
                    // Full when a wake-up is already pending: nothing to do.
                    let _ = self.wake.try_send(());
                }
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.shared.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(exporter = %self.name, "tracecraft: export queue full; dropping runs (total reported at shutdown)");
                }
                false
            }
        }
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> BatchStats {
        self.shared.stats()
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
        // Closing the run channel lets the worker see the end of the queue.
        self.runs = None;
        let (ack_tx, ack_rx) = bounded(1);
        let sent = self
            .control
            .send(Control::Shutdown(timeout, ack_tx))
            .is_ok();
        let (result, unexported) = if sent {
            match ack_rx.recv_timeout(timeout + Duration::from_millis(100)) {
                Ok(r) => r,
                Err(_) => (
                    Err(ExportError::Timeout {
                        exporter: self.name.clone(),
                        timeout,
                    }),
                    0,
                ),
            }
        } else {
            (Ok(()), 0)
        };
        if let Some(t) = self.thread.take()
            && result.is_ok()
        {
            let _ = t.join();
        }
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
        let (ack_tx, ack_rx) = bounded(1);
        if self.control.send(Control::Flush(ack_tx)).is_err() {
            return Err(ExportError::Shutdown {
                exporter: self.name.clone(),
            });
        }
        ack_rx.recv().unwrap_or_else(|_| {
            Err(ExportError::Shutdown {
                exporter: self.name.clone(),
            })
        })
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

struct Worker {
    inner: Box<dyn Exporter>,
    runs: Receiver<ProcessedRun>,
    wake: Receiver<()>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
    config: BatchConfig,
    buffer: Vec<ProcessedRun>,
}

impl Worker {
    fn run(mut self) {
        let mut deadline = Instant::now() + self.config.flush_interval;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            select! {
                recv(self.control) -> msg => match msg {
                    Ok(msg) => if self.handle(msg) { return },
                    Err(_) => { self.drain(None); return; }
                },
                // The queue reached the wake-up mark: export what is queued, in batches.
                recv(self.wake) -> msg => {
                    if msg.is_err() {
                        // The exporter is gone without a shutdown message: drain and stop.
                        self.drain(None);
                        return;
                    }
                    self.drain(None);
                    deadline = Instant::now() + self.config.flush_interval;
                },
                default(wait) => {
                    self.drain(None);
                    deadline = Instant::now() + self.config.flush_interval;
                }
            }
        }
    }

    /// Handles a control message; `true` when the worker should stop.
    fn handle(&mut self, msg: Control) -> bool {
        match msg {
            Control::Flush(ack) => {
                self.drain(None);
                let _ = ack.send(self.inner.force_flush());
                false
            }
            Control::Shutdown(timeout, ack) => {
                let deadline = Instant::now() + timeout;
                let unexported = self.drain(Some(deadline));
                let left = deadline.saturating_duration_since(Instant::now());
                let result = self.inner.shutdown(left);
                let _ = ack.send((result, unexported));
                true
            }
        }
    }

    /// Exports everything queued; with a deadline, stops when it passes and returns how many
    /// runs were left unexported.
    fn drain(&mut self, deadline: Option<Instant>) -> u64 {
        // Only what is queued now: a flush under continuous load still returns.
        let mut pending = self.runs.len();
        loop {
            while self.buffer.len() < self.config.batch_size && pending > 0 {
                match self.runs.try_recv() {
                    Ok(run) => {
                        self.buffer.push(run);
                        pending -= 1;
                    }
                    Err(_) => pending = 0,
                }
            }
            if self.buffer.is_empty() {
                return 0;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let left = (self.buffer.len() + pending) as u64;
                self.buffer.clear();
                return left;
            }
            self.export_buffer();
        }
    }

    fn export_buffer(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let n = self.buffer.len() as u64;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.inner.export(&self.buffer)
        }));
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
        self.buffer.clear();
    }
}
