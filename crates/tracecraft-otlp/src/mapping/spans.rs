//! The spans of a run: one for the run itself, one per step.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde_json::Value;
use tracecraft_core::{AgentRun, JsonMap, Step, StepType};

use super::attrs::{Attrs, string_value};
use super::content::{self, indexed_key};
use super::keys as k;
use super::options::{Content, Dialect, MappingOptions};
use super::{end_nanos, json_map_text, json_text, span_id, trace_id, unix_nanos};

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

/// The OpenInference span kind of a step type (`openinference.span.kind`). An LLM step whose
/// operation is `embeddings` is `EMBEDDING`; a retrieval step whose operation is `rerank` is
/// `RERANKER`.
#[must_use]
pub fn openinference_kind(step_type: StepType, operation: Option<&str>) -> &'static str {
    match (step_type, operation) {
        (StepType::Llm, Some("embeddings")) => "EMBEDDING",
        (StepType::Llm, _) => "LLM",
        (StepType::Tool, _) => "TOOL",
        (StepType::Retrieval, Some("rerank")) => "RERANKER",
        (StepType::Retrieval, _) => "RETRIEVER",
        (StepType::Agent, _) => "AGENT",
        (StepType::Guardrail, _) => "GUARDRAIL",
        (StepType::Evaluation, _) => "EVALUATOR",
        (StepType::Memory | StepType::Workflow | StepType::Error, _) => "CHAIN",
    }
}

/// MLflow's span type of a step type. The `mlflow.spanType` attribute holds it JSON-encoded
/// (`"LLM"` with its quotes), as MLflow stores its own span attributes; see [`mlflow_attribute`].
#[must_use]
pub fn mlflow_span_type(step_type: StepType, operation: Option<&str>) -> &'static str {
    match (step_type, operation) {
        (StepType::Llm, Some("embeddings")) => "EMBEDDING",
        (StepType::Llm, _) => "LLM",
        (StepType::Tool, _) => "TOOL",
        (StepType::Retrieval, Some("rerank")) => "RERANKER",
        (StepType::Retrieval, _) => "RETRIEVER",
        (StepType::Agent, _) => "AGENT",
        (StepType::Memory, _) => "MEMORY",
        (StepType::Workflow, _) => "WORKFLOW",
        (StepType::Guardrail, _) => "GUARDRAIL",
        (StepType::Evaluation, _) => "EVALUATOR",
        (StepType::Error, _) => "UNKNOWN",
    }
}

/// A value as MLflow stores span attributes: JSON-encoded (`LLM` -> `"LLM"`).
#[must_use]
pub fn mlflow_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    super::content::push_json_str(&mut out, value);
    out
}

fn status(error: Option<&str>, error_type: Option<&str>) -> Status {
    if error.is_none() && error_type.is_none() {
        return Status {
            message: String::new(),
            code: StatusCode::Ok as i32,
        };
    }
    let message = match (error, error_type) {
        (Some(m), _) if !m.is_empty() => m.to_owned(),
        (_, Some(t)) => t.to_owned(),
        _ => String::new(),
    };
    Status {
        message,
        code: StatusCode::Error as i32,
    }
}

/// An `exception` event (`exception.type`, `exception.message`) at `time`, for a failed span.
fn exception(error: Option<&str>, error_type: Option<&str>, time: u64) -> Vec<Event> {
    if error.is_none() && error_type.is_none() {
        return Vec::new();
    }
    let mut attributes = Vec::with_capacity(2);
    for (key, value) in [("exception.type", error_type), ("exception.message", error)] {
        if let Some(v) = value {
            attributes.push(KeyValue {
                key: key.to_owned(),
                value: Some(string_value(v)),
                ..Default::default()
            });
        }
    }
    vec![Event {
        time_unix_nano: time,
        name: "exception".to_owned(),
        attributes,
        ..Default::default()
    }]
}

/// `input.value` / `output.value` with their MIME type: a string as text, anything else as
/// JSON.
fn io_value(a: &mut Attrs, value_key: &str, mime_key: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => {
            a.str(value_key, s);
            a.str(mime_key, k::MIME_TEXT);
        }
        other => {
            a.string(value_key, json_text(other));
            a.str(mime_key, k::MIME_JSON);
        }
    }
}

fn io_map(a: &mut Attrs, value_key: &str, mime_key: &str, map: &JsonMap) {
    if !map.is_empty() {
        a.string(value_key, json_map_text(map));
        a.str(mime_key, k::MIME_JSON);
    }
}

fn attribute_keys(a: &mut Attrs, attributes: &JsonMap) {
    if !attributes.is_empty() {
        a.strings(
            k::ATTRIBUTE_KEYS,
            attributes
                .keys()
                .map(String::as_str)
                .filter(|key| !k::OWNED.contains(key)),
        );
    }
}

/// The span of the run itself.
pub(crate) fn run_span(run: &AgentRun, options: &MappingOptions) -> Span {
    let dialects = options.dialects;
    let content = options.content == Content::Full;
    let mut a = Attrs::with_capacity(24 + run.attributes.len());
    a.str(k::GEN_AI_OPERATION, "invoke_agent");
    a.opt_str(k::GEN_AI_AGENT_NAME, run.agent_name.as_deref());
    a.opt_str(k::GEN_AI_AGENT_ID, run.agent_id.as_deref());
    a.opt_str(
        k::GEN_AI_AGENT_DESCRIPTION,
        run.agent_description.as_deref(),
    );
    a.opt_str(k::SESSION_ID, run.session_id.as_deref());
    a.opt_str(k::USER_ID, run.user_id.as_deref());
    a.opt_str(k::CLOUD_PROVIDER, run.cloud_provider.as_deref());
    a.opt_str(k::ERROR_TYPE, run.error_type.as_deref());
    if content {
        io_value(&mut a, k::INPUT_VALUE, k::INPUT_MIME, &run.input);
        io_value(&mut a, k::OUTPUT_VALUE, k::OUTPUT_MIME, &run.output);
    }
    if dialects.contains(Dialect::GenAi) {
        a.opt_str(k::GEN_AI_CONVERSATION_ID, run.session_id.as_deref());
    }
    if dialects.contains(Dialect::OpenInference) {
        a.str(k::OI_SPAN_KIND, "AGENT");
        if !run.tags.is_empty() {
            a.strings(k::OI_TAGS, run.tags.iter().map(String::as_str));
        }
    }
    if dialects.contains(Dialect::Mlflow) {
        a.string(k::MLFLOW_SPAN_TYPE, mlflow_attribute("AGENT"));
        a.str(k::MLFLOW_TRACE_NAME, &run.name);
    }
    a.user(&run.attributes, k::OWNED);
    attribute_keys(&mut a, &run.attributes);
    a.str(k::SPAN_TYPE, "run");
    a.string(k::RUN_ID, run.id.hyphenated().to_string());
    a.str(k::RUN_NAME, &run.name);
    a.opt_str(k::RUN_DESCRIPTION, run.description.as_deref());
    a.str(k::ENVIRONMENT, &run.environment);
    if !run.tags.is_empty() {
        a.strings(k::TAGS, run.tags.iter().map(String::as_str));
    }
    a.opt_str(k::CLOUD_TRACE_ID, run.cloud_trace_id.as_deref());
    a.int(k::TOTAL_TOKENS, run.total_tokens);
    a.double(k::TOTAL_COST, run.total_cost_usd);
    a.int(k::ERROR_COUNT, run.error_count);
    a.opt_str(k::SAMPLE_REASON, run.sample_reason.as_deref());
    let end = end_nanos(run.start_time, run.end_time, run.duration_ms);
    let agent = run.agent_name.as_deref().unwrap_or(&run.name);
    Span {
        trace_id: trace_id(run.id).to_vec(),
        span_id: span_id(run.id).to_vec(),
        name: format!("invoke_agent {agent}"),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: unix_nanos(run.start_time),
        end_time_unix_nano: end,
        attributes: a.list,
        events: exception(run.error.as_deref(), run.error_type.as_deref(), end),
        status: Some(status(run.error.as_deref(), run.error_type.as_deref())),
        ..Default::default()
    }
}

/// The span name after the GenAI conventions: `chat gpt-4o`, `execute_tool search`,
/// `invoke_agent planner`; other step types keep their own name.
fn span_name(step: &Step, operation: Option<&str>) -> String {
    match (step.step_type, operation) {
        (StepType::Llm, Some(op)) => match step.model_name.as_deref() {
            Some(model) if !model.is_empty() => format!("{op} {model}"),
            _ => op.to_owned(),
        },
        (StepType::Tool | StepType::Agent, Some(op)) => format!("{op} {}", step.name),
        _ => step.name.clone(),
    }
}

pub(crate) fn step_span(
    run: &AgentRun,
    step: &Step,
    parent: [u8; 8],
    options: &MappingOptions,
) -> Span {
    let dialects = options.dialects;
    let content = options.content == Content::Full;
    let genai = dialects.contains(Dialect::GenAi);
    let oi = dialects.contains(Dialect::OpenInference);
    // A step that knows its operation better (`embeddings`) says so in its attributes.
    let operation = step
        .attributes
        .get(k::GEN_AI_OPERATION)
        .and_then(Value::as_str)
        .or_else(|| operation_name(step.step_type));
    let mut a = Attrs::with_capacity(40 + step.attributes.len());
    if let Some(op) = operation_name(step.step_type) {
        a.str(k::GEN_AI_OPERATION, op);
    }
    match step.step_type {
        StepType::Tool => a.str(k::GEN_AI_TOOL_NAME, &step.name),
        StepType::Agent => a.str(k::GEN_AI_AGENT_NAME, &step.name),
        _ => {}
    }
    a.opt_str(k::GEN_AI_PROVIDER, step.model_provider.as_deref());
    a.opt_str(k::GEN_AI_REQUEST_MODEL, step.model_name.as_deref());
    if let Some(n) = step.input_tokens {
        a.int(k::GEN_AI_INPUT_TOKENS, n);
    }
    if let Some(n) = step.output_tokens {
        a.int(k::GEN_AI_OUTPUT_TOKENS, n);
    }
    a.opt_str(k::ERROR_TYPE, step.error_type.as_deref());
    // The inputs as JSON once: `input.value`, and for tools their arguments too.
    let inputs_json = (content && !step.inputs.is_empty()).then(|| json_map_text(&step.inputs));
    if content {
        if let Some(json) = &inputs_json {
            a.str(k::INPUT_VALUE, json);
            a.str(k::INPUT_MIME, k::MIME_JSON);
        }
        io_map(&mut a, k::OUTPUT_VALUE, k::OUTPUT_MIME, &step.outputs);
    }
    if oi {
        a.str(
            k::OI_SPAN_KIND,
            openinference_kind(step.step_type, operation),
        );
    }
    if dialects.contains(Dialect::Mlflow) {
        a.string(
            k::MLFLOW_SPAN_TYPE,
            mlflow_attribute(mlflow_span_type(step.step_type, operation)),
        );
    }
    match step.step_type {
        StepType::Llm => llm_attributes(&mut a, step, options),
        StepType::Tool if content => {
            if oi {
                a.str(k::OI_TOOL_NAME, &step.name);
                if let Some(json) = &inputs_json {
                    a.str(k::OI_TOOL_PARAMETERS, json);
                }
            }
            if genai {
                if let Some(json) = &inputs_json {
                    a.str(k::GEN_AI_TOOL_ARGUMENTS, json);
                }
                if !step.outputs.is_empty() {
                    let result = match step.outputs.values().next() {
                        Some(Value::String(s)) if step.outputs.len() == 1 => s.clone(),
                        _ => json_map_text(&step.outputs),
                    };
                    a.string(k::GEN_AI_TOOL_RESULT, result);
                }
            }
        }
        StepType::Tool if oi => a.str(k::OI_TOOL_NAME, &step.name),
        StepType::Retrieval if content && oi => {
            for (i, doc) in content::documents(&step.outputs).iter().enumerate() {
                if let Some(c) = doc.content {
                    a.put_owned(
                        indexed_key(k::OI_DOCUMENTS, i, ".document.content"),
                        string_value(&content::text_of(c)),
                    );
                }
                if let Some(id) = doc.id {
                    a.put_owned(
                        indexed_key(k::OI_DOCUMENTS, i, ".document.id"),
                        string_value(&content::text_of(id)),
                    );
                }
                if let Some(score) = doc.score {
                    a.put_owned(
                        indexed_key(k::OI_DOCUMENTS, i, ".document.score"),
                        AnyValue {
                            value: Some(any_value::Value::DoubleValue(score)),
                        },
                    );
                }
            }
        }
        _ => {}
    }
    a.user(&step.attributes, k::OWNED);
    attribute_keys(&mut a, &step.attributes);
    a.str(k::SPAN_TYPE, "step");
    a.str(k::STEP_TYPE, step.step_type.as_str());
    a.string(k::STEP_ID, step.id.hyphenated().to_string());
    a.str(k::STEP_NAME, &step.name);
    if let Some(c) = step.cost_usd {
        a.double(k::COST, c);
    }
    if step.is_streaming {
        a.bool(k::STREAMING, true);
        a.int(k::CHUNK_COUNT, step.streaming_chunks.len() as u64);
        if content && !step.streaming_chunks.is_empty() {
            a.strings(k::CHUNKS, step.streaming_chunks.iter().map(String::as_str));
        }
    }
    let kind = if step.step_type == StepType::Llm {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    let end = end_nanos(step.start_time, step.end_time, step.duration_ms);
    Span {
        trace_id: trace_id(run.id).to_vec(),
        span_id: span_id(step.id).to_vec(),
        parent_span_id: parent.to_vec(),
        name: span_name(step, operation),
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(step.start_time),
        end_time_unix_nano: end,
        attributes: a.list,
        events: exception(step.error.as_deref(), step.error_type.as_deref(), end),
        status: Some(status(step.error.as_deref(), step.error_type.as_deref())),
        ..Default::default()
    }
}

fn llm_attributes(a: &mut Attrs, step: &Step, options: &MappingOptions) {
    let genai = options.dialects.contains(Dialect::GenAi);
    let oi = options.dialects.contains(Dialect::OpenInference);
    if oi {
        a.opt_str(k::OI_MODEL_NAME, step.model_name.as_deref());
        a.opt_str(k::OI_PROVIDER, step.model_provider.as_deref());
        if let Some(n) = step.input_tokens {
            a.int(k::OI_PROMPT_TOKENS, n);
        }
        if let Some(n) = step.output_tokens {
            a.int(k::OI_COMPLETION_TOKENS, n);
        }
        if let Some(n) = step.total_tokens() {
            a.int(k::OI_TOTAL_TOKENS, n);
        }
    }
    // Invocation parameters recorded as attributes (`temperature`, `max_tokens`, ...).
    let params: Vec<(&str, &str, &Value)> = content::INVOCATION_PARAMETERS
        .iter()
        .filter_map(|(name, genai_key)| step.attributes.get(*name).map(|v| (*name, *genai_key, v)))
        .collect();
    if !params.is_empty() {
        if genai {
            for (_, genai_key, v) in &params {
                a.put(genai_key, super::any_value(v));
            }
        }
        if oi {
            let map: JsonMap = params
                .iter()
                .map(|(name, _, v)| ((*name).to_owned(), (*v).clone()))
                .collect();
            a.string(k::OI_INVOCATION_PARAMETERS, json_map_text(&map));
        }
    }
    let (outputs, reasons) = content::output_messages(&step.outputs);
    if genai && !reasons.is_empty() {
        a.strings(k::GEN_AI_FINISH_REASONS, reasons.iter().copied());
    }
    if options.content != Content::Full {
        return;
    }
    let inputs = content::input_messages(&step.inputs);
    if genai {
        if let Some(system) = content::system_instructions(&step.inputs) {
            a.string(k::GEN_AI_SYSTEM_INSTRUCTIONS, content::genai_system(system));
        }
        if !inputs.is_empty() {
            a.string(
                k::GEN_AI_INPUT_MESSAGES,
                content::genai_messages(&inputs, &[]),
            );
        }
        if !outputs.is_empty() {
            a.string(
                k::GEN_AI_OUTPUT_MESSAGES,
                content::genai_messages(&outputs, &reasons),
            );
        }
    }
    if oi {
        let mut index = 0;
        if let Some(system) = content::system_instructions(&step.inputs) {
            a.put_owned(
                indexed_key(k::OI_INPUT_MESSAGES, 0, ".message.role"),
                string_value("system"),
            );
            a.put_owned(
                indexed_key(k::OI_INPUT_MESSAGES, 0, ".message.content"),
                string_value(system),
            );
            index = 1;
        }
        for (i, m) in inputs.iter().enumerate() {
            flat_message(a, k::OI_INPUT_MESSAGES, index + i, m);
        }
        for (i, m) in outputs.iter().enumerate() {
            flat_message(a, k::OI_OUTPUT_MESSAGES, i, m);
        }
    }
}

fn flat_message(a: &mut Attrs, prefix: &str, i: usize, m: &content::Message<'_>) {
    a.put_owned(
        indexed_key(prefix, i, ".message.role"),
        string_value(m.role),
    );
    a.put_owned(
        indexed_key(prefix, i, ".message.content"),
        AnyValue {
            value: Some(any_value::Value::StringValue(m.text())),
        },
    );
}
