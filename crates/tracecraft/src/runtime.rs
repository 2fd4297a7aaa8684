//! The [`Runtime`]: starts runs, hands finished runs to its pipeline, shuts it down.
//!
//! A runtime owns one [`Pipeline`] (processors, exporters, stores) and its capture options.
//! Several runtimes live side by side in one process (tenants): a run belongs to the runtime
//! that started it, and every step lands in the run it was started in, whatever thread or
//! task it ends on.
//!
//! # What ends up in a run
//! - Steps are recorded when their guard ends and assembled into a tree (by parent id) when
//!   the run's guard ends.
//! - A step still open when its run ends is not in the exported run; their number is the
//!   run's `attributes["tracecraft.steps_late"]`, and each one is counted again when it ends
//!   ([`Runtime::late_steps`]).
//! - Steps deeper than [`RuntimeOptions::max_step_depth`] are not recorded; their number is
//!   `attributes["tracecraft.steps_dropped"]`.
//! - A child whose parent was not recorded (still open at the run's end) becomes a root step.
//! - A guard dropped during a panic records `error = "panicked"`, `error_type = "panic"` (never
//!   the panic's message, which may quote payload); the run is still exported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracecraft_core::{AgentRun, ExportError, JsonMap, StepType, Uuid};
use tracecraft_pipeline::{Pipeline, PipelineStats, ShutdownReport};

use crate::capture::{self, Capture};
use crate::context::{self, Context, Frame};
use crate::run::{RawRun, RunOwner, RunShared};
pub use crate::run::{STEPS_DROPPED, STEPS_LATE};
use crate::step::StepGuardBuilder;
use crate::worker::Worker;

/// The default [`RuntimeOptions::max_step_depth`]. The Python package uses 100; 40 keeps every
/// run readable by serde_json's 128-level nesting limit (each step level is two JSON levels)
/// and matches the pipeline's own step-depth limit.
pub const DEFAULT_MAX_STEP_DEPTH: usize = 40;

/// Key of [`PipelineStats::dropped`] counting runs that ended after [`Runtime::shutdown`].
pub const DROPPED_AFTER_SHUTDOWN: &str = "runtime_shut_down";
/// Key of [`PipelineStats::dropped`] counting runs dropped because the background processing
/// queue was full (see [`RuntimeOptions::background_processing`]).
pub const PROCESSING_QUEUE_FULL: &str = "processing_queue_full";
/// Key of [`PipelineStats::dropped`] counting runs whose building panicked on the processing
/// thread (never exported).
pub const PROCESSING_PANICKED: &str = "processing_panicked";
/// Key of [`PipelineStats::dropped`] counting runs still queued for processing when
/// [`Runtime::shutdown`] timed out.
pub const PROCESSING_UNFINISHED: &str = "processing_unfinished_at_shutdown";

/// Instrumentation options of a [`Runtime`]; run and step builders can override the capture
/// controls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RuntimeOptions {
    /// Recorded as the run attribute `service.name`.
    pub service_name: Option<String>,
    /// The runs' `environment` (the run model's default, `"development"`, when `None`).
    pub environment: Option<String>,
    /// Record step and run inputs (default `true`).
    pub capture_inputs: bool,
    /// Record step and run outputs (default `true`).
    pub capture_outputs: bool,
    /// Input names recorded as `"[EXCLUDED]"` at any depth of the inputs, ASCII
    /// case-insensitively (`api_key` also matches `API_KEY` inside a map passed as an input).
    pub exclude_inputs: Vec<String>,
    /// Steps deeper than this are not recorded (root steps have depth 1); `None` is
    /// unlimited. Default [`DEFAULT_MAX_STEP_DEPTH`].
    pub max_step_depth: Option<usize>,
    /// Build, process and export finished runs on the runtime's own thread (`true`), or on
    /// the thread that ends the run (`false`, the default here; a runtime built from configuration turns it on
    /// unless the configuration says `background_processing = false`).
    ///
    /// In the background, ending a run costs the traced thread a move into a bounded queue
    /// ([`RuntimeOptions::processing_queue_size`]; a full queue drops the run, counted under
    /// [`PROCESSING_QUEUE_FULL`]). [`Runtime::force_flush`] and [`Runtime::shutdown`] process
    /// everything queued first. Inline, the run is exported when its guard's drop returns.
    pub background_processing: bool,
    /// Capacity in runs of the background processing queue (default 2048).
    pub processing_queue_size: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            service_name: None,
            environment: None,
            capture_inputs: true,
            capture_outputs: true,
            exclude_inputs: Vec::new(),
            max_step_depth: Some(DEFAULT_MAX_STEP_DEPTH),
            background_processing: false,
            processing_queue_size: 2048,
        }
    }
}

/// What [`Runtime::stats`] returns: runs by outcome, and steps that could not be recorded as
/// asked.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Runs submitted, processed, dropped (by reason), exported and failed (by exporter).
    pub runs: PipelineStats,
    /// Steps started with no active run on their thread or task (not recorded). **Counted
    /// for the whole process**, since such a step belongs to no runtime. The usual cause is a
    /// spawned task or thread that did not take the context along (`.in_current_run()`,
    /// [`crate::context::current`]).
    pub steps_outside_run: u64,
    /// Steps that ended after their run had ended (see [`Runtime::late_steps`]).
    pub steps_late: u64,
    /// `tracing` spans whose `tracecraft.type` names no step type (recorded as `workflow`).
    pub unknown_step_types: u64,
}

pub(crate) struct RuntimeInner {
    id: u64,
    options: RuntimeOptions,
    capture: Capture,
    pipeline: Arc<Pipeline>,
    /// The processing thread, with [`RuntimeOptions::background_processing`].
    worker: Option<Worker>,
    /// `true` once shut down. Submissions hold the read lock, so shutdown (write) waits for
    /// runs being submitted and no run slips in behind it.
    shut_down: RwLock<bool>,
    after_shutdown: AtomicU64,
    late_steps: AtomicU64,
    unknown_step_types: AtomicU64,
    /// The configured store, for queries (also an exporter of `pipeline`).
    store: Option<Arc<dyn tracecraft_core::TraceStore>>,
}

/// Starts runs and owns the pipeline they go to. Cheap to clone (an `Arc`).
///
/// ```
/// use std::sync::Arc;
/// use tracecraft::{Runtime, StepType};
/// use tracecraft::core::{testing::MemoryStore, TraceStore, TraceQuery};
///
/// let store = Arc::new(MemoryStore::new());
/// let runtime = Runtime::builder().store(store.clone()).build()?;
/// {
///     let run = runtime.run("agent").user_id("u-1").start();
///     let mut step = run.step(StepType::Llm, "chat").model("gpt-4o", "openai").input("prompt", "hi").start();
///     step.set_tokens(3, 5);
/// } // guards end here: the step, then the run (processed and exported)
/// runtime.shutdown(std::time::Duration::from_secs(5));
/// assert_eq!(store.query(&TraceQuery::new())?[0].total_tokens, 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
    /// Set on the handle [`crate::init`] returns (and its clones): when the last of them is
    /// dropped, the global runtime shuts down.
    _owner: Option<Arc<ShutdownOnDrop>>,
}

/// Shuts its runtime down when dropped (see [`crate::init`]).
struct ShutdownOnDrop(Runtime);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        let report = self.0.shutdown(DEFAULT_SHUTDOWN_TIMEOUT);
        tracing::debug!(
            ?report,
            "tracecraft: global runtime shut down (its handle was dropped)"
        );
    }
}

/// The timeout of the shutdown that follows the drop of the handle [`crate::init`] returned.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = crate::worker::DEFAULT_SHUTDOWN_TIMEOUT;

impl RunOwner for RuntimeInner {
    fn step_late(&self) {
        self.late_steps.fetch_add(1, Ordering::Relaxed);
    }
}

// Shared state stays consistent across a panic (locks recover from poisoning, the pipeline
// catches processor and exporter panics), so a runtime may be used from `catch_unwind`.
impl std::panic::UnwindSafe for Runtime {}
impl std::panic::RefUnwindSafe for Runtime {}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("id", &self.inner.id)
            .field("pipeline", &self.inner.pipeline)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// This runtime, and a handle that shuts it down when it and its clones are dropped.
    pub(crate) fn with_owner(self) -> (Runtime, Runtime) {
        let plain = self.non_owning();
        let owner = Runtime {
            inner: self.inner,
            _owner: Some(Arc::new(ShutdownOnDrop(plain.clone()))),
        };
        (plain, owner)
    }

    /// A handle to the same runtime that does not keep it from shutting down.
    pub(crate) fn non_owning(&self) -> Runtime {
        Runtime {
            inner: Arc::clone(&self.inner),
            _owner: None,
        }
    }

    /// A runtime whose pipeline exports to `store` (among others); [`Runtime::store`] returns
    /// it for queries. See [`Runtime::builder`].
    pub(crate) fn assemble(
        options: RuntimeOptions,
        pipeline: Pipeline,
        store: Option<Arc<dyn tracecraft_core::TraceStore>>,
    ) -> Runtime {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let capture = Capture {
            inputs: options.capture_inputs,
            outputs: options.capture_outputs,
            exclude: options.exclude_inputs.clone().into(),
        };
        let pipeline = Arc::new(pipeline);
        let worker = options
            .background_processing
            .then(|| Worker::start(Arc::clone(&pipeline), options.processing_queue_size));
        Runtime {
            _owner: None,
            inner: Arc::new(RuntimeInner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                options,
                capture,
                pipeline,
                worker,
                shut_down: RwLock::new(false),
                after_shutdown: AtomicU64::new(0),
                late_steps: AtomicU64::new(0),
                unknown_step_types: AtomicU64::new(0),
                store,
            }),
        }
    }

    /// Whether `run` belongs to this runtime.
    pub(crate) fn owns(&self, run: &RunShared) -> bool {
        run.is_owned_by(&self.inner)
    }

    /// A handle (not owning) to the runtime `run` belongs to.
    pub(crate) fn of(run: &RunShared) -> Option<Runtime> {
        let owner: Arc<dyn std::any::Any + Send + Sync> = run.owner.clone();
        owner.downcast::<RuntimeInner>().ok().map(|inner| Runtime {
            inner,
            _owner: None,
        })
    }

    /// The configured store, to query what this runtime stored.
    #[must_use]
    pub fn store(&self) -> Option<&Arc<dyn tracecraft_core::TraceStore>> {
        self.inner.store.as_ref()
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Starts building a run named `name`.
    pub fn run(&self, name: impl Into<String>) -> RunBuilder {
        // Not `AgentRun::new`: its id costs a system call (`getrandom`) on the traced thread.
        let mut run = AgentRun::with_id(capture::new_id(), name, tracecraft_core::time::now());
        if let Some(env) = &self.inner.options.environment {
            run.environment.clone_from(env);
        }
        if let Some(service) = &self.inner.options.service_name {
            run.attributes
                .insert("service.name".to_owned(), Value::String(service.clone()));
        }
        RunBuilder {
            runtime: self.clone(),
            run,
            capture: None,
            max_step_depth: self.inner.options.max_step_depth,
        }
    }

    /// A step in the current run if that run belongs to this runtime; otherwise an inert
    /// builder whose guard records nothing.
    pub fn step(&self, step_type: StepType, name: impl AsRef<str>) -> StepGuardBuilder {
        let frame = context::top(None).filter(|f| self.owns(&f.run));
        StepGuardBuilder::new(frame, step_type, name.as_ref())
    }

    /// The runtime of the innermost active run on this thread (or task, see
    /// [`crate::context`]), if any.
    #[must_use]
    pub fn current() -> Option<Runtime> {
        context::top(None).and_then(|f| Runtime::of(&f.run))
    }

    /// Flushes and closes every exporter and store of the pipeline, within `timeout`.
    ///
    /// Idempotent: later calls return an empty report. Runs that end afterwards are not
    /// exported; they are counted under [`DROPPED_AFTER_SHUTDOWN`] in [`Runtime::stats`] and
    /// logged (without payload). Runs being submitted when it is called are exported first.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        {
            let mut done = self
                .inner
                .shut_down
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if *done {
                return ShutdownReport::default();
            }
            *done = true;
        }
        let deadline = Instant::now() + timeout;
        let stopped = self.inner.worker.as_ref().map(|w| w.stop(timeout));
        let mut report = self
            .inner
            .pipeline
            .shutdown(deadline.saturating_duration_since(Instant::now()));
        if let Some(Err(e)) = stopped {
            report
                .errors
                .insert(0, ("tracecraft-process".to_owned(), e));
        }
        report
    }

    /// Whether [`Runtime::shutdown`] was called.
    #[must_use]
    pub fn is_shut_down(&self) -> bool {
        *self
            .inner
            .shut_down
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Flushes every exporter and store.
    ///
    /// # Errors
    /// The first exporter's error (every exporter is still flushed).
    pub fn force_flush(&self) -> Result<(), ExportError> {
        if let Some(w) = &self.inner.worker {
            w.flush();
        }
        self.inner.pipeline.force_flush()
    }

    /// What happened to runs (the pipeline's counters, plus runs that ended after shutdown
    /// under `runs.dropped[DROPPED_AFTER_SHUTDOWN]` and the background queue's drops) and to
    /// steps that could not be recorded as asked.
    #[must_use]
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            runs: self.run_stats(),
            steps_outside_run: crate::step::steps_outside_run(),
            steps_late: self.late_steps(),
            unknown_step_types: self.inner.unknown_step_types.load(Ordering::Relaxed),
        }
    }

    /// Counts a `tracing` span whose `tracecraft.type` names no step type; warns once.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn unknown_step_type(&self, span: &str) {
        if self
            .inner
            .unknown_step_types
            .fetch_add(1, Ordering::Relaxed)
            == 0
        {
            tracing::warn!(
                span,
                "tracecraft: unknown tracecraft.type on a span, recorded as a workflow step (expected one of agent, llm, tool, retrieval, memory, guardrail, evaluation, workflow, error); counted in Runtime::stats().unknown_step_types"
            );
        }
    }

    fn run_stats(&self) -> PipelineStats {
        let mut s = self.inner.pipeline.stats();
        let mut add = |key: &str, n: u64| {
            if n > 0 {
                *s.dropped.entry(key.to_owned()).or_default() += n;
            }
        };
        add(
            DROPPED_AFTER_SHUTDOWN,
            self.inner.after_shutdown.load(Ordering::Relaxed),
        );
        if let Some(w) = &self.inner.worker {
            add(
                PROCESSING_QUEUE_FULL,
                w.stats.dropped_queue_full.load(Ordering::Relaxed),
            );
            add(
                PROCESSING_PANICKED,
                w.stats.panicked.load(Ordering::Relaxed),
            );
            add(
                PROCESSING_UNFINISHED,
                w.stats.unfinished.load(Ordering::Relaxed),
            );
        }
        s
    }

    /// Steps that ended after their run had ended (not exported; also counted in their run's
    /// `tracecraft.steps_late` attribute when they were still open at its end).
    #[must_use]
    pub fn late_steps(&self) -> u64 {
        self.inner.late_steps.load(Ordering::Relaxed)
    }

    /// Records a run captured elsewhere (read from a file, built with the core builders)
    /// through this runtime's pipeline: enriched, redacted and sampled like any other.
    /// Returns `false` when the runtime was already shut down (the run is counted in
    /// [`Runtime::stats`] under `runtime_shut_down`, not lost silently).
    pub fn record(&self, run: AgentRun) -> bool {
        self.submit(Ended::Built(run))
    }

    fn submit(&self, run: Ended) -> bool {
        let done = self
            .inner
            .shut_down
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if *done {
            drop(done);
            let n = self.inner.after_shutdown.fetch_add(1, Ordering::Relaxed);
            if n == 0 {
                tracing::warn!(run_id = %run.id(), "tracecraft: run ended after the runtime was shut down; not exported (counted)");
            }
            return false;
        }
        match (run, &self.inner.worker) {
            (Ended::Raw(raw), Some(worker)) => worker.enqueue(raw),
            (run, _) => {
                let _ = self.inner.pipeline.submit(run.finish());
                true
            }
        }
    }
}

/// A run handed to [`Runtime::submit`].
enum Ended {
    /// Ended by its guard: built where it is processed.
    Raw(RawRun),
    /// Built elsewhere ([`Runtime::record`]): processed at once.
    Built(AgentRun),
}

impl Ended {
    fn id(&self) -> Uuid {
        match self {
            Ended::Raw(r) => r.id(),
            Ended::Built(r) => r.id,
        }
    }

    fn finish(self) -> AgentRun {
        match self {
            Ended::Raw(r) => r.finish(),
            Ended::Built(r) => r,
        }
    }
}

/// Builds a run; see [`Runtime::run`].
#[must_use = "call `.start()` to start the run"]
pub struct RunBuilder {
    runtime: Runtime,
    run: AgentRun,
    capture: Option<Capture>,
    max_step_depth: Option<usize>,
}

impl std::fmt::Debug for RunBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunBuilder")
            .field("id", &self.run.id)
            .finish_non_exhaustive()
    }
}

impl RunBuilder {
    fn capture(&self) -> &Capture {
        self.capture.as_ref().unwrap_or(&self.runtime.inner.capture)
    }
    fn capture_mut(&mut self) -> &mut Capture {
        let rt = &self.runtime.inner.capture;
        self.capture.get_or_insert_with(|| rt.clone())
    }

    /// Sets the end user.
    pub fn user_id(mut self, id: impl Into<String>) -> Self {
        self.run.user_id = Some(id.into());
        self
    }
    /// Sets the session (conversation).
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.run.session_id = Some(id.into());
        self
    }
    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.run.description = Some(d.into());
        self
    }
    /// Adds tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.run.tags.extend(tags.into_iter().map(Into::into));
        self
    }
    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.run.tags.push(tag.into());
        self
    }
    /// Sets the agent's name.
    pub fn agent_name(mut self, name: impl Into<String>) -> Self {
        self.run.agent_name = Some(name.into());
        self
    }
    /// Sets the run's input, serialized now (excluded names are replaced at any depth).
    pub fn input<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let cap = self.capture();
        if cap.inputs {
            let mut v = capture::to_json(value);
            cap.exclude_nested(&mut v);
            self.run.input = v;
        }
        self
    }
    /// Adds an attribute, serialized now.
    pub fn attribute<T: Serialize + ?Sized>(mut self, name: impl Into<String>, value: &T) -> Self {
        self.run
            .attributes
            .insert(name.into(), capture::to_json(value));
        self
    }
    /// Overrides [`RuntimeOptions::capture_inputs`] for this run and its steps.
    pub fn capture_inputs(mut self, on: bool) -> Self {
        self.capture_mut().inputs = on;
        self
    }
    /// Overrides [`RuntimeOptions::capture_outputs`] for this run and its steps.
    pub fn capture_outputs(mut self, on: bool) -> Self {
        self.capture_mut().outputs = on;
        self
    }
    /// Adds names to exclude, for this run and its steps.
    pub fn exclude_inputs<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cap = self.capture_mut();
        let mut all: Vec<String> = cap.exclude.to_vec();
        all.extend(names.into_iter().map(Into::into));
        cap.exclude = all.into();
        self
    }
    /// Overrides [`RuntimeOptions::max_step_depth`] for this run.
    pub fn max_step_depth(mut self, depth: Option<usize>) -> Self {
        self.max_step_depth = depth;
        self
    }

    /// Starts the run and makes it the current context on this thread.
    pub fn start(self) -> RunGuard {
        self.start_inner(true)
    }

    /// Starts the run without making it current (the `tracing` layer enters it on span entry).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn start_detached(self) -> RunGuard {
        self.start_inner(false)
    }

    fn start_inner(mut self, current: bool) -> RunGuard {
        let capture = self
            .capture
            .take()
            .unwrap_or_else(|| self.runtime.inner.capture.clone());
        if !capture.inputs {
            self.run.input = Value::Null;
        } else {
            capture.exclude_nested(&mut self.run.input);
        }
        self.run.start_time = tracecraft_core::time::now();
        let owner: Arc<dyn RunOwner> = self.runtime.inner.clone();
        let shared = Arc::new(RunShared::new(
            owner,
            self.run.id,
            self.run.start_time,
            capture,
            self.max_step_depth,
        ));
        if current {
            context::push(Frame {
                key: self.run.id,
                run: Arc::clone(&shared),
                step: None,
                depth: 0,
            });
        }
        RunGuard {
            run: Some(self.run),
            runtime: self.runtime,
            shared,
            current,
        }
    }
}

/// An active run; ends (and is processed and exported) when dropped or [`RunGuard::end`]ed.
///
/// Dropped during a panic, it records `error = "panicked"`, `error_type = "panic"`; dropped by
/// a cancelled [`Instrumented`](crate::context::Instrumented) future, `"cancelled"`.
#[must_use = "the run ends when the guard is dropped"]
pub struct RunGuard {
    run: Option<AgentRun>,
    /// The runtime the run is submitted to (the handle it was started from).
    runtime: Runtime,
    shared: Arc<RunShared>,
    /// Whether `start` pushed a context entry (to pop on drop).
    current: bool,
}

impl std::fmt::Debug for RunGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunGuard")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl RunGuard {
    fn run_mut(&mut self) -> &mut AgentRun {
        self.run.as_mut().expect("run present until drop")
    }

    /// The run's id (also the trace id of its steps).
    #[must_use]
    pub fn id(&self) -> Uuid {
        self.shared.id
    }

    /// The runtime this run belongs to.
    #[must_use]
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A step of this run. Its parent is the innermost active step of this run on this thread
    /// (or task), else it is a root step.
    pub fn step(&self, step_type: StepType, name: impl AsRef<str>) -> StepGuardBuilder {
        let frame = context::top(Some(&self.shared)).unwrap_or_else(|| Frame {
            key: self.shared.id,
            run: Arc::clone(&self.shared),
            step: None,
            depth: 0,
        });
        StepGuardBuilder::new(Some(frame), step_type, name.as_ref())
    }

    /// A context for this run's root, to carry to other threads or tasks.
    #[must_use]
    pub fn context(&self) -> Context {
        Context::from_frame(Frame {
            key: self.shared.id,
            run: Arc::clone(&self.shared),
            step: None,
            depth: 0,
        })
    }

    /// Sets the run's output, serialized now (unless outputs are not captured).
    pub fn set_output<T: Serialize + ?Sized>(&mut self, value: &T) {
        if self.shared.capture.outputs {
            self.run_mut().output = capture::to_json(value);
        }
    }

    /// Adds `key` to the run's input object (for the `tracing` layer; capture controls apply).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn add_input(&mut self, key: &str, value: &Value) {
        let capture = self.shared.capture.clone();
        if !capture.inputs {
            return;
        }
        let mut v = value.clone();
        if capture.is_excluded(key) {
            v = Value::String(capture::EXCLUDED.to_owned());
        } else {
            capture.exclude_nested(&mut v);
        }
        insert_field(&mut self.run_mut().input, key, v);
    }

    /// Adds `key` to the run's output object (for the `tracing` layer; capture controls
    /// apply).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn add_output(&mut self, key: &str, value: &Value) {
        if self.shared.capture.outputs {
            insert_field(&mut self.run_mut().output, key, value.clone());
        }
    }

    /// Sets an attribute, serialized now.
    pub fn set_attribute<T: Serialize + ?Sized>(&mut self, name: impl Into<String>, value: &T) {
        let v = capture::to_json(value);
        self.run_mut().attributes.insert(name.into(), v);
    }

    /// Records `err`: its message (`Display`) and the last path segment of its type's name.
    /// An empty message still counts as an error.
    pub fn fail<E: std::fmt::Display + ?Sized>(&mut self, err: &E) {
        self.fail_with(err.to_string(), capture::type_name_of::<E>());
    }

    /// Records an error with an explicit message and type.
    pub fn fail_with(&mut self, message: impl Into<String>, error_type: impl Into<String>) {
        let run = self.run_mut();
        run.error = Some(message.into());
        run.error_type = Some(error_type.into());
    }

    /// Ends the run now (same as dropping the guard).
    pub fn end(self) {}
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        if self.current {
            context::pop(self.shared.id);
        }
        let end = Instant::now();
        if std::thread::panicking() {
            run.error = Some("panicked".to_owned());
            run.error_type = Some("panic".to_owned());
        } else if context::cancelling() && !run.has_run_error() {
            run.error = Some("cancelled".to_owned());
            run.error_type = Some("cancelled".to_owned());
        }
        let raw = self.shared.close(run, end);
        self.runtime.submit(Ended::Raw(raw));
    }
}

/// Sets `key` in `target`, turning it into an object first (a non-object value is kept under
/// `"value"`).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn insert_field(target: &mut Value, key: &str, value: Value) {
    if !target.is_object() {
        let mut map = JsonMap::new();
        if !target.is_null() {
            map.insert("value".to_owned(), target.take());
        }
        *target = Value::Object(map);
    }
    if let Value::Object(map) = target {
        map.insert(key.to_owned(), value);
    }
}

impl Context {
    /// The runtime of the run, if any (a handle that does not keep it from shutting down).
    #[must_use]
    pub fn runtime(&self) -> Option<Runtime> {
        self.frame().and_then(|f| Runtime::of(&f.run))
    }
}
