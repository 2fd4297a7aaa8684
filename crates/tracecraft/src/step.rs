//! Step guards: [`StepGuardBuilder`] and [`StepGuard`].

use std::sync::Arc;

use serde::Serialize;
use tracecraft_core::{Step, StepType, Uuid};

use crate::capture::{self, Capture};
use crate::context::{self, Context, Frame};
use crate::runtime::RunShared;

/// A step of the current run (the innermost active run on this thread or task), or an inert
/// builder when there is none (its guard records nothing).
///
/// ```
/// # use std::sync::Arc;
/// # use tracecraft::{Runtime, RuntimeOptions, StepType};
/// # use tracecraft::core::testing::MemoryExporter;
/// # let sink = MemoryExporter::new();
/// # let pipeline = tracecraft::pipeline::Pipeline::builder().without_redaction().exporter(sink.clone()).build()?;
/// # let runtime = Runtime::from_pipeline(RuntimeOptions::default(), pipeline);
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
pub fn step(step_type: StepType, name: impl Into<String>) -> StepGuardBuilder {
    StepGuardBuilder::new(context::top(None), step_type, name)
}

struct Pending {
    frame: Frame,
    /// Boxed: builders and guards move by value, a `Step` is several hundred bytes.
    step: Box<Step>,
    capture: Option<Capture>,
}

impl Pending {
    fn capture(&self) -> &Capture {
        self.capture.as_ref().unwrap_or(&self.frame.run.capture)
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
            .field("id", &self.pending.as_ref().map(|p| p.step.id))
            .finish_non_exhaustive()
    }
}

impl StepGuardBuilder {
    pub(crate) fn new(
        frame: Option<Frame>,
        step_type: StepType,
        name: impl Into<String>,
    ) -> StepGuardBuilder {
        let pending = frame.map(|frame| {
            let mut step = Box::new(Step::with_id(
                capture::new_id(),
                frame.run.id,
                step_type,
                name,
                frame.run.wall_time(std::time::Instant::now()),
            ));
            step.parent_id = frame.step;
            Pending {
                frame,
                step,
                capture: None,
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

    fn capture_mut(p: &mut Pending) -> &mut Capture {
        let run = &p.frame.run.capture;
        p.capture.get_or_insert_with(|| run.clone())
    }

    /// Sets the model and its provider.
    pub fn model(self, name: impl Into<String>, provider: impl Into<String>) -> Self {
        self.with(|p| {
            p.step.model_name = Some(name.into());
            p.step.model_provider = Some(provider.into());
        })
    }
    /// Adds an input, serialized now (`"[EXCLUDED]"` when its name, or a key inside it, is
    /// excluded; nothing when inputs are not captured).
    pub fn input<T: Serialize + ?Sized>(self, name: impl Into<String>, value: &T) -> Self {
        self.with(|p| {
            let name = name.into();
            if let Some(v) = p.capture().input(&name, value) {
                p.step.inputs.insert(name, v);
            }
        })
    }
    /// Adds every field of `args` as an input (keyword-style arguments: a struct or a map);
    /// a value that is not an object is recorded under `"input"`.
    pub fn inputs<T: Serialize + ?Sized>(self, args: &T) -> Self {
        self.with(|p| {
            let cap = p.capture.as_ref().unwrap_or(&p.frame.run.capture);
            cap.inputs_into(&mut p.step.inputs, args);
        })
    }
    /// Adds an output, serialized now (nothing when outputs are not captured).
    pub fn output<T: Serialize + ?Sized>(self, name: impl Into<String>, value: &T) -> Self {
        self.with(|p| {
            if p.capture().outputs {
                p.step.outputs.insert(name.into(), capture::to_json(value));
            }
        })
    }
    /// Adds an attribute, serialized now.
    pub fn attribute<T: Serialize + ?Sized>(self, name: impl Into<String>, value: &T) -> Self {
        self.with(|p| {
            p.step
                .attributes
                .insert(name.into(), capture::to_json(value));
        })
    }
    /// Sets token counts.
    pub fn tokens(self, input: u64, output: u64) -> Self {
        self.with(|p| {
            p.step.input_tokens = Some(input);
            p.step.output_tokens = Some(output);
        })
    }
    /// Sets the cost in US dollars.
    pub fn cost_usd(self, cost: f64) -> Self {
        self.with(|p| p.step.cost_usd = Some(cost))
    }
    /// Marks the step as streaming.
    pub fn streaming(self) -> Self {
        self.with(|p| p.step.is_streaming = true)
    }
    /// Overrides the run's `capture_inputs` for this step (also for inputs given before).
    pub fn capture_inputs(self, on: bool) -> Self {
        self.with(|p| Self::capture_mut(p).inputs = on)
    }
    /// Overrides the run's `capture_outputs` for this step.
    pub fn capture_outputs(self, on: bool) -> Self {
        self.with(|p| Self::capture_mut(p).outputs = on)
    }
    /// Adds names to exclude for this step (also applied to inputs given before).
    pub fn exclude_inputs<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.with(|p| {
            let cap = Self::capture_mut(p);
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
    /// entry).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn start_detached(self) -> StepGuard {
        self.start_inner(false)
    }

    fn start_inner(self, current: bool) -> StepGuard {
        let Some(mut p) = self.pending else {
            return StepGuard { active: None };
        };
        let run = &p.frame.run;
        let depth = p.frame.depth + 1;
        if run.is_ended() {
            run.step_late();
            return StepGuard { active: None };
        }
        let recorded = run.max_depth.is_none_or(|max| depth <= max);
        if !recorded {
            run.step_dropped();
        }
        if let Some(cap) = &p.capture {
            cap.reapply(&mut p.step.inputs);
            if !cap.outputs {
                p.step.outputs.clear();
            }
        }
        let key = p.step.id;
        // The entry of an unrecorded step still counts depth, so its children are dropped too.
        if current {
            context::push(Frame {
                key,
                run: Arc::clone(run),
                step: if recorded { Some(key) } else { p.frame.step },
                depth,
            });
        }
        let seq = if recorded { run.step_started() } else { 0 };
        StepGuard {
            active: Some(Active {
                run: p.frame.run,
                step: p.step,
                capture: p.capture,
                seq,
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

struct Active {
    run: Arc<RunShared>,
    step: Box<Step>,
    capture: Option<Capture>,
    seq: u64,
    recorded: bool,
    depth: usize,
    /// Whether `start` pushed a context entry (to pop on drop).
    current: bool,
}

impl Active {
    fn capture(&self) -> &Capture {
        self.capture.as_ref().unwrap_or(&self.run.capture)
    }
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
    fn with(&mut self, f: impl FnOnce(&mut Active)) {
        if let Some(a) = self.active.as_mut() {
            f(a);
        }
    }

    /// The step's id (`None` when inert).
    #[must_use]
    pub fn id(&self) -> Option<Uuid> {
        self.active.as_ref().map(|a| a.step.id)
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
                key: a.step.id,
                run: Arc::clone(&a.run),
                step: if a.recorded {
                    Some(a.step.id)
                } else {
                    a.step.parent_id
                },
                depth: a.depth,
            }),
            None => Context::default(),
        }
    }

    /// Adds an input, serialized now (capture controls apply).
    pub fn input<T: Serialize + ?Sized>(&mut self, name: impl Into<String>, value: &T) {
        self.with(|a| {
            let name = name.into();
            if let Some(v) = a.capture().input(&name, value) {
                a.step.inputs.insert(name, v);
            }
        });
    }
    /// Adds an output, serialized now (nothing when outputs are not captured).
    pub fn output<T: Serialize + ?Sized>(&mut self, name: impl Into<String>, value: &T) {
        self.with(|a| {
            if a.capture().outputs {
                a.step.outputs.insert(name.into(), capture::to_json(value));
            }
        });
    }
    /// Sets the output `"result"` (the Python package's name for a return value).
    pub fn set_output<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.output("result", value);
    }
    /// Sets an attribute, serialized now.
    pub fn set_attribute<T: Serialize + ?Sized>(&mut self, name: impl Into<String>, value: &T) {
        self.with(|a| {
            a.step
                .attributes
                .insert(name.into(), capture::to_json(value));
        });
    }
    /// Changes the step directly (for integrations in this crate).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn update(&mut self, f: impl FnOnce(&mut tracecraft_core::Step)) {
        self.with(|a| f(&mut a.step));
    }

    /// Sets token counts.
    pub fn set_tokens(&mut self, input: u64, output: u64) {
        self.with(|a| {
            a.step.input_tokens = Some(input);
            a.step.output_tokens = Some(output);
        });
    }
    /// Sets the cost in US dollars.
    pub fn set_cost_usd(&mut self, cost: f64) {
        self.with(|a| a.step.cost_usd = Some(cost));
    }
    /// Sets the model and its provider.
    pub fn set_model(&mut self, name: impl Into<String>, provider: impl Into<String>) {
        self.with(|a| {
            a.step.model_name = Some(name.into());
            a.step.model_provider = Some(provider.into());
        });
    }
    /// Appends a streamed chunk and marks the step streaming (chunks are outputs: nothing is
    /// kept when outputs are not captured).
    pub fn push_chunk(&mut self, chunk: impl Into<String>) {
        self.with(|a| {
            a.step.is_streaming = true;
            if a.capture().outputs {
                a.step.streaming_chunks.push(chunk.into());
            }
        });
    }
    /// Records `err`: its message (`Display`) and the last path segment of its type's name.
    /// An empty message still counts as an error.
    pub fn fail<E: std::fmt::Display + ?Sized>(&mut self, err: &E) {
        let message = err.to_string();
        self.fail_with(message, capture::type_name_of::<E>());
    }
    /// Records an error with an explicit message and type.
    pub fn fail_with(&mut self, message: impl Into<String>, error_type: impl Into<String>) {
        self.with(|a| {
            a.step.error = Some(message.into());
            a.step.error_type = Some(error_type.into());
        });
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
        let Some(mut a) = self.active.take() else {
            return;
        };
        if a.current {
            context::pop(a.step.id);
        }
        if !a.recorded {
            return;
        }
        // On the run's monotonic timeline, to the microsecond (the Python package's precision):
        // a step never ends after its parent or its run.
        let end = a.run.wall_time(std::time::Instant::now());
        if std::thread::panicking() {
            a.step.error = Some("panicked".to_owned());
            a.step.error_type = Some("panic".to_owned());
        } else if context::cancelling() && !a.step.has_error() {
            a.step.error = Some("cancelled".to_owned());
            a.step.error_type = Some("cancelled".to_owned());
        }
        a.step.finish_at(end);
        a.run.step_finished(a.seq, a.step);
    }
}
