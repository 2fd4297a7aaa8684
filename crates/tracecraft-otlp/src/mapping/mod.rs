//! [`AgentRun`] -> OTLP spans, after the OpenTelemetry GenAI semantic conventions, with the
//! OpenInference and MLflow keys that LLM trace backends read (see [`Dialect`]).
//!
//! The mapping is written out in the crate README ("Mapping"); this module is its only
//! implementation, and [`crate::reverse`] reads everything it writes back. Everything here is
//! pure (no I/O) and never panics on any run. Content (inputs, outputs, messages, documents)
//! is exported as the pipeline left it: already redacted.

mod attrs;
pub(crate) mod content;
pub mod keys;
mod options;
mod sink;
mod spans;
mod wire;

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::Value;
use tracecraft_core::{AgentRun, ProcessedRun, Step};
use uuid::Uuid;

pub use options::{
    Content, Dialect, Dialects, MappingOptions, MappingOptionsBuilder, UnknownContent,
    UnknownDialect,
};
pub use spans::{mlflow_attribute, mlflow_span_type, openinference_kind, operation_name};
pub use wire::{EncodedRequest, RequestEncoder, encode_request, encode_requests};

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

/// `map.get(key)`: a scan of the small maps of inputs, outputs and attributes (cheaper
/// than hashing the key: most keys differ in length), a hash look-up in larger ones.
#[inline]
pub(crate) fn field<'a>(map: &'a tracecraft_core::JsonMap, key: &str) -> Option<&'a Value> {
    if map.len() <= 8 {
        map.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        map.get(key)
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

pub(crate) fn unix_nanos(t: DateTime<Utc>) -> u64 {
    t.timestamp_nanos_opt()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

pub(crate) fn end_nanos(
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    duration_ms: Option<f64>,
) -> u64 {
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

/// Too deep to serialize.
struct TooDeep;

/// Appends `v` as compact JSON (byte for byte what `serde_json` writes), failing without
/// recursing further when containers nest more than `limit` levels (a flat container is one).
fn write_json(out: &mut Vec<u8>, v: &Value, limit: usize) -> Result<(), TooDeep> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => content::push_json_str(out, s),
        Value::Array(_) | Value::Object(_) if limit == 0 => return Err(TooDeep),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item, limit - 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_json_map(out, map, limit)?,
    }
    Ok(())
}

fn write_json_map(
    out: &mut Vec<u8>,
    map: &tracecraft_core::JsonMap,
    limit: usize,
) -> Result<(), TooDeep> {
    write_json_entries(out, map.iter().map(|(k, v)| (k.as_str(), v)), limit)
}

/// A JSON object of `entries`, keys in order, values at most `limit` deep with the object.
fn write_json_entries<'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a str, &'a Value)>,
    limit: usize,
) -> Result<(), TooDeep> {
    if limit == 0 {
        return Err(TooDeep);
    }
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        content::push_json_str(out, k);
        out.push(b':');
        write_json(out, v, limit - 1)?;
    }
    out.push(b'}');
    Ok(())
}

/// The JSON text written by `write`, or the JSON string
/// [`tracecraft_core::value::TRUNCATED`] when it was too deep.
fn json_or_truncated(write: impl FnOnce(&mut Vec<u8>) -> Result<(), TooDeep>) -> String {
    let mut out = Vec::with_capacity(128);
    push_or_truncated(&mut out, write);
    // Valid UTF-8: serde_json writes only that, and keys and strings come from `String`s.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the JSON text written by `write` to `out`, or the JSON string
/// [`tracecraft_core::value::TRUNCATED`] in its place when it was too deep.
fn push_or_truncated(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> Result<(), TooDeep>) {
    let start = out.len();
    if write(out).is_err() {
        out.truncate(start);
        let _ = serde_json::to_writer(&mut *out, tracecraft_core::value::TRUNCATED);
    }
}

/// Appends [`json_text`] of `value` to `out`.
pub(crate) fn push_json_text(out: &mut Vec<u8>, value: &Value) {
    push_or_truncated(out, |out| write_json(out, value, MAX_VALUE_DEPTH));
}

/// Appends the JSON text of `map` to `out`, as [`json_text`] writes an object.
pub(crate) fn push_json_map_text(out: &mut Vec<u8>, map: &tracecraft_core::JsonMap) {
    push_or_truncated(out, |out| write_json_map(out, map, MAX_VALUE_DEPTH));
}

/// Appends the JSON object of `pairs` (keys in order) to `out`, as [`push_json_map_text`]
/// writes a map holding them.
pub(crate) fn push_json_pairs(out: &mut Vec<u8>, pairs: &[(&str, &Value)]) {
    push_or_truncated(out, |out| {
        write_json_entries(out, pairs.iter().copied(), MAX_VALUE_DEPTH)
    });
}

/// A JSON value as compact JSON text; values nested deeper than [`MAX_VALUE_DEPTH`] become
/// the JSON string [`tracecraft_core::value::TRUNCATED`] as a whole. One pass, never
/// recursing deeper than the cap.
#[must_use]
pub fn json_text(value: &Value) -> String {
    json_or_truncated(|out| write_json(out, value, MAX_VALUE_DEPTH))
}

/// Every span of one run: the run span first, then each step depth-first (pre-order). A
/// step's parent is the span of the step it is nested under, or the run span for a root
/// step. Iterative: a 10,000-level step tree is fine.
#[must_use]
pub fn run_spans(run: &AgentRun) -> Vec<Span> {
    run_spans_with(run, &MappingOptions::default())
}

/// [`run_spans`] with the given dialects and content setting.
#[must_use]
pub fn run_spans_with(run: &AgentRun, options: &MappingOptions) -> Vec<Span> {
    let mut sink = sink::TreeSink::new(Vec::with_capacity(1 + run.steps.len()));
    push_run_spans(run, options, &mut sink);
    sink.spans
}

/// Writes the spans of `run` to `out`: the run span, then each step depth-first.
fn push_run_spans<'r, S: sink::SpanSink<'r>>(
    run: &'r AgentRun,
    options: &MappingOptions,
    out: &mut S,
) {
    spans::run_span(run, options, out);
    let root_id = span_id(run.id);
    let mut stack: Vec<(&Step, [u8; 8])> = run.steps.iter().rev().map(|s| (s, root_id)).collect();
    while let Some((step, parent)) = stack.pop() {
        spans::step_span(run, step, parent, options, out);
        let me = span_id(step.id);
        stack.extend(step.children.iter().rev().map(|c| (c, me)));
    }
}

/// Steps deeper than this are not touched by [`touch_run`] (it recurses).
const TOUCH_DEPTH: usize = 16;

/// Loads the first byte of every key and string of the maps of a run's steps (and of the
/// arrays of strings and objects in them: messages), steps up to [`TOUCH_DEPTH`] levels deep,
/// for the encoder to call on the run it writes next before it writes the current one: a
/// batch does not fit in the caches, and loads made here, most of them independent of each
/// other, overlap, where writing a step would wait for each in turn (+15%-20% for
/// `map_encode` against touching each step just before the one written before it; measured
/// in docs/perf/otlp.md). Safe code: plain reads whose result is kept from being
/// optimised away.
pub(crate) fn touch_run(run: &AgentRun) {
    fn first(s: &str) -> u8 {
        s.as_bytes().first().copied().unwrap_or(0)
    }
    /// A string, or the strings of an array of strings and objects (messages).
    fn value(v: &Value) -> u8 {
        match v {
            Value::String(s) => first(s),
            Value::Array(items) => items.iter().fold(0, |acc, item| match item {
                Value::String(s) => acc ^ first(s),
                Value::Object(m) => m.iter().fold(acc, |acc, (k, v)| {
                    acc ^ first(k) ^ v.as_str().map_or(0, first)
                }),
                _ => acc,
            }),
            _ => 0,
        }
    }
    fn steps(list: &[Step], depth: usize) -> u8 {
        let mut acc = 0u8;
        for step in list {
            for map in [&step.inputs, &step.outputs, &step.attributes] {
                for (key, v) in map {
                    acc ^= first(key) ^ value(v);
                }
            }
            if depth > 0 {
                acc ^= steps(&step.children, depth - 1);
            }
        }
        acc
    }
    std::hint::black_box(steps(&run.steps, TOUCH_DEPTH));
}

/// What a run's resource is made of: `service.name`, `deployment.environment.name`, and the
/// resource attributes it was received with ([`keys::RESOURCE`]).
pub(crate) type ResourceKey = (String, String, Option<tracecraft_core::JsonMap>);

/// The resource a run's spans belong to. `service.name` is the run's `service.name`
/// attribute when it is a string (the runtime records it there), else the one it was
/// received with, else the configured one, else [`UNKNOWN_SERVICE`].
fn resource_key(run: &AgentRun, options: &MappingOptions) -> ResourceKey {
    let received = field(&run.attributes, keys::RESOURCE).and_then(Value::as_object);
    let service = field(&run.attributes, "service.name")
        .and_then(Value::as_str)
        .or_else(|| field(received?, "service.name")?.as_str())
        .or(options.service_name.as_deref())
        .or(options
            .resource_attributes
            .get("service.name")
            .map(String::as_str))
        .unwrap_or(UNKNOWN_SERVICE);
    (
        service.to_owned(),
        run.environment.clone(),
        received.filter(|m| !m.is_empty()).cloned(),
    )
}

/// The OTLP resource for a `(service.name, environment)` pair, with the configured extra
/// resource attributes after the SDK's own (which they cannot replace).
#[must_use]
pub fn resource(service_name: &str, environment: &str, options: &MappingOptions) -> Resource {
    resource_with(service_name, environment, None, options)
}

/// The resource attributes TraceCraft sets itself (nothing else replaces them).
pub(crate) const OWN_RESOURCE_KEYS: [&str; 5] = [
    "service.name",
    "deployment.environment.name",
    "telemetry.sdk.name",
    "telemetry.sdk.language",
    "telemetry.sdk.version",
];

/// [`resource`], then the attributes a run was received with (keys not set before).
pub(crate) fn resource_with(
    service_name: &str,
    environment: &str,
    received: Option<&tracecraft_core::JsonMap>,
    options: &MappingOptions,
) -> Resource {
    const OWN: [&str; 5] = OWN_RESOURCE_KEYS;
    let mut a = attrs::Attrs::with_capacity(OWN.len() + options.resource_attributes.len());
    for (key, value) in
        OWN.into_iter()
            .zip([service_name, environment, SCOPE_NAME, "rust", SDK_VERSION])
    {
        a.str(key, value);
    }
    for (key, value) in &options.resource_attributes {
        if !OWN.contains(&key.as_str()) {
            a.str(key, value);
        }
    }
    for (key, value) in received.into_iter().flatten() {
        if !OWN.contains(&key.as_str()) && !options.resource_attributes.contains_key(key) {
            a.put(key, any_value(value));
        }
    }
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
    pub(crate) groups: Vec<(ResourceKey, Vec<Span>)>,
}

pub(crate) fn group(batch: &[ProcessedRun], options: &MappingOptions) -> Grouped {
    let mut groups: Vec<(ResourceKey, Vec<Span>)> = Vec::new();
    // Every span of the batch, so that the (usually single) group is allocated once.
    let total: usize = batch.iter().map(|r| 1 + r.run().step_count()).sum();
    for run in batch {
        let run = run.run();
        let key = resource_key(run, options);
        let i = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let capacity = if groups.is_empty() { total } else { 0 };
                groups.push((key, Vec::with_capacity(capacity)));
                groups.len() - 1
            }
        };
        let mut sink = sink::TreeSink::new(std::mem::take(&mut groups[i].1));
        push_run_spans(run, options, &mut sink);
        groups[i].1 = sink.spans;
    }
    Grouped { groups }
}

/// Builds a request from resource groups.
pub(crate) fn request_of(
    groups: Vec<(ResourceKey, Vec<Span>)>,
    options: &MappingOptions,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|((service, env, received), spans)| ResourceSpans {
                resource: Some(resource_with(&service, &env, received.as_ref(), options)),
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
    request_of(group(batch, options).groups, options)
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
    let mut current: Vec<(ResourceKey, Vec<Span>)> = Vec::new();
    let mut current_bytes = 0usize;
    for (key, spans) in grouped.groups {
        let overhead =
            request_of(vec![(key.clone(), vec![Span::default()])], options).encoded_len();
        for span in spans {
            // Field tag + length prefix of the span inside ScopeSpans: at most 11 bytes.
            let size = span.encoded_len() + 11;
            let needs_group = current.last().is_none_or(|(k, _)| *k != key);
            let add = size + if needs_group { overhead } else { 0 };
            if current_bytes > 0 && current_bytes + add > max_bytes {
                requests.push(request_of(std::mem::take(&mut current), options));
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
        requests.push(request_of(current, options));
    }
    requests
}
