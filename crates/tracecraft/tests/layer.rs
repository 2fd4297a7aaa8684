//! The `tracing` layer: spans become runs and steps.
#![cfg(feature = "tracing")]

use serde_json::json;
use tracecraft::core::testing::MemoryExporter;
use tracecraft::layer::TraceCraftLayer;
use tracecraft::{Runtime, RuntimeOptions, StepType};
use tracing_subscriber::layer::SubscriberExt;

mod common;

fn setup() -> (
    Runtime,
    MemoryExporter,
    impl tracing::Subscriber + Send + Sync,
) {
    let (rt, sink) = common::memory_runtime({
        let mut o = RuntimeOptions::default();
        o.exclude_inputs = vec!["password".into()];
        o
    });
    let sub = tracing_subscriber::registry().with(TraceCraftLayer::new(rt.clone()));
    (rt, sink, sub)
}

#[tracing::instrument(skip(api_key), fields(tracecraft.step_type = "tool"))]
fn search(query: &str, api_key: &str, password: &str) -> usize {
    let _ = (api_key, password);
    query.len()
}

#[tracing::instrument(err)]
fn flaky() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("boom"))
}

#[test]
fn spans_become_a_run_with_steps() {
    let (_rt, sink, sub) = setup();
    tracing::subscriber::with_default(sub, || {
        let root = tracing::info_span!(
            "agent",
            question = "where?",
            user.id = "u-1",
            session.id = "s-1"
        );
        let _r = root.enter();
        {
            let llm = tracing::info_span!(
                "chat",
                "tracecraft.type" = "llm",
                gen_ai.request.model = "gpt-4o",
                gen_ai.provider.name = "openai",
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                temperature = 0.5,
                finish = tracing::field::Empty,
            );
            let _l = llm.enter();
            // A guard inside a span attaches under it.
            tracecraft::step(StepType::Memory, "recall").start().end();
            llm.record("gen_ai.usage.input_tokens", 12u64);
            llm.record("gen_ai.usage.output_tokens", 30u64);
            llm.record("finish", "stop");
        }
        search("shoes", "sk-secret", "hunter2");
        let _ = flaky();
        tracing::info_span!("plain").in_scope(|| {});
    });
    let runs = sink.runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.name, "agent");
    assert_eq!(run.user_id.as_deref(), Some("u-1"));
    assert_eq!(run.session_id.as_deref(), Some("s-1"));
    assert_eq!(run.input, json!({"question": "where?"}));
    let names: Vec<_> = run.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["chat", "search", "flaky", "plain"]);
    let chat = &run.steps[0];
    assert_eq!(chat.step_type, StepType::Llm);
    assert_eq!(chat.model_name.as_deref(), Some("gpt-4o"));
    assert_eq!(chat.model_provider.as_deref(), Some("openai"));
    assert_eq!(
        (chat.input_tokens, chat.output_tokens),
        (Some(12), Some(30))
    );
    assert_eq!(chat.inputs["temperature"], json!(0.5));
    assert_eq!(chat.attributes["finish"], json!("stop"));
    assert_eq!(chat.children[0].name, "recall");
    let search = &run.steps[1];
    assert_eq!(search.step_type, StepType::Tool);
    assert_eq!(search.inputs["query"], json!("shoes"));
    assert!(!search.inputs.contains_key("api_key"));
    assert_eq!(search.inputs["password"], json!(tracecraft::EXCLUDED));
    let flaky = &run.steps[2];
    assert_eq!(flaky.error.as_deref(), Some("boom"));
    assert_eq!(flaky.error_type.as_deref(), Some("error"));
    assert_eq!(run.steps[3].step_type, StepType::Workflow);
    assert_eq!(run.total_tokens, 42);
    assert!(!tracecraft::core::json::to_json(run).contains("hunter2"));
}

#[test]
fn root_span_inside_a_run_becomes_a_step_and_separate_roots_are_separate_runs() {
    let (rt, sink, sub) = setup();
    tracing::subscriber::with_default(sub, || {
        {
            let _run = rt.run("manual").start();
            tracing::info_span!("from_tracing").in_scope(|| {});
        }
        tracing::info_span!("a").in_scope(|| {});
        tracing::info_span!("b").in_scope(|| {});
    });
    let runs = sink.runs();
    let names: Vec<_> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["manual", "a", "b"]);
    assert_eq!(runs[0].steps[0].name, "from_tracing");
}

#[derive(Debug)]
struct RateLimited {
    #[allow(dead_code)]
    retry_after: u32,
}
impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rate limited")
    }
}

#[tracing::instrument(ret)]
fn answer(question: &str) -> String {
    format!("\"{question}\" answered")
}

#[tracing::instrument(ret)]
fn count(n: u32) -> u32 {
    n * 2
}

#[tracing::instrument(err(Debug))]
fn limited() -> Result<u32, RateLimited> {
    Err(RateLimited { retry_after: 3 })
}

#[test]
fn ret_is_the_output_and_err_keeps_the_error_type() {
    let (_rt, sink, sub) = setup();
    tracing::subscriber::with_default(sub, || {
        tracing::info_span!("agent").in_scope(|| {
            answer("why?");
            count(21);
            let _ = limited();
            let _ = flaky();
            tracing::info_span!("typed").in_scope(|| {
                tracing::error!(error = "upstream timed out", error.type = "Timeout");
            });
        });
    });
    let run = &sink.runs()[0];
    assert_eq!(run.steps[0].outputs["result"], json!("\"why?\" answered"));
    assert_eq!(run.steps[1].outputs["result"], json!("42"));
    let limited = &run.steps[2];
    assert_eq!(limited.error_type.as_deref(), Some("RateLimited"));
    assert_eq!(
        limited.error.as_deref(),
        Some("RateLimited { retry_after: 3 }")
    );
    assert_eq!(
        run.steps[3].error_type.as_deref(),
        Some("error"),
        "Display only"
    );
    assert_eq!(run.steps[4].error_type.as_deref(), Some("Timeout"));
    assert_eq!(run.steps[4].error.as_deref(), Some("upstream timed out"));
}

#[test]
fn events_inside_spans_are_step_events_and_genai_messages() {
    let (_rt, sink, sub) = setup();
    tracing::subscriber::with_default(sub, || {
        tracing::info_span!("agent").in_scope(|| {
            tracing::info_span!("chat", gen_ai.request.model = "gpt-4o").in_scope(|| {
                tracing::info!(name: "gen_ai.system.message", content = "be brief");
                tracing::info!(name: "gen_ai.user.message", "where is my order?");
                tracing::info!(
                    event.name = "gen_ai.choice",
                    index = 0u64,
                    finish_reason = "stop",
                    message = "shipped"
                );
                tracing::info!(attempt = 2u64, "retrying");
                tracing::warn!(name: "slow", "slow answer");
                tracing::debug!("not kept");
            });
        });
    });
    let chat = &sink.runs()[0].steps[0];
    assert_eq!(
        chat.inputs["messages"],
        json!([
            {"content": "be brief", "role": "system"},
            {"content": "where is my order?", "role": "user"},
        ])
    );
    assert_eq!(
        chat.outputs["choices"],
        json!([{"message": "shipped", "index": 0, "finish_reason": "stop"}])
    );
    assert_eq!(
        chat.attributes["tracecraft.events"],
        json!([
            {"level": "INFO", "message": "retrying", "attempt": 2},
            {"level": "WARN", "name": "slow", "message": "slow answer"},
        ])
    );
}

#[test]
fn late_records_fill_inputs_outputs_and_tokens() {
    let (_rt, sink, sub) = setup();
    tracing::subscriber::with_default(sub, || {
        let root = tracing::info_span!("agent", output.answer = tracing::field::Empty);
        let _r = root.enter();
        {
            let span = tracing::info_span!(
                "chat",
                "tracecraft.type" = "llm",
                gen_ai.request.model = "gpt-4o",
                gen_ai.response.model = tracing::field::Empty,
                gen_ai.prompt = tracing::field::Empty,
                gen_ai.completion = tracing::field::Empty,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                gen_ai.response.finish_reasons = tracing::field::Empty,
                input.context = tracing::field::Empty,
                output.citations = tracing::field::Empty,
            );
            let _s = span.enter();
            span.record("gen_ai.prompt", "where is my order?");
            span.record("input.context", "order A-1");
            span.record("gen_ai.completion", "it shipped");
            span.record("output.citations", 2u64);
            span.record("gen_ai.response.model", "gpt-4o-2024-08-06");
            span.record("gen_ai.usage.input_tokens", 7u64);
            span.record("gen_ai.usage.output_tokens", 3u64);
            span.record("gen_ai.response.finish_reasons", "stop");
        }
        root.record("output.answer", "it shipped");
    });
    let run = &sink.runs()[0];
    assert_eq!(run.output, json!({"answer": "it shipped"}));
    let chat = &run.steps[0];
    assert_eq!(chat.inputs["prompt"], json!("where is my order?"));
    assert_eq!(chat.inputs["context"], json!("order A-1"));
    assert_eq!(chat.outputs["completion"], json!("it shipped"));
    assert_eq!(chat.outputs["citations"], json!(2));
    assert_eq!(chat.model_name.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!((chat.input_tokens, chat.output_tokens), (Some(7), Some(3)));
    assert_eq!(
        chat.attributes["gen_ai.response.finish_reasons"],
        json!("stop")
    );
    assert!(!chat.attributes.contains_key("gen_ai.completion"));
}

#[test]
fn a_span_inside_a_guard_or_traced_function_nests_under_it() {
    let (_rt, sink, sub) = setup();
    tracing::subscriber::with_default(sub, || {
        tracing::info_span!("agent").in_scope(|| {
            let _tool = tracecraft::step(StepType::Tool, "guard").start();
            tracing::info_span!("inner").in_scope(|| {});
        });
    });
    let run = &sink.runs()[0];
    assert_eq!(run.steps.len(), 1);
    assert_eq!(run.steps[0].name, "guard");
    assert_eq!(run.steps[0].children[0].name, "inner");
}

#[test]
fn older_genai_content_events_are_messages_and_choices_too() {
    let (_rt, sink, sub) = setup();
    tracing::subscriber::with_default(sub, || {
        tracing::info_span!("agent").in_scope(|| {
            tracing::info_span!("chat").in_scope(|| {
                tracing::info!(name: "gen_ai.content.prompt", { gen_ai.prompt = "hi" }, "");
                tracing::info!(name: "gen_ai.content.completion", { gen_ai.completion = "hello" }, "");
            });
        });
    });
    let chat = &sink.runs()[0].steps[0];
    assert_eq!(
        chat.inputs["messages"],
        json!([{"prompt": "hi", "role": "user"}])
    );
    assert_eq!(chat.outputs["choices"], json!([{"completion": "hello"}]));
}
