//! [`TraceCraftLayer`]: turns `tracing` spans into runs and steps, so applications that already
//! use `tracing` get runs without new code.
//!
//! - A span with no parent span known to the layer becomes a **run** (or, when a TraceCraft
//!   run of the same runtime is current on the thread, a step of that run); spans below it
//!   become **steps**, attached under their nearest recorded ancestor.
//! - The span's name is the run's or step's name. The field `"tracecraft.type" = "llm"` (any
//!   [`StepType`] name; spelled `tracecraft.step_type` where a plain identifier is needed, as
//!   in `#[instrument(fields(tracecraft.step_type = "tool"))]`) sets the step type; without it
//!   a span with `gen_ai.request.model` is an `llm` step, any other a `workflow` step.
//! - `gen_ai.request.model`, `gen_ai.system` / `gen_ai.provider.name`,
//!   `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens` fill the model fields;
//!   `user.id` / `session.id` (or `tracecraft.user_id` / `tracecraft.session_id`) set a run's
//!   user and session.
//! - Other fields present when the span is created become inputs (a run's input object);
//!   fields recorded later (`span.record(..)`) become attributes. Capture controls apply;
//!   `#[instrument(skip(api_key))]` is the idiomatic way not to capture an argument at all.
//! - An `ERROR`-level event inside a span marks that step (or run) failed, with the event's
//!   `error` field (else its message) as the message and `"error"` as the type.
//! - Entering a span makes its step the current context, so `tracecraft::step(..)` guards
//!   inside attach under it. Closing the root span ends the run (processed and exported).
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//! # use tracecraft::{Runtime, RuntimeOptions};
//! # use tracecraft::core::testing::MemoryExporter;
//! # let sink = MemoryExporter::new();
//! # let pipeline = tracecraft::pipeline::Pipeline::builder().without_redaction().exporter(sink.clone()).build()?;
//! # let runtime = Runtime::from_pipeline(RuntimeOptions::default(), pipeline);
//! let subscriber = tracing_subscriber::registry().with(tracecraft::layer::TraceCraftLayer::new(runtime));
//! tracing::subscriber::with_default(subscriber, || {
//!     let _agent = tracing::info_span!("agent", question = "hi").entered();
//!     let _llm = tracing::info_span!("chat", "tracecraft.type" = "llm", gen_ai.request.model = "gpt-4o").entered();
//! });
//! assert_eq!(sink.runs()[0].steps[0].model_name.as_deref(), Some("gpt-4o"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde_json::Value;
use tracecraft_core::{JsonMap, StepType};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::context::{self, Frame};
use crate::runtime::{RunGuard, Runtime};
use crate::step::{StepGuard, StepGuardBuilder};

/// A [`tracing_subscriber::Layer`] that records spans as TraceCraft runs and steps; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct TraceCraftLayer {
    runtime: Runtime,
}

impl TraceCraftLayer {
    /// A layer that records into `runtime`'s runs. The layer does not keep the runtime from
    /// shutting down when the handle [`crate::init`] returned is dropped (a global subscriber
    /// is never dropped itself).
    #[must_use]
    pub fn new(runtime: Runtime) -> Self {
        TraceCraftLayer {
            runtime: runtime.non_owning(),
        }
    }
}

enum Guard {
    Run(Box<RunGuard>),
    Step(Box<StepGuard>),
}

/// Per-span state, in the span's extensions.
struct SpanState {
    guard: Guard,
    /// The context entry pushed while the span is entered.
    frame: Frame,
}

#[derive(Default)]
struct Fields {
    step_type: Option<StepType>,
    model: Option<String>,
    provider: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    user_id: Option<String>,
    session_id: Option<String>,
    error: Option<String>,
    message: Option<String>,
    other: JsonMap,
}

impl Fields {
    fn set(&mut self, field: &Field, value: Value) {
        let as_string = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match field.name() {
            "tracecraft.type" | "tracecraft.step_type" => {
                self.step_type = as_string(&value).parse().ok()
            }
            "gen_ai.request.model" => self.model = Some(as_string(&value)),
            "gen_ai.system" | "gen_ai.provider.name" => self.provider = Some(as_string(&value)),
            "gen_ai.usage.input_tokens" => self.input_tokens = value.as_u64(),
            "gen_ai.usage.output_tokens" => self.output_tokens = value.as_u64(),
            "user.id" | "tracecraft.user_id" => self.user_id = Some(as_string(&value)),
            "session.id" | "tracecraft.session_id" => self.session_id = Some(as_string(&value)),
            "error" => self.error = Some(as_string(&value)),
            "message" => self.message = Some(as_string(&value)),
            name => {
                self.other.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, Value::String(value.to_string()));
    }
}

/// Copies the `gen_ai.*` model fields that were recorded to the step.
fn set_model_fields(g: &mut StepGuard, fields: &mut Fields) {
    if let Some(m) = fields.model.take() {
        g.set_model_name(&m);
    }
    if let Some(p) = fields.provider.take() {
        g.set_model_provider(&p);
    }
    if let Some(n) = fields.input_tokens {
        g.set_input_tokens(n);
    }
    if let Some(n) = fields.output_tokens {
        g.set_output_tokens(n);
    }
}

impl<S> tracing_subscriber::Layer<S> for TraceCraftLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        // The nearest ancestor this layer records, else the current TraceCraft context of
        // this runtime.
        let parent = span
            .scope()
            .skip(1)
            .find_map(|a| a.extensions().get::<SpanState>().map(|s| s.frame.clone()))
            .or_else(|| {
                context::top(None)
                    .filter(|f| std::sync::Arc::ptr_eq(&f.run.runtime.inner, &self.runtime.inner))
            });
        let name = span.metadata().name();
        let state = match parent {
            Some(parent) => {
                let step_type = fields.step_type.unwrap_or(if fields.model.is_some() {
                    StepType::Llm
                } else {
                    StepType::Workflow
                });
                let mut b = StepGuardBuilder::new(Some(parent), step_type, name);
                for (k, v) in &fields.other {
                    b = b.input(k.clone(), v);
                }
                let mut guard = b.start_detached();
                set_model_fields(&mut guard, &mut fields);
                let Some(frame) = guard.context().into_frame() else {
                    return; // inert (run ended): nothing to record
                };
                SpanState {
                    guard: Guard::Step(Box::new(guard)),
                    frame,
                }
            }
            None => {
                let mut b = self.runtime.run(name);
                if let Some(u) = fields.user_id {
                    b = b.user_id(u);
                }
                if let Some(s) = fields.session_id {
                    b = b.session_id(s);
                }
                if !fields.other.is_empty() {
                    b = b.input(&fields.other);
                }
                let guard = b.start_detached();
                let Some(frame) = guard.context().into_frame() else {
                    return;
                };
                SpanState {
                    guard: Guard::Run(Box::new(guard)),
                    frame,
                }
            }
        };
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        let Some(state) = ext.get_mut::<SpanState>() else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        match &mut state.guard {
            Guard::Step(g) => {
                set_model_fields(g, &mut fields);
                for (k, v) in fields.other {
                    g.set_attribute(k, &v);
                }
            }
            Guard::Run(g) => {
                for (k, v) in fields.other {
                    g.set_attribute(k, &v);
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut ext = span.extensions_mut();
            if let Some(state) = ext.get_mut::<SpanState>() {
                let mut fields = Fields::default();
                event.record(&mut fields);
                let message = fields.error.or(fields.message).unwrap_or_default();
                match &mut state.guard {
                    Guard::Step(g) => g.fail_with(message, "error"),
                    Guard::Run(g) => g.fail_with(message, "error"),
                }
                return;
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let frame = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<SpanState>().map(|st| st.frame.clone()));
        if let Some(frame) = frame {
            context::push(frame);
        }
    }

    fn on_exit(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let key = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<SpanState>().map(|st| st.frame.key));
        if let Some(key) = key {
            context::pop(key);
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let state = ctx
            .span(&id)
            .and_then(|s| s.extensions_mut().remove::<SpanState>());
        // Dropped outside the extensions lock: ending a run runs the pipeline.
        drop(state);
    }
}
