//! Step guards: [`StepGuardBuilder`] and [`StepGuard`].

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tracecraft_core::{StepType, Uuid};

use crate::capture::{self, Capture};
use crate::context::{self, Context, Frame};
use crate::record::{self, StepRecord, Tag};
use crate::run::RunShared;

/// A step of the current run (the innermost active run on this thread or task), or an inert
/// builder when there is none (its guard records nothing).
///
/// ```
/// # use std::sync::Arc;
/// # use tracecraft::{Runtime, RuntimeOptions, StepType};
/// # use tracecraft::core::testing::MemoryExporter;
/// # let sink = MemoryExporter::new();
/// # let runtime = Runtime::builder().exporter(sink.clone()).build()?;
/// fn lookup(order: &str) -> String {
///     let mut step = tracecraft::step(StepType::Tool, "lookup").input("order", order).start();
///     step.set_output(&"shipped");
///     "shipped".to_owned()
/// }
/// {
///     let _run = runtime.run("agent").start();
///     lookup("A-1");
/// }
/// assert_eq!(sink.runs()[0].steps[0].name, "lookup");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn step(step_type: StepType, name: impl AsRef<str>) -> StepGuardBuilder {
    let frame = context::top(None);
    if frame.is_none() {
        outside_run();
    }
    StepGuardBuilder::new(frame, step_type, name.as_ref())
}

static STEPS_OUTSIDE_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a step started with no active run; warns once per process, with the fix.
fn outside_run() {
    if STEPS_OUTSIDE_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        tracing::warn!(
            "tracecraft: a step was started outside any run and is not recorded. Start a run first (runtime.run(..).start()); in a spawned task use `fut.in_current_run()` (tracecraft::InRun), in a thread `tracecraft::context::current()` then `ctx.enter(..)`. Counted in Runtime::stats().steps_outside_run"
        );
    }
}

/// Steps started with no active run, in this process.
pub(crate) fn steps_outside_run() -> u64 {
    STEPS_OUTSIDE_RUN.load(std::sync::atomic::Ordering::Relaxed)
}

/// A step being built or under way: its fixed-size record and its buffer (see
/// [`crate::record`]).
struct Pending {
    run: Arc<RunShared>,
    /// Depth of the parent (the run is 0).
    parent_depth: usize,
    rec: StepRecord,
    buf: Vec<u8>,
}

impl Pending {
    fn capture(&self) -> &Capture {
        self.rec.capture.as_deref().unwrap_or(&self.run.capture)
    }

    fn input<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        let cap = self.rec.capture.as_deref().unwrap_or(&self.run.capture);
        if !cap.inputs {
            return;
        }
        if cap.is_excluded(name) {
            // Never serialize what is excluded.
            record::put_excluded(&mut self.buf, Tag::Input, name);
        } else {
            record::put_value(&mut self.buf, Tag::Input, name, value);
        }
    }

    fn output<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        if self.capture().outputs {
            record::put_value(&mut self.buf, Tag::Output, name, value);
        }
    }

    fn attribute<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        record::put_value(&mut self.buf, Tag::Attribute, name, value);
    }

    fn model(&mut self, name: &str, provider: &str) {
        record::put_text(&mut self.buf, Tag::Model, name);
        record::put_text(&mut self.buf, Tag::Provider, provider);
    }

    fn tokens(&mut self, input: Option<u64>, output: Option<u64>) {
        if let Some(n) = input {
            record::put_u64(&mut self.buf, Tag::InputTokens, n);
        }
        if let Some(n) = output {
            record::put_u64(&mut self.buf, Tag::OutputTokens, n);
        }
    }

    fn fail(&mut self, message: &str, error_type: &str) {
        self.rec.has_error = true;
        record::put_text(&mut self.buf, Tag::Error, message);
        record::put_text(&mut self.buf, Tag::ErrorType, error_type);
    }

    fn capture_mut(&mut self) -> &mut Capture {
        let run = &self.run.capture;
        self.rec
            .capture
            .get_or_insert_with(|| Box::new(run.clone()))
    }
}

/// Builds a step; see [`step`] and [`RunGuard::step`](crate::RunGuard::step). Values are
/// serialized to JSON when given.
#[must_use = "call `.start()` to start the step"]
pub struct StepGuardBuilder {
    pending: Option<Pending>,
}

impl std::fmt::Debug for StepGuardBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepGuardBuilder")
            .field("id", &self.pending.as_ref().map(|p| p.rec.id))
            .finish_non_exhaustive()
    }
}

impl StepGuardBuilder {
    pub(crate) fn new(frame: Option<Frame>, step_type: StepType, name: &str) -> StepGuardBuilder {
        let pending = frame.map(|frame| {
            let mut buf = record::take_buf();
            let mut rec = StepRecord::new(
                capture::new_id(),
                step_type,
                name,
                std::time::Instant::now(),
                &mut buf,
            );
            rec.parent_id = frame.step;
            Pending {
                run: frame.run,
                parent_depth: frame.depth,
                rec,
                buf,
            }
        });
        StepGuardBuilder { pending }
    }

    fn with(mut self, f: impl FnOnce(&mut Pending)) -> Self {
        if let Some(p) = self.pending.as_mut() {
            f(p);
        }
        self
    }

    /// Sets the model and its provider.
    pub fn model(self, name: impl AsRef<str>, provider: impl AsRef<str>) -> Self {
        self.with(|p| p.model(name.as_ref(), provider.as_ref()))
    }
    /// Sets the model, the provider, or both (for the attributes).
    #[cfg_attr(not(feature = "macros"), allow(dead_code))]
    pub(crate) fn model_parts(self, name: Option<&str>, provider: Option<&str>) -> Self {
        self.with(|p| {
            if let Some(m) = name {
                record::put_text(&mut p.buf, Tag::Model, m);
            }
            if let Some(v) = provider {
                record::put_text(&mut p.buf, Tag::Provider, v);
            }
        })
    }
    /// Adds an input, serialized now (`"[EXCLUDED]"` when its name, or a key inside it, is
    /// excluded; nothing when inputs are not captured).
    pub fn input<T: Serialize + ?Sized>(self, name: impl AsRef<str>, value: &T) -> Self {
        self.with(|p| p.input(name.as_ref(), value))
    }
    /// Adds every field of `args` as an input (keyword-style arguments: a struct or a map);
    /// a value that is not an object is recorded under `"input"`.
    pub fn inputs<T: Serialize + ?Sized>(self, args: &T) -> Self {
        self.with(|p| {
            if !p.capture().inputs {
                return;
            }
            match capture::to_json(args) {
                Value::Object(fields) => {
                    for (k, v) in &fields {
                        p.input(k, v);
                    }
                }
                other => p.input("input", &other),
            }
        })
    }
    /// Adds an output, serialized now (nothing when outputs are not captured).
    pub fn output<T: Serialize + ?Sized>(self, name: impl AsRef<str>, value: &T) -> Self {
        self.with(|p| p.output(name.as_ref(), value))
    }
    /// Adds an attribute, serialized now.
    pub fn attribute<T: Serialize + ?Sized>(self, name: impl AsRef<str>, value: &T) -> Self {
        self.with(|p| p.attribute(name.as_ref(), value))
    }
    /// Sets token counts.
    pub fn tokens(self, input: u64, output: u64) -> Self {
        self.with(|p| p.tokens(Some(input), Some(output)))
    }
    /// Sets the cost in US dollars.
    pub fn cost_usd(self, cost: f64) -> Self {
        self.with(|p| record::put_u64(&mut p.buf, Tag::Cost, cost.to_bits()))
    }
    /// Marks the step as streaming.
    pub fn streaming(self) -> Self {
        self.with(|p| p.rec.is_streaming = true)
    }
    /// Overrides the run's `capture_inputs` for this step (also for inputs given before).
    pub fn capture_inputs(self, on: bool) -> Self {
        self.with(|p| p.capture_mut().inputs = on)
    }
    /// Overrides the run's `capture_outputs` for this step.
    pub fn capture_outputs(self, on: bool) -> Self {
        self.with(|p| p.capture_mut().outputs = on)
    }
    /// Adds names to exclude for this step (also applied to inputs given before).
    pub fn exclude_inputs<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.with(|p| {
            let cap = p.capture_mut();
            let mut all = cap.exclude.to_vec();
            all.extend(names.into_iter().map(Into::into));
            cap.exclude = all.into();
        })
    }

    /// Starts the step and makes it the current context on this thread. Steps deeper than the
    /// run's `max_step_depth` are not recorded (counted in the run's
    /// `tracecraft.steps_dropped`); without an active run the guard is inert.
    pub fn start(self) -> StepGuard {
        self.start_inner(true)
    }

    /// Starts the step without making it current (the `tracing` layer enters it on span
    /// entry; an async traced function on each poll of its body).
    #[cfg_attr(not(any(feature = "tracing", feature = "macros")), allow(dead_code))]
    pub(crate) fn start_detached(self) -> StepGuard {
        self.start_inner(false)
    }

    fn start_inner(mut self, current: bool) -> StepGuard {
        let Some(mut p) = self.pending.take() else {
            return StepGuard { active: None };
        };
        let run = &p.run;
        let depth = p.parent_depth + 1;
        if run.is_ended() {
            run.step_late();
            record::give_buf(p.buf);
            return StepGuard { active: None };
        }
        let recorded = run.max_depth.is_none_or(|max| depth <= max);
        if !recorded {
            run.step_dropped();
        }
        let key = p.rec.id;
        // The entry of an unrecorded step still counts depth, so its children are dropped too.
        if current {
            context::push(Frame {
                key,
                run: Arc::clone(run),
                step: if recorded { Some(key) } else { p.rec.parent_id },
                depth,
            });
        }
        if recorded {
            p.rec.seq = run.step_started();
        }
        StepGuard {
            active: Some(Active {
                p,
                recorded,
                depth,
                current,
            }),
        }
    }

    /// Starts the step, runs `f` in it, and ends it.
    pub fn in_scope<R>(self, f: impl FnOnce(&mut StepGuard) -> R) -> R {
        let mut guard = self.start();
        f(&mut guard)
    }
}

impl Drop for StepGuardBuilder {
    fn drop(&mut self) {
        // A builder dropped without `start`: its buffer goes back to the pool.
        if let Some(p) = self.pending.take() {
            record::give_buf(p.buf);
        }
    }
}

struct Active {
    p: Pending,
    recorded: bool,
    depth: usize,
    /// Whether `start` pushed a context entry (to pop on drop).
    current: bool,
}

/// An active step; ends when dropped (or [`StepGuard::end`]ed) and is recorded in its run.
///
/// Dropped during a panic it records `error = "panicked"`, `error_type = "panic"`; dropped by
/// a cancelled [`Instrumented`](crate::context::Instrumented) future, `"cancelled"`. Inert
/// (records nothing, every method is a no-op) when started without an active run.
#[must_use = "the step ends when the guard is dropped"]
pub struct StepGuard {
    active: Option<Active>,
}

impl std::fmt::Debug for StepGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepGuard")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl StepGuard {
    fn with(&mut self, f: impl FnOnce(&mut Pending)) {
        if let Some(a) = self.active.as_mut() {
            f(&mut a.p);
        }
    }

    /// The step's id (`None` when inert).
    #[must_use]
    pub fn id(&self) -> Option<Uuid> {
        self.active.as_ref().map(|a| a.p.rec.id)
    }

    /// Whether the step will be recorded (an active run, within the depth limit).
    #[must_use]
    pub fn is_recording(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.recorded)
    }

    /// A context with this step as the parent, to carry to other threads or tasks.
    #[must_use]
    pub fn context(&self) -> Context {
        match &self.active {
            Some(a) => Context::from_frame(Frame {
                key: a.p.rec.id,
                run: Arc::clone(&a.p.run),
                step: if a.recorded {
                    Some(a.p.rec.id)
                } else {
                    a.p.rec.parent_id
                },
                depth: a.depth,
            }),
            None => Context::default(),
        }
    }

    /// Adds an input, serialized now (capture controls apply).
    pub fn input<T: Serialize + ?Sized>(&mut self, name: impl AsRef<str>, value: &T) {
        self.with(|p| p.input(name.as_ref(), value));
    }
    /// Adds an output, serialized now (nothing when outputs are not captured).
    pub fn output<T: Serialize + ?Sized>(&mut self, name: impl AsRef<str>, value: &T) {
        self.with(|p| p.output(name.as_ref(), value));
    }
    /// Sets the output `"result"` (the Python package's name for a return value).
    pub fn set_output<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.output("result", value);
    }
    /// Sets an attribute, serialized now.
    pub fn set_attribute<T: Serialize + ?Sized>(&mut self, name: impl AsRef<str>, value: &T) {
        self.with(|p| p.attribute(name.as_ref(), value));
    }

    /// Sets token counts.
    pub fn set_tokens(&mut self, input: u64, output: u64) {
        self.with(|p| p.tokens(Some(input), Some(output)));
    }
    /// Sets the input token count only (for integrations in this crate).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn set_input_tokens(&mut self, n: u64) {
        self.with(|p| p.tokens(Some(n), None));
    }
    /// Sets the output token count only (for integrations in this crate).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn set_output_tokens(&mut self, n: u64) {
        self.with(|p| p.tokens(None, Some(n)));
    }
    /// Sets the cost in US dollars.
    pub fn set_cost_usd(&mut self, cost: f64) {
        self.with(|p| record::put_u64(&mut p.buf, Tag::Cost, cost.to_bits()));
    }
    /// Sets the model and its provider.
    pub fn set_model(&mut self, name: impl AsRef<str>, provider: impl AsRef<str>) {
        self.with(|p| p.model(name.as_ref(), provider.as_ref()));
    }
    /// Sets the model name only (for integrations in this crate).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn set_model_name(&mut self, name: &str) {
        self.with(|p| record::put_text(&mut p.buf, Tag::Model, name));
    }
    /// Sets the model provider only (for integrations in this crate).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn set_model_provider(&mut self, provider: &str) {
        self.with(|p| record::put_text(&mut p.buf, Tag::Provider, provider));
    }
    /// Appends a streamed chunk and marks the step streaming (chunks are outputs: nothing is
    /// kept when outputs are not captured).
    pub fn push_chunk(&mut self, chunk: impl AsRef<str>) {
        self.with(|p| {
            p.rec.is_streaming = true;
            if p.capture().outputs {
                record::put_text(&mut p.buf, Tag::Chunk, chunk.as_ref());
            }
        });
    }
    /// Records `err`: its message (`Display`) and the last path segment of its type's name.
    /// An empty message still counts as an error.
    pub fn fail<E: std::fmt::Display + ?Sized>(&mut self, err: &E) {
        if self.active.is_none() {
            return;
        }
        let message = err.to_string();
        self.fail_with(message, capture::type_name_of::<E>());
    }
    /// Records an error with an explicit message and type.
    pub fn fail_with(&mut self, message: impl AsRef<str>, error_type: impl AsRef<str>) {
        self.with(|p| p.fail(message.as_ref(), error_type.as_ref()));
    }
    /// Records the error of `result`, if any, and passes it through.
    pub fn record<T, E: std::fmt::Display>(&mut self, result: Result<T, E>) -> Result<T, E> {
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    /// Ends the step now (same as dropping the guard).
    pub fn end(self) {}
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        let Some(Active {
            mut p,
            recorded,
            current,
            ..
        }) = self.active.take()
        else {
            return;
        };
        if current {
            context::pop(p.rec.id);
        }
        if !recorded {
            record::give_buf(p.buf);
            return;
        }
        if std::thread::panicking() {
            p.fail("panicked", "panic");
        } else if context::cancelling() && !p.rec.has_error {
            p.fail("cancelled", "cancelled");
        }
        let end = std::time::Instant::now();
        let Pending { run, rec, buf, .. } = p;
        run.step_finished(rec, end, &buf);
        record::give_buf(buf);
    }
}

/// The innermost active step on this thread or task, to set what is known only inside it
/// (the model that answered, token counts, cost, attributes) from code that does not hold
/// its guard: the body of a `#[trace_llm]` function, a span of the `tracing` layer.
///
/// Inert (every method does nothing) when no step is current, or when the current step is not
/// recorded (deeper than the run's `max_step_depth`). What is set is recorded when the step
/// ends; capture controls apply as to the guard's own values.
///
/// ```
/// # use tracecraft::{Runtime, RuntimeOptions, StepType};
/// # use tracecraft::core::testing::MemoryExporter;
/// # let sink = MemoryExporter::new();
/// # let runtime = Runtime::builder().exporter(sink.clone()).build()?;
/// fn chat(prompt: &str) -> String {
///     let _step = tracecraft::step(StepType::Llm, "chat").input("prompt", prompt).start();
///     answer()
/// }
/// fn answer() -> String {
///     // Deep inside: the step's guard is not at hand.
///     tracecraft::current_step().set_model("gpt-4o", "openai").set_tokens(7, 2);
///     "hello".into()
/// }
/// {
///     let _run = runtime.run("agent").start();
///     chat("hi");
/// }
/// assert_eq!(sink.runs()[0].steps[0].total_tokens(), Some(9));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn current_step() -> CurrentStep {
    // A step deeper than the run's depth limit is not recorded: its frame names its parent
    // (so that children attach there), but what is set on it must not land on the parent.
    let frame = context::top(None).filter(|f| f.run.max_depth.is_none_or(|max| f.depth <= max));
    CurrentStep {
        target: frame.and_then(|f| f.step.map(|id| (f.run, id))),
    }
}

/// A handle on the current step; see [`current_step`].
#[derive(Clone)]
pub struct CurrentStep {
    target: Option<(Arc<RunShared>, Uuid)>,
}

impl std::fmt::Debug for CurrentStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentStep")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl CurrentStep {
    fn with(&self, f: impl FnOnce(&mut Vec<u8>)) -> &Self {
        if let Some((run, id)) = &self.target {
            run.step_extra(*id, f);
        }
        self
    }

    /// The step's id (`None` when there is no current step).
    #[must_use]
    pub fn id(&self) -> Option<Uuid> {
        self.target.as_ref().map(|(_, id)| *id)
    }

    /// Whether there is a current step of an active run.
    #[must_use]
    pub fn is_recording(&self) -> bool {
        self.target.as_ref().is_some_and(|(run, _)| !run.is_ended())
    }

    /// Sets the model and its provider.
    pub fn set_model(&self, name: impl AsRef<str>, provider: impl AsRef<str>) -> &Self {
        self.with(|b| {
            record::put_text(b, Tag::Model, name.as_ref());
            record::put_text(b, Tag::Provider, provider.as_ref());
        })
    }
    /// Sets the model name only.
    pub fn set_model_name(&self, name: impl AsRef<str>) -> &Self {
        self.with(|b| record::put_text(b, Tag::Model, name.as_ref()))
    }
    /// Sets token counts.
    pub fn set_tokens(&self, input: u64, output: u64) -> &Self {
        self.with(|b| {
            record::put_u64(b, Tag::InputTokens, input);
            record::put_u64(b, Tag::OutputTokens, output);
        })
    }
    /// Sets the cost in US dollars.
    pub fn set_cost_usd(&self, cost: f64) -> &Self {
        self.with(|b| record::put_u64(b, Tag::Cost, cost.to_bits()))
    }
    /// Sets an attribute, serialized now.
    pub fn set_attribute<T: Serialize + ?Sized>(&self, name: impl AsRef<str>, value: &T) -> &Self {
        self.with(|b| record::put_value(b, Tag::Attribute, name.as_ref(), value))
    }
    /// Adds an output, serialized now (dropped when the step does not capture outputs).
    pub fn output<T: Serialize + ?Sized>(&self, name: impl AsRef<str>, value: &T) -> &Self {
        self.with(|b| record::put_value(b, Tag::Output, name.as_ref(), value))
    }
}
