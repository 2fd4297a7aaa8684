//! OTLP spans -> [`AgentRun`]s: the reverse of [`crate::mapping`], tolerant of spans from any
//! OpenTelemetry SDK.
//!
//! **Guarantee:** for every run `r` the mapping exports with content and at least one of the
//! GenAI or OpenInference dialects, `runs_from_resource_spans(export(r))` gives back `r`'s
//! ids, names, step types, tree, times, models, tokens, costs, errors, content, tags,
//! session, user and free-form attributes (JSON numbers come back as OTLP typed them: a
//! `u64` above `i64::MAX` as a float). Spans from other SDKs become runs too: one run per
//! trace id, each span a step. Never panics on any input; a span delivered twice (at-least-once
//! delivery) counts once. A span's links become the [`LINKS`](crate::mapping::keys::LINKS)
//! attribute of its run or step, and the trace's resource attributes (other than those
//! TraceCraft sets itself) the run's [`RESOURCE`](crate::mapping::keys::RESOURCE) attribute:
//! the mapping exports both again as links and resource attributes.
//!
//! A span's step type is read from `tracecraft.step.type`, else `openinference.span.kind`,
//! else `gen_ai.operation.name`, else its span kind and name.
//!
//! ```
//! use tracecraft_core::{AgentRun, ProcessedRun, Step, StepType};
//! use tracecraft_otlp::mapping::{self, MappingOptions};
//! use tracecraft_otlp::reverse;
//!
//! let mut run = AgentRun::builder("support").session_id("s-1").build();
//! run.push_step(Step::builder(run.id, StepType::Llm, "openai.chat").model("gpt-4o", "openai").build());
//! # #[allow(clippy::disallowed_methods)]
//! let request = mapping::to_request(&[ProcessedRun::assume_processed(run.clone())], &MappingOptions::default());
//! let runs = reverse::runs_from_resource_spans(&request.resource_spans);
//! assert_eq!(runs[0].id, run.id);
//! assert_eq!(runs[0].steps[0].model_name.as_deref(), Some("gpt-4o"));
//! ```

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use serde_json::{Map, Value};
use tracecraft_core::model::duration_ms;
use tracecraft_core::{AgentRun, JsonMap, Step, StepType};
use uuid::Uuid;

use crate::mapping::content::parse_genai_messages;
use crate::mapping::keys as k;

/// The runs in an OTLP request; see [`runs_from_resource_spans`].
#[must_use]
pub fn runs_from_request(request: &ExportTraceServiceRequest) -> Vec<AgentRun> {
    runs_from_resource_spans(&request.resource_spans)
}

/// The runs in these resource spans: one per trace id, in the order traces first appear.
/// Spans of one trace may come in several `ResourceSpans` (or several requests: merge their
/// resource spans first).
#[must_use]
pub fn runs_from_resource_spans(resource_spans: &[ResourceSpans]) -> Vec<AgentRun> {
    let mut traces: Vec<Trace<'_>> = Vec::new();
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    for rs in resource_spans {
        let resource = rs.resource.as_ref();
        let environment =
            resource.and_then(|r| str_attr(&r.attributes, "deployment.environment.name"));
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let i = *index.entry(span.trace_id.as_slice()).or_insert_with(|| {
                    traces.push(Trace {
                        trace_id: &span.trace_id,
                        environment,
                        resource,
                        spans: Vec::new(),
                        seen: HashMap::new(),
                    });
                    traces.len() - 1
                });
                let t = &mut traces[i];
                // At-least-once delivery: the same span twice is one span.
                if t.seen
                    .insert(span.span_id.as_slice(), t.spans.len())
                    .is_none()
                {
                    t.spans.push(span);
                }
            }
        }
    }
    traces.into_iter().map(Trace::into_run).collect()
}

struct Trace<'a> {
    trace_id: &'a [u8],
    environment: Option<&'a str>,
    resource: Option<&'a Resource>,
    spans: Vec<&'a Span>,
    seen: HashMap<&'a [u8], usize>,
}

fn uuid_of_trace(trace_id: &[u8]) -> Uuid {
    let mut b = [0u8; 16];
    let n = trace_id.len().min(16);
    b[..n].copy_from_slice(&trace_id[..n]);
    Uuid::from_bytes(b)
}

impl Trace<'_> {
    fn into_run(self) -> AgentRun {
        let run_span = self
            .spans
            .iter()
            .position(|s| str_attr(&s.attributes, k::SPAN_TYPE) == Some("run"));
        let ours = run_span.is_some();
        let mut run = match run_span {
            Some(i) => run_of(self.spans[i], self.trace_id),
            None => synthesized_run(&self.spans, self.trace_id),
        };
        if let Some(env) = self.environment
            && (!ours || run.environment.is_empty())
        {
            env.clone_into(&mut run.environment);
        }
        // Another SDK's service name becomes the run's `service.name` attribute (where the
        // runtime records it, and where the mapping reads it back); the resource attributes
        // TraceCraft does not set itself are kept, and exported again as the run's resource.
        if !ours
            && let Some(service) = self
                .resource
                .and_then(|r| str_attr(&r.attributes, "service.name"))
        {
            run.attributes
                .entry("service.name")
                .or_insert_with(|| Value::String(service.to_owned()));
        }
        let received: JsonMap = self
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .filter(|kv| !crate::mapping::OWN_RESOURCE_KEYS.contains(&kv.key.as_str()))
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map_or(Value::Null, json_value),
                )
            })
            .collect();
        if !received.is_empty() {
            run.attributes
                .insert(k::RESOURCE.to_owned(), Value::Object(received));
        }
        let run_span_id = run_span.map(|i| self.spans[i].span_id.as_slice());
        let nodes: Vec<&Span> = self
            .spans
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != run_span)
            .map(|(_, s)| *s)
            .collect();
        let by_id: HashMap<&[u8], usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id.as_slice(), i))
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut roots = Vec::new();
        for (i, s) in nodes.iter().enumerate() {
            match by_id.get(s.parent_span_id.as_slice()) {
                Some(&p) if p != i && Some(s.parent_span_id.as_slice()) != run_span_id => {
                    children[p].push(i);
                }
                _ => roots.push(i),
            }
        }
        if !ours {
            let start = |i: &usize| nodes[*i].start_time_unix_nano;
            roots.sort_by_key(start);
            for c in &mut children {
                c.sort_by_key(start);
            }
        }
        // Pre-order from the roots, keeping the tree edges taken; spans in a parent cycle are
        // never reached from a root and the first of each becomes a root itself.
        let mut order = Vec::with_capacity(nodes.len());
        let mut reached = vec![false; nodes.len()];
        let mut tree: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut stack: Vec<(usize, Option<usize>)> =
            roots.iter().rev().map(|&r| (r, None)).collect();
        let mut extra_roots = Vec::new();
        loop {
            while let Some((i, parent)) = stack.pop() {
                if std::mem::replace(&mut reached[i], true) {
                    continue;
                }
                if let Some(p) = parent {
                    tree[p].push(i);
                }
                order.push(i);
                stack.extend(children[i].iter().rev().map(|&c| (c, Some(i))));
            }
            match reached.iter().position(|r| !r) {
                Some(i) => {
                    extra_roots.push(i);
                    stack.push((i, None));
                }
                None => break,
            }
        }
        let mut steps: Vec<Option<Step>> = nodes
            .iter()
            .map(|s| Some(step_of(s, run.id, self.trace_id, ours)))
            .collect();
        // Children before parents: reverse pre-order.
        for &i in order.iter().rev() {
            let kids: Vec<Step> = tree[i].iter().filter_map(|&c| steps[c].take()).collect();
            if let Some(step) = steps[i].as_mut() {
                for kid in kids {
                    step.push_child(kid);
                }
            }
        }
        for i in roots.into_iter().chain(extra_roots) {
            if let Some(step) = steps[i].take() {
                run.push_step(step);
            }
        }
        if !ours {
            run.aggregate();
        }
        run
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn first_str<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|key| str_attr(attrs, key))
}

fn u64_attr(attrs: &[KeyValue], keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|key| match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => u64::try_from(*i).ok(),
        Some(any_value::Value::DoubleValue(d)) if *d >= 0.0 => Some(*d as u64),
        Some(any_value::Value::StringValue(s)) => s.parse().ok(),
        _ => None,
    })
}

fn f64_attr(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match attr(attrs, key) {
        Some(any_value::Value::DoubleValue(d)) => Some(*d),
        Some(any_value::Value::IntValue(i)) => Some(*i as f64),
        _ => None,
    }
}

fn strings_attr(attrs: &[KeyValue], key: &str) -> Option<Vec<String>> {
    match attr(attrs, key) {
        Some(any_value::Value::ArrayValue(a)) => Some(
            a.values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// An OTLP value as JSON: key-value lists become objects, bytes become hex strings, an empty
/// value is `null`.
#[must_use]
pub fn json_value(value: &AnyValue) -> Value {
    json_of(value.value.as_ref(), 0)
}

/// Deeper than this becomes the truncation marker (prost already caps nesting at 100).
const MAX_DEPTH: usize = 64;

fn json_of(v: Option<&any_value::Value>, depth: usize) -> Value {
    use any_value::Value as V;
    if depth > MAX_DEPTH {
        return Value::String(tracecraft_core::value::TRUNCATED.to_owned());
    }
    match v {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(V::ArrayValue(a)) => Value::Array(
            a.values
                .iter()
                .map(|v| json_of(v.value.as_ref(), depth + 1))
                .collect(),
        ),
        Some(V::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        json_of(kv.value.as_ref().and_then(|v| v.value.as_ref()), depth + 1),
                    )
                })
                .collect(),
        ),
        Some(V::BytesValue(b)) => {
            use std::fmt::Write;
            let mut s = String::with_capacity(b.len() * 2);
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
            Value::String(s)
        }
        // Profiles' string-table references: meaningless without the table.
        Some(V::StringValueStrindex(_)) => Value::Null,
    }
}

fn time_of(nanos: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// `input.value` as the mapping wrote it: JSON when its MIME type says so, else text.
fn io_value(attrs: &[KeyValue], value_key: &str, mime_key: &str) -> Option<Value> {
    let text = str_attr(attrs, value_key)?;
    if str_attr(attrs, mime_key) == Some(k::MIME_JSON)
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return Some(v);
    }
    Some(Value::String(text.to_owned()))
}

/// The free-form attributes: exactly the listed keys for TraceCraft spans; for spans of other
/// SDKs every key that no vocabulary this crate maps claims.
fn user_attributes(attrs: &[KeyValue], ours: bool) -> JsonMap {
    if let Some(keys) = strings_attr(attrs, k::ATTRIBUTE_KEYS) {
        return keys
            .into_iter()
            .filter_map(|key| {
                let kv = attrs.iter().find(|kv| kv.key == key)?;
                Some((key, kv.value.as_ref().map_or(Value::Null, json_value)))
            })
            .collect();
    }
    if ours {
        return JsonMap::new();
    }
    attrs
        .iter()
        .filter(|kv| !is_mapped(&kv.key))
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, json_value),
            )
        })
        .collect()
}

/// Whether the reverse mapping reads `key` into a field of the run or step (or derives it
/// from them when mapping again): such keys are not kept as free-form attributes of spans
/// from other SDKs. Every other key is kept (redacted like all attributes): an unknown
/// `gen_ai.*` or `llm.*` key (`gen_ai.prompt.0.content`, `gen_ai.system_instructions`, ...)
/// is content, not noise.
fn is_mapped(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "tracecraft.",
        "mlflow.",
        k::OI_INPUT_MESSAGES,
        k::OI_OUTPUT_MESSAGES,
        k::OI_DOCUMENTS,
    ];
    const KEYS: &[&str] = &[
        k::SESSION_ID,
        k::USER_ID,
        k::ERROR_TYPE,
        k::CLOUD_PROVIDER,
        k::OI_TAGS,
        k::INPUT_VALUE,
        k::INPUT_MIME,
        k::OUTPUT_VALUE,
        k::OUTPUT_MIME,
        k::GEN_AI_OPERATION,
        k::GEN_AI_PROVIDER,
        k::GEN_AI_REQUEST_MODEL,
        "gen_ai.response.model",
        "gen_ai.system",
        k::GEN_AI_INPUT_TOKENS,
        k::GEN_AI_OUTPUT_TOKENS,
        k::GEN_AI_TOOL_NAME,
        k::GEN_AI_AGENT_NAME,
        k::GEN_AI_AGENT_ID,
        k::GEN_AI_AGENT_DESCRIPTION,
        k::GEN_AI_INPUT_MESSAGES,
        k::GEN_AI_OUTPUT_MESSAGES,
        k::GEN_AI_TOOL_ARGUMENTS,
        k::GEN_AI_TOOL_RESULT,
        k::GEN_AI_CONVERSATION_ID,
        k::OI_SPAN_KIND,
        k::OI_MODEL_NAME,
        k::OI_PROVIDER,
        k::OI_PROMPT_TOKENS,
        k::OI_COMPLETION_TOKENS,
        k::OI_TOTAL_TOKENS,
        k::OI_TOOL_NAME,
        k::OI_TOOL_PARAMETERS,
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || KEYS.contains(&key)
}

/// `(error, error_type)`: from the `exception` event, else the status and `error.type`.
fn error_of(span: &Span) -> (Option<String>, Option<String>) {
    if let Some(event) = span.events.iter().find(|e| e.name == "exception") {
        return (
            str_attr(&event.attributes, "exception.message").map(str::to_owned),
            str_attr(&event.attributes, "exception.type").map(str::to_owned),
        );
    }
    let failed = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    let error_type = str_attr(&span.attributes, k::ERROR_TYPE).map(str::to_owned);
    if failed {
        let message = span.status.as_ref().map(|s| s.message.clone());
        (message, error_type)
    } else {
        (None, error_type)
    }
}

fn run_of(span: &Span, trace_id: &[u8]) -> AgentRun {
    let a = &span.attributes;
    let id = str_attr(a, k::RUN_ID)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| uuid_of_trace(trace_id));
    let name = first_str(a, &[k::RUN_NAME, k::MLFLOW_TRACE_NAME]).unwrap_or(&span.name);
    let start = time_of(span.start_time_unix_nano);
    let end = time_of(span.end_time_unix_nano.max(span.start_time_unix_nano));
    let mut run = AgentRun::with_id(id, name, start);
    run.finish_at(end);
    run.description = str_attr(a, k::RUN_DESCRIPTION).map(str::to_owned);
    run.session_id = first_str(a, &[k::SESSION_ID, k::GEN_AI_CONVERSATION_ID]).map(str::to_owned);
    run.user_id = str_attr(a, k::USER_ID).map(str::to_owned);
    if let Some(env) = str_attr(a, k::ENVIRONMENT) {
        env.clone_into(&mut run.environment);
    }
    run.tags = strings_attr(a, k::TAGS)
        .or_else(|| strings_attr(a, k::OI_TAGS))
        .unwrap_or_default();
    run.agent_name = str_attr(a, k::GEN_AI_AGENT_NAME).map(str::to_owned);
    run.agent_id = str_attr(a, k::GEN_AI_AGENT_ID).map(str::to_owned);
    run.agent_description = str_attr(a, k::GEN_AI_AGENT_DESCRIPTION).map(str::to_owned);
    run.cloud_provider = str_attr(a, k::CLOUD_PROVIDER).map(str::to_owned);
    run.cloud_trace_id = str_attr(a, k::CLOUD_TRACE_ID).map(str::to_owned);
    run.input = io_value(a, k::INPUT_VALUE, k::INPUT_MIME).unwrap_or(Value::Null);
    run.output = io_value(a, k::OUTPUT_VALUE, k::OUTPUT_MIME).unwrap_or(Value::Null);
    run.total_tokens = u64_attr(a, &[k::TOTAL_TOKENS]).unwrap_or(0);
    run.total_cost_usd = f64_attr(a, k::TOTAL_COST).unwrap_or(0.0);
    run.error_count = u64_attr(a, &[k::ERROR_COUNT]).unwrap_or(0);
    (run.error, run.error_type) = error_of(span);
    run.attributes = user_attributes(a, true);
    if let Some(links) = links_of(span) {
        run.attributes.insert(k::LINKS.to_owned(), links);
    }
    run.sample_reason = str_attr(a, k::SAMPLE_REASON).map(str::to_owned);
    run
}

/// A run for a trace without a TraceCraft run span: named after its first root span, from the
/// earliest start to the latest end, with the session and user of any span.
fn synthesized_run(spans: &[&Span], trace_id: &[u8]) -> AgentRun {
    let ids: std::collections::HashSet<&[u8]> =
        spans.iter().map(|s| s.span_id.as_slice()).collect();
    let root = spans
        .iter()
        .filter(|s| !ids.contains(s.parent_span_id.as_slice()))
        .min_by_key(|s| s.start_time_unix_nano)
        .or(spans.first());
    let start = spans
        .iter()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_time_unix_nano)
        .max()
        .unwrap_or(0)
        .max(start);
    let name = root.map_or("trace", |s| s.name.as_str());
    let mut run = AgentRun::with_id(uuid_of_trace(trace_id), name, time_of(start));
    run.finish_at(time_of(end));
    let any = |keys: &[&str]| {
        spans
            .iter()
            .find_map(|s| first_str(&s.attributes, keys))
            .map(str::to_owned)
    };
    run.session_id = any(&[k::SESSION_ID, k::GEN_AI_CONVERSATION_ID]);
    run.user_id = any(&[k::USER_ID]);
    run.agent_name = any(&[k::GEN_AI_AGENT_NAME]);
    run
}

/// The step type: `tracecraft.step.type`, else `openinference.span.kind`, else
/// `gen_ai.operation.name`, else the span kind and name.
#[must_use]
pub fn step_type_of(span: &Span) -> StepType {
    let a = &span.attributes;
    if let Some(t) = str_attr(a, k::STEP_TYPE).and_then(|s| s.parse().ok()) {
        return t;
    }
    if let Some(kind) = str_attr(a, k::OI_SPAN_KIND) {
        let t = match kind.to_ascii_uppercase().as_str() {
            "LLM" | "EMBEDDING" => Some(StepType::Llm),
            "TOOL" => Some(StepType::Tool),
            "RETRIEVER" | "RERANKER" => Some(StepType::Retrieval),
            "AGENT" => Some(StepType::Agent),
            "CHAIN" => Some(StepType::Workflow),
            "GUARDRAIL" => Some(StepType::Guardrail),
            "EVALUATOR" => Some(StepType::Evaluation),
            _ => None,
        };
        if let Some(t) = t {
            return t;
        }
    }
    if let Some(op) = str_attr(a, k::GEN_AI_OPERATION) {
        let t = match op {
            "chat" | "text_completion" | "generate_content" | "embeddings" => Some(StepType::Llm),
            "execute_tool" => Some(StepType::Tool),
            "invoke_agent" | "create_agent" => Some(StepType::Agent),
            _ => None,
        };
        if let Some(t) = t {
            return t;
        }
    }
    let name = span.name.to_ascii_lowercase();
    if span.kind == SpanKind::Client as i32
        && (str_attr(a, k::GEN_AI_REQUEST_MODEL).is_some()
            || name.contains("chat")
            || name.contains("completion")
            || name.contains("llm"))
    {
        return StepType::Llm;
    }
    if name.contains("tool") {
        StepType::Tool
    } else if name.contains("retriev") || name.contains("search") {
        StepType::Retrieval
    } else if name.contains("agent") {
        StepType::Agent
    } else if name.contains("memory") {
        StepType::Memory
    } else if name.contains("guardrail") {
        StepType::Guardrail
    } else if name.contains("eval") {
        StepType::Evaluation
    } else {
        StepType::Workflow
    }
}

fn flat_messages(attrs: &[KeyValue], prefix: &str) -> Vec<Value> {
    flat_list(attrs, prefix, ".message.", &["role", "content"])
}

fn documents(attrs: &[KeyValue]) -> Vec<Value> {
    flat_list(
        attrs,
        k::OI_DOCUMENTS,
        ".document.",
        &["content", "id", "score"],
    )
}

/// A list flattened into attributes the OpenInference way
/// (`{prefix}{index}{infix}{field}`, e.g. `llm.input_messages.0.message.role`) read back as
/// objects holding the known `fields`, in index order; empty slots are dropped.
fn flat_list(attrs: &[KeyValue], prefix: &str, infix: &str, fields: &[&str]) -> Vec<Value> {
    let mut out: Vec<Map<String, Value>> = Vec::new();
    for kv in attrs {
        let Some(rest) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let Some((index, field)) = rest.split_once(infix) else {
            continue;
        };
        let Ok(i) = index.parse::<usize>() else {
            continue;
        };
        // Bounded by the number of attributes: an index far beyond them is ignored.
        if !fields.contains(&field) || i > attrs.len() {
            continue;
        }
        if out.len() <= i {
            out.resize_with(i + 1, Map::new);
        }
        out[i].insert(
            field.to_owned(),
            kv.value.as_ref().map_or(Value::Null, json_value),
        );
    }
    out.into_iter()
        .filter(|m| !m.is_empty())
        .map(Value::Object)
        .collect()
}

/// Inputs and outputs of a span from another SDK: `input.value` / `output.value`, else the
/// GenAI or OpenInference messages, documents and tool call keys.
fn foreign_io(a: &[KeyValue]) -> (JsonMap, JsonMap) {
    let mut inputs = JsonMap::new();
    let mut outputs = JsonMap::new();
    match io_value(a, k::INPUT_VALUE, k::INPUT_MIME) {
        Some(Value::Object(m)) => inputs = m,
        Some(v) => {
            inputs.insert("input".into(), v);
        }
        None => {
            let messages = str_attr(a, k::GEN_AI_INPUT_MESSAGES)
                .and_then(parse_genai_messages)
                .unwrap_or_else(|| flat_messages(a, k::OI_INPUT_MESSAGES));
            if !messages.is_empty() {
                inputs.insert("messages".into(), Value::Array(messages));
            }
            if let Some(args) = first_str(a, &[k::GEN_AI_TOOL_ARGUMENTS, k::OI_TOOL_PARAMETERS]) {
                match serde_json::from_str::<Value>(args) {
                    Ok(Value::Object(m)) => inputs.extend(m),
                    _ => {
                        inputs.insert("arguments".into(), Value::String(args.to_owned()));
                    }
                }
            }
        }
    }
    match io_value(a, k::OUTPUT_VALUE, k::OUTPUT_MIME) {
        Some(Value::Object(m)) => outputs = m,
        Some(v) => {
            outputs.insert("output".into(), v);
        }
        None => {
            let messages = str_attr(a, k::GEN_AI_OUTPUT_MESSAGES)
                .and_then(parse_genai_messages)
                .unwrap_or_else(|| flat_messages(a, k::OI_OUTPUT_MESSAGES));
            if !messages.is_empty() {
                outputs.insert("messages".into(), Value::Array(messages));
            }
            let docs = documents(a);
            if !docs.is_empty() {
                outputs.insert("documents".into(), Value::Array(docs));
            }
            if let Some(result) = str_attr(a, k::GEN_AI_TOOL_RESULT) {
                outputs.insert("result".into(), Value::String(result.to_owned()));
            }
        }
    }
    (inputs, outputs)
}

fn step_of(span: &Span, run_id: Uuid, trace_id: &[u8], ours_run: bool) -> Step {
    let a = &span.attributes;
    let ours = ours_run && str_attr(a, k::STEP_TYPE).is_some();
    let step_type = step_type_of(span);
    let id = str_attr(a, k::STEP_ID)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| {
            // The span id first (so that it maps back to the same span id), then the trace
            // id's last bytes.
            let mut b = [0u8; 16];
            let n = span.span_id.len().min(8);
            b[..n].copy_from_slice(&span.span_id[..n]);
            if trace_id.len() >= 16 {
                b[8..].copy_from_slice(&trace_id[8..16]);
            }
            Uuid::from_bytes(b)
        });
    let name = str_attr(a, k::STEP_NAME).unwrap_or(&span.name);
    let start = time_of(span.start_time_unix_nano);
    let end = time_of(span.end_time_unix_nano.max(span.start_time_unix_nano));
    let mut step = Step::with_id(id, run_id, step_type, name, start);
    step.end_time = Some(end);
    step.duration_ms = Some(duration_ms(start, end));
    if ours {
        if let Some(Value::Object(m)) = io_value(a, k::INPUT_VALUE, k::INPUT_MIME) {
            step.inputs = m;
        }
        if let Some(Value::Object(m)) = io_value(a, k::OUTPUT_VALUE, k::OUTPUT_MIME) {
            step.outputs = m;
        }
    } else {
        (step.inputs, step.outputs) = foreign_io(a);
    }
    step.model_name = first_str(
        a,
        &[
            k::GEN_AI_REQUEST_MODEL,
            k::OI_MODEL_NAME,
            "gen_ai.response.model",
        ],
    )
    .map(str::to_owned);
    step.model_provider =
        first_str(a, &[k::GEN_AI_PROVIDER, k::OI_PROVIDER, "gen_ai.system"]).map(str::to_owned);
    step.input_tokens = u64_attr(a, &[k::GEN_AI_INPUT_TOKENS, k::OI_PROMPT_TOKENS]);
    step.output_tokens = u64_attr(a, &[k::GEN_AI_OUTPUT_TOKENS, k::OI_COMPLETION_TOKENS]);
    step.cost_usd = f64_attr(a, k::COST);
    step.is_streaming = matches!(
        attr(a, k::STREAMING),
        Some(any_value::Value::BoolValue(true))
    );
    step.streaming_chunks = strings_attr(a, k::CHUNKS).unwrap_or_default();
    (step.error, step.error_type) = error_of(span);
    step.attributes = user_attributes(a, ours);
    if let Some(links) = links_of(span) {
        step.attributes.insert(k::LINKS.to_owned(), links);
    }
    step
}

/// A span's links as the [`LINKS`](k::LINKS) attribute value: `[{"trace_id", "span_id"`
/// (hex)`, "trace_state"` (when set)`, "attributes"` (when any)`}]`.
fn links_of(span: &Span) -> Option<Value> {
    if span.links.is_empty() {
        return None;
    }
    Some(Value::Array(
        span.links
            .iter()
            .map(|l| {
                let mut m = Map::new();
                m.insert("trace_id".into(), Value::String(hex::encode(&l.trace_id)));
                m.insert("span_id".into(), Value::String(hex::encode(&l.span_id)));
                if !l.trace_state.is_empty() {
                    m.insert("trace_state".into(), Value::String(l.trace_state.clone()));
                }
                if !l.attributes.is_empty() {
                    let attrs: Map<String, Value> = l
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                kv.value.as_ref().map_or(Value::Null, json_value),
                            )
                        })
                        .collect();
                    m.insert("attributes".into(), Value::Object(attrs));
                }
                Value::Object(m)
            })
            .collect(),
    ))
}
