//! [`TraceCraftLayer`]: turns `tracing` spans into runs and steps, so applications that already
//! use `tracing` get runs without new code.
//!
//! - A span with no parent span known to the layer becomes a **run** (or, when a TraceCraft
//!   run of the same runtime is current on the thread, a step of that run); spans below it
//!   become **steps**, attached under their nearest recorded ancestor, or under the current
//!   step when that one is deeper in the same run (a span opened inside a `#[trace_tool]`
//!   function or a step guard nests under that step).
//! - The span's name is the run's or step's name. The field `"tracecraft.type" = "llm"` (any
//!   [`StepType`] name; spelled `tracecraft.step_type` where a plain identifier is needed, as
//!   in `#[instrument(fields(tracecraft.step_type = "tool"))]`) sets the step type; without it
//!   a span with `gen_ai.request.model` is an `llm` step, any other a `workflow` step.
//! - `gen_ai.request.model`, `gen_ai.system` / `gen_ai.provider.name`,
//!   `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens` fill the model fields;
//!   `user.id` / `session.id` (or `tracecraft.user_id` / `tracecraft.session_id`) set a run's
//!   user and session.
//!   `gen_ai.response.model` (recorded late) replaces the requested model.
//! - Other fields present when the span is created become inputs (a run's input object).
//!   Fields recorded later (`span.record(..)`): `input.NAME` and `gen_ai.prompt` /
//!   `gen_ai.input.messages` become inputs, `output.NAME` and `gen_ai.completion` /
//!   `gen_ai.output.messages` outputs, the `gen_ai.usage.*` and model fields fill the step's
//!   fields, anything else an attribute. `output.NAME` fields given at creation are outputs.
//!   Capture controls apply; `#[instrument(skip(api_key))]` is the idiomatic way not to
//!   capture an argument at all.
//! - `#[instrument(ret)]`: the returned value is the output `"result"` (a string returned is
//!   kept as the string, without `Debug` quotes).
//! - `#[instrument(err)]` and any `ERROR` event mark the step (or run) failed, with the
//!   event's `error` field (else its message) as the message. The error type is the event's
//!   `error.type` field when it has one (OpenTelemetry's name), else, with `err(Debug)`, the
//!   type or variant name its `Debug` text starts with, else `"error"` (`err` alone formats
//!   the error with `Display`, which does not carry its type).
//! - Other events inside a span are step events: the GenAI events `gen_ai.system.message`,
//!   `gen_ai.user.message`, `gen_ai.assistant.message`, `gen_ai.tool.message` (the event's
//!   name, `tracing::info!(name: "gen_ai.user.message", content = ..)`, or its `event.name`
//!   field; also the older `gen_ai.content.prompt`) are appended to the input `"messages"`
//!   (`{role, content, ..}`), `gen_ai.choice` (and `gen_ai.content.completion`) events to the
//!   output `"choices"`; any other event at `INFO` or above is appended to the
//!   attribute `"tracecraft.events"` (`{level, name, message, ..fields}`). `DEBUG` and
//!   `TRACE` events are not kept.
//! - An unknown `tracecraft.type` value is recorded as `workflow`, counted in
//!   [`Runtime::stats`](crate::Runtime::stats) (`unknown_step_types`) and warned about once
//!   per runtime.
//! - Entering a span makes its step the current context, so `tracecraft::step(..)` guards
//!   inside attach under it. Closing the root span ends the run (processed and exported).
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//! # use tracecraft::{Runtime, RuntimeOptions};
//! # use tracecraft::core::testing::MemoryExporter;
//! # let sink = MemoryExporter::new();
//! # let runtime = Runtime::builder().exporter(sink.clone()).build()?;
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

impl Guard {
    fn input(&mut self, key: &str, value: &Value) {
        match self {
            Guard::Step(g) => g.input(key, value),
            Guard::Run(g) => g.add_input(key, value),
        }
    }
    fn output(&mut self, key: &str, value: &Value) {
        match self {
            Guard::Step(g) => g.output(key, value),
            Guard::Run(g) => g.add_output(key, value),
        }
    }
    fn attribute(&mut self, key: String, value: &Value) {
        match self {
            Guard::Step(g) => g.set_attribute(key, value),
            Guard::Run(g) => g.set_attribute(key, value),
        }
    }
    fn fail(&mut self, message: String, error_type: String) {
        match self {
            Guard::Step(g) => g.fail_with(message, error_type),
            Guard::Run(g) => g.fail_with(message, error_type),
        }
    }
}

/// Per-span state, in the span's extensions.
struct SpanState {
    guard: Guard,
    /// The context entry pushed while the span is entered.
    frame: Frame,
    /// GenAI message events (`gen_ai.*.message`), in order.
    messages: Vec<Value>,
    /// `gen_ai.choice` events, in order.
    choices: Vec<Value>,
    /// Other events at INFO and above.
    events: Vec<Value>,
}

impl SpanState {
    /// Writes the collected events to the guard (before it ends).
    fn flush(&mut self) {
        let messages = std::mem::take(&mut self.messages);
        if !messages.is_empty() {
            self.guard.input("messages", &Value::Array(messages));
        }
        let choices = std::mem::take(&mut self.choices);
        if !choices.is_empty() {
            self.guard.output("choices", &Value::Array(choices));
        }
        let events = std::mem::take(&mut self.events);
        if !events.is_empty() {
            self.guard
                .attribute("tracecraft.events".to_owned(), &Value::Array(events));
        }
    }
}

/// Fields of a span or an event, sorted by what they mean to a step.
#[derive(Default)]
struct Fields {
    step_type: Option<StepType>,
    /// A `tracecraft.type` value that names no step type.
    unknown_type: bool,
    model: Option<String>,
    provider: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    user_id: Option<String>,
    session_id: Option<String>,
    error: Option<String>,
    error_type: Option<String>,
    /// Whether `error` was formatted with `Debug` (`record_debug`).
    error_is_debug: bool,
    message: Option<String>,
    event_name: Option<String>,
    /// `#[instrument(ret)]`'s `return` field.
    ret: Option<Value>,
    /// `input.*`, `gen_ai.prompt`, `gen_ai.input.messages`.
    inputs: JsonMap,
    /// `output.*`, `gen_ai.completion`, `gen_ai.output.messages`.
    outputs: JsonMap,
    /// Other `gen_ai.*` fields.
    gen_ai: JsonMap,
    other: JsonMap,
}

impl Fields {
    fn set(&mut self, field: &Field, value: Value) {
        let as_string = |v: Value| match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        match field.name() {
            "tracecraft.type" | "tracecraft.step_type" => {
                self.step_type = as_string(value).parse().ok();
                self.unknown_type = self.step_type.is_none();
            }
            "gen_ai.request.model" | "gen_ai.response.model" => {
                self.model = Some(as_string(value));
            }
            "gen_ai.system" | "gen_ai.provider.name" => self.provider = Some(as_string(value)),
            "gen_ai.usage.input_tokens" => self.input_tokens = value.as_u64(),
            "gen_ai.usage.output_tokens" => self.output_tokens = value.as_u64(),
            "user.id" | "tracecraft.user_id" => self.user_id = Some(as_string(value)),
            "session.id" | "tracecraft.session_id" => self.session_id = Some(as_string(value)),
            "error" => self.error = Some(as_string(value)),
            "error.type" => self.error_type = Some(as_string(value)),
            "message" => self.message = Some(as_string(value)),
            "event.name" => self.event_name = Some(as_string(value)),
            "return" => self.ret = Some(value),
            "gen_ai.prompt" => {
                self.inputs.insert("prompt".to_owned(), value);
            }
            "gen_ai.input.messages" => {
                self.inputs.insert("messages".to_owned(), value);
            }
            "gen_ai.completion" => {
                self.outputs.insert("completion".to_owned(), value);
            }
            "gen_ai.output.messages" => {
                self.outputs.insert("messages".to_owned(), value);
            }
            name => {
                if let Some(key) = name.strip_prefix("input.") {
                    self.inputs.insert(key.to_owned(), value);
                } else if let Some(key) = name.strip_prefix("output.") {
                    self.outputs.insert(key.to_owned(), value);
                } else if name.starts_with("gen_ai.") {
                    self.gen_ai.insert(name.to_owned(), value);
                } else {
                    self.other.insert(name.to_owned(), value);
                }
            }
        }
    }

    /// The error type: `error.type`, else the type or variant name a `Debug`-formatted error
    /// starts with (`err(Debug)`), else `"error"`.
    fn error_type(&mut self) -> String {
        if let Some(t) = self.error_type.take() {
            return t;
        }
        if self.error_is_debug
            && let Some(e) = &self.error
        {
            let end = e
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(e.len());
            let (head, rest) = e.split_at(end);
            let head = head.rsplit("::").next().unwrap_or(head);
            let looks_like_type = head.chars().next().is_some_and(char::is_uppercase)
                && (rest.is_empty() || rest.starts_with(" {") || rest.starts_with('('));
            if looks_like_type {
                return head.to_owned();
            }
        }
        "error".to_owned()
    }
}

/// `Debug` text of a string (`"text"`, quoted and escaped) back to the string.
fn unquote(value: Value) -> Value {
    match &value {
        Value::String(s) if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') => {
            match serde_json::from_str::<String>(s) {
                Ok(inner) => Value::String(inner),
                Err(_) => value,
            }
        }
        _ => value,
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "error" {
            self.error_is_debug = true;
        }
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

/// The role of a GenAI message event (`gen_ai.user.message` -> `user`; the older
/// `gen_ai.content.prompt` event is a user message).
fn message_role(name: &str) -> Option<&str> {
    if name == "gen_ai.content.prompt" {
        return Some("user");
    }
    let role = name.strip_prefix("gen_ai.")?.strip_suffix(".message")?;
    matches!(role, "system" | "user" | "assistant" | "tool").then_some(role)
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
        let name = span.metadata().name();
        if fields.unknown_type {
            self.runtime.unknown_step_type(name);
        }
        // The nearest ancestor span this layer records, or the current TraceCraft context of
        // this runtime when it is deeper in the same run (a guard or a traced function
        // started inside that span), or when there is no such span.
        let from_span = span
            .scope()
            .skip(1)
            .find_map(|a| a.extensions().get::<SpanState>().map(|s| s.frame.clone()));
        let from_context = context::top(None).filter(|f| self.runtime.owns(&f.run));
        let parent = match (from_span, from_context) {
            (Some(s), Some(c)) if std::sync::Arc::ptr_eq(&s.run, &c.run) && c.depth > s.depth => {
                Some(c)
            }
            (Some(s), _) => Some(s),
            (None, c) => c,
        };
        let mut guard = match parent {
            Some(parent) => {
                let step_type = fields.step_type.unwrap_or(if fields.model.is_some() {
                    StepType::Llm
                } else {
                    StepType::Workflow
                });
                let mut b = StepGuardBuilder::new(Some(parent), step_type, name);
                for (k, v) in fields.other.iter().chain(&fields.inputs) {
                    b = b.input(k, v);
                }
                let mut guard = b.start_detached();
                set_model_fields(&mut guard, &mut fields);
                Guard::Step(Box::new(guard))
            }
            None => {
                let mut b = self.runtime.run(name);
                if let Some(u) = fields.user_id.take() {
                    b = b.user_id(u);
                }
                if let Some(s) = fields.session_id.take() {
                    b = b.session_id(s);
                }
                let mut input = std::mem::take(&mut fields.other);
                input.append(&mut fields.inputs);
                if !input.is_empty() {
                    b = b.input(&input);
                }
                Guard::Run(Box::new(b.start_detached()))
            }
        };
        for (k, v) in std::mem::take(&mut fields.outputs) {
            guard.output(&k, &v);
        }
        for (k, v) in std::mem::take(&mut fields.gen_ai) {
            guard.attribute(k, &v);
        }
        let frame = match &guard {
            Guard::Step(g) => g.context().into_frame(),
            Guard::Run(g) => g.context().into_frame(),
        };
        let Some(frame) = frame else {
            return; // inert (run ended): nothing to record
        };
        span.extensions_mut().insert(SpanState {
            guard,
            frame,
            messages: Vec::new(),
            choices: Vec::new(),
            events: Vec::new(),
        });
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
        if let Guard::Step(g) = &mut state.guard {
            set_model_fields(g, &mut fields);
        }
        for (k, v) in &fields.inputs {
            state.guard.input(k, v);
        }
        for (k, v) in &fields.outputs {
            state.guard.output(k, v);
        }
        for (k, v) in fields.gen_ai.into_iter().chain(fields.other) {
            state.guard.attribute(k, &v);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let level = *event.metadata().level();
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut ext = span.extensions_mut();
            let Some(state) = ext.get_mut::<SpanState>() else {
                continue;
            };
            let mut fields = Fields::default();
            event.record(&mut fields);
            if let Some(ret) = fields.ret.take() {
                state.guard.output("result", &unquote(ret));
                return;
            }
            if level == Level::ERROR {
                let error_type = fields.error_type();
                let message = fields.error.or(fields.message).unwrap_or_default();
                state.guard.fail(message, error_type);
                return;
            }
            let meta_name = event.metadata().name();
            let name = fields.event_name.take().or_else(|| {
                // `tracing` names unnamed events "event FILE:LINE".
                (!meta_name.starts_with("event ")).then(|| meta_name.to_owned())
            });
            let mut body = JsonMap::new();
            if let Some(m) = fields.message.take().filter(|m| !m.is_empty()) {
                body.insert("message".to_owned(), Value::String(m));
            }
            for (k, v) in fields
                .other
                .into_iter()
                .chain(fields.inputs)
                .chain(fields.outputs)
                .chain(fields.gen_ai)
            {
                body.insert(k, v);
            }
            match name.as_deref() {
                Some(n) if message_role(n).is_some() => {
                    let role = message_role(n).unwrap_or_default();
                    if !body.contains_key("content")
                        && let Some(m) = body.remove("message")
                    {
                        body.insert("content".to_owned(), m);
                    }
                    body.entry("role")
                        .or_insert_with(|| Value::String(role.to_owned()));
                    state.messages.push(Value::Object(body));
                }
                Some("gen_ai.choice" | "gen_ai.content.completion") => {
                    state.choices.push(Value::Object(body));
                }
                _ if level <= Level::INFO => {
                    let mut e = JsonMap::new();
                    e.insert("level".to_owned(), Value::String(level.to_string()));
                    if let Some(n) = name {
                        e.insert("name".to_owned(), Value::String(n));
                    }
                    e.append(&mut body);
                    state.events.push(Value::Object(e));
                }
                _ => {}
            }
            return;
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
        // Ended outside the extensions lock: ending a run runs the pipeline.
        if let Some(mut state) = state {
            state.flush();
        }
    }
}
