//! An example support agent, traced with TraceCraft: the attributes on its functions and the
//! `tracing` layer on its spans, together, on tokio with concurrent tasks.
//!
//! - [`handle`] is a `#[tracing::instrument]` span: the TraceCraft layer makes it the run.
//! - It looks the order up and searches the help center in **two concurrent tasks**
//!   (`tokio::spawn(fut.in_current_run())`): [`lookup_order`] (`#[trace_tool]`) and
//!   [`search_docs`] (`#[trace_retrieval]`, with a `tracing` span inside).
//! - [`chat`] (`#[trace_llm]`) never records the API key or the customer's notes
//!   (`exclude_inputs`), and sets its token counts from inside (`current_step()`).
//! - [`check_answer`] is a plain `#[instrument(ret)]` span typed as a guardrail.
//!
//! [`subscriber`] builds the subscriber: the TraceCraft layer, plus a `fmt` layer whose fields
//! and lines are redacted (TraceCraft does not redact other layers by itself).
//!
//! Run it: `cargo run -p support-agent` (stores in `./traces` unless configured otherwise).

use std::time::Duration;

use serde::Serialize;
use tracecraft::InRun;
use tracecraft::fmt::{RedactingFields, RedactingWriter};
use tracecraft::layer::TraceCraftLayer;
use tracecraft::redact::{BuildError, RedactionConfig};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// An order, as the order service returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    /// The order's id.
    pub id: String,
    /// Where it is.
    pub status: &'static str,
    /// Days until delivery.
    pub eta_days: u32,
}

/// Why the agent could not answer.
#[derive(Debug)]
pub enum AgentError {
    /// No order has this id.
    OrderNotFound,
    /// A task of the agent panicked or was cancelled.
    Task,
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::OrderNotFound => f.write_str("no such order"),
            AgentError::Task => f.write_str("an agent task failed"),
        }
    }
}

impl std::error::Error for AgentError {}

/// Looks an order up (a tool call; the id is its input, the order its output).
#[tracecraft::trace_tool]
pub async fn lookup_order(order_id: String) -> Result<Order, AgentError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if order_id == "A-0000" {
        return Err(AgentError::OrderNotFound);
    }
    Ok(Order {
        id: order_id,
        status: "shipped",
        eta_days: 2,
    })
}

/// Searches the help center (a retrieval); the vector search is a `tracing` span inside it.
#[tracecraft::trace_retrieval]
pub async fn search_docs(query: String) -> Vec<String> {
    let hits = {
        let span = tracing::info_span!(
            "vector_search",
            top_k = 2u64,
            output.hits = tracing::field::Empty
        );
        let _entered = span.enter();
        let hits = vec![
            format!("Shipping times ({} chars asked)", query.len()),
            "Returns within 30 days".to_owned(),
        ];
        span.record("output.hits", hits.len() as u64);
        hits
    };
    tokio::time::sleep(Duration::from_millis(3)).await;
    hits
}

/// Asks the model (an LLM call). The API key and the customer's notes are recorded as
/// `"[EXCLUDED]"`, never read.
#[tracecraft::trace_llm(
    model = "gpt-4o",
    provider = "openai",
    exclude_inputs = ["api_key", "customer_notes"]
)]
pub async fn chat(
    prompt: String,
    api_key: &str,
    customer_notes: &str,
) -> Result<String, AgentError> {
    let _ = (api_key, customer_notes); // a real agent sends them to the provider
    tokio::time::sleep(Duration::from_millis(5)).await;
    let answer = "Your order has shipped and arrives in 2 days.".to_owned();
    tracecraft::current_step().set_tokens(prompt.len() as u64 / 4, answer.len() as u64 / 4);
    Ok(answer)
}

/// A guardrail, as a plain `tracing` span: `ret` makes the verdict its output.
#[tracing::instrument(ret, fields(tracecraft.step_type = "guardrail"))]
pub fn check_answer(answer: &str) -> bool {
    !answer.contains("sk-")
}

/// Answers one customer question. The span is the run; the user and session ids are its
/// user and session.
///
/// # Errors
/// [`AgentError`] when the order does not exist or a task failed.
#[tracing::instrument(
    name = "support_agent",
    skip(question, api_key),
    fields(user.id = %user, session.id = %session, output.answer = tracing::field::Empty)
)]
pub async fn handle(
    user: &str,
    session: &str,
    question: &str,
    order_id: &str,
    api_key: &str,
) -> Result<String, AgentError> {
    tracing::info!(name: "gen_ai.user.message", content = question);
    // Two concurrent tasks; each takes the run along.
    let order = tokio::spawn(lookup_order(order_id.to_owned()).in_current_run());
    let docs = tokio::spawn(search_docs(question.to_owned()).in_current_run());
    let order = order.await.map_err(|_| AgentError::Task)??;
    let docs = docs.await.map_err(|_| AgentError::Task)?;
    let prompt = format!(
        "Customer asks: {question}\nOrder {} is {}.\nHelp center: {}",
        order.id,
        order.status,
        docs.join("; ")
    );
    let answer = chat(prompt, api_key, "VIP; complained twice about delays").await?;
    check_answer(&answer);
    tracing::Span::current().record("output.answer", answer.as_str());
    Ok(answer)
}

/// The subscriber: TraceCraft's layer recording into `runtime`, and a `fmt` layer printing to
/// `writer` with `rules` applied to every field and line.
///
/// # Errors
/// The rules' [`BuildError`].
pub fn subscriber<W>(
    runtime: &tracecraft::Runtime,
    rules: &RedactionConfig,
    writer: W,
) -> Result<impl tracing::Subscriber + Send + Sync + 'static, BuildError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .fmt_fields(RedactingFields::new(rules)?)
        .with_writer(RedactingWriter::new(writer, rules)?);
    Ok(tracing_subscriber::registry()
        .with(TraceCraftLayer::new(runtime.clone()))
        .with(fmt))
}
