//! The attribute keys the mapping writes and [`reverse`](crate::reverse) reads, grouped by
//! vocabulary.

// TraceCraft's own keys: always emitted, read back first.
/// `run` or `step`.
pub const SPAN_TYPE: &str = "tracecraft.span.type";
/// The run's UUID (run span).
pub const RUN_ID: &str = "tracecraft.run.id";
/// The run's name (run span).
pub const RUN_NAME: &str = "tracecraft.run.name";
/// The run's description.
pub const RUN_DESCRIPTION: &str = "tracecraft.run.description";
/// The run's environment.
pub const ENVIRONMENT: &str = "tracecraft.environment";
/// The run's tags (string array).
pub const TAGS: &str = "tracecraft.tags";
/// The run's cloud trace id.
pub const CLOUD_TRACE_ID: &str = "tracecraft.cloud_trace_id";
/// The run's total tokens.
pub const TOTAL_TOKENS: &str = "tracecraft.total_tokens";
/// The run's total cost.
pub const TOTAL_COST: &str = "tracecraft.total_cost_usd";
/// The run's error count.
pub const ERROR_COUNT: &str = "tracecraft.error_count";
/// Why the sampler kept the run.
pub const SAMPLE_REASON: &str = "tracecraft.sample_reason";
/// The step type (`llm`, `tool`, ...).
pub const STEP_TYPE: &str = "tracecraft.step.type";
/// The step's UUID.
pub const STEP_ID: &str = "tracecraft.step.id";
/// The step's own name (the span is named after the GenAI conventions).
pub const STEP_NAME: &str = "tracecraft.step.name";
/// The step's cost.
pub const COST: &str = "tracecraft.cost_usd";
/// Whether the step streamed.
pub const STREAMING: &str = "tracecraft.streaming";
/// How many chunks it streamed.
pub const CHUNK_COUNT: &str = "tracecraft.streaming.chunk_count";
/// The chunks (string array; content).
pub const CHUNKS: &str = "tracecraft.streaming.chunks";
/// The keys of the run's or step's own attributes (string array), so that they are read back
/// exactly even where one replaced a derived key.
pub const ATTRIBUTE_KEYS: &str = "tracecraft.attribute_keys";
/// Not a span attribute: the run or step attribute (a JSON array of `{"trace_id", "span_id"`
/// (hex)`, "trace_state", "attributes"}`) that holds a received span's OTLP links; the
/// mapping exports it as the span's links.
pub const LINKS: &str = "tracecraft.links";
/// Not a span attribute: the run attribute (a JSON object) that holds the resource attributes
/// of a received trace (other than the ones TraceCraft sets itself); the mapping exports them
/// as the run's resource attributes.
pub const RESOURCE: &str = "tracecraft.resource";

/// Keys the mapping owns: a run's free-form attributes cannot set them.
pub(crate) const OWNED: &[&str] = &[
    SPAN_TYPE,
    RUN_ID,
    RUN_NAME,
    RUN_DESCRIPTION,
    ENVIRONMENT,
    TAGS,
    CLOUD_TRACE_ID,
    TOTAL_TOKENS,
    TOTAL_COST,
    ERROR_COUNT,
    SAMPLE_REASON,
    STEP_TYPE,
    STEP_ID,
    STEP_NAME,
    COST,
    STREAMING,
    CHUNK_COUNT,
    CHUNKS,
    ATTRIBUTE_KEYS,
    LINKS,
    RESOURCE,
];

// Generic content keys (OpenInference names, read by Phoenix, Langfuse and MLflow): emitted
// whenever content is.
/// Input text or JSON.
pub const INPUT_VALUE: &str = "input.value";
/// `text/plain` or `application/json`.
pub const INPUT_MIME: &str = "input.mime_type";
/// Output text or JSON.
pub const OUTPUT_VALUE: &str = "output.value";
/// `text/plain` or `application/json`.
pub const OUTPUT_MIME: &str = "output.mime_type";
/// The JSON MIME type.
pub const MIME_JSON: &str = "application/json";
/// The text MIME type.
pub const MIME_TEXT: &str = "text/plain";

// OpenTelemetry GenAI basics: always emitted.
/// `chat`, `execute_tool`, `invoke_agent`, ...
pub const GEN_AI_OPERATION: &str = "gen_ai.operation.name";
/// The provider (`openai`).
pub const GEN_AI_PROVIDER: &str = "gen_ai.provider.name";
/// The requested model.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// Prompt tokens.
pub const GEN_AI_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Completion tokens.
pub const GEN_AI_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// The tool's name.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
/// The agent's name.
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
/// The agent's id.
pub const GEN_AI_AGENT_ID: &str = "gen_ai.agent.id";
/// The agent's description.
pub const GEN_AI_AGENT_DESCRIPTION: &str = "gen_ai.agent.description";
/// The error class.
pub const ERROR_TYPE: &str = "error.type";
/// Session id (OpenInference and OpenTelemetry general conventions).
pub const SESSION_ID: &str = "session.id";
/// User id (OpenInference and OpenTelemetry general conventions).
pub const USER_ID: &str = "user.id";
/// The cloud provider.
pub const CLOUD_PROVIDER: &str = "cloud.provider";

// GenAI dialect.
/// Chat history sent to the model (JSON).
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// The model's reply (JSON).
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// System instructions (JSON).
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// Why the model stopped (string array).
pub const GEN_AI_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// Tool arguments (JSON).
pub const GEN_AI_TOOL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// Tool result (JSON or text).
pub const GEN_AI_TOOL_RESULT: &str = "gen_ai.tool.call.result";
/// Conversation (session) id.
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";

// OpenInference dialect.
/// `LLM`, `TOOL`, `RETRIEVER`, `AGENT`, `CHAIN`, ...
pub const OI_SPAN_KIND: &str = "openinference.span.kind";
/// The model.
pub const OI_MODEL_NAME: &str = "llm.model_name";
/// The provider.
pub const OI_PROVIDER: &str = "llm.provider";
/// Prompt tokens.
pub const OI_PROMPT_TOKENS: &str = "llm.token_count.prompt";
/// Completion tokens.
pub const OI_COMPLETION_TOKENS: &str = "llm.token_count.completion";
/// Total tokens.
pub const OI_TOTAL_TOKENS: &str = "llm.token_count.total";
/// Invocation parameters (JSON).
pub const OI_INVOCATION_PARAMETERS: &str = "llm.invocation_parameters";
/// Prefix of flattened input messages (`llm.input_messages.N.message.role|content`).
pub const OI_INPUT_MESSAGES: &str = "llm.input_messages.";
/// Prefix of flattened output messages.
pub const OI_OUTPUT_MESSAGES: &str = "llm.output_messages.";
/// Prefix of retrieved documents (`retrieval.documents.N.document.content|id|score`).
pub const OI_DOCUMENTS: &str = "retrieval.documents.";
/// The tool's name.
pub const OI_TOOL_NAME: &str = "tool.name";
/// The tool's parameters (JSON).
pub const OI_TOOL_PARAMETERS: &str = "tool.parameters";
/// Run tags (string array).
pub const OI_TAGS: &str = "tag.tags";

// MLflow dialect.
/// MLflow's span type, JSON-encoded as MLflow stores it (`"LLM"`, `"TOOL"`, `"MEMORY"`, ...).
pub const MLFLOW_SPAN_TYPE: &str = "mlflow.spanType";
/// The trace's name, on the run span.
pub const MLFLOW_TRACE_NAME: &str = "mlflow.traceTag.mlflow.traceName";
