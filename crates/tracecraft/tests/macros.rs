//! The attributes: each call of a traced function is a step of the current run.
#![cfg(feature = "macros")]

use serde_json::json;
use tracecraft::{EXCLUDED, InRun, RuntimeOptions, StepType};

mod common;

#[derive(Debug)]
struct RateLimited;
impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rate limited")
    }
}

/// Not `Serialize`: fine, it is excluded and never read.
struct ApiKey(#[allow(dead_code)] String);

#[tracecraft::trace_llm(name = "chat", model = "gpt-4o", provider = "openai", exclude_inputs = ["api_key"])]
fn chat(prompt: &str, api_key: &ApiKey, temperature: f64) -> Result<String, RateLimited> {
    let _ = (api_key, temperature);
    if prompt.is_empty() {
        return Err(RateLimited);
    }
    tracecraft::current_step()
        .set_model_name("gpt-4o-2024-08-06")
        .set_tokens(12, 30);
    Ok(format!("answer to {prompt}"))
}

#[tracecraft::trace_tool]
fn lookup(order: u32) -> Option<&'static str> {
    (order == 1).then_some("shipped")
}

#[tracecraft::trace_tool(capture_inputs = false, capture_outputs = false)]
fn secret_tool(token: &str) -> String {
    format!("used {token}")
}

#[tracecraft::trace_agent]
fn agent(question: &str) -> Result<String, RateLimited> {
    let key = ApiKey("sk-live-abc".into());
    let status = lookup(1).unwrap_or("unknown");
    let _ = secret_tool("tok-123");
    let answer = chat(question, &key, 0.2)?;
    let _ = chat("", &key, 0.2);
    Ok(format!("{answer} ({status})"))
}

#[tracecraft::trace_step(type = guardrail, name = "check")]
fn check(text: &str) {
    let _ = text;
}

#[tracecraft::trace_step(type = "memory")]
fn recall(_: u8, (a, b): (u8, u8)) -> u8 {
    a + b
}

struct Client {
    base: String,
}

impl Client {
    #[tracecraft::trace_retrieval(exclude_inputs = ["filter"])]
    fn search(&self, query: &str, filter: &str) -> Vec<String> {
        vec![format!("{}/{query}/{}", self.base, filter.len())]
    }

    #[tracecraft::trace_llm(model = "m")]
    async fn complete(&self, prompt: String) -> Result<String, std::io::Error> {
        tokio::task::yield_now().await;
        let parts = self.search(&prompt, "f");
        tracecraft::current_step().set_tokens(1, 2);
        if prompt == "fail" {
            Err(std::io::Error::other("boom"))?;
        }
        Ok(parts.join(","))
    }
}

#[test]
fn sync_functions_record_steps_inputs_outputs_and_errors() {
    let (rt, sink) = common::memory_runtime(RuntimeOptions::default());
    {
        let _run = rt.run("support").start();
        agent("where is my order?").unwrap();
        check("fine");
        assert_eq!(recall(0, (1, 2)), 3);
        let client = Client { base: "kb".into() };
        client.search("shoes", "secret-filter");
    }
    let run = &sink.runs()[0];
    let names: Vec<_> = run.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["agent", "check", "recall", "search"]);
    let agent = &run.steps[0];
    assert_eq!(agent.step_type, StepType::Agent);
    assert_eq!(agent.inputs["question"], json!("where is my order?"));
    assert_eq!(
        agent.outputs["result"],
        json!("answer to where is my order? (shipped)")
    );
    let kids: Vec<_> = agent.children.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(kids, ["lookup", "secret_tool", "chat", "chat"]);

    let lookup = &agent.children[0];
    assert_eq!(lookup.step_type, StepType::Tool);
    assert_eq!(lookup.inputs["order"], json!(1));
    assert_eq!(lookup.outputs["result"], json!("shipped"));

    let secret = &agent.children[1];
    assert!(secret.inputs.is_empty() && secret.outputs.is_empty());

    let ok = &agent.children[2];
    assert_eq!(ok.step_type, StepType::Llm);
    assert_eq!(ok.inputs["prompt"], json!("where is my order?"));
    assert_eq!(ok.inputs["api_key"], json!(EXCLUDED));
    assert_eq!(ok.inputs["temperature"], json!(0.2));
    assert_eq!(ok.outputs["result"], json!("answer to where is my order?"));
    assert_eq!(
        ok.model_name.as_deref(),
        Some("gpt-4o-2024-08-06"),
        "set from inside wins"
    );
    assert_eq!(ok.model_provider.as_deref(), Some("openai"));
    assert_eq!((ok.input_tokens, ok.output_tokens), (Some(12), Some(30)));
    assert!(ok.error.is_none());

    let failed = &agent.children[3];
    assert_eq!(failed.error.as_deref(), Some("rate limited"));
    assert_eq!(failed.error_type.as_deref(), Some("RateLimited"));
    assert!(failed.outputs.is_empty());
    assert_eq!(failed.model_name.as_deref(), Some("gpt-4o"));

    assert_eq!(run.steps[1].step_type, StepType::Guardrail);
    assert!(run.steps[1].outputs.is_empty(), "() has no output");
    assert_eq!(run.steps[2].step_type, StepType::Memory);
    assert!(
        run.steps[2].inputs.is_empty(),
        "pattern arguments are not recorded"
    );
    assert_eq!(run.steps[3].step_type, StepType::Retrieval);
    assert_eq!(run.steps[3].inputs["query"], json!("shoes"));
    assert_eq!(run.steps[3].inputs["filter"], json!(EXCLUDED));
    let text = tracecraft::core::json::to_json(run);
    assert!(!text.contains("sk-live-abc") && !text.contains("secret-filter"));
    assert!(!text.contains("tok-123"));
}

#[test]
fn outside_a_run_the_function_just_runs() {
    let (_rt, sink) = common::memory_runtime(RuntimeOptions::default());
    assert_eq!(lookup(1), Some("shipped"));
    assert!(sink.runs().is_empty());
}

#[test]
fn panics_are_recorded_and_propagate() {
    #[tracecraft::trace_tool]
    fn explode(n: u8) -> u8 {
        if n > 0 {
            panic!("secret {n}");
        }
        n
    }
    let (rt, sink) = common::memory_runtime(RuntimeOptions::default());
    let caught = std::panic::catch_unwind(|| {
        let _run = rt.run("r").start();
        explode(1)
    });
    assert!(caught.is_err());
    let step = &sink.runs()[0].steps[0];
    assert_eq!(step.error_type.as_deref(), Some("panic"));
    assert_eq!(step.error.as_deref(), Some("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_functions_record_across_awaits_and_tasks() {
    let (rt, sink) = common::memory_runtime(RuntimeOptions::default());
    {
        let _run = rt.run("async").start();
        let client = std::sync::Arc::new(Client { base: "kb".into() });
        let a = {
            let c = client.clone();
            tokio::spawn(async move { c.complete("hello".into()).await }.in_current_run())
        };
        let b = {
            let c = client.clone();
            tokio::spawn(async move { c.complete("fail".into()).await }.in_current_run())
        };
        assert_eq!(a.await.unwrap().unwrap(), "kb/hello/1");
        assert!(b.await.unwrap().is_err());
    }
    let run = &sink.runs()[0];
    assert_eq!(run.steps.len(), 2);
    for step in &run.steps {
        assert_eq!(step.name, "complete");
        assert_eq!(step.model_name.as_deref(), Some("m"));
        assert_eq!((step.input_tokens, step.output_tokens), (Some(1), Some(2)));
        assert_eq!(step.children.len(), 1, "the search inside is a child");
        assert_eq!(step.children[0].name, "search");
        let prompt = step.inputs["prompt"].as_str().unwrap();
        if prompt == "fail" {
            assert_eq!(step.error.as_deref(), Some("boom"));
            assert_eq!(step.error_type.as_deref(), Some("Error"));
        } else {
            assert_eq!(step.outputs["result"], json!("kb/hello/1"));
        }
    }
}

/// Serializing it fails the test: proof that an excluded argument is never serialized.
struct Bomb;
impl serde::Serialize for Bomb {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("an excluded argument was serialized");
    }
}

#[tracecraft::trace_tool(exclude_inputs = ["secret"])]
fn guarded(secret: &Bomb, n: u32) -> u32 {
    let _ = secret;
    n
}

#[test]
fn excluded_arguments_are_never_serialized() {
    let (rt, sink) = common::memory_runtime(RuntimeOptions::default());
    {
        let _run = rt.run("r").start();
        assert_eq!(guarded(&Bomb, 3), 3);
    }
    let step = &sink.runs()[0].steps[0];
    assert_eq!(step.inputs["secret"], json!(EXCLUDED));
    assert_eq!(step.inputs["n"], json!(3));
}

#[tracecraft::trace_tool]
async fn slow(ms: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    ms
}

#[tokio::test]
async fn an_async_step_dropped_before_it_completes_is_cancelled() {
    let (rt, sink) = common::memory_runtime(RuntimeOptions::default());
    {
        let _run = rt.run("r").start();
        let late = tokio::time::timeout(std::time::Duration::from_millis(5), slow(10_000));
        assert!(late.await.is_err());
        assert_eq!(slow(1).await, 1);
    }
    let steps = &sink.runs()[0].steps;
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].error_type.as_deref(), Some("cancelled"));
    assert!(steps[0].outputs.is_empty());
    assert!(steps[1].error.is_none());
    assert_eq!(steps[1].outputs["result"], json!(1));
}

#[test]
fn current_step_of_a_step_too_deep_to_record_is_inert() {
    let mut options = RuntimeOptions::default();
    options.max_step_depth = Some(1);
    let (rt, sink) = common::memory_runtime(options);
    {
        let _run = rt.run("r").start();
        let _outer = tracecraft::step(StepType::Tool, "outer").start();
        let _inner = tracecraft::step(StepType::Llm, "too deep").start();
        assert!(!tracecraft::current_step().is_recording());
        tracecraft::current_step().set_tokens(5, 5);
    }
    let outer = &sink.runs()[0].steps[0];
    assert_eq!(outer.name, "outer");
    assert_eq!(outer.input_tokens, None, "not set on the parent");
}
