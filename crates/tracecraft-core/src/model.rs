//! The span model: [`AgentRun`], [`Step`], [`StepType`].
//!
//! Field names, their order and their JSON forms are those of the Python `tracecraft` 0.2.1
//! package (see the crate docs), so runs move between the two in both directions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A JSON object: inputs, outputs and attributes.
pub type JsonMap = Map<String, Value>;

/// The kind of a [`Step`]. Serialized lower-case (`"llm"`, `"tool"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    /// A top-level agent invocation.
    Agent,
    /// An LLM API call (chat, completion, embedding).
    Llm,
    /// A tool or function invocation.
    Tool,
    /// A retrieval (RAG) step.
    Retrieval,
    /// A memory read or write.
    Memory,
    /// A safety or validation check.
    Guardrail,
    /// An evaluation of an output.
    Evaluation,
    /// A logical grouping of steps.
    Workflow,
    /// An error step.
    Error,
}

impl StepType {
    /// Every step type, in declaration order.
    pub const ALL: [StepType; 9] = [
        StepType::Agent,
        StepType::Llm,
        StepType::Tool,
        StepType::Retrieval,
        StepType::Memory,
        StepType::Guardrail,
        StepType::Evaluation,
        StepType::Workflow,
        StepType::Error,
    ];

    /// The wire name (`"llm"`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            StepType::Agent => "agent",
            StepType::Llm => "llm",
            StepType::Tool => "tool",
            StepType::Retrieval => "retrieval",
            StepType::Memory => "memory",
            StepType::Guardrail => "guardrail",
            StepType::Evaluation => "evaluation",
            StepType::Workflow => "workflow",
            StepType::Error => "error",
        }
    }
}

impl std::fmt::Display for StepType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StepType {
    type Err = UnknownStepType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or(UnknownStepType)
    }
}

/// A string that names no [`StepType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown step type: expected one of agent, llm, tool, retrieval, memory, guardrail, evaluation, workflow, error"
)]
pub struct UnknownStepType;

/// One step of an agent's execution: an LLM call, a tool call, a retrieval, ...
///
/// Steps form a tree through [`Step::children`]; `parent_id` mirrors it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The step's id (UUID v4).
    #[serde(default = "Uuid::new_v4")]
    pub id: Uuid,
    /// The parent step's id, `None` for a root step.
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    /// The id of the run this step belongs to.
    pub trace_id: Uuid,
    /// The step's kind.
    #[serde(rename = "type")]
    pub step_type: StepType,
    /// The step's name.
    pub name: String,
    /// When the step started (UTC).
    #[serde(with = "crate::time::rfc3339")]
    pub start_time: DateTime<Utc>,
    /// When the step ended (UTC), if it has.
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub end_time: Option<DateTime<Utc>>,
    /// Duration in milliseconds, if ended.
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// Inputs, by name.
    #[serde(default, deserialize_with = "crate::json::de::map")]
    pub inputs: JsonMap,
    /// Outputs, by name.
    #[serde(default, deserialize_with = "crate::json::de::map")]
    pub outputs: JsonMap,
    /// Free-form attributes.
    #[serde(default, deserialize_with = "crate::json::de::map")]
    pub attributes: JsonMap,
    /// The model, for LLM steps.
    #[serde(default)]
    pub model_name: Option<String>,
    /// The model's provider (`openai`, `anthropic`, ...).
    #[serde(default)]
    pub model_provider: Option<String>,
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Cost in US dollars.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Whether the output was streamed.
    #[serde(default)]
    pub is_streaming: bool,
    /// The streamed chunks, in order.
    #[serde(default)]
    pub streaming_chunks: Vec<String>,
    /// The error message, if the step failed. An empty message with an `error_type` still counts.
    #[serde(default)]
    pub error: Option<String>,
    /// The error's type name.
    #[serde(default)]
    pub error_type: Option<String>,
    /// Child steps, in start order.
    #[serde(default)]
    pub children: Vec<Step>,
}

impl Step {
    /// A new step of `run`'s trace, started now.
    #[must_use]
    pub fn new(trace_id: Uuid, step_type: StepType, name: impl Into<String>) -> Self {
        Step::with_id(
            Uuid::new_v4(),
            trace_id,
            step_type,
            name,
            crate::time::now(),
        )
    }

    /// A new step with a given id and start time (for instrumentation that makes its own ids).
    #[must_use]
    pub fn with_id(
        id: Uuid,
        trace_id: Uuid,
        step_type: StepType,
        name: impl Into<String>,
        start_time: DateTime<Utc>,
    ) -> Self {
        Step {
            id,
            parent_id: None,
            trace_id,
            step_type,
            name: name.into(),
            start_time,
            end_time: None,
            duration_ms: None,
            inputs: JsonMap::new(),
            outputs: JsonMap::new(),
            attributes: JsonMap::new(),
            model_name: None,
            model_provider: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            is_streaming: false,
            streaming_chunks: Vec::new(),
            error: None,
            error_type: None,
            children: Vec::new(),
        }
    }

    /// A builder for a step of the trace `trace_id`.
    pub fn builder(trace_id: Uuid, step_type: StepType, name: impl Into<String>) -> StepBuilder {
        StepBuilder {
            step: Step::new(trace_id, step_type, name),
        }
    }

    /// Whether this step failed: it has an error message (even empty) or an error type.
    #[must_use]
    pub fn has_error(&self) -> bool {
        self.error.is_some() || self.error_type.is_some()
    }

    /// Input plus output tokens, when either is known.
    #[must_use]
    pub fn total_tokens(&self) -> Option<u64> {
        match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        }
    }

    /// Sets the end time and the duration from the start time.
    pub fn finish_at(&mut self, end: DateTime<Utc>) {
        self.duration_ms = Some(duration_ms(self.start_time, end));
        self.end_time = Some(end);
    }

    /// Appends a child, setting its `parent_id` and `trace_id` to this step's.
    pub fn push_child(&mut self, mut child: Step) {
        child.parent_id = Some(self.id);
        child.trace_id = self.trace_id;
        self.children.push(child);
    }

    /// This step and its descendants, depth-first (pre-order).
    pub fn walk(&self) -> Steps<'_> {
        Steps {
            stack: vec![(self, 0)],
        }
    }
}

/// Milliseconds between two instants (negative when `end` is before `start`).
#[must_use]
pub fn duration_ms(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    let d = end.signed_duration_since(start);
    match d.num_microseconds() {
        Some(us) => us as f64 / 1_000.0,
        None => d.num_milliseconds() as f64,
    }
}

/// Builds a [`Step`].
#[derive(Debug, Clone)]
#[must_use]
pub struct StepBuilder {
    step: Step,
}

impl StepBuilder {
    /// Sets the id.
    pub fn id(mut self, id: Uuid) -> Self {
        self.step.id = id;
        self
    }
    /// Sets the parent step's id.
    pub fn parent_id(mut self, id: Uuid) -> Self {
        self.step.parent_id = Some(id);
        self
    }
    /// Sets the start time.
    pub fn start_time(mut self, t: DateTime<Utc>) -> Self {
        self.step.start_time = t;
        self
    }
    /// Sets the end time (and the duration).
    pub fn end_time(mut self, t: DateTime<Utc>) -> Self {
        self.step.finish_at(t);
        self
    }
    /// Adds an input.
    pub fn input(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.step.inputs.insert(name.into(), value.into());
        self
    }
    /// Adds an output.
    pub fn output(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.step.outputs.insert(name.into(), value.into());
        self
    }
    /// Adds an attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.step.attributes.insert(name.into(), value.into());
        self
    }
    /// Sets the model and its provider.
    pub fn model(mut self, name: impl Into<String>, provider: impl Into<String>) -> Self {
        self.step.model_name = Some(name.into());
        self.step.model_provider = Some(provider.into());
        self
    }
    /// Sets token counts.
    pub fn tokens(mut self, input: u64, output: u64) -> Self {
        self.step.input_tokens = Some(input);
        self.step.output_tokens = Some(output);
        self
    }
    /// Sets the cost in US dollars.
    pub fn cost_usd(mut self, cost: f64) -> Self {
        self.step.cost_usd = Some(cost);
        self
    }
    /// Adds a streamed chunk (and marks the step streaming).
    pub fn chunk(mut self, chunk: impl Into<String>) -> Self {
        self.step.is_streaming = true;
        self.step.streaming_chunks.push(chunk.into());
        self
    }
    /// Records an error.
    pub fn error(mut self, message: impl Into<String>, error_type: impl Into<String>) -> Self {
        self.step.error = Some(message.into());
        self.step.error_type = Some(error_type.into());
        self
    }
    /// Adds a child step (its parent and trace ids are set to this step's).
    pub fn child(mut self, child: Step) -> Self {
        self.step.push_child(child);
        self
    }
    /// The step.
    pub fn build(self) -> Step {
        self.step
    }
}

/// A complete trace of one agent invocation: metadata and a tree of [`Step`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRun {
    /// The run's id (UUID v4); also the trace id of its steps.
    #[serde(default = "Uuid::new_v4")]
    pub id: Uuid,
    /// The run's name.
    pub name: String,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
    /// When the run started (UTC).
    #[serde(with = "crate::time::rfc3339")]
    pub start_time: DateTime<Utc>,
    /// When the run ended (UTC), if it has.
    #[serde(default, with = "crate::time::rfc3339_option")]
    pub end_time: Option<DateTime<Utc>>,
    /// Duration in milliseconds, if ended.
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// The session (conversation) this run belongs to.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The end user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The deployment environment (default `"development"`, like the Python package).
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The agent's name (OpenTelemetry GenAI `gen_ai.agent.name`).
    #[serde(default)]
    pub agent_name: Option<String>,
    /// The agent's id.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The agent's description.
    #[serde(default)]
    pub agent_description: Option<String>,
    /// The cloud platform (`azure`, `aws`, `gcp`).
    #[serde(default)]
    pub cloud_provider: Option<String>,
    /// The platform's own trace id.
    #[serde(default)]
    pub cloud_trace_id: Option<String>,
    /// The run's input: any JSON value.
    #[serde(default, deserialize_with = "crate::json::de::value")]
    pub input: Value,
    /// The run's output: any JSON value.
    #[serde(default, deserialize_with = "crate::json::de::value")]
    pub output: Value,
    /// The root steps.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Total tokens over every step (see [`AgentRun::aggregate`]).
    #[serde(default)]
    pub total_tokens: u64,
    /// Total cost over every step, in US dollars.
    #[serde(default)]
    pub total_cost_usd: f64,
    /// Failed steps, plus one for a run-level error.
    #[serde(default)]
    pub error_count: u64,
    /// The run-level error message.
    #[serde(default)]
    pub error: Option<String>,
    /// The run-level error's type name.
    #[serde(default)]
    pub error_type: Option<String>,
    /// Free-form attributes.
    #[serde(default, deserialize_with = "crate::json::de::map")]
    pub attributes: JsonMap,
    /// The sampling decision.
    #[serde(default = "default_true")]
    pub should_export: bool,
    /// Why the sampler decided as it did.
    #[serde(default)]
    pub sample_reason: Option<String>,
}

fn default_environment() -> String {
    "development".to_owned()
}

fn default_true() -> bool {
    true
}

impl AgentRun {
    /// A new run named `name`, started now, with the Python package's defaults.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        AgentRun::with_id(Uuid::new_v4(), name, crate::time::now())
    }

    /// A new run with a given id and start time (for instrumentation that makes its own ids),
    /// with the Python package's defaults.
    #[must_use]
    pub fn with_id(id: Uuid, name: impl Into<String>, start_time: DateTime<Utc>) -> Self {
        AgentRun {
            id,
            name: name.into(),
            description: None,
            start_time,
            end_time: None,
            duration_ms: None,
            session_id: None,
            user_id: None,
            environment: default_environment(),
            tags: Vec::new(),
            agent_name: None,
            agent_id: None,
            agent_description: None,
            cloud_provider: None,
            cloud_trace_id: None,
            input: Value::Null,
            output: Value::Null,
            steps: Vec::new(),
            total_tokens: 0,
            total_cost_usd: 0.0,
            error_count: 0,
            error: None,
            error_type: None,
            attributes: JsonMap::new(),
            should_export: true,
            sample_reason: None,
        }
    }

    /// A builder for a run named `name`.
    pub fn builder(name: impl Into<String>) -> AgentRunBuilder {
        AgentRunBuilder {
            run: AgentRun::new(name),
        }
    }

    /// Whether the run itself failed (message, even empty, or type).
    #[must_use]
    pub fn has_run_error(&self) -> bool {
        self.error.is_some() || self.error_type.is_some()
    }

    /// Whether the run or any of its steps failed.
    #[must_use]
    pub fn has_any_error(&self) -> bool {
        self.has_run_error() || self.walk().any(Step::has_error)
    }

    /// Appends a root step, setting its `trace_id` to this run's id and clearing its parent.
    pub fn push_step(&mut self, mut step: Step) {
        step.trace_id = self.id;
        step.parent_id = None;
        self.steps.push(step);
    }

    /// Sets the end time and the duration.
    pub fn finish_at(&mut self, end: DateTime<Utc>) {
        self.duration_ms = Some(duration_ms(self.start_time, end));
        self.end_time = Some(end);
    }

    /// Every step, depth-first (pre-order), without recursion (deep trees are fine).
    pub fn walk(&self) -> Steps<'_> {
        Steps {
            stack: self.steps.iter().rev().map(|s| (s, 0)).collect(),
        }
    }

    /// Calls `f` on every step, depth-first (pre-order), with the step's depth (roots are 0).
    pub fn walk_mut(&mut self, mut f: impl FnMut(&mut Step, usize)) {
        let mut stack: Vec<(&mut Step, usize)> =
            self.steps.iter_mut().rev().map(|s| (s, 0)).collect();
        while let Some((step, depth)) = stack.pop() {
            f(step, depth);
            stack.extend(step.children.iter_mut().rev().map(|c| (c, depth + 1)));
        }
    }

    /// The step with this id, anywhere in the tree.
    #[must_use]
    pub fn find_step(&self, id: Uuid) -> Option<&Step> {
        self.walk().find(|s| s.id == id)
    }

    /// The step with this id, anywhere in the tree, mutably.
    pub fn find_step_mut(&mut self, id: Uuid) -> Option<&mut Step> {
        let mut stack: Vec<&mut Step> = self.steps.iter_mut().collect();
        while let Some(step) = stack.pop() {
            if step.id == id {
                return Some(step);
            }
            stack.extend(step.children.iter_mut());
        }
        None
    }

    /// Number of steps in the whole tree.
    #[must_use]
    pub fn step_count(&self) -> usize {
        self.walk().count()
    }

    /// Recomputes `total_tokens`, `total_cost_usd` and `error_count` over the whole tree.
    ///
    /// A step counts as failed when it has an error message (even empty) or an error type; a
    /// run-level error counts once more.
    pub fn aggregate(&mut self) {
        let (mut tokens, mut cost, mut errors) = (0u64, 0.0f64, 0u64);
        for step in self.walk() {
            tokens = tokens.saturating_add(step.total_tokens().unwrap_or(0));
            cost += step.cost_usd.unwrap_or(0.0);
            errors += u64::from(step.has_error());
        }
        errors += u64::from(self.has_run_error());
        self.total_tokens = tokens;
        self.total_cost_usd = cost;
        self.error_count = errors;
    }
}

/// Depth-first iterator over steps; see [`AgentRun::walk`].
#[derive(Debug, Clone)]
pub struct Steps<'a> {
    stack: Vec<(&'a Step, usize)>,
}

impl<'a> Steps<'a> {
    /// Yields each step with its depth (roots are 0).
    pub fn with_depth(self) -> StepsWithDepth<'a> {
        StepsWithDepth { inner: self }
    }

    fn next_with_depth(&mut self) -> Option<(&'a Step, usize)> {
        let (step, depth) = self.stack.pop()?;
        self.stack
            .extend(step.children.iter().rev().map(|c| (c, depth + 1)));
        Some((step, depth))
    }
}

impl<'a> Iterator for Steps<'a> {
    type Item = &'a Step;

    fn next(&mut self) -> Option<&'a Step> {
        self.next_with_depth().map(|(s, _)| s)
    }
}

/// Depth-first iterator over `(step, depth)`; see [`Steps::with_depth`].
#[derive(Debug, Clone)]
pub struct StepsWithDepth<'a> {
    inner: Steps<'a>,
}

impl<'a> Iterator for StepsWithDepth<'a> {
    type Item = (&'a Step, usize);

    fn next(&mut self) -> Option<(&'a Step, usize)> {
        self.inner.next_with_depth()
    }
}

/// Builds an [`AgentRun`].
#[derive(Debug, Clone)]
#[must_use]
pub struct AgentRunBuilder {
    run: AgentRun,
}

impl AgentRunBuilder {
    /// Sets the id.
    pub fn id(mut self, id: Uuid) -> Self {
        self.run.id = id;
        self
    }
    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.run.description = Some(d.into());
        self
    }
    /// Sets the start time.
    pub fn start_time(mut self, t: DateTime<Utc>) -> Self {
        self.run.start_time = t;
        self
    }
    /// Sets the end time (and the duration).
    pub fn end_time(mut self, t: DateTime<Utc>) -> Self {
        self.run.finish_at(t);
        self
    }
    /// Sets the session id.
    pub fn session_id(mut self, s: impl Into<String>) -> Self {
        self.run.session_id = Some(s.into());
        self
    }
    /// Sets the user id.
    pub fn user_id(mut self, s: impl Into<String>) -> Self {
        self.run.user_id = Some(s.into());
        self
    }
    /// Sets the environment.
    pub fn environment(mut self, s: impl Into<String>) -> Self {
        self.run.environment = s.into();
        self
    }
    /// Adds a tag.
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.run.tags.push(t.into());
        self
    }
    /// Sets the agent's name, id and description.
    pub fn agent(
        mut self,
        name: impl Into<String>,
        id: Option<String>,
        description: Option<String>,
    ) -> Self {
        self.run.agent_name = Some(name.into());
        self.run.agent_id = id;
        self.run.agent_description = description;
        self
    }
    /// Sets the input.
    pub fn input(mut self, v: impl Into<Value>) -> Self {
        self.run.input = v.into();
        self
    }
    /// Sets the output.
    pub fn output(mut self, v: impl Into<Value>) -> Self {
        self.run.output = v.into();
        self
    }
    /// Adds an attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.run.attributes.insert(name.into(), value.into());
        self
    }
    /// Adds a root step (its trace id is set to the run's).
    pub fn step(mut self, step: Step) -> Self {
        self.run.push_step(step);
        self
    }
    /// Records a run-level error.
    pub fn error(mut self, message: impl Into<String>, error_type: impl Into<String>) -> Self {
        self.run.error = Some(message.into());
        self.run.error_type = Some(error_type.into());
        self
    }
    /// The run, with its trace ids made consistent and its totals aggregated.
    pub fn build(mut self) -> AgentRun {
        let id = self.run.id;
        self.run.walk_mut(|s, _| s.trace_id = id);
        self.run.aggregate();
        self.run
    }
}
