//! What LLM trace backends read: requests decoded from the mock collector carry the
//! OpenInference, GenAI and MLflow keys on every step type; dialect and content settings; the
//! reverse mapping gives the run back (round trip) and reads spans of other SDKs.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;
use tracecraft_core::{AgentRun, Exporter, ProcessedRun, Step, StepType};
use tracecraft_otlp::mapping::{self, Content, Dialect, Dialects, MappingOptions};
use tracecraft_otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value as V};
use tracecraft_otlp::proto::trace::v1::status::StatusCode;
use tracecraft_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecraft_otlp::reverse;
use tracecraft_otlp::testing::MockCollector;
use tracecraft_otlp::{OtlpExporter, Protocol};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a V> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn s<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(&span.attributes, key) {
        Some(V::StringValue(s)) => s,
        other => panic!("{}: {key}: {other:?}", span.name),
    }
}

fn has(span: &Span, key: &str) -> bool {
    attr(&span.attributes, key).is_some()
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(&span.attributes, key) {
        Some(V::IntValue(i)) => *i,
        other => panic!("{}: {key}: {other:?}", span.name),
    }
}

/// A finished run with one step of every type, each with content; the LLM step failed.
fn every_type_run() -> AgentRun {
    let t0 = Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0).unwrap();
    let t = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let mut run = AgentRun::builder("support")
        .start_time(t0)
        .session_id("sess-1")
        .user_id("user-9")
        .environment("staging")
        .tag("eu")
        .input(json!({"question": "where is my order?"}))
        .output("It ships today.")
        .attribute("team", "core")
        .build();
    let id = run.id;
    let step = |ty: StepType, name: &str, start: i64| {
        let mut s = Step::builder(id, ty, name).start_time(t(start)).build();
        s.finish_at(t(start + 10));
        s
    };
    let mut llm = step(StepType::Llm, "openai.chat", 10);
    llm.model_name = Some("gpt-4o".into());
    llm.model_provider = Some("openai".into());
    llm.input_tokens = Some(12);
    llm.output_tokens = Some(30);
    llm.cost_usd = Some(0.25);
    llm.inputs = json!({
        "system": "You are helpful.",
        "messages": [{"role": "user", "content": "where is my order?"}]
    })
    .as_object()
    .unwrap()
    .clone();
    llm.outputs = json!({"text": "It ships today.", "finish_reason": "stop"})
        .as_object()
        .unwrap()
        .clone();
    llm.attributes = json!({"temperature": 0.2, "max_tokens": 256})
        .as_object()
        .unwrap()
        .clone();
    llm.is_streaming = true;
    llm.streaming_chunks = vec!["It ships".into(), " today.".into()];
    llm.error = Some("rate limited".into());
    llm.error_type = Some("RateLimitError".into());
    let mut tool = step(StepType::Tool, "search", 30);
    tool.inputs = json!({"query": "order 42"}).as_object().unwrap().clone();
    tool.outputs = json!({"result": "shipped"}).as_object().unwrap().clone();
    let mut retrieval = step(StepType::Retrieval, "kb", 40);
    retrieval.inputs = json!({"query": "shipping"}).as_object().unwrap().clone();
    retrieval.outputs = json!({"documents": [
        {"id": "d1", "content": "Orders ship in 24h.", "score": 0.9},
        "plain text doc"
    ]})
    .as_object()
    .unwrap()
    .clone();
    let mut agent = step(StepType::Agent, "planner", 5);
    agent.end_time = Some(t(95));
    agent.duration_ms = Some(90.0);
    agent.inputs = json!({"goal": "answer"}).as_object().unwrap().clone();
    agent.push_child(llm);
    agent.push_child(tool);
    agent.push_child(retrieval);
    run.push_step(agent);
    for (ty, name, start) in [
        (StepType::Memory, "recall", 50),
        (StepType::Guardrail, "pii-check", 60),
        (StepType::Evaluation, "judge", 70),
        (StepType::Workflow, "pipeline", 80),
        (StepType::Error, "oops", 90),
    ] {
        let mut s = step(ty, name, start);
        s.inputs = json!({"in": name}).as_object().unwrap().clone();
        s.outputs = json!({"out": name}).as_object().unwrap().clone();
        run.push_step(s);
    }
    run.finish_at(t(100));
    run.aggregate();
    run
}

fn export_and_collect(run: &AgentRun, options: MappingOptions) -> Vec<ResourceSpans> {
    let collector = MockCollector::start().unwrap();
    let mut exporter = OtlpExporter::builder()
        .protocol(Protocol::HttpProtobuf)
        .endpoint(collector.http_endpoint())
        .timeout(Duration::from_secs(10))
        .mapping(options)
        .build()
        .unwrap();
    exporter
        .export(&[ProcessedRun::assume_processed(run.clone())])
        .unwrap();
    collector
        .received()
        .into_iter()
        .flat_map(|r| r.request.resource_spans)
        .collect()
}

fn spans_of(rs: &[ResourceSpans]) -> Vec<Span> {
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.iter().cloned())
        .collect()
}

fn by_step_name<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| attr(&s.attributes, "tracecraft.step.name") == Some(&V::StringValue(name.into())))
        .unwrap_or_else(|| panic!("no span for step {name}"))
}

#[test]
fn exported_requests_carry_every_dialect_on_every_step_type() {
    let run = every_type_run();
    let rs = export_and_collect(&run, MappingOptions::default());
    let spans = spans_of(&rs);
    assert_eq!(spans.len(), 1 + run.step_count());

    // Every step type: its kinds, content with MIME types, status.
    let expected = [
        (
            "planner",
            "AGENT",
            "AGENT",
            Some("invoke_agent"),
            "invoke_agent planner",
        ),
        ("openai.chat", "LLM", "LLM", Some("chat"), "chat gpt-4o"),
        (
            "search",
            "TOOL",
            "TOOL",
            Some("execute_tool"),
            "execute_tool search",
        ),
        ("kb", "RETRIEVER", "RETRIEVER", None, "kb"),
        ("recall", "CHAIN", "MEMORY", None, "recall"),
        ("pii-check", "GUARDRAIL", "GUARDRAIL", None, "pii-check"),
        ("judge", "EVALUATOR", "EVALUATOR", None, "judge"),
        ("pipeline", "CHAIN", "WORKFLOW", None, "pipeline"),
        ("oops", "CHAIN", "UNKNOWN", None, "oops"),
    ];
    assert_eq!(expected.len(), StepType::ALL.len());
    for (step, oi_kind, mlflow, op, span_name) in expected {
        let span = by_step_name(&spans, step);
        assert_eq!(span.name, span_name);
        assert_eq!(s(span, "openinference.span.kind"), oi_kind, "{step}");
        // JSON-encoded, as MLflow stores its own span attributes.
        assert_eq!(
            s(span, "mlflow.spanType"),
            format!("\"{mlflow}\""),
            "{step}"
        );
        match op {
            Some(op) => assert_eq!(s(span, "gen_ai.operation.name"), op, "{step}"),
            None => assert!(!has(span, "gen_ai.operation.name"), "{step}"),
        }
        assert!(s(span, "input.value").starts_with('{'), "{step}");
        assert_eq!(s(span, "input.mime_type"), "application/json", "{step}");
        if step != "planner" {
            assert!(s(span, "output.value").starts_with('{'), "{step}");
            assert_eq!(s(span, "output.mime_type"), "application/json", "{step}");
        }
        let status = span.status.as_ref().unwrap();
        if step == "openai.chat" {
            assert_eq!(status.code, StatusCode::Error as i32);
        } else {
            assert_eq!(status.code, StatusCode::Ok as i32, "{step}");
        }
    }

    // The run span: agent kind, session and user in both vocabularies, MLflow's trace name.
    let root = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(root.name, "invoke_agent support");
    assert_eq!(s(root, "openinference.span.kind"), "AGENT");
    assert_eq!(s(root, "session.id"), "sess-1");
    assert_eq!(s(root, "gen_ai.conversation.id"), "sess-1");
    assert_eq!(s(root, "user.id"), "user-9");
    assert_eq!(s(root, "mlflow.traceTag.mlflow.traceName"), "support");
    assert_eq!(
        s(root, "input.value"),
        r#"{"question":"where is my order?"}"#
    );
    assert_eq!(s(root, "output.value"), "It ships today.");
    assert_eq!(s(root, "output.mime_type"), "text/plain");

    // LLM: messages in both shapes, model, tokens, parameters, finish reasons, the exception.
    let llm = by_step_name(&spans, "openai.chat");
    assert_eq!(s(llm, "llm.model_name"), "gpt-4o");
    assert_eq!(s(llm, "llm.provider"), "openai");
    assert_eq!(int(llm, "llm.token_count.prompt"), 12);
    assert_eq!(int(llm, "llm.token_count.completion"), 30);
    assert_eq!(int(llm, "llm.token_count.total"), 42);
    assert_eq!(int(llm, "gen_ai.usage.input_tokens"), 12);
    assert_eq!(s(llm, "gen_ai.request.model"), "gpt-4o");
    assert_eq!(s(llm, "gen_ai.provider.name"), "openai");
    let params: serde_json::Value =
        serde_json::from_str(s(llm, "llm.invocation_parameters")).unwrap();
    assert_eq!(params, json!({"temperature": 0.2, "max_tokens": 256}));
    assert!(
        matches!(attr(&llm.attributes, "gen_ai.request.temperature"), Some(V::DoubleValue(t)) if *t == 0.2)
    );
    let input: serde_json::Value = serde_json::from_str(s(llm, "gen_ai.input.messages")).unwrap();
    assert_eq!(
        input,
        json!([{"role": "user", "parts": [{"type": "text", "content": "where is my order?"}]}])
    );
    let output: serde_json::Value = serde_json::from_str(s(llm, "gen_ai.output.messages")).unwrap();
    assert_eq!(
        output,
        json!([{"role": "assistant", "parts": [{"type": "text", "content": "It ships today."}], "finish_reason": "stop"}])
    );
    let system: serde_json::Value =
        serde_json::from_str(s(llm, "gen_ai.system_instructions")).unwrap();
    assert_eq!(
        system,
        json!([{"type": "text", "content": "You are helpful."}])
    );
    assert_eq!(s(llm, "llm.input_messages.0.message.role"), "system");
    assert_eq!(
        s(llm, "llm.input_messages.0.message.content"),
        "You are helpful."
    );
    assert_eq!(s(llm, "llm.input_messages.1.message.role"), "user");
    assert_eq!(
        s(llm, "llm.input_messages.1.message.content"),
        "where is my order?"
    );
    assert_eq!(s(llm, "llm.output_messages.0.message.role"), "assistant");
    assert_eq!(
        s(llm, "llm.output_messages.0.message.content"),
        "It ships today."
    );
    match attr(&llm.attributes, "gen_ai.response.finish_reasons") {
        Some(V::ArrayValue(a)) => assert_eq!(a.values.len(), 1),
        other => panic!("{other:?}"),
    }
    let status = llm.status.as_ref().unwrap();
    assert_eq!(status.message, "rate limited");
    let event = llm.events.iter().find(|e| e.name == "exception").unwrap();
    assert_eq!(
        attr(&event.attributes, "exception.type"),
        Some(&V::StringValue("RateLimitError".into()))
    );
    assert_eq!(
        attr(&event.attributes, "exception.message"),
        Some(&V::StringValue("rate limited".into()))
    );

    // Tool: name, parameters, call arguments and result.
    let tool = by_step_name(&spans, "search");
    assert_eq!(s(tool, "tool.name"), "search");
    assert_eq!(s(tool, "gen_ai.tool.name"), "search");
    assert_eq!(s(tool, "tool.parameters"), r#"{"query":"order 42"}"#);
    assert_eq!(
        s(tool, "gen_ai.tool.call.arguments"),
        r#"{"query":"order 42"}"#
    );
    assert_eq!(s(tool, "gen_ai.tool.call.result"), "shipped");

    // Retrieval: documents.
    let kb = by_step_name(&spans, "kb");
    assert_eq!(s(kb, "retrieval.documents.0.document.id"), "d1");
    assert_eq!(
        s(kb, "retrieval.documents.0.document.content"),
        "Orders ship in 24h."
    );
    assert!(
        matches!(attr(&kb.attributes, "retrieval.documents.0.document.score"), Some(V::DoubleValue(x)) if *x == 0.9)
    );
    assert_eq!(
        s(kb, "retrieval.documents.1.document.content"),
        "plain text doc"
    );
}

#[test]
fn dialects_and_content_settings_select_keys() {
    let run = every_type_run();
    let only_genai = MappingOptions::builder()
        .dialects(Dialects::none().with(Dialect::GenAi))
        .build();
    let spans = mapping::run_spans_with(&run, &only_genai);
    for span in &spans {
        assert!(!has(span, "openinference.span.kind"), "{}", span.name);
        assert!(!has(span, "mlflow.spanType"), "{}", span.name);
        assert!(span.attributes.iter().all(|kv| !kv.key.starts_with("llm.")));
    }
    let llm = by_step_name(&spans, "openai.chat");
    assert!(has(llm, "gen_ai.input.messages"));

    let only_oi = MappingOptions::builder()
        .dialects(Dialects::none().with(Dialect::OpenInference))
        .build();
    let spans = mapping::run_spans_with(&run, &only_oi);
    let llm = by_step_name(&spans, "openai.chat");
    assert!(!has(llm, "gen_ai.input.messages"));
    assert!(has(llm, "llm.input_messages.0.message.role"));
    assert!(
        has(llm, "gen_ai.request.model"),
        "the GenAI basics are always there"
    );

    let metadata = MappingOptions::builder().content(Content::None).build();
    let spans = mapping::run_spans_with(&run, &metadata);
    for span in &spans {
        for key in [
            "input.value",
            "output.value",
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
            "tool.parameters",
            "tracecraft.streaming.chunks",
        ] {
            assert!(!has(span, key), "{}: {key}", span.name);
        }
        assert!(
            span.attributes
                .iter()
                .all(|kv| !kv.key.starts_with("llm.input_messages")
                    && !kv.key.starts_with("retrieval.documents"))
        );
    }
    let llm = by_step_name(&spans, "openai.chat");
    assert_eq!(int(llm, "gen_ai.usage.input_tokens"), 12);
    assert_eq!(s(llm, "openinference.span.kind"), "LLM");
}

#[test]
fn round_trip_keeps_the_run() {
    let run = every_type_run();
    for dialects in [
        Dialects::all(),
        Dialects::none().with(Dialect::GenAi),
        Dialects::none().with(Dialect::OpenInference),
        Dialects::none(),
    ] {
        let options = MappingOptions::builder().dialects(dialects).build();
        let rs = export_and_collect(&run, options);
        let back = reverse::runs_from_resource_spans(&rs);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0], run, "{dialects:?}");
    }
}

#[test]
fn duplicate_spans_count_once() {
    let run = every_type_run();
    let request = mapping::to_request(
        &[ProcessedRun::assume_processed(run.clone())],
        &MappingOptions::default(),
    );
    let mut twice = request.resource_spans.clone();
    twice.extend(request.resource_spans.clone());
    let back = reverse::runs_from_resource_spans(&twice);
    assert_eq!(back, vec![run]);
}

fn kv(key: &str, value: V) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn foreign_span(id: u8, parent: Option<u8>, name: &str, start: u64, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

#[test]
fn spans_of_other_sdks_become_runs() {
    let str_ = |s: &str| V::StringValue(s.into());
    let spans = vec![
        foreign_span(
            1,
            None,
            "agent",
            1_000,
            vec![
                kv("openinference.span.kind", str_("AGENT")),
                kv("session.id", str_("s-7")),
                kv("http.route", str_("/ask")),
            ],
        ),
        // OpenInference LLM with flattened messages.
        foreign_span(
            2,
            Some(1),
            "ChatOpenAI",
            2_000,
            vec![
                kv("openinference.span.kind", str_("LLM")),
                kv("llm.model_name", str_("gpt-4o-mini")),
                kv("llm.token_count.prompt", V::IntValue(5)),
                kv("llm.input_messages.0.message.role", str_("user")),
                kv("llm.input_messages.0.message.content", str_("hi")),
                kv("llm.output_messages.0.message.role", str_("assistant")),
                kv("llm.output_messages.0.message.content", str_("hello")),
            ],
        ),
        // GenAI tool call without OpenInference.
        foreign_span(
            3,
            Some(1),
            "execute_tool lookup",
            3_000,
            vec![
                kv("gen_ai.operation.name", str_("execute_tool")),
                kv("gen_ai.tool.call.arguments", str_(r#"{"id":42}"#)),
                kv("gen_ai.tool.call.result", str_("found")),
            ],
        ),
        // GenAI chat with structured messages.
        foreign_span(
            4,
            Some(1),
            "chat claude",
            4_000,
            vec![
                kv("gen_ai.operation.name", str_("chat")),
                kv("gen_ai.request.model", str_("claude")),
                kv(
                    "gen_ai.input.messages",
                    str_(r#"[{"role":"user","parts":[{"type":"text","content":"q"}]}]"#),
                ),
            ],
        ),
        // Nothing but a name.
        foreign_span(5, Some(1), "vector search", 5_000, vec![]),
        // Retrieval documents.
        foreign_span(
            6,
            Some(1),
            "retrieve",
            6_000,
            vec![
                kv("openinference.span.kind", str_("RETRIEVER")),
                kv("retrieval.documents.0.document.content", str_("doc")),
                kv("retrieval.documents.0.document.id", str_("x1")),
            ],
        ),
        // A parent cycle (9 <-> 8): neither is lost.
        foreign_span(8, Some(9), "a", 7_000, vec![]),
        foreign_span(9, Some(8), "b", 8_000, vec![]),
    ];
    let rs = vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }];
    let runs = reverse::runs_from_resource_spans(&rs);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.name, "agent");
    assert_eq!(run.session_id.as_deref(), Some("s-7"));
    assert_eq!(run.step_count(), 8);
    let agent = &run.steps[0];
    assert_eq!(agent.step_type, StepType::Agent);
    assert_eq!(agent.attributes.get("http.route"), Some(&json!("/ask")));
    assert_eq!(agent.children.len(), 5);
    let types: Vec<StepType> = agent.children.iter().map(|c| c.step_type).collect();
    assert_eq!(
        types,
        [
            StepType::Llm,
            StepType::Tool,
            StepType::Llm,
            StepType::Retrieval,
            StepType::Retrieval
        ]
    );
    let llm = &agent.children[0];
    assert_eq!(llm.model_name.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(llm.input_tokens, Some(5));
    assert_eq!(
        llm.inputs["messages"],
        json!([{"role": "user", "content": "hi"}])
    );
    assert_eq!(
        llm.outputs["messages"],
        json!([{"role": "assistant", "content": "hello"}])
    );
    let tool = &agent.children[1];
    assert_eq!(tool.inputs["id"], json!(42));
    assert_eq!(tool.outputs["result"], json!("found"));
    assert_eq!(
        agent.children[2].inputs["messages"],
        json!([{"role": "user", "content": "q"}])
    );
    assert_eq!(
        agent.children[4].outputs["documents"],
        json!([{"content": "doc", "id": "x1"}])
    );
    // The span id survives: a collector deduplicating by span id sees the same span.
    let back = mapping::run_spans(run);
    assert!(back.iter().any(|s| s.span_id == vec![2; 8]));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn step_type() -> impl Strategy<Value = StepType> {
        prop::sample::select(StepType::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any run of nested steps with text content, errors and attributes comes back equal.
        #[test]
        fn any_run_round_trips(
            shape in prop::collection::vec((step_type(), ".{0,8}", 0usize..4, any::<bool>(), prop::option::of(0u64..1_000)), 0..12),
            name in ".{0,8}",
        ) {
            let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
            let mut run = AgentRun::builder(name).start_time(t0).build();
            let mut stack: Vec<Step> = Vec::new();
            for (i, (ty, text, depth, failed, tokens)) in shape.into_iter().enumerate() {
                let mut step = Step::builder(run.id, ty, text.clone())
                    .start_time(t0 + chrono::Duration::microseconds(i as i64))
                    .input("text", text.clone())
                    .attribute("k", text.clone())
                    .build();
                step.finish_at(t0 + chrono::Duration::milliseconds(i as i64 + 5));
                step.input_tokens = tokens;
                if failed {
                    step.error = Some(text.clone());
                    step.error_type = Some("E".into());
                }
                // Nest under the previous step `depth` levels down the open stack.
                while stack.len() > depth {
                    let child = stack.pop().unwrap();
                    match stack.last_mut() {
                        Some(parent) => parent.push_child(child),
                        None => run.push_step(child),
                    }
                }
                stack.push(step);
            }
            while let Some(child) = stack.pop() {
                match stack.last_mut() {
                    Some(parent) => parent.push_child(child),
                    None => run.push_step(child),
                }
            }
            run.finish_at(t0 + chrono::Duration::seconds(1));
            run.aggregate();
            let request = mapping::to_request(&[ProcessedRun::assume_processed(run.clone())], &MappingOptions::default());
            let back = reverse::runs_from_request(&request);
            prop_assert_eq!(back, vec![run]);
        }
    }
}
