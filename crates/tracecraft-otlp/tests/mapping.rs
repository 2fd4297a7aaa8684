//! The AgentRun -> OTLP mapping: ids, parents, attributes, status, resource, depth safety,
//! request splitting.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use chrono::{TimeZone, Utc};
use serde_json::json;
use tracecraft_core::{AgentRun, ProcessedRun, Step, StepType};
use tracecraft_otlp::mapping::{self, MappingOptions};
use tracecraft_otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value as V};
use tracecraft_otlp::proto::trace::v1::Span;
use tracecraft_otlp::proto::trace::v1::span::SpanKind;
use tracecraft_otlp::proto::trace::v1::status::StatusCode;

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
        other => panic!("{key}: {other:?}"),
    }
}

fn i(span: &Span, key: &str) -> i64 {
    match attr(&span.attributes, key) {
        Some(V::IntValue(i)) => *i,
        other => panic!("{key}: {other:?}"),
    }
}

/// run "support" -> agent "plan" -> [llm "openai.chat" (error), tool "search"]; retrieval root.
fn sample_run() -> AgentRun {
    let t0 = Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 2).unwrap();
    let mut run = AgentRun::builder("support")
        .start_time(t0)
        .end_time(t1)
        .session_id("sess-1")
        .user_id("user-9")
        .environment("staging")
        .tag("eu")
        .tag("beta")
        .input(json!({"q": "hello"}))
        .output("bye")
        .attribute("service.name", "support-bot")
        .attribute("team", "core")
        .build();
    let llm = Step::builder(run.id, StepType::Llm, "openai.chat")
        .start_time(t0)
        .end_time(t1)
        .model("gpt-4o", "openai")
        .tokens(12, 30)
        .cost_usd(0.25)
        .input("prompt", "hi")
        .output("text", "yo")
        .chunk("y")
        .chunk("o")
        .attribute("temperature", 0.5)
        .attribute(
            "nested",
            json!({"a": [1, true, null, "x"], "big": u64::MAX}),
        )
        .error("rate limited", "RateLimitError")
        .build();
    let tool = Step::builder(run.id, StepType::Tool, "search")
        .start_time(t0)
        .build();
    let plan = Step::builder(run.id, StepType::Agent, "plan")
        .start_time(t0)
        .end_time(t1)
        .child(llm)
        .child(tool)
        .build();
    run.push_step(plan);
    run.push_step(
        Step::builder(run.id, StepType::Retrieval, "docs")
            .start_time(t0)
            .build(),
    );
    run.aggregate();
    run
}

#[test]
fn ids_parents_and_order() {
    let run = sample_run();
    let spans = mapping::run_spans(&run);
    assert_eq!(spans.len(), 5);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "invoke_agent support",
            "invoke_agent plan",
            "chat gpt-4o",
            "execute_tool search",
            "docs"
        ]
    );
    for span in &spans {
        assert_eq!(span.trace_id, run.id.as_bytes().to_vec());
        assert_eq!(span.span_id.len(), 8);
    }
    let run_span = &spans[0];
    assert_eq!(run_span.span_id, run.id.as_bytes()[..8].to_vec());
    assert!(run_span.parent_span_id.is_empty());
    let plan = &run.steps[0];
    assert_eq!(spans[1].span_id, plan.id.as_bytes()[..8].to_vec());
    assert_eq!(spans[1].parent_span_id, run_span.span_id);
    assert_eq!(spans[2].parent_span_id, spans[1].span_id);
    assert_eq!(spans[3].parent_span_id, spans[1].span_id);
    assert_eq!(spans[4].parent_span_id, run_span.span_id);
    let start = run.start_time.timestamp_nanos_opt().unwrap() as u64;
    assert_eq!(run_span.start_time_unix_nano, start);
    assert_eq!(run_span.end_time_unix_nano, start + 2_000_000_000);
    // An unfinished step ends when it started (never before).
    assert_eq!(spans[3].end_time_unix_nano, spans[3].start_time_unix_nano);
}

#[test]
fn run_span_attributes() {
    let run = sample_run();
    let spans = mapping::run_spans(&run);
    let r = &spans[0];
    assert_eq!(s(r, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(s(r, "session.id"), "sess-1");
    assert_eq!(s(r, "user.id"), "user-9");
    assert_eq!(s(r, "tracecraft.environment"), "staging");
    assert_eq!(s(r, "input.value"), r#"{"q":"hello"}"#);
    assert_eq!(s(r, "input.mime_type"), "application/json");
    assert_eq!(s(r, "output.value"), "bye");
    assert_eq!(s(r, "output.mime_type"), "text/plain");
    assert_eq!(s(r, "team"), "core");
    assert_eq!(i(r, "tracecraft.total_tokens"), 42);
    assert_eq!(i(r, "tracecraft.error_count"), 1);
    match attr(&r.attributes, "tracecraft.tags") {
        Some(V::ArrayValue(a)) => {
            let tags: Vec<_> = a
                .values
                .iter()
                .map(|v| match &v.value {
                    Some(V::StringValue(s)) => s.as_str(),
                    _ => panic!(),
                })
                .collect();
            assert_eq!(tags, ["eu", "beta"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.status.as_ref().unwrap().code,
        StatusCode::Ok as i32,
        "the run itself did not fail"
    );
    assert!(r.events.is_empty());
    assert_eq!(r.kind, SpanKind::Internal as i32);
}

#[test]
fn step_attributes_follow_genai_conventions() {
    let run = sample_run();
    let spans = mapping::run_spans(&run);
    let llm = &spans[2];
    assert_eq!(llm.kind, SpanKind::Client as i32);
    assert_eq!(s(llm, "gen_ai.operation.name"), "chat");
    assert_eq!(s(llm, "gen_ai.provider.name"), "openai");
    assert_eq!(s(llm, "gen_ai.request.model"), "gpt-4o");
    assert_eq!(i(llm, "gen_ai.usage.input_tokens"), 12);
    assert_eq!(i(llm, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(s(llm, "tracecraft.step.type"), "llm");
    assert_eq!(s(llm, "input.value"), r#"{"prompt":"hi"}"#);
    assert_eq!(s(llm, "output.value"), r#"{"text":"yo"}"#);
    assert_eq!(s(llm, "error.type"), "RateLimitError");
    assert_eq!(i(llm, "tracecraft.streaming.chunk_count"), 2);
    assert!(matches!(
        attr(&llm.attributes, "tracecraft.streaming"),
        Some(V::BoolValue(true))
    ));
    assert!(
        matches!(attr(&llm.attributes, "tracecraft.cost_usd"), Some(V::DoubleValue(c)) if *c == 0.25)
    );
    assert!(matches!(attr(&llm.attributes, "temperature"), Some(V::DoubleValue(t)) if *t == 0.5));
    let status = llm.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "rate limited");
    let event = &llm.events[0];
    assert_eq!(event.name, "exception");
    assert_eq!(event.time_unix_nano, llm.end_time_unix_nano);
    assert_eq!(
        attr(&event.attributes, "exception.type"),
        Some(&V::StringValue("RateLimitError".into()))
    );
    assert_eq!(
        attr(&event.attributes, "exception.message"),
        Some(&V::StringValue("rate limited".into()))
    );
    // JSON objects become key-value lists; u64 beyond i64 becomes a double; null is empty.
    let Some(V::KvlistValue(nested)) = attr(&llm.attributes, "nested") else {
        panic!()
    };
    let Some(V::ArrayValue(a)) = attr(&nested.values, "a") else {
        panic!()
    };
    assert_eq!(a.values.len(), 4);
    assert_eq!(a.values[2], AnyValue { value: None });
    assert!(matches!(
        attr(&nested.values, "big"),
        Some(V::DoubleValue(_))
    ));
    let tool = &spans[3];
    assert_eq!(s(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(s(tool, "gen_ai.tool.name"), "search");
    assert_eq!(s(&spans[1], "gen_ai.operation.name"), "invoke_agent");
    assert!(attr(&spans[4].attributes, "gen_ai.operation.name").is_none());
    assert_eq!(s(&spans[4], "tracecraft.step.type"), "retrieval");
}

#[test]
fn user_attributes_override_genai_defaults_but_not_tracecraft_keys() {
    let mut run = AgentRun::new("r");
    run.push_step(
        Step::builder(run.id, StepType::Llm, "embed")
            .attribute("gen_ai.operation.name", "embeddings")
            .attribute("tracecraft.step.type", "forged")
            .build(),
    );
    let spans = mapping::run_spans(&run);
    assert_eq!(s(&spans[1], "gen_ai.operation.name"), "embeddings");
    assert_eq!(s(&spans[1], "tracecraft.step.type"), "llm");
}

#[test]
fn run_error_sets_status() {
    let run = AgentRun::builder("r").error("", "Timeout").build();
    let spans = mapping::run_spans(&run);
    let st = spans[0].status.as_ref().unwrap();
    assert_eq!(st.code, StatusCode::Error as i32);
    assert_eq!(
        st.message, "Timeout",
        "an empty message falls back to the type"
    );
}

#[test]
fn resource_groups_by_service_and_environment() {
    let a = ProcessedRun::assume_processed(sample_run());
    let b = ProcessedRun::assume_processed(AgentRun::builder("other").environment("prod").build());
    let c = ProcessedRun::assume_processed(sample_run());
    let options = MappingOptions::builder()
        .service_name("fallback")
        .resource_attribute("service.version", "1.2.3")
        .resource_attribute("telemetry.sdk.name", "forged")
        .build();
    let req = mapping::to_request(&[a, b, c], &options);
    assert_eq!(req.resource_spans.len(), 2);
    let res = |i: usize, key: &str| -> String {
        match attr(
            &req.resource_spans[i].resource.as_ref().unwrap().attributes,
            key,
        ) {
            Some(V::StringValue(s)) => s.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(res(0, "service.name"), "support-bot");
    assert_eq!(res(0, "deployment.environment.name"), "staging");
    assert_eq!(res(0, "telemetry.sdk.name"), "tracecraft");
    assert_eq!(res(0, "telemetry.sdk.language"), "rust");
    assert_eq!(res(0, "telemetry.sdk.version"), mapping::SDK_VERSION);
    assert_eq!(res(0, "service.version"), "1.2.3");
    assert_eq!(res(1, "service.name"), "fallback");
    assert_eq!(res(1, "deployment.environment.name"), "prod");
    assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 10);
    assert_eq!(
        req.resource_spans[0].scope_spans[0]
            .scope
            .as_ref()
            .unwrap()
            .name,
        "tracecraft"
    );
    let none = mapping::to_request(
        &[ProcessedRun::assume_processed(AgentRun::new("x"))],
        &MappingOptions::default(),
    );
    match attr(
        &none.resource_spans[0].resource.as_ref().unwrap().attributes,
        "service.name",
    ) {
        Some(V::StringValue(s)) => assert_eq!(s, mapping::UNKNOWN_SERVICE),
        other => panic!("{other:?}"),
    }
}

fn nested(depth: usize) -> serde_json::Value {
    let mut v = json!("leaf");
    for _ in 0..depth {
        v = serde_json::Value::Array(vec![v]);
    }
    v
}

#[test]
fn deep_values_are_cut_not_overflowed() {
    // 5,000 levels: serde_json itself would recurse on these; the mapping must not.
    let deep = nested(5_000);
    let av = mapping::any_value(&deep);
    let mut depth = 0;
    let mut cur = &av;
    while let Some(V::ArrayValue(a)) = &cur.value {
        depth += 1;
        cur = &a.values[0];
    }
    assert_eq!(depth, mapping::MAX_VALUE_DEPTH);
    assert_eq!(
        cur.value,
        Some(V::StringValue(tracecraft_core::value::TRUNCATED.into()))
    );
    assert_eq!(
        mapping::json_text(&deep),
        format!("\"{}\"", tracecraft_core::value::TRUNCATED)
    );
    assert_eq!(mapping::json_text(&nested(3)), r#"[[["leaf"]]]"#);
    tracecraft_core::value::dismantle(deep);
}

#[test]
fn deep_step_trees_do_not_recurse() {
    let mut run = AgentRun::new("deep");
    let mut step = Step::new(run.id, StepType::Workflow, "leaf");
    for i in 0..10_000 {
        step = Step::builder(run.id, StepType::Workflow, format!("s{i}"))
            .child(step)
            .build();
    }
    run.push_step(step);
    let spans = mapping::run_spans(&run);
    assert_eq!(spans.len(), 10_002);
    assert_eq!(spans[10_001].parent_span_id, spans[10_000].span_id);
    // Drop the tree without recursion.
    let mut stack = std::mem::take(&mut run.steps);
    while let Some(mut s) = stack.pop() {
        stack.append(&mut s.children);
    }
}

#[test]
fn nil_ids_become_valid_otlp_ids() {
    assert_eq!(mapping::trace_id(uuid::Uuid::nil())[15], 1);
    assert_ne!(mapping::span_id(uuid::Uuid::nil()), [0; 8]);
    let id = uuid::Uuid::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(mapping::span_id(id), [1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn large_batches_split_under_the_limit_without_losing_spans() {
    use prost::Message;
    let runs: Vec<ProcessedRun> = (0..20)
        .map(|n| {
            let mut run = AgentRun::builder(format!("run{n}"))
                .input("x".repeat(2_000))
                .build();
            for k in 0..3 {
                run.push_step(
                    Step::builder(run.id, StepType::Tool, format!("t{k}"))
                        .input("blob", "y".repeat(1_000))
                        .build(),
                );
            }
            ProcessedRun::assume_processed(run)
        })
        .collect();
    let options = MappingOptions::default();
    let whole = mapping::to_request(&runs, &options);
    let limit = 10_000;
    let parts = mapping::to_requests(&runs, &options, limit);
    assert!(parts.len() > 5, "{}", parts.len());
    for p in &parts {
        assert!(p.encoded_len() <= limit, "{} > {limit}", p.encoded_len());
    }
    let count = |r: &tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest| {
        r.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>()
    };
    assert_eq!(parts.iter().map(count).sum::<usize>(), count(&whole));
    assert_eq!(mapping::to_requests(&runs, &options, usize::MAX).len(), 1);
    // A span larger than the limit still goes, alone.
    let single = mapping::to_requests(&runs[..1], &options, 10);
    assert_eq!(single.len(), 4);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(48, 256, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
            ]
        })
    }

    fn any_depth(v: &AnyValue) -> usize {
        match &v.value {
            Some(V::ArrayValue(a)) => 1 + a.values.iter().map(any_depth).max().unwrap_or(0),
            Some(V::KvlistValue(l)) => {
                1 + l
                    .values
                    .iter()
                    .filter_map(|kv| kv.value.as_ref())
                    .map(any_depth)
                    .max()
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any JSON value maps without panicking, never nests deeper than the cap, and its
        /// JSON text is valid JSON.
        #[test]
        fn any_json_value_maps_within_the_depth_cap(v in json()) {
            let av = mapping::any_value(&v);
            prop_assert!(any_depth(&av) <= mapping::MAX_VALUE_DEPTH);
            let text = mapping::json_text(&v);
            prop_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        }

        /// Splitting keeps every span exactly once, in order, and respects the limit unless a
        /// request holds a single span.
        #[test]
        fn splitting_keeps_every_span(
            sizes in prop::collection::vec((0usize..5, 0usize..3_000), 1..8),
            limit in 200usize..20_000,
        ) {
            use prost::Message;
            let runs: Vec<ProcessedRun> = sizes
                .iter()
                .enumerate()
                .map(|(i, (steps, blob))| {
                    let mut run = AgentRun::builder(format!("r{i}"))
                        .environment(if i % 2 == 0 { "a" } else { "b" })
                        .input("x".repeat(*blob))
                        .build();
                    for k in 0..*steps {
                        run.push_step(Step::builder(run.id, StepType::Tool, format!("t{k}")).build());
                    }
                    ProcessedRun::assume_processed(run)
                })
                .collect();
            let options = MappingOptions::default();
            let ids = |reqs: &[tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest]| {
                let mut ids: Vec<Vec<u8>> = reqs
                    .iter()
                    .flat_map(|r| &r.resource_spans)
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| s.spans.iter().map(|s| s.span_id.clone()))
                    .collect();
                ids.sort();
                ids
            };
            let whole = vec![mapping::to_request(&runs, &options)];
            let parts = mapping::to_requests(&runs, &options, limit);
            prop_assert_eq!(ids(&parts), ids(&whole));
            for p in &parts {
                let spans: usize = p
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                prop_assert!(p.encoded_len() <= limit || spans == 1, "{} > {}", p.encoded_len(), limit);
            }
        }
    }
}

/// Spans of another SDK with links and resource attributes: the reverse mapping keeps both
/// (as the `tracecraft.links` and `tracecraft.resource` attributes), and mapping the run
/// again exports them as the spans' links and the resource's attributes.
#[test]
fn links_and_resource_attributes_survive_the_reverse_mapping() {
    use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
    use tracecraft_otlp::proto::resource::v1::Resource;
    use tracecraft_otlp::proto::trace::v1::span::Link;
    use tracecraft_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans};
    use tracecraft_otlp::reverse;
    let kv = |k: &str, v: V| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let t0 = 1_700_000_000_000_000_000u64;
    let link = Link {
        trace_id: vec![9; 16],
        span_id: vec![8; 8],
        trace_state: "vendor=1".into(),
        attributes: vec![kv("link.kind", V::StringValue("follows".into()))],
        ..Default::default()
    };
    let root = Span {
        trace_id: vec![1; 16],
        span_id: vec![3; 8],
        name: "agent".into(),
        start_time_unix_nano: t0,
        end_time_unix_nano: t0 + 10,
        links: vec![link.clone()],
        ..Default::default()
    };
    let child = Span {
        span_id: vec![2; 8],
        parent_span_id: vec![3; 8],
        name: "chat".into(),
        links: vec![Link {
            trace_state: String::new(),
            attributes: Vec::new(),
            ..link.clone()
        }],
        ..root.clone()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", V::StringValue("billing".into())),
                    kv("service.version", V::StringValue("1.2".into())),
                    kv("k8s.pod.uid", V::IntValue(7)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![root, child],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let runs = reverse::runs_from_request(&request);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.attributes["service.name"], json!("billing"));
    assert_eq!(
        run.attributes["tracecraft.resource"],
        json!({"service.version": "1.2", "k8s.pod.uid": 7})
    );
    let step = &run.steps[0];
    assert_eq!(
        step.attributes["tracecraft.links"],
        json!([{"trace_id": "09".repeat(16), "span_id": "08".repeat(8), "trace_state": "vendor=1",
                "attributes": {"link.kind": "follows"}}])
    );
    // Exported again (the message tree and the direct encoder alike).
    let batch = [ProcessedRun::assume_processed(run.clone())];
    let options = MappingOptions::default();
    let again = mapping::to_request(&batch, &options);
    let wire = mapping::encode_request(&batch, &options);
    assert_eq!(
        <ExportTraceServiceRequest as prost::Message>::decode(wire.body().clone()).unwrap(),
        again
    );
    let resource = again.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        Some(&V::StringValue("billing".into()))
    );
    assert_eq!(
        attr(&resource.attributes, "service.version"),
        Some(&V::StringValue("1.2".into()))
    );
    assert_eq!(
        attr(&resource.attributes, "k8s.pod.uid"),
        Some(&V::IntValue(7))
    );
    let spans = &again.resource_spans[0].scope_spans[0].spans;
    let agent = spans.iter().find(|s| s.span_id == vec![3; 8]).unwrap();
    assert_eq!(agent.links, vec![link.clone()]);
    let chat = spans.iter().find(|s| s.span_id == vec![2; 8]).unwrap();
    assert_eq!(chat.links[0].trace_id, vec![9; 16]);
    // Neither attribute is exported as a span attribute.
    for s in spans {
        assert!(attr(&s.attributes, "tracecraft.links").is_none());
        assert!(attr(&s.attributes, "tracecraft.resource").is_none());
    }
    // And they read back the same.
    let back = reverse::runs_from_request(&again);
    assert_eq!(
        back[0].steps[0].attributes["tracecraft.links"],
        step.attributes["tracecraft.links"]
    );
    assert_eq!(back[0].attributes, run.attributes);
}

/// Keys of another SDK that the reverse mapping does not read into a field are kept as the
/// step's attributes, whatever their prefix (OpenLLMetry's `gen_ai.prompt.N.content` holds the
/// prompt); the keys it reads are not repeated there.
#[test]
fn unread_keys_of_other_sdks_are_kept() {
    use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
    use tracecraft_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans};
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(V::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let span = Span {
        trace_id: vec![4; 16],
        span_id: vec![5; 8],
        name: "openai.chat".into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_000_000_100,
        attributes: vec![
            kv("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.prompt.0.content", "hello"),
            kv("gen_ai.system_instructions", "be brief"),
            kv("llm.request.type", "chat"),
        ],
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let runs = tracecraft_otlp::reverse::runs_from_request(&request);
    let step = &runs[0].steps[0];
    assert_eq!(step.model_name.as_deref(), Some("gpt-4o"));
    assert_eq!(step.attributes["gen_ai.prompt.0.content"], "hello");
    assert_eq!(step.attributes["gen_ai.system_instructions"], "be brief");
    assert_eq!(step.attributes["llm.request.type"], "chat");
    assert!(!step.attributes.contains_key("gen_ai.request.model"));
}
