//! [`AgentRun`] -> OTLP spans, following the OpenTelemetry GenAI semantic conventions.
//!
//! The mapping is written out in the crate README ("Mapping"); this module is its only
//! implementation. Everything here is pure (no I/O) and never panics on any run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::Value;
use tracecraft_core::{AgentRun, ProcessedRun, Step, StepType};
use uuid::Uuid;

/// The instrumentation scope (and `telemetry.sdk.name`) of every span TraceCraft exports.
pub const SCOPE_NAME: &str = "tracecraft";

/// This crate's version: the scope version and `telemetry.sdk.version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// JSON values nested deeper than this become the string [`tracecraft_core::value::TRUNCATED`]
/// (the pipeline already caps depth at 32; this is the exporter's own guard).
pub const MAX_VALUE_DEPTH: usize = 32;

/// The `service.name` used when neither the exporter nor the run names a service (the
/// OpenTelemetry default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Settings of the mapping that do not come from the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingOptions {
    /// The resource's `service.name` for runs without a `service.name` attribute
    /// (default [`UNKNOWN_SERVICE`]).
    pub service_name: Option<String>,
}

/// The GenAI operation a step type stands for (`gen_ai.operation.name`), where the
/// conventions have one.
#[must_use]
pub fn operation_name(step_type: StepType) -> Option<&'static str> {
    match step_type {
        StepType::Agent => Some("invoke_agent"),
        StepType::Llm => Some("chat"),
        StepType::Tool => Some("execute_tool"),
        _ => None,
    }
}

/// The span id of a run or step id: its first 8 bytes. An all-zero result (invalid in OTLP)
/// uses the last 8 bytes instead, and if those are zero too, `00..01`.
#[must_use]
pub fn span_id(id: Uuid) -> [u8; 8] {
    let b = id.as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&b[..8]);
    if first != [0; 8] {
        return first;
    }
    let mut last = [0u8; 8];
    last.copy_from_slice(&b[8..]);
    if last != [0; 8] {
        return last;
    }
    [0, 0, 0, 0, 0, 0, 0, 1]
}

/// The trace id of a run: its UUID's 16 bytes (the nil UUID, invalid in OTLP, becomes
/// `00..01`).
#[must_use]
pub fn trace_id(id: Uuid) -> [u8; 16] {
    if id.is_nil() {
        let mut t = [0u8; 16];
        t[15] = 1;
        return t;
    }
    *id.as_bytes()
}

fn unix_nanos(t: DateTime<Utc>) -> u64 {
    t.timestamp_nanos_opt()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

fn end_nanos(start: DateTime<Utc>, end: Option<DateTime<Utc>>, duration_ms: Option<f64>) -> u64 {
    let start_ns = unix_nanos(start);
    let end_ns = match (end, duration_ms) {
        (Some(end), _) => unix_nanos(end),
        (None, Some(ms)) if ms.is_finite() && ms > 0.0 => {
            start_ns.saturating_add((ms * 1_000_000.0).min(u64::MAX as f64) as u64)
        }
        _ => start_ns,
    };
    end_ns.max(start_ns)
}

/// A JSON value as an OTLP `AnyValue`: strings, integers (u64 above `i64::MAX` become
/// doubles), doubles, booleans, arrays and key-value lists; `null` is an empty `AnyValue`.
/// Arrays and objects nested deeper than [`MAX_VALUE_DEPTH`] become the string
/// [`tracecraft_core::value::TRUNCATED`]. Never recurses deeper than that.
#[must_use]
pub fn any_value(value: &Value) -> AnyValue {
    any_value_at(value, 1)
}

fn any_value_at(value: &Value, depth: usize) -> AnyValue {
    use any_value::Value as V;
    let v = match value {
        Value::Null => None,
        Value::Bool(b) => Some(V::BoolValue(*b)),
        Value::Number(n) => Some(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => V::IntValue(i),
            (None, Some(f)) => V::DoubleValue(f),
            (None, None) => V::StringValue(n.to_string()),
        }),
        Value::String(s) => Some(V::StringValue(s.clone())),
        Value::Array(_) | Value::Object(_) if depth > MAX_VALUE_DEPTH => {
            Some(V::StringValue(tracecraft_core::value::TRUNCATED.to_owned()))
        }
        Value::Array(items) => Some(V::ArrayValue(ArrayValue {
            values: items.iter().map(|i| any_value_at(i, depth + 1)).collect(),
        })),
        Value::Object(map) => Some(V::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(any_value_at(v, depth + 1)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value: v }
}

/// The nesting depth of a JSON value (scalars are 1), computed without recursion and without
/// looking further than `limit + 1` levels.
fn depth_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                if d > limit {
                    return true;
                }
                stack.extend(items.iter().map(|c| (c, d + 1)));
            }
            Value::Object(map) => {
                if d > limit {
                    return true;
                }
                stack.extend(map.values().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    false
}

/// A JSON value as compact JSON text; values nested deeper than [`MAX_VALUE_DEPTH`] become
/// the JSON string [`tracecraft_core::value::TRUNCATED`] as a whole (serializing them would
/// recurse once per level).
#[must_use]
pub fn json_text(value: &Value) -> String {
    if depth_exceeds(value, MAX_VALUE_DEPTH) {
        return Value::String(tracecraft_core::value::TRUNCATED.to_owned()).to_string();
    }
    value.to_string()
}

fn json_map_text(map: &tracecraft_core::JsonMap) -> String {
    if map.values().any(|v| depth_exceeds(v, MAX_VALUE_DEPTH - 1)) {
        return Value::String(tracecraft_core::value::TRUNCATED.to_owned()).to_string();
    }
    serde_json::to_string(map).unwrap_or_default()
}

/// Attributes in insertion order; a later value for the same key replaces the earlier one in
/// place.
#[derive(Default)]
struct Attrs {
    list: Vec<KeyValue>,
    index: HashMap<String, usize>,
}

impl Attrs {
    fn put(&mut self, key: &str, value: AnyValue) {
        if let Some(&i) = self.index.get(key) {
            self.list[i].value = Some(value);
        } else {
            self.index.insert(key.to_owned(), self.list.len());
            self.list.push(KeyValue {
                key: key.to_owned(),
                value: Some(value),
                ..Default::default()
            });
        }
    }
    fn str(&mut self, key: &str, value: &str) {
        self.put(key, string_value(value));
    }
    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }
    fn int(&mut self, key: &str, value: u64) {
        let v = match i64::try_from(value) {
            Ok(i) => any_value::Value::IntValue(i),
            Err(_) => any_value::Value::DoubleValue(value as f64),
        };
        self.put(key, AnyValue { value: Some(v) });
    }
    fn double(&mut self, key: &str, value: f64) {
        self.put(
            key,
            AnyValue {
                value: Some(any_value::Value::DoubleValue(value)),
            },
        );
    }
    fn bool(&mut self, key: &str, value: bool) {
        self.put(
            key,
            AnyValue {
                value: Some(any_value::Value::BoolValue(value)),
            },
        );
    }
    fn strings(&mut self, key: &str, values: &[String]) {
        self.put(
            key,
            AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: values.iter().map(|s| string_value(s)).collect(),
                })),
            },
        );
    }
    /// Free-form attributes: they may override derived GenAI keys (a step that knows it is an
    /// `embeddings` call says so), but never the `tracecraft.*` keys this mapping owns.
    fn user(&mut self, attributes: &tracecraft_core::JsonMap) {
        for (k, v) in attributes {
            if k.starts_with("tracecraft.") && self.index.contains_key(k.as_str()) {
                continue;
            }
            self.put(k, any_value(v));
        }
    }
}

fn string_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

fn status(error: Option<&str>, error_type: Option<&str>) -> Option<Status> {
    if error.is_none() && error_type.is_none() {
        return None;
    }
    let message = match (error, error_type) {
        (Some(m), _) if !m.is_empty() => m.to_owned(),
        (_, Some(t)) => t.to_owned(),
        _ => String::new(),
    };
    Some(Status {
        message,
        code: StatusCode::Error as i32,
    })
}

/// The span of the run itself.
fn run_span(run: &AgentRun) -> Span {
    let mut a = Attrs::default();
    a.str("gen_ai.operation.name", "invoke_agent");
    a.opt_str("gen_ai.agent.name", run.agent_name.as_deref());
    a.opt_str("gen_ai.agent.id", run.agent_id.as_deref());
    a.opt_str("gen_ai.agent.description", run.agent_description.as_deref());
    a.opt_str("session.id", run.session_id.as_deref());
    a.opt_str("user.id", run.user_id.as_deref());
    a.opt_str("cloud.provider", run.cloud_provider.as_deref());
    a.opt_str("error.type", run.error_type.as_deref());
    a.user(&run.attributes);
    a.str("tracecraft.span.type", "run");
    a.str("tracecraft.run.id", &run.id.hyphenated().to_string());
    a.str("tracecraft.run.name", &run.name);
    a.opt_str("tracecraft.run.description", run.description.as_deref());
    a.str("tracecraft.environment", &run.environment);
    if !run.tags.is_empty() {
        a.strings("tracecraft.tags", &run.tags);
    }
    a.opt_str("tracecraft.cloud_trace_id", run.cloud_trace_id.as_deref());
    if !run.input.is_null() {
        a.str("tracecraft.input", &json_text(&run.input));
    }
    if !run.output.is_null() {
        a.str("tracecraft.output", &json_text(&run.output));
    }
    a.int("tracecraft.total_tokens", run.total_tokens);
    a.double("tracecraft.total_cost_usd", run.total_cost_usd);
    a.int("tracecraft.error_count", run.error_count);
    a.opt_str("tracecraft.sample_reason", run.sample_reason.as_deref());
    Span {
        trace_id: trace_id(run.id).to_vec(),
        span_id: span_id(run.id).to_vec(),
        name: run.name.clone(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: unix_nanos(run.start_time),
        end_time_unix_nano: end_nanos(run.start_time, run.end_time, run.duration_ms),
        attributes: a.list,
        status: status(run.error.as_deref(), run.error_type.as_deref()),
        ..Default::default()
    }
}

fn step_span(run: &AgentRun, step: &Step, parent: [u8; 8]) -> Span {
    let mut a = Attrs::default();
    if let Some(op) = operation_name(step.step_type) {
        a.str("gen_ai.operation.name", op);
    }
    match step.step_type {
        StepType::Tool => a.str("gen_ai.tool.name", &step.name),
        StepType::Agent => {
            a.str(
                "gen_ai.agent.name",
                run.agent_name.as_deref().unwrap_or(&step.name),
            );
        }
        _ => {}
    }
    a.opt_str("gen_ai.provider.name", step.model_provider.as_deref());
    a.opt_str("gen_ai.request.model", step.model_name.as_deref());
    if let Some(n) = step.input_tokens {
        a.int("gen_ai.usage.input_tokens", n);
    }
    if let Some(n) = step.output_tokens {
        a.int("gen_ai.usage.output_tokens", n);
    }
    a.opt_str("error.type", step.error_type.as_deref());
    a.user(&step.attributes);
    a.str("tracecraft.span.type", "step");
    a.str("tracecraft.step.type", step.step_type.as_str());
    a.str("tracecraft.step.id", &step.id.hyphenated().to_string());
    if let Some(c) = step.cost_usd {
        a.double("tracecraft.cost_usd", c);
    }
    if step.is_streaming {
        a.bool("tracecraft.streaming", true);
        a.int(
            "tracecraft.streaming.chunk_count",
            step.streaming_chunks.len() as u64,
        );
        if !step.streaming_chunks.is_empty() {
            a.strings("tracecraft.streaming.chunks", &step.streaming_chunks);
        }
    }
    if !step.inputs.is_empty() {
        a.str("tracecraft.inputs", &json_map_text(&step.inputs));
    }
    if !step.outputs.is_empty() {
        a.str("tracecraft.outputs", &json_map_text(&step.outputs));
    }
    let kind = if step.step_type == StepType::Llm {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    Span {
        trace_id: trace_id(run.id).to_vec(),
        span_id: span_id(step.id).to_vec(),
        parent_span_id: parent.to_vec(),
        name: step.name.clone(),
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(step.start_time),
        end_time_unix_nano: end_nanos(step.start_time, step.end_time, step.duration_ms),
        attributes: a.list,
        status: status(step.error.as_deref(), step.error_type.as_deref()),
        ..Default::default()
    }
}

/// Every span of one run: the run span first, then each step depth-first (pre-order). A
/// step's parent is the span of the step it is nested under, or the run span for a root
/// step. Iterative: a 10,000-level step tree is fine.
#[must_use]
pub fn run_spans(run: &AgentRun) -> Vec<Span> {
    let root = run_span(run);
    let root_id = span_id(run.id);
    let mut spans = Vec::with_capacity(1 + run.steps.len());
    spans.push(root);
    let mut stack: Vec<(&Step, [u8; 8])> = run.steps.iter().rev().map(|s| (s, root_id)).collect();
    while let Some((step, parent)) = stack.pop() {
        spans.push(step_span(run, step, parent));
        let me = span_id(step.id);
        stack.extend(step.children.iter().rev().map(|c| (c, me)));
    }
    spans
}

/// The resource a run's spans belong to: `(service.name, deployment.environment.name)`.
/// `service.name` is the run's `service.name` attribute when it is a string (the runtime
/// records it there), else the configured one, else [`UNKNOWN_SERVICE`].
fn resource_key(run: &AgentRun, options: &MappingOptions) -> (String, String) {
    let service = run
        .attributes
        .get("service.name")
        .and_then(Value::as_str)
        .or(options.service_name.as_deref())
        .unwrap_or(UNKNOWN_SERVICE);
    (service.to_owned(), run.environment.clone())
}

/// The OTLP resource for a `(service.name, environment)` pair.
#[must_use]
pub fn resource(service_name: &str, environment: &str) -> Resource {
    let mut a = Attrs::default();
    a.str("service.name", service_name);
    a.str("deployment.environment.name", environment);
    a.str("telemetry.sdk.name", SCOPE_NAME);
    a.str("telemetry.sdk.language", "rust");
    a.str("telemetry.sdk.version", SDK_VERSION);
    Resource {
        attributes: a.list,
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: SDK_VERSION.to_owned(),
        ..Default::default()
    }
}

/// Spans grouped by resource, in the order their resources first appear.
pub(crate) struct Grouped {
    pub(crate) groups: Vec<((String, String), Vec<Span>)>,
}

pub(crate) fn group(batch: &[ProcessedRun], options: &MappingOptions) -> Grouped {
    let mut groups: Vec<((String, String), Vec<Span>)> = Vec::new();
    for run in batch {
        let run = run.run();
        let key = resource_key(run, options);
        let spans = run_spans(run);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => existing.extend(spans),
            None => groups.push((key, spans)),
        }
    }
    Grouped { groups }
}

/// Builds a request from resource groups.
pub(crate) fn request_of(groups: Vec<((String, String), Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|((service, env), spans)| ResourceSpans {
                resource: Some(resource(&service, &env)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// One OTLP request holding every span of `batch`: one `ResourceSpans` per
/// `(service.name, deployment.environment.name)`, each with one `ScopeSpans` (scope
/// `tracecraft`).
#[must_use]
pub fn to_request(batch: &[ProcessedRun], options: &MappingOptions) -> ExportTraceServiceRequest {
    request_of(group(batch, options).groups)
}

/// Splits `batch` into requests whose encoded size stays at or under `max_bytes` where
/// possible: spans are packed greedily in order; a single span larger than `max_bytes` goes
/// alone in its own request. Spans of one run may land in different requests (OTLP allows
/// that: the trace id ties them together).
#[must_use]
pub fn to_requests(
    batch: &[ProcessedRun],
    options: &MappingOptions,
    max_bytes: usize,
) -> Vec<ExportTraceServiceRequest> {
    use prost::Message;
    let grouped = group(batch, options);
    // Per-resource overhead (resource + scope + framing), measured once per group.
    let mut requests = Vec::new();
    let mut current: Vec<((String, String), Vec<Span>)> = Vec::new();
    let mut current_bytes = 0usize;
    for (key, spans) in grouped.groups {
        let overhead = request_of(vec![(key.clone(), vec![Span::default()])]).encoded_len();
        for span in spans {
            // Field tag + length prefix of the span inside ScopeSpans: at most 11 bytes.
            let size = span.encoded_len() + 11;
            let needs_group = current.last().is_none_or(|(k, _)| *k != key);
            let add = size + if needs_group { overhead } else { 0 };
            if current_bytes > 0 && current_bytes + add > max_bytes {
                requests.push(request_of(std::mem::take(&mut current)));
                current_bytes = 0;
            }
            let needs_group = current.last().is_none_or(|(k, _)| *k != key);
            if needs_group {
                current.push((key.clone(), Vec::new()));
                current_bytes += overhead;
            }
            current_bytes += size;
            if let Some((_, list)) = current.last_mut() {
                list.push(span);
            }
        }
    }
    if !current.is_empty() {
        requests.push(request_of(current));
    }
    requests
}
