//! The processing side: accepted spans are merged per trace, reverse-mapped to runs, run
//! through each tenant's [`Pipeline`] (redaction), stored and forwarded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use tracecraft_core::{ExportError, ProcessedRun};
use tracecraft_pipeline::queue::{Consumer, QueueConfig, WorkQueue};
use tracecraft_pipeline::{Pipeline, Submitted};

use crate::metrics::Metrics;

/// Opens the pipeline (processors, stores, forwarder) of a tenant. The gateway calls it once
/// per tenant, on that tenant's first trace, from its processing thread.
pub trait Router: Send + Sync + 'static {
    /// The pipeline of `tenant` (`None`: requests without a tenant-bound token).
    ///
    /// # Errors
    /// A message naming what could not be opened (no payload); that tenant's traces are
    /// then counted as failed.
    fn open(&self, tenant: Option<&str>) -> Result<Pipeline, String>;

    /// Spans forwarded and spooled so far, summed over tenants (for metrics); `(0, 0)`
    /// without a forwarder.
    fn forward_counts(&self) -> (u64, u64) {
        (0, 0)
    }
}

impl<F> Router for F
where
    F: Fn(Option<&str>) -> Result<Pipeline, String> + Send + Sync + 'static,
{
    fn open(&self, tenant: Option<&str>) -> Result<Pipeline, String> {
        self(tenant)
    }
}

pub(crate) type Tenant = Option<Arc<str>>;

/// One item of the processing queue.
pub(crate) enum Item {
    /// Valid spans of one accepted request.
    Spans {
        tenant: Tenant,
        resource_spans: Vec<ResourceSpans>,
    },
    /// Time passed: process traces whose quiet period ended.
    Tick,
}

/// A span id (validated: 8 bytes).
type SpanId = [u8; 8];
/// A trace id (validated: 16 bytes).
type TraceId = [u8; 16];

fn span_id(bytes: &[u8]) -> SpanId {
    let mut id = [0u8; 8];
    let n = bytes.len().min(8);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

fn trace_id(bytes: &[u8]) -> TraceId {
    let mut id = [0u8; 16];
    let n = bytes.len().min(16);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

struct Pending {
    parts: Vec<ResourceSpans>,
    span_ids: HashSet<SpanId>,
    parents: HashSet<SpanId>,
    has_root: bool,
    spans: usize,
    last: Instant,
}

impl Pending {
    fn complete(&self) -> bool {
        self.has_root && self.parents.iter().all(|p| self.span_ids.contains(p))
    }
}

type Key = (Tenant, TraceId);

/// Processed batches waiting for a tenant's stores and forwarder, at most: the processing
/// thread waits for the store thread beyond that (backpressure reaches the receivers through
/// the processing queue).
const STORE_QUEUE: usize = 8;

/// A tenant's pipeline, and the thread that exports its processed runs (stores, forwarder)
/// so that merging and redaction never wait for SQLite or the network.
struct TenantSlot {
    pipeline: Arc<Pipeline>,
    store: WorkQueue<Vec<ProcessedRun>>,
    /// Batches handed to `store` and not yet exported.
    in_flight: Arc<AtomicUsize>,
}

impl TenantSlot {
    fn open(router: &dyn Router, tenant: Option<&str>) -> Result<TenantSlot, String> {
        let pipeline = Arc::new(router.open(tenant)?);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let store = WorkQueue::start(
            StoreWorker {
                pipeline: Arc::clone(&pipeline),
                in_flight: Arc::clone(&in_flight),
                batch: Vec::new(),
            },
            QueueConfig::new(
                "gateway-store",
                STORE_QUEUE + 1,
                STORE_QUEUE,
                Duration::from_millis(20),
            )
            .thread_name("tracecraft-gateway-store")
            .wake_at(1),
        )
        .map_err(|e| format!("starting the store thread: {e}"))?;
        Ok(TenantSlot {
            pipeline,
            store,
            in_flight,
        })
    }

    /// Hands a batch to the store thread, waiting while it has `STORE_QUEUE` batches to do.
    fn export(&self, batch: Vec<ProcessedRun>) {
        while self.in_flight.load(Ordering::Acquire) >= STORE_QUEUE {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // Never full: at most STORE_QUEUE batches are in flight and the capacity is one more.
        if let Err(batch) = self.store.try_enqueue(batch) {
            // Only after a stop: export here rather than lose the runs.
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.pipeline.export(&batch);
        }
    }
}

/// The store thread of a tenant: exports what the processing thread hands over, several
/// batches at once (one SQLite transaction).
struct StoreWorker {
    pipeline: Arc<Pipeline>,
    in_flight: Arc<AtomicUsize>,
    batch: Vec<ProcessedRun>,
}

impl Consumer<Vec<ProcessedRun>> for StoreWorker {
    fn consume(&mut self, items: &mut Vec<Vec<ProcessedRun>>) {
        let n = items.len();
        for b in items.drain(..) {
            self.batch.extend(b);
        }
        self.pipeline.export(&self.batch);
        self.batch.clear();
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.pipeline.force_flush()
    }

    fn stop(&mut self, remaining: Duration) -> Result<(), ExportError> {
        let deadline = Instant::now() + remaining;
        let mut result = self.pipeline.force_flush();
        let report = self
            .pipeline
            .shutdown(deadline.saturating_duration_since(Instant::now()));
        if let Some((_, e)) = report.errors.into_iter().next()
            && result.is_ok()
        {
            result = Err(e);
        }
        result
    }
}

pub(crate) struct Worker {
    router: Arc<dyn Router>,
    metrics: Arc<Metrics>,
    quiet: Duration,
    max_pending_spans: usize,
    threads: usize,
    pipelines: HashMap<Tenant, Result<TenantSlot, String>>,
    pending: HashMap<Key, Pending>,
    pending_spans: usize,
    /// Traces already processed, remembered for a quiet period (late spans are counted).
    done: HashMap<Key, Instant>,
    done_order: VecDeque<(Key, Instant)>,
}

const MAX_REMEMBERED: usize = 100_000;
/// Traces in one batch from which processing is spread over several threads.
const PARALLEL_MIN: usize = 32;

impl Worker {
    pub(crate) fn new(
        router: Arc<dyn Router>,
        metrics: Arc<Metrics>,
        quiet: Duration,
        max_pending_spans: usize,
    ) -> Self {
        Worker {
            router,
            metrics,
            quiet,
            max_pending_spans,
            // One core is left to the receivers and the store thread.
            threads: std::thread::available_parallelism().map_or(1, |n| (n.get() - 1).clamp(1, 4)),
            pipelines: HashMap::new(),
            pending: HashMap::new(),
            pending_spans: 0,
            done: HashMap::new(),
            done_order: VecDeque::new(),
        }
    }

    fn add(&mut self, tenant: Tenant, resource_spans: Vec<ResourceSpans>, ready: &mut Vec<Key>) {
        let now = Instant::now();
        for rs in resource_spans {
            let ResourceSpans {
                resource,
                scope_spans,
                schema_url,
            } = rs;
            for ss in scope_spans {
                let ScopeSpans {
                    scope,
                    spans,
                    schema_url: scope_schema,
                } = ss;
                // Group this scope's spans by trace id.
                let mut by_trace: HashMap<TraceId, Vec<_>> = HashMap::new();
                for span in spans {
                    by_trace
                        .entry(trace_id(&span.trace_id))
                        .or_default()
                        .push(span);
                }
                for (trace_id, spans) in by_trace {
                    let key = (tenant.clone(), trace_id);
                    if self.done.contains_key(&key) {
                        self.metrics
                            .spans_late
                            .fetch_add(spans.len() as u64, Ordering::Relaxed);
                    }
                    let p = self.pending.entry(key.clone()).or_insert_with(|| Pending {
                        parts: Vec::new(),
                        span_ids: HashSet::new(),
                        parents: HashSet::new(),
                        has_root: false,
                        spans: 0,
                        last: now,
                    });
                    for s in &spans {
                        p.span_ids.insert(span_id(&s.span_id));
                        if s.parent_span_id.is_empty() {
                            p.has_root = true;
                        } else {
                            p.parents.insert(span_id(&s.parent_span_id));
                        }
                    }
                    p.spans += spans.len();
                    self.pending_spans += spans.len();
                    p.last = now;
                    p.parts.push(ResourceSpans {
                        resource: resource.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope: scope.clone(),
                            spans,
                            schema_url: scope_schema.clone(),
                        }],
                        schema_url: schema_url.clone(),
                    });
                    if p.complete() {
                        ready.push(key);
                    }
                }
            }
        }
    }

    /// Keys of traces whose quiet period ended, and the oldest beyond the span bound.
    fn due(&self, now: Instant, all: bool, ready: &mut Vec<Key>) {
        let mut by_age: Vec<(&Key, &Pending)> = self.pending.iter().collect();
        by_age.sort_by_key(|(_, p)| p.last);
        let mut left = self.pending_spans;
        for (k, p) in by_age {
            if all || now.duration_since(p.last) >= self.quiet || left > self.max_pending_spans {
                ready.push(k.clone());
                left -= p.spans.min(left);
            }
        }
    }

    fn finish(&mut self, keys: Vec<Key>) {
        let mut out: HashMap<Tenant, Vec<ProcessedRun>> = HashMap::new();
        let now = Instant::now();
        // The traces to process, each with its tenant's pipeline opened.
        let mut work: Vec<(Tenant, Vec<ResourceSpans>)> = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            self.pending_spans -= p.spans.min(self.pending_spans);
            self.metrics
                .traces_completed
                .fetch_add(1, Ordering::Relaxed);
            let tenant = key.0.clone();
            let router = &self.router;
            self.pipelines
                .entry(tenant.clone())
                .or_insert_with(|| TenantSlot::open(router.as_ref(), tenant.as_deref()));
            work.push((tenant, p.parts));
            if self.done.insert(key.clone(), now).is_none() {
                self.done_order.push_back((key, now));
            }
        }
        // Reverse mapping and the pipeline (redaction) on `threads` threads when there is
        // enough work; stores and forwarders still get one batch per tenant from this thread.
        let pipelines = &self.pipelines;
        let metrics = &self.metrics;
        let process = |items: Vec<(Tenant, Vec<ResourceSpans>)>| {
            let mut kept: Vec<(Tenant, ProcessedRun)> = Vec::new();
            for (tenant, parts) in items {
                let runs = tracecraft_otlp::reverse::runs_from_resource_spans(&parts);
                match pipelines.get(&tenant) {
                    Some(Ok(TenantSlot { pipeline, .. })) => {
                        for run in runs {
                            match pipeline.process(run) {
                                Submitted::Exported(p) => {
                                    metrics.runs_processed.fetch_add(1, Ordering::Relaxed);
                                    count_redactions(metrics, &p);
                                    kept.push((tenant.clone(), p));
                                }
                                Submitted::Dropped(_) => {
                                    metrics.runs_dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                Submitted::Failed { .. } => {
                                    metrics.runs_failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    _ => {
                        metrics
                            .runs_failed
                            .fetch_add(runs.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            kept
        };
        let kept: Vec<(Tenant, ProcessedRun)> = if self.threads > 1 && work.len() >= PARALLEL_MIN {
            let per = work.len().div_ceil(self.threads);
            let mut chunks: Vec<Vec<(Tenant, Vec<ResourceSpans>)>> = Vec::new();
            let mut it = work.into_iter();
            loop {
                let chunk: Vec<_> = it.by_ref().take(per).collect();
                if chunk.is_empty() {
                    break;
                }
                chunks.push(chunk);
            }
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunks
                    .into_iter()
                    .map(|chunk| (chunk.len() as u64, scope.spawn(|| process(chunk))))
                    .collect();
                handles
                    .into_iter()
                    // A panic in the reverse mapping drops that chunk's traces (fail closed),
                    // counted as failed; the pipeline itself catches processor panics.
                    .flat_map(|(n, h)| {
                        h.join().unwrap_or_else(|_| {
                            metrics.runs_failed.fetch_add(n, Ordering::Relaxed);
                            Vec::new()
                        })
                    })
                    .collect()
            })
        } else {
            process(work)
        };
        for (tenant, p) in kept {
            out.entry(tenant).or_default().push(p);
        }
        // Stores and forwarders on each tenant's store thread.
        for (tenant, batch) in out {
            if let Some(Ok(slot)) = self.pipelines.get(&tenant) {
                slot.export(batch);
            }
        }
        // Forget processed traces after a quiet period (bounded).
        while let Some((_, t)) = self.done_order.front() {
            if self.done_order.len() > MAX_REMEMBERED || now.duration_since(*t) > self.quiet * 2 {
                if let Some((k, t)) = self.done_order.pop_front()
                    && self.done.get(&k) == Some(&t)
                {
                    self.done.remove(&k);
                }
            } else {
                break;
            }
        }
        self.publish();
    }

    fn publish(&self) {
        self.metrics
            .pending_spans
            .store(self.pending_spans as u64, Ordering::Relaxed);
        let mut totals = std::collections::BTreeMap::new();
        for slot in self.pipelines.values().flatten() {
            let stats = slot.pipeline.stats();
            for (e, n) in &stats.exported {
                totals.entry(e.clone()).or_insert((0, 0)).0 += n;
            }
            for (e, n) in &stats.export_failed {
                totals.entry(e.clone()).or_insert((0, 0)).1 += n;
            }
        }
        if let Ok(mut m) = self.metrics.exporters.lock() {
            *m = totals;
        }
        let (sent, spooled) = self.router.forward_counts();
        self.metrics.forwarded_spans.store(sent, Ordering::Relaxed);
        self.metrics.spooled_spans.store(spooled, Ordering::Relaxed);
    }
}

impl Consumer<Item> for Worker {
    fn consume(&mut self, items: &mut Vec<Item>) {
        let mut ready = Vec::new();
        let mut tick = false;
        for item in items.drain(..) {
            match item {
                Item::Spans {
                    tenant,
                    resource_spans,
                } => {
                    self.metrics.queued_requests.fetch_sub(1, Ordering::Relaxed);
                    self.add(tenant, resource_spans, &mut ready);
                }
                Item::Tick => tick = true,
            }
        }
        // Looking for traces past their quiet period sorts the pending ones: on ticks only,
        // or when the span bound is exceeded.
        if tick || self.pending_spans > self.max_pending_spans {
            self.due(Instant::now(), false, &mut ready);
        }
        ready.sort();
        ready.dedup();
        self.finish(ready);
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        let mut result = Ok(());
        // Each store thread exports what it was handed, then flushes the pipeline.
        for slot in self.pipelines.values().flatten() {
            if let Err(e) = slot.store.flush() {
                result = Err(e);
            }
        }
        self.publish();
        result
    }

    fn stop(&mut self, remaining: Duration) -> Result<(), ExportError> {
        // Every trace still pending is processed as it is: nothing accepted is lost.
        let mut ready = Vec::new();
        self.due(Instant::now(), true, &mut ready);
        self.finish(ready);
        let deadline = Instant::now() + remaining;
        let mut result = Ok(());
        // Each store thread exports what it was handed, then flushes and shuts down the
        // pipeline; runs its deadline left unexported are an error (never silent).
        for slot in self.pipelines.values().flatten() {
            let (r, left) = slot
                .store
                .stop(deadline.saturating_duration_since(Instant::now()));
            let r = match (r, left) {
                (Ok(()), n) if n > 0 => Err(ExportError::Timeout {
                    exporter: "gateway-store".to_owned(),
                    timeout: remaining,
                }),
                (r, _) => r,
            };
            if let Err(e) = r
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        self.publish();
        result
    }
}

/// Adds a processed run's per-rule redaction counts (attributes the redaction processor
/// sets; counts only) to the metrics.
fn count_redactions(metrics: &Metrics, run: &ProcessedRun) {
    let prefix = tracecraft_pipeline::REDACTION_RULE_PREFIX;
    let mut counts = Vec::new();
    for (k, v) in &run.run().attributes {
        if let (Some(rule), Some(n)) = (k.strip_prefix(prefix), v.as_u64())
            && n > 0
        {
            counts.push((rule.to_owned(), n));
        }
    }
    if counts.is_empty() {
        return;
    }
    if let Ok(mut m) = metrics.redactions.lock() {
        for (rule, n) in counts {
            *m.entry(rule).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use tracecraft_pipeline::PipelineConfig;

    fn span(trace: u8, id: u8, parent: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                vec![parent; 8]
            },
            name: "step".into(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_001_000,
            ..Default::default()
        }
    }

    /// The parallel path (several processing threads, which a 2-core machine does not use by
    /// default): every complete trace is processed once and stored.
    #[test]
    fn traces_processed_on_several_threads_are_all_stored() {
        let store = Arc::new(tracecraft_core::testing::MemoryStore::new());
        let s = Arc::clone(&store);
        let router = move |_: Option<&str>| {
            PipelineConfig::default()
                .builder()
                .and_then(|b| b.store(Arc::clone(&s)).build())
                .map_err(|e| e.to_string())
        };
        let metrics = Arc::new(Metrics::default());
        let mut worker = Worker::new(
            Arc::new(router),
            Arc::clone(&metrics),
            Duration::from_secs(60),
            1_000_000,
        );
        worker.threads = 3;
        let spans: Vec<Span> = (1..=2 * PARALLEL_MIN as u8)
            .flat_map(|t| [span(t, 1, 0), span(t, 2, 1)])
            .collect();
        metrics.queued_requests.fetch_add(1, Ordering::Relaxed);
        let mut items = vec![Item::Spans {
            tenant: None,
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }];
        worker.consume(&mut items);
        worker.flush().unwrap();
        let stored = tracecraft_core::TraceStore::query(
            store.as_ref(),
            &tracecraft_core::TraceQuery::default(),
        )
        .unwrap();
        assert_eq!(stored.len(), 2 * PARALLEL_MIN);
        assert_eq!(
            metrics.runs_processed.load(Ordering::Relaxed),
            2 * PARALLEL_MIN as u64
        );
        worker.stop(Duration::from_secs(5)).unwrap();
    }
}
