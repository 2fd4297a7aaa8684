//! The spans of a run: one for the run itself, one per step.

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;
use tracecraft_core::{AgentRun, JsonMap, Step, StepType};

use super::content;
use super::keys as k;
use super::options::{Content, Dialect, MappingOptions};
use super::sink::{Head, SpanSink, Tail, links_of};
use super::{
    end_nanos, json_text, push_json_map_text, push_json_pairs, push_json_text, span_id, trace_id,
    unix_nanos,
};

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
    let mut out = Vec::with_capacity(value.len() + 2);
    super::content::push_json_str(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

/// `input.value` / `output.value` with their MIME type: a string as text, anything else as
/// JSON.
fn io_value<'r, S: SpanSink<'r>>(a: &mut S, value_key: &str, mime_key: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => {
            a.str(value_key, s);
            a.str(mime_key, k::MIME_TEXT);
        }
        other => {
            let text = a.text(|out| push_json_text(out, other));
            a.str_text(value_key, text);
            a.str(mime_key, k::MIME_JSON);
        }
    }
}

fn io_map<'r, S: SpanSink<'r>>(a: &mut S, value_key: &str, mime_key: &str, map: &JsonMap) {
    if !map.is_empty() {
        let text = a.text(|out| push_json_map_text(out, map));
        a.str_text(value_key, text);
        a.str(mime_key, k::MIME_JSON);
    }
}

fn attribute_keys<'r, S: SpanSink<'r>>(a: &mut S, attributes: &JsonMap) {
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

/// [`mlflow_attribute`] of a [`mlflow_span_type`], without allocating.
fn mlflow_quoted(span_type: &'static str) -> &'static str {
    match span_type {
        "EMBEDDING" => "\"EMBEDDING\"",
        "LLM" => "\"LLM\"",
        "TOOL" => "\"TOOL\"",
        "RERANKER" => "\"RERANKER\"",
        "RETRIEVER" => "\"RETRIEVER\"",
        "AGENT" => "\"AGENT\"",
        "MEMORY" => "\"MEMORY\"",
        "WORKFLOW" => "\"WORKFLOW\"",
        "GUARDRAIL" => "\"GUARDRAIL\"",
        "EVALUATOR" => "\"EVALUATOR\"",
        _ => "\"UNKNOWN\"",
    }
}

/// The span of the run itself.
pub(crate) fn run_span<'r, S: SpanSink<'r>>(
    run: &'r AgentRun,
    options: &MappingOptions,
    a: &mut S,
) {
    let dialects = options.dialects;
    let content = options.content == Content::Full;
    let end = end_nanos(run.start_time, run.end_time, run.duration_ms);
    let agent = run.agent_name.as_deref().unwrap_or(&run.name);
    a.begin(
        &Head {
            trace_id: trace_id(run.id),
            span_id: span_id(run.id),
            parent: None,
            name: ("invoke_agent", Some(agent)),
            kind: SpanKind::Internal,
            start: unix_nanos(run.start_time),
            end,
        },
        &run.attributes,
    );
    a.str(k::GEN_AI_OPERATION, "invoke_agent");
    opt_str(a, k::GEN_AI_AGENT_NAME, run.agent_name.as_deref());
    opt_str(a, k::GEN_AI_AGENT_ID, run.agent_id.as_deref());
    opt_str(
        a,
        k::GEN_AI_AGENT_DESCRIPTION,
        run.agent_description.as_deref(),
    );
    opt_str(a, k::SESSION_ID, run.session_id.as_deref());
    opt_str(a, k::USER_ID, run.user_id.as_deref());
    opt_str(a, k::CLOUD_PROVIDER, run.cloud_provider.as_deref());
    opt_str(a, k::ERROR_TYPE, run.error_type.as_deref());
    if content {
        io_value(a, k::INPUT_VALUE, k::INPUT_MIME, &run.input);
        io_value(a, k::OUTPUT_VALUE, k::OUTPUT_MIME, &run.output);
    }
    if dialects.contains(Dialect::GenAi) {
        opt_str(a, k::GEN_AI_CONVERSATION_ID, run.session_id.as_deref());
    }
    if dialects.contains(Dialect::OpenInference) {
        a.str(k::OI_SPAN_KIND, "AGENT");
        if !run.tags.is_empty() {
            a.strings(k::OI_TAGS, run.tags.iter().map(String::as_str));
        }
    }
    if dialects.contains(Dialect::Mlflow) {
        a.str(k::MLFLOW_SPAN_TYPE, mlflow_quoted("AGENT"));
        a.str(k::MLFLOW_TRACE_NAME, &run.name);
    }
    a.user(&run.attributes, k::OWNED);
    attribute_keys(a, &run.attributes);
    a.str(k::SPAN_TYPE, "run");
    let mut id = uuid::Uuid::encode_buffer();
    a.str(k::RUN_ID, run.id.hyphenated().encode_lower(&mut id));
    a.str(k::RUN_NAME, &run.name);
    opt_str(a, k::RUN_DESCRIPTION, run.description.as_deref());
    a.str(k::ENVIRONMENT, &run.environment);
    if !run.tags.is_empty() {
        a.strings(k::TAGS, run.tags.iter().map(String::as_str));
    }
    opt_str(a, k::CLOUD_TRACE_ID, run.cloud_trace_id.as_deref());
    a.int(k::TOTAL_TOKENS, run.total_tokens);
    a.double(k::TOTAL_COST, run.total_cost_usd);
    a.int(k::ERROR_COUNT, run.error_count);
    opt_str(a, k::SAMPLE_REASON, run.sample_reason.as_deref());
    a.end(&Tail {
        error: run.error.as_deref(),
        error_type: run.error_type.as_deref(),
        end,
        links: &links_of(&run.attributes),
    });
}

fn opt_str<'r, S: SpanSink<'r>>(a: &mut S, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        a.str(key, v);
    }
}

/// The span name after the GenAI conventions: `chat gpt-4o`, `execute_tool search`,
/// `invoke_agent planner`; other step types keep their own name.
fn span_name<'a>(step: &'a Step, operation: Option<&'a str>) -> (&'a str, Option<&'a str>) {
    match (step.step_type, operation) {
        (StepType::Llm, Some(op)) => match step.model_name.as_deref() {
            Some(model) if !model.is_empty() => (op, Some(model)),
            _ => (op, None),
        },
        (StepType::Tool | StepType::Agent, Some(op)) => (op, Some(&step.name)),
        _ => (&step.name, None),
    }
}

pub(crate) fn step_span<'r, S: SpanSink<'r>>(
    run: &AgentRun,
    step: &'r Step,
    parent: [u8; 8],
    options: &MappingOptions,
    a: &mut S,
) {
    let dialects = options.dialects;
    let content = options.content == Content::Full;
    let genai = dialects.contains(Dialect::GenAi);
    let oi = dialects.contains(Dialect::OpenInference);
    // A step that knows its operation better (`embeddings`) says so in its attributes.
    let operation = super::field(&step.attributes, k::GEN_AI_OPERATION)
        .and_then(Value::as_str)
        .or_else(|| operation_name(step.step_type));
    let kind = if step.step_type == StepType::Llm {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    let end = end_nanos(step.start_time, step.end_time, step.duration_ms);
    a.begin(
        &Head {
            trace_id: trace_id(run.id),
            span_id: span_id(step.id),
            parent: Some(parent),
            name: span_name(step, operation),
            kind,
            start: unix_nanos(step.start_time),
            end,
        },
        &step.attributes,
    );
    if let Some(op) = operation_name(step.step_type) {
        a.str(k::GEN_AI_OPERATION, op);
    }
    match step.step_type {
        StepType::Tool => a.str(k::GEN_AI_TOOL_NAME, &step.name),
        StepType::Agent => a.str(k::GEN_AI_AGENT_NAME, &step.name),
        _ => {}
    }
    opt_str(a, k::GEN_AI_PROVIDER, step.model_provider.as_deref());
    opt_str(a, k::GEN_AI_REQUEST_MODEL, step.model_name.as_deref());
    if let Some(n) = step.input_tokens {
        a.int(k::GEN_AI_INPUT_TOKENS, n);
    }
    if let Some(n) = step.output_tokens {
        a.int(k::GEN_AI_OUTPUT_TOKENS, n);
    }
    opt_str(a, k::ERROR_TYPE, step.error_type.as_deref());
    // The inputs as JSON once: `input.value`, and for tools their arguments too.
    let inputs_json = (content && !step.inputs.is_empty())
        .then(|| a.text(|out| push_json_map_text(out, &step.inputs)));
    if content {
        if let Some(json) = inputs_json {
            a.str_text(k::INPUT_VALUE, json);
            a.str(k::INPUT_MIME, k::MIME_JSON);
        }
        io_map(a, k::OUTPUT_VALUE, k::OUTPUT_MIME, &step.outputs);
    }
    if oi {
        a.str(
            k::OI_SPAN_KIND,
            openinference_kind(step.step_type, operation),
        );
    }
    if dialects.contains(Dialect::Mlflow) {
        a.str(
            k::MLFLOW_SPAN_TYPE,
            mlflow_quoted(mlflow_span_type(step.step_type, operation)),
        );
    }
    match step.step_type {
        StepType::Llm => llm_attributes(a, step, options),
        StepType::Tool if content => {
            if oi {
                a.str(k::OI_TOOL_NAME, &step.name);
                if let Some(json) = inputs_json {
                    a.str_text(k::OI_TOOL_PARAMETERS, json);
                }
            }
            if genai {
                if let Some(json) = inputs_json {
                    a.str_text(k::GEN_AI_TOOL_ARGUMENTS, json);
                }
                if !step.outputs.is_empty() {
                    match step.outputs.values().next() {
                        Some(Value::String(s)) if step.outputs.len() == 1 => {
                            a.str(k::GEN_AI_TOOL_RESULT, s);
                        }
                        _ => {
                            let text = a.text(|out| push_json_map_text(out, &step.outputs));
                            a.str_text(k::GEN_AI_TOOL_RESULT, text);
                        }
                    }
                }
            }
        }
        StepType::Tool if oi => a.str(k::OI_TOOL_NAME, &step.name),
        StepType::Retrieval if content && oi => {
            for (i, doc) in content::documents(&step.outputs).iter().enumerate() {
                if let Some(c) = doc.content {
                    indexed_text(a, k::OI_DOCUMENTS, i, ".document.content", c);
                }
                if let Some(id) = doc.id {
                    indexed_text(a, k::OI_DOCUMENTS, i, ".document.id", id);
                }
                if let Some(score) = doc.score {
                    a.indexed_double(k::OI_DOCUMENTS, i, ".document.score", score);
                }
            }
        }
        _ => {}
    }
    a.user(&step.attributes, k::OWNED);
    attribute_keys(a, &step.attributes);
    a.str(k::SPAN_TYPE, "step");
    a.str(k::STEP_TYPE, step.step_type.as_str());
    let mut id = uuid::Uuid::encode_buffer();
    a.str(k::STEP_ID, step.id.hyphenated().encode_lower(&mut id));
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
    a.end(&Tail {
        error: step.error.as_deref(),
        error_type: step.error_type.as_deref(),
        end,
        links: &links_of(&step.attributes),
    });
}

/// A value as text ([`content::text_of`]) under an indexed key; strings are not copied.
fn indexed_text<'r, S: SpanSink<'r>>(a: &mut S, prefix: &str, i: usize, suffix: &str, v: &Value) {
    match v {
        Value::String(s) => a.indexed_str(prefix, i, suffix, s),
        other => a.indexed_str(prefix, i, suffix, &json_text(other)),
    }
}

fn llm_attributes<'r, S: SpanSink<'r>>(a: &mut S, step: &Step, options: &MappingOptions) {
    let genai = options.dialects.contains(Dialect::GenAi);
    let oi = options.dialects.contains(Dialect::OpenInference);
    if oi {
        opt_str(a, k::OI_MODEL_NAME, step.model_name.as_deref());
        opt_str(a, k::OI_PROVIDER, step.model_provider.as_deref());
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
    if !step.attributes.is_empty() {
        let params: Vec<(&str, &str, &Value)> = content::INVOCATION_PARAMETERS
            .iter()
            .filter_map(|(name, genai_key)| {
                super::field(&step.attributes, name).map(|v| (*name, *genai_key, v))
            })
            .collect();
        if !params.is_empty() {
            if genai {
                for (_, genai_key, v) in &params {
                    a.json(genai_key, v);
                }
            }
            if oi {
                let pairs: Vec<(&str, &Value)> =
                    params.iter().map(|(name, _, v)| (*name, *v)).collect();
                let text = a.text(|out| push_json_pairs(out, &pairs));
                a.str_text(k::OI_INVOCATION_PARAMETERS, text);
            }
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
    let system = content::system_instructions(&step.inputs);
    if genai {
        if let Some(system) = system {
            let text = a.text(|out| content::push_genai_system(out, system));
            a.str_text(k::GEN_AI_SYSTEM_INSTRUCTIONS, text);
        }
        if !inputs.is_empty() {
            let text = a.text(|out| content::push_genai_messages(out, &inputs, &[]));
            a.str_text(k::GEN_AI_INPUT_MESSAGES, text);
        }
        if !outputs.is_empty() {
            let text = a.text(|out| content::push_genai_messages(out, &outputs, &reasons));
            a.str_text(k::GEN_AI_OUTPUT_MESSAGES, text);
        }
    }
    if oi {
        let mut index = 0;
        if let Some(system) = system {
            a.indexed_str(k::OI_INPUT_MESSAGES, 0, ".message.role", "system");
            a.indexed_str(k::OI_INPUT_MESSAGES, 0, ".message.content", system);
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

fn flat_message<'r, S: SpanSink<'r>>(a: &mut S, prefix: &str, i: usize, m: &content::Message<'_>) {
    a.indexed_str(prefix, i, ".message.role", m.role);
    indexed_text(a, prefix, i, ".message.content", m.content);
}
