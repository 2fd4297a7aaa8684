//! The [`Pipeline`]: processors in a safe order, fail-closed, then fan-out to exporters.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracecraft_core::{AgentRun, ExportError, Exporter, ProcessedRun, TraceStore};

use crate::processor::{Outcome, Processor};

/// The order of the built-in processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessorOrder {
    /// enrich -> redact -> sample (default): sampling sees complete, redacted runs.
    #[default]
    #[serde(alias = "SAFETY", alias = "Safety")]
    Safety,
    /// sample -> redact -> enrich: dropped runs cost nothing; tokens are counted on redacted
    /// text.
    #[serde(alias = "EFFICIENCY", alias = "Efficiency")]
    Efficiency,
}

/// The run attribute a pipeline built [`without_redaction`](PipelineBuilder::without_redaction)
/// sets to `"disabled"` on every run it processes, so that stores, backends and the trace
/// browser show which runs were kept unredacted.
pub const REDACTION_ATTRIBUTE: &str = "tracecraft.redaction";

/// What happened to a submitted run.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Processed and handed to every exporter (some may have failed; see stats).
    Exported(ProcessedRun),
    /// Dropped on purpose (sampling, or another processor's decision).
    Dropped(String),
    /// A processor failed or panicked; the run was dropped (fail closed).
    Failed {
        /// The processor's name.
        processor: String,
    },
}

/// Counters, as of [`Pipeline::stats`].
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct PipelineStats {
    /// Runs submitted.
    pub submitted: u64,
    /// Runs that passed every processor.
    pub processed: u64,
    /// Runs dropped on purpose, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Runs dropped because a processor failed or panicked, by processor.
    pub failed: BTreeMap<String, u64>,
    /// Runs exported, by exporter.
    pub exported: BTreeMap<String, u64>,
    /// Runs whose export failed, by exporter.
    pub export_failed: BTreeMap<String, u64>,
    /// Runs whose export failed, by exporter and then by cause: the error's message (which
    /// names files, endpoints and status codes, never payloads), so a summary can say
    /// `1639 not stored: No space left on device (os error 28)` once per cause.
    pub export_failure_causes: BTreeMap<String, BTreeMap<String, u64>>,
}

impl PipelineStats {
    /// Runs dropped on purpose, all reasons.
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
    /// Runs dropped by failure, all processors.
    #[must_use]
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    processed: AtomicU64,
    maps: Mutex<PipelineStats>,
}

impl Counters {
    fn bump(&self, f: impl FnOnce(&mut PipelineStats)) {
        f(&mut self.maps.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

fn inc(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_owned(), n);
        }
    }
}

/// What [`Pipeline::shutdown`] could not do.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Exporters whose shutdown failed, with the error.
    pub errors: Vec<(String, ExportError)>,
}

impl ShutdownReport {
    /// Whether every exporter shut down cleanly.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

struct Slot {
    name: String,
    exporter: Mutex<Box<dyn Exporter>>,
    /// Per-exporter counters: atomics, so exporting takes no shared lock.
    exported: AtomicU64,
    failed: AtomicU64,
    /// Failed runs by cause (taken only when an export fails).
    causes: Mutex<BTreeMap<String, u64>>,
}

impl Slot {
    fn fail(&self, cause: &str, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
        inc(
            &mut self.causes.lock().unwrap_or_else(PoisonError::into_inner),
            cause,
            n,
        );
    }
}

/// Runs processors over finished runs, then fans each processed run out to exporters and
/// stores.
///
/// # Guarantees
/// - **Redaction cannot be forgotten**: [`PipelineBuilder::build`] fails unless a redaction
///   processor was given or redaction was disabled explicitly (which logs a warning).
/// - **Fail closed**: a processor that returns an error or panics drops the run; it is counted
///   under `failed` and logged with the run id and processor name, never with payload. The
///   original run is never exported.
/// - **Isolation**: one exporter failing (or panicking) does not stop the others; failures
///   are counted per exporter.
pub struct Pipeline {
    limits: Limits,
    processors: Vec<Box<dyn Processor>>,
    exporters: Vec<Slot>,
    counters: Arc<Counters>,
    /// Built [`without_redaction`](PipelineBuilder::without_redaction): runs are marked.
    redaction_disabled: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "processors",
                &self.processors.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field(
                "exporters",
                &self.exporters.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No redaction processor and redaction not explicitly disabled.
    #[error(
        "no redaction configured: give the pipeline a redaction processor, or call `without_redaction()` to disable it explicitly"
    )]
    RedactionMissing,
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The redaction rules are invalid (the error names the rule).
    #[error(transparent)]
    Redaction(#[from] tracecraft_redact::BuildError),
}

/// Depth limits applied before any processor (see [`PipelineBuilder::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Arrays/objects nested deeper than this inside any value are replaced by
    /// [`tracecraft_core::value::TRUNCATED`] (default 32).
    pub max_value_depth: usize,
    /// Steps deeper than this in the tree (roots are 1) are removed (default 40).
    pub max_step_depth: usize,
}

impl Default for Limits {
    // 1 (run) + 2 per step level + 1 (inputs map) + value depth stays under serde_json's
    // 128-level read limit: 1 + 2*40 + 1 + 32 = 114.
    fn default() -> Self {
        Limits {
            max_value_depth: 32,
            max_step_depth: 40,
        }
    }
}

/// Run attribute: how many values were cut by [`Limits::max_value_depth`].
pub const VALUES_TRUNCATED: &str = "tracecraft.values_truncated";
/// Run attribute: how many steps were not recorded because of a depth limit.
pub const STEPS_DROPPED: &str = "tracecraft.steps_dropped";

/// Cuts over-deep values and step subtrees, without recursion.
fn apply_limits(run: &mut AgentRun, limits: Limits) {
    use tracecraft_core::value::{dismantle, limit_depth};
    let mut cut = limit_depth(&mut run.input, limits.max_value_depth);
    cut += limit_depth(&mut run.output, limits.max_value_depth);
    for v in run.attributes.values_mut() {
        cut += limit_depth(v, limits.max_value_depth);
    }
    let mut dropped = 0u64;
    let mut stack: Vec<(&mut tracecraft_core::Step, usize)> =
        run.steps.iter_mut().map(|s| (s, 1)).collect();
    while let Some((step, depth)) = stack.pop() {
        for map in [&mut step.inputs, &mut step.outputs, &mut step.attributes] {
            for v in map.values_mut() {
                cut += limit_depth(v, limits.max_value_depth);
            }
        }
        if depth >= limits.max_step_depth && !step.children.is_empty() {
            // Take the subtree apart iteratively (`Step`'s drop recurses through children).
            let mut doomed = std::mem::take(&mut step.children);
            while let Some(mut s) = doomed.pop() {
                dropped += 1;
                doomed.append(&mut s.children);
                for map in [&mut s.inputs, &mut s.outputs, &mut s.attributes] {
                    for (_, v) in std::mem::take(map) {
                        dismantle(v);
                    }
                }
            }
            continue;
        }
        stack.extend(step.children.iter_mut().map(|c| (c, depth + 1)));
    }
    let bump = |run: &mut AgentRun, key: &str, n: u64| {
        if n > 0 {
            let before = run
                .attributes
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            run.attributes.insert(key.to_owned(), (before + n).into());
        }
    };
    bump(run, VALUES_TRUNCATED, cut);
    bump(run, STEPS_DROPPED, dropped);
}

enum Redaction {
    Unset,
    Disabled,
    Enabled(Box<dyn Processor>),
}

/// Builds a [`Pipeline`]; see [`Pipeline::builder`].
#[must_use]
pub struct PipelineBuilder {
    order: ProcessorOrder,
    limits: Limits,
    enrich: Option<Box<dyn Processor>>,
    redact: Redaction,
    sample: Option<Box<dyn Processor>>,
    custom: Vec<Box<dyn Processor>>,
    exporters: Vec<Box<dyn Exporter>>,
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// The processor order (default [`ProcessorOrder::Safety`]).
    pub fn order(mut self, order: ProcessorOrder) -> Self {
        self.order = order;
        self
    }
    /// Depth limits applied before any processor (defaults keep every run readable).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// The enrichment processor (none by default).
    pub fn enrichment(mut self, p: impl Processor + 'static) -> Self {
        self.enrich = Some(Box::new(p));
        self
    }
    /// The redaction processor (required unless [`without_redaction`](Self::without_redaction)).
    /// Only a [`RedactionProcessor`](crate::RedactionProcessor) is accepted, so the redaction
    /// stage always visits every string of a run (see `AgentRun::visit_strings_mut`).
    pub fn redaction(mut self, p: crate::RedactionProcessor) -> Self {
        self.redact = Redaction::Enabled(Box::new(p));
        self
    }
    /// Disables redaction explicitly. Runs reach exporters as captured; a warning is logged
    /// when the pipeline is built.
    pub fn without_redaction(mut self) -> Self {
        self.redact = Redaction::Disabled;
        self
    }
    /// The sampling processor (none by default: keep everything).
    pub fn sampling(mut self, p: impl Processor + 'static) -> Self {
        self.sample = Some(Box::new(p));
        self
    }
    /// A custom processor. Custom processors run before redaction in both orders, so what
    /// they add is redacted too.
    pub fn processor(mut self, p: impl Processor + 'static) -> Self {
        self.custom.push(Box::new(p));
        self
    }
    /// An exporter (each gets every processed run).
    pub fn exporter(mut self, e: impl Exporter + 'static) -> Self {
        self.exporters.push(Box::new(e));
        self
    }
    /// A store, shared: the application keeps its own `Arc` to query it.
    pub fn store<S: TraceStore + 'static>(self, store: Arc<S>) -> Self {
        self.exporter(tracecraft_core::StoreExporter::new(store))
    }

    /// The pipeline.
    ///
    /// # Errors
    /// [`BuildError::RedactionMissing`] when redaction was neither given nor disabled.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        let redaction_disabled = matches!(self.redact, Redaction::Disabled);
        let redact = match self.redact {
            Redaction::Unset => return Err(BuildError::RedactionMissing),
            Redaction::Disabled => {
                tracing::warn!(
                    "tracecraft: redaction is DISABLED for this pipeline; runs are exported as captured and marked tracecraft.redaction = \"disabled\""
                );
                None
            }
            Redaction::Enabled(p) => Some(p),
        };
        let mut processors: Vec<Box<dyn Processor>> = Vec::new();
        match self.order {
            ProcessorOrder::Safety => {
                processors.extend(self.enrich);
                processors.extend(self.custom);
                processors.extend(redact);
                processors.extend(self.sample);
            }
            ProcessorOrder::Efficiency => {
                processors.extend(self.sample);
                processors.extend(self.custom);
                processors.extend(redact);
                processors.extend(self.enrich);
            }
        }
        Ok(Pipeline {
            limits: self.limits,
            processors,
            exporters: self
                .exporters
                .into_iter()
                .map(|e| Slot {
                    name: e.name().to_owned(),
                    exporter: Mutex::new(e),
                    exported: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    causes: Mutex::new(BTreeMap::new()),
                })
                .collect(),
            counters: Arc::new(Counters::default()),
            redaction_disabled,
        })
    }
}

impl Pipeline {
    /// A builder: order Safety, no processors, no exporters, redaction unset (must be given).
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            order: ProcessorOrder::Safety,
            limits: Limits::default(),
            enrich: None,
            redact: Redaction::Unset,
            sample: None,
            custom: Vec::new(),
            exporters: Vec::new(),
        }
    }

    /// The processors' names, in the order they run.
    #[must_use]
    pub fn processor_names(&self) -> Vec<&str> {
        self.processors.iter().map(|p| p.name()).collect()
    }

    /// Runs the processors over `run`. Returns the processed run, or why it was dropped.
    pub fn process(&self, run: AgentRun) -> Submitted {
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let id = run.id;
        let mut run = run;
        let limits = self.limits;
        if catch_unwind(AssertUnwindSafe(|| apply_limits(&mut run, limits))).is_err() {
            tracing::error!(run_id = %id, "tracecraft: depth limiting panicked; run dropped (fail closed)");
            return self.failed("limits");
        }
        for p in &self.processors {
            let result = catch_unwind(AssertUnwindSafe(|| p.process(run)));
            match result {
                Ok(Ok(Outcome::Keep(next))) => run = next,
                Ok(Ok(Outcome::Drop(reason))) => {
                    self.counters.bump(|s| inc(&mut s.dropped, &reason.0, 1));
                    return Submitted::Dropped(reason.0);
                }
                Ok(Err(err)) => {
                    tracing::warn!(run_id = %id, processor = p.name(), error = %err, "tracecraft: processor failed; run dropped (fail closed)");
                    return self.failed(p.name());
                }
                Err(_panic) => {
                    // The panic message may quote the payload: never log it.
                    tracing::error!(run_id = %id, processor = p.name(), "tracecraft: processor panicked; run dropped (fail closed)");
                    return self.failed(p.name());
                }
            }
        }
        if self.redaction_disabled {
            // Stores, backends and the trace browser show which runs were kept unredacted.
            run.attributes.insert(
                REDACTION_ATTRIBUTE.to_owned(),
                serde_json::Value::from("disabled"),
            );
        }
        self.counters.processed.fetch_add(1, Ordering::Relaxed);
        #[allow(clippy::disallowed_methods)] // the pipeline is the one place that seals runs
        let processed = ProcessedRun::assume_processed(run);
        Submitted::Exported(processed)
    }

    fn failed(&self, processor: &str) -> Submitted {
        self.counters.bump(|s| inc(&mut s.failed, processor, 1));
        Submitted::Failed {
            processor: processor.to_owned(),
        }
    }

    /// Hands processed runs to every exporter. One failing does not stop the others.
    pub fn export(&self, batch: &[ProcessedRun]) {
        if batch.is_empty() {
            return;
        }
        for slot in &self.exporters {
            let result = catch_unwind(AssertUnwindSafe(|| {
                slot.exporter
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .export(batch)
            }));
            let n = batch.len() as u64;
            match result {
                Ok(Ok(())) => {
                    slot.exported.fetch_add(n, Ordering::Relaxed);
                }
                Ok(Err(err)) => {
                    tracing::warn!(exporter = %slot.name, runs = n, error = %err, "tracecraft: export failed");
                    slot.fail(&err.to_string(), n);
                }
                Err(_panic) => {
                    tracing::error!(exporter = %slot.name, runs = n, "tracecraft: exporter panicked");
                    slot.fail("the exporter panicked", n);
                }
            }
        }
    }

    /// Processes a run and exports it if kept.
    pub fn submit(&self, run: AgentRun) -> Submitted {
        let outcome = self.process(run);
        if let Submitted::Exported(p) = &outcome {
            self.export(std::slice::from_ref(p));
        }
        outcome
    }

    /// Processes many runs and exports the kept ones as one batch per exporter.
    pub fn submit_batch(&self, runs: impl IntoIterator<Item = AgentRun>) -> Vec<Submitted> {
        let outcomes: Vec<Submitted> = runs.into_iter().map(|r| self.process(r)).collect();
        let kept: Vec<ProcessedRun> = outcomes
            .iter()
            .filter_map(|o| match o {
                Submitted::Exported(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        self.export(&kept);
        outcomes
    }

    /// Flushes every exporter.
    ///
    /// # Errors
    /// The first exporter error (every exporter is still flushed).
    pub fn force_flush(&self) -> Result<(), ExportError> {
        let mut first = None;
        for slot in &self.exporters {
            let r = slot
                .exporter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .force_flush();
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Shuts every exporter down within `timeout` (shared among them).
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        let mut report = ShutdownReport::default();
        for slot in &self.exporters {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = slot
                .exporter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .shutdown(left);
            if let Err(e) = r {
                report.errors.push((slot.name.clone(), e));
            }
        }
        report
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> PipelineStats {
        let mut s = self
            .counters
            .maps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        s.submitted = self.counters.submitted.load(Ordering::Relaxed);
        s.processed = self.counters.processed.load(Ordering::Relaxed);
        for slot in &self.exporters {
            for (map, counter) in [
                (&mut s.exported, &slot.exported),
                (&mut s.export_failed, &slot.failed),
            ] {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    inc(map, &slot.name, n);
                }
            }
            let causes = slot.causes.lock().unwrap_or_else(PoisonError::into_inner);
            if !causes.is_empty() {
                let into = s
                    .export_failure_causes
                    .entry(slot.name.clone())
                    .or_default();
                for (cause, n) in causes.iter() {
                    inc(into, cause, *n);
                }
            }
        }
        s
    }
}
