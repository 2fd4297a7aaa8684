//! End to end with the real OpenTelemetry SDK (`opentelemetry-otlp`) as the client: GenAI
//! spans carrying secrets over gRPC and over HTTP/protobuf; the stored runs hold none of the
//! secrets and all of the structure.

mod common;

use std::collections::HashMap;

use common::{Harness, SECRETS, assert_no_secrets, stored_json};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracecraft_core::StepType;
use tracecraft_gateway::{GatewayConfig, TokenConfig, token_digest};

/// An agent: invoke_agent -> (chat LLM call, execute_tool), every place carrying secrets.
fn emit(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("agent-lib");
    let [key, gh, email, aws] = [SECRETS[0], SECRETS[1], SECRETS[2], SECRETS[3]];
    let root = tracer
        .span_builder(format!("invoke_agent support for {email}"))
        .with_kind(SpanKind::Internal)
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "support"),
            KeyValue::new("session.id", "s-1"),
            KeyValue::new("app.note", format!("user key {key}")),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(root);
    let mut chat = tracer
        .span_builder("chat gpt-4o")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 12_i64),
            KeyValue::new("gen_ai.usage.output_tokens", 7_i64),
            KeyValue::new(
                "gen_ai.input.messages",
                format!(
                    r#"[{{"role":"user","parts":[{{"type":"text","content":"my token is {gh}, mail {email}"}}]}}]"#
                ),
            ),
            KeyValue::new(
                "app.list",
                Value::Array(Array::String(vec![
                    StringValue::from("fine"),
                    StringValue::from(format!("aws {aws}")),
                ])),
            ),
        ])
        .start_with_context(&tracer, &cx);
    chat.add_event(
        "gen_ai.content.prompt",
        vec![KeyValue::new("gen_ai.prompt", format!("key {key}"))],
    );
    chat.set_status(Status::error(format!("rate limited for {email}")));
    chat.end();
    let mut tool = tracer
        .span_builder("execute_tool lookup")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", "lookup"),
            KeyValue::new(
                "gen_ai.tool.call.arguments",
                format!(r#"{{"q":"{email}"}}"#),
            ),
        ])
        .start_with_context(&tracer, &cx);
    tool.end();
    cx.span().end();
}

fn check(h: &Harness, tenant: Option<&str>) {
    assert!(
        h.wait_for(|h| h.runs(tenant).len() == 1),
        "runs: {:?}",
        h.runs(tenant).len()
    );
    let runs = h.runs(tenant);
    let run = &runs[0];
    let json = stored_json(&runs);
    assert_no_secrets(&json);
    // Structure: one run, the agent step with the LLM call and the tool call under it.
    assert_eq!(run.steps.len(), 1, "{json}");
    let agent = &run.steps[0];
    assert_eq!(agent.step_type, StepType::Agent);
    assert_eq!(agent.children.len(), 2, "{json}");
    let llm = agent
        .children
        .iter()
        .find(|s| s.step_type == StepType::Llm)
        .expect("llm step");
    assert_eq!(llm.model_name.as_deref(), Some("gpt-4o"));
    assert_eq!(llm.input_tokens, Some(12));
    assert!(llm.error.is_some(), "status message kept (redacted)");
    assert!(
        agent.children.iter().any(|s| s.step_type == StepType::Tool),
        "{json}"
    );
    assert!(run.session_id.is_some());
    assert!(
        json.contains("[REDACTED") || json.contains("REDACTED"),
        "{json}"
    );
}

fn provider(exporter: opentelemetry_otlp::SpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("py-agent")
                .with_attribute(KeyValue::new("deploy.secret", SECRETS[0]))
                .build(),
        )
        .build()
}

/// Runs `f` on a plain thread inside a tokio runtime's context (the SDK's simple processor
/// blocks on each export; tonic and hyper need the runtime's reactor).
fn in_runtime(f: impl FnOnce() + Send + 'static) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        let _g = handle.enter();
        f();
    })
    .join()
    .unwrap();
}

#[test]
fn sdk_over_grpc_stores_redacted_runs_with_their_structure() {
    let h = Harness::start(
        GatewayConfig::builder()
            .token(TokenConfig::sha256(token_digest("grpc-token")))
            .quiet_period(std::time::Duration::from_secs(30)),
    );
    let url = h.grpc_url();
    in_runtime(move || {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("authorization", "Bearer grpc-token".parse().unwrap());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_metadata(metadata)
            .build()
            .unwrap();
        let p = provider(exporter);
        emit(&p);
        p.shutdown().unwrap();
    });
    // The root arrived and every parent is present: processed without the quiet period.
    check(&h, None);
}

#[test]
fn sdk_over_http_protobuf_stores_redacted_runs_with_their_structure() {
    let h = Harness::start(
        GatewayConfig::builder()
            .token(TokenConfig::sha256(token_digest("http-token")).tenant("acme"))
            .tenant_store("memory:{tenant}")
            .quiet_period(std::time::Duration::from_secs(30)),
    );
    let url = format!("{}/v1/traces", h.http_url());
    in_runtime(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(HashMap::from([(
                "authorization".to_owned(),
                "Bearer http-token".to_owned(),
            )]))
            .build()
            .unwrap();
        let p = provider(exporter);
        emit(&p);
        p.shutdown().unwrap();
    });
    check(&h, Some("acme"));
}
