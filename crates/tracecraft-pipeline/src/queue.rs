//! [`WorkQueue`]: the one bounded queue with a worker thread that TraceCraft uses wherever
//! work leaves a traced thread (the [`BatchExporter`](crate::BatchExporter), the facade
//! runtime's processing thread).
//!
//! **Guarantees.** [`WorkQueue::try_enqueue`] never blocks and makes no system call below the
//! wake-up mark; a full queue hands the item back and counts it (one warning at the first
//! drop). The worker drains when the queue reaches the wake-up mark, when the interval has
//! passed, on [`flush`](WorkQueue::flush) (acknowledged once everything queued before it was
//! consumed) and on [`stop`](WorkQueue::stop) (acknowledged within its timeout, idempotent;
//! what could not be consumed by then is counted, never silently lost).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select, unbounded};
use tracecraft_core::ExportError;

/// What the worker thread does with queued items.
pub trait Consumer<T>: Send + 'static {
    /// Consumes a batch of at most `batch_size` items (in queue order); may leave `items`
    /// in any state (the queue clears it).
    fn consume(&mut self, items: &mut Vec<T>);
    /// After a flush drained the queue.
    ///
    /// # Errors
    /// What the consumer's own flush returns.
    fn flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
    /// After a stop drained the queue, with the time left before the stop's deadline.
    ///
    /// # Errors
    /// What the consumer's own shutdown returns.
    fn stop(&mut self, remaining: Duration) -> Result<(), ExportError> {
        let _ = remaining;
        Ok(())
    }
    /// The items a stop's deadline left unconsumed: keep what can be kept without waiting
    /// (a spool); returns how many were kept. The default keeps none.
    fn abandon(&mut self, items: Vec<T>) -> u64 {
        drop(items);
        0
    }
}

/// [`WorkQueue`] settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueConfig {
    /// The name in logs and errors (`batch(otlp-http)`, `tracecraft-process`).
    pub name: String,
    /// The worker thread's name.
    pub thread_name: String,
    /// Queue capacity (at least 1).
    pub capacity: usize,
    /// Items per `consume` call (at least 1).
    pub batch_size: usize,
    /// Queued items that wake the worker at once (capped at half the capacity).
    pub wake_at: usize,
    /// The longest an item below the wake-up mark waits.
    pub interval: Duration,
}

impl QueueConfig {
    /// Settings with a name, a capacity, a batch size and an interval; the wake-up mark is
    /// the batch size.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        capacity: usize,
        batch_size: usize,
        interval: Duration,
    ) -> Self {
        let name = name.into();
        QueueConfig {
            thread_name: name.clone(),
            name,
            capacity,
            batch_size,
            wake_at: batch_size,
            interval,
        }
    }

    /// The worker thread's name.
    #[must_use]
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// The wake-up mark.
    #[must_use]
    pub fn wake_at(mut self, n: usize) -> Self {
        self.wake_at = n;
        self
    }
}

/// Counters of a [`WorkQueue`].
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Items accepted.
    pub enqueued: AtomicU64,
    /// Items refused because the queue was full or stopped.
    pub dropped_full: AtomicU64,
    /// Items still queued when a stop's deadline passed (not consumed).
    pub unfinished: AtomicU64,
    warned: AtomicBool,
}

enum Control {
    Flush(Sender<Result<(), ExportError>>),
    Stop(Instant, Sender<(Result<(), ExportError>, u64)>),
}

/// A bounded queue drained by a dedicated worker thread; see the module docs.
pub struct WorkQueue<T> {
    name: String,
    items: Sender<T>,
    wake: Sender<()>,
    wake_at: usize,
    control: Sender<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    counters: Arc<QueueCounters>,
}

impl<T> std::fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("name", &self.name)
            .field("queued", &self.items.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> WorkQueue<T> {
    /// Starts the worker thread that owns `consumer`.
    ///
    /// # Errors
    /// When the operating system cannot start a thread.
    pub fn start<C: Consumer<T>>(consumer: C, config: QueueConfig) -> std::io::Result<Self> {
        let capacity = config.capacity.max(1);
        let batch_size = config.batch_size.max(1);
        let (item_tx, item_rx) = bounded(capacity);
        let (wake_tx, wake_rx) = bounded(1);
        let (ctl_tx, ctl_rx) = unbounded();
        let counters = Arc::new(QueueCounters::default());
        let worker = Worker {
            consumer,
            items: item_rx,
            wake: wake_rx,
            control: ctl_rx,
            batch_size,
            interval: config.interval.max(Duration::from_millis(1)),
            buffer: Vec::with_capacity(batch_size),
        };
        let thread = std::thread::Builder::new()
            .name(config.thread_name.clone())
            .spawn(move || worker.run())?;
        Ok(WorkQueue {
            name: config.name,
            items: item_tx,
            wake: wake_tx,
            // Half the queue at most, so a small queue is drained before it fills.
            wake_at: config.wake_at.min(capacity.div_ceil(2)).max(1),
            control: ctl_tx,
            thread: Mutex::new(Some(thread)),
            stopped: AtomicBool::new(false),
            counters,
        })
    }

    /// Queues an item without blocking; gives it back when the queue is full or stopped
    /// (counted; the first drop logs one warning, without the item).
    ///
    /// # Errors
    /// The item, when it was not queued.
    pub fn try_enqueue(&self, item: T) -> Result<(), T> {
        if self.stopped.load(Ordering::Relaxed) {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            return Err(item);
        }
        match self.items.try_send(item) {
            Ok(()) => {
                self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                if self.items.len() >= self.wake_at {
                    // Full when a wake-up is already pending: nothing to do.
                    let _ = self.wake.try_send(());
                }
                Ok(())
            }
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                if !self.counters.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(queue = %self.name, "tracecraft: queue full; dropping (total counted in stats)");
                }
                Err(item)
            }
        }
    }

    /// Items queued now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> &QueueCounters {
        &self.counters
    }

    /// Whether [`stop`](Self::stop) was called.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Returns once everything queued before the call was consumed, with the consumer's
    /// flush result.
    ///
    /// # Errors
    /// [`ExportError::Shutdown`] after a stop; the consumer's flush error.
    pub fn flush(&self) -> Result<(), ExportError> {
        let (ack_tx, ack_rx) = bounded(1);
        if self.is_stopped() || self.control.send(Control::Flush(ack_tx)).is_err() {
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

    /// Consumes what is queued, stops the consumer and the thread, within `timeout`;
    /// returns the consumer's stop result and the items left unconsumed (counted in
    /// [`QueueCounters::unfinished`]). Idempotent: later calls return `(Ok(()), 0)` at once.
    pub fn stop(&self, timeout: Duration) -> (Result<(), ExportError>, u64) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return (Ok(()), 0);
        }
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = bounded(1);
        if self.control.send(Control::Stop(deadline, ack_tx)).is_err() {
            return (Ok(()), 0);
        }
        // The worker stops consuming at the deadline; a consumer call in flight may take a
        // little longer (its own timeout bounds it).
        match ack_rx.recv_timeout(timeout + Duration::from_millis(100)) {
            Ok((result, left)) => {
                self.counters.unfinished.fetch_add(left, Ordering::Relaxed);
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
                (result, left)
            }
            Err(_) => {
                // The thread goes on in the background and is not joined.
                let left = self.items.len() as u64;
                self.counters.unfinished.fetch_add(left, Ordering::Relaxed);
                (
                    Err(ExportError::Timeout {
                        exporter: self.name.clone(),
                        timeout,
                    }),
                    left,
                )
            }
        }
    }
}

struct Worker<T, C> {
    consumer: C,
    items: Receiver<T>,
    wake: Receiver<()>,
    control: Receiver<Control>,
    batch_size: usize,
    interval: Duration,
    buffer: Vec<T>,
}

impl<T, C: Consumer<T>> Worker<T, C> {
    fn run(mut self) {
        let mut next = Instant::now() + self.interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            select! {
                recv(self.control) -> msg => match msg {
                    Ok(Control::Flush(ack)) => {
                        self.drain(None);
                        let _ = ack.send(self.consumer.flush());
                    }
                    Ok(Control::Stop(deadline, ack)) => {
                        let left = self.drain(Some(deadline));
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        let result = self.consumer.stop(remaining);
                        let _ = ack.send((result, left));
                        return;
                    }
                    Err(_) => {
                        // The queue was dropped without a stop: consume what is left.
                        self.drain(None);
                        let _ = self.consumer.stop(Duration::ZERO);
                        return;
                    }
                },
                // The queue reached the wake-up mark.
                recv(self.wake) -> _ => {
                    self.drain(None);
                    next = Instant::now() + self.interval;
                },
                default(wait) => {
                    self.drain(None);
                    next = Instant::now() + self.interval;
                }
            }
        }
    }

    /// Consumes what is queued now (a flush under continuous load still returns); with a
    /// deadline, stops when it passes and returns how many items were left.
    fn drain(&mut self, deadline: Option<Instant>) -> u64 {
        let mut pending = self.items.len();
        loop {
            while self.buffer.len() < self.batch_size && pending > 0 {
                match self.items.try_recv() {
                    Ok(item) => {
                        self.buffer.push(item);
                        pending -= 1;
                    }
                    Err(_) => pending = 0,
                }
            }
            if self.buffer.is_empty() {
                return 0;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let mut rest = std::mem::take(&mut self.buffer);
                while let Ok(item) = self.items.try_recv() {
                    rest.push(item);
                }
                let total = rest.len() as u64;
                let kept = self.consumer.abandon(rest).min(total);
                return total - kept;
            }
            self.consumer.consume(&mut self.buffer);
            self.buffer.clear();
            // A stop (or flush) waiting: hand over to the control loop, which drains with the
            // stop's deadline (a flush drains again anyway).
            if deadline.is_none() && !self.control.is_empty() {
                return 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(Arc<AtomicUsize>, Duration);
    impl Consumer<u32> for Count {
        fn consume(&mut self, items: &mut Vec<u32>) {
            std::thread::sleep(self.1);
            self.0.fetch_add(items.len(), Ordering::Relaxed);
        }
    }

    #[test]
    fn flush_consumes_everything_queued_before_it() {
        let n = Arc::new(AtomicUsize::new(0));
        let q = WorkQueue::start(
            Count(Arc::clone(&n), Duration::ZERO),
            QueueConfig::new("t", 100, 10, Duration::from_secs(3600)),
        )
        .unwrap();
        for i in 0..37 {
            q.try_enqueue(i).unwrap();
        }
        q.flush().unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 37);
        let (r, left) = q.stop(Duration::from_secs(1));
        assert!(r.is_ok());
        assert_eq!(left, 0);
        assert_eq!(q.stop(Duration::from_secs(1)).1, 0, "idempotent");
        assert!(q.try_enqueue(1).is_err());
        assert!(matches!(q.flush(), Err(ExportError::Shutdown { .. })));
    }

    #[test]
    fn full_queue_hands_items_back_and_counts() {
        let n = Arc::new(AtomicUsize::new(0));
        let q = WorkQueue::start(
            Count(Arc::clone(&n), Duration::from_millis(50)),
            QueueConfig::new("t", 4, 100, Duration::from_secs(3600)),
        )
        .unwrap();
        let refused = (0..100).filter(|i| q.try_enqueue(*i).is_err()).count();
        assert!(refused > 0);
        assert_eq!(
            q.counters().dropped_full.load(Ordering::Relaxed),
            refused as u64
        );
        let (r, left) = q.stop(Duration::from_secs(5));
        r.unwrap();
        assert_eq!(
            n.load(Ordering::Relaxed) as u64 + left,
            100 - refused as u64
        );
    }

    #[test]
    fn stop_counts_what_it_could_not_consume() {
        let n = Arc::new(AtomicUsize::new(0));
        let q = WorkQueue::start(
            Count(Arc::clone(&n), Duration::from_millis(100)),
            QueueConfig::new("t", 1000, 1, Duration::from_secs(3600)).wake_at(1000),
        )
        .unwrap();
        for i in 0..50 {
            q.try_enqueue(i).unwrap();
        }
        let (_, left) = q.stop(Duration::from_millis(250));
        assert!(left > 0);
        assert_eq!(n.load(Ordering::Relaxed) as u64 + left, 50);
        assert_eq!(q.counters().unfinished.load(Ordering::Relaxed), left);
    }
}
