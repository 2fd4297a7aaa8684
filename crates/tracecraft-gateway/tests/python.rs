//! Interop with the OpenTelemetry Python SDK, the way a Python agent is pointed at the gateway
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`), over HTTP/protobuf and gRPC. Skipped (passes with a note)
//! unless `python3` has the SDK and both OTLP exporters:
//! `pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-grpc`.

// The one line a skipped test prints, so a CI log shows it did not run.
#![allow(clippy::disallowed_macros, clippy::print_stderr)]

mod common;

use std::process::Command;

use common::{Harness, SECRETS, assert_no_secrets, stored_json};
use tracecraft_core::StepType;
use tracecraft_gateway::GatewayConfig;

const AGENT: &str = r#"
import os, sys
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
if sys.argv[1] == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
key = sys.argv[2]
provider = TracerProvider(resource=Resource.create({"service.name": "py-agent"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("agent")
with tracer.start_as_current_span("invoke_agent py", attributes={"gen_ai.operation.name": "invoke_agent"}):
    with tracer.start_as_current_span("chat gpt-4o", attributes={
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 3,
        "app.messages": ["hello", "my key is " + key],
    }) as span:
        span.add_event("log", {"line": "key " + key})
provider.shutdown()
"#;

fn python_sdk() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.exporter.otlp.proto.http.trace_exporter, \
             opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn python_agent_over_http_and_grpc() {
    if !python_sdk() {
        eprintln!("skipped: the OpenTelemetry Python SDK and OTLP exporters are not installed");
        return;
    }
    let h = Harness::start(GatewayConfig::builder());
    for (protocol, endpoint) in [("http", h.http_url()), ("grpc", h.grpc_url())] {
        let out = Command::new("python3")
            .args(["-c", AGENT, protocol, SECRETS[0]])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_INSECURE", "true")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{protocol}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        h.wait_for(|h| h.runs(None).len() == 2),
        "{}",
        h.runs(None).len()
    );
    let runs = h.runs(None);
    assert_no_secrets(&stored_json(&runs));
    for run in &runs {
        assert_eq!(run.steps.len(), 1);
        assert_eq!(run.steps[0].step_type, StepType::Agent);
        let llm = &run.steps[0].children[0];
        assert_eq!(llm.step_type, StepType::Llm);
        assert_eq!(llm.model_name.as_deref(), Some("gpt-4o"));
        assert!(llm.attributes["app.messages"].is_array());
    }
}
