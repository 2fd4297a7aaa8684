//! The receiver's contract, request by request: merge across requests, quiet period,
//! tokens and tenants, limits, malformed input, backpressure, shutdown draining, metrics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tracecraft_gateway::{Gateway, GatewayConfig, TokenConfig, token_digest};
use tracecraft_pipeline::PipelineConfig;

const PB: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

fn quiet(ms: u64) -> tracecraft_gateway::GatewayConfigBuilder {
    GatewayConfig::builder().quiet_period(Duration::from_millis(ms))
}

#[test]
fn spans_of_one_trace_in_several_requests_become_one_run() {
    let h = Harness::start(quiet(60_000));
    let url = format!("{}/v1/traces", h.http_url());
    // The child first (its parent is missing: the trace waits), then the root.
    let child = request(vec![span(
        1,
        2,
        1,
        "chat",
        vec![kv("gen_ai.request.model", s("m"))],
    )]);
    let (status, _, _) = post(&url, protobuf(&child), &[PB]);
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert!(h.runs(None).is_empty(), "an incomplete trace waits");
    let root = request(vec![span(1, 1, 0, "agent", vec![])]);
    let (status, _, _) = post(&url, protobuf(&root), &[PB]);
    assert_eq!(status, 200);
    assert!(h.wait_for(|h| h.runs(None).len() == 1));
    let run = &h.runs(None)[0];
    assert_eq!(run.steps.len(), 1);
    assert_eq!(run.steps[0].name, "agent");
    assert_eq!(run.steps[0].children[0].model_name.as_deref(), Some("m"));
}

/// Links and resource attributes are stored (redacted like everything else) and kept for
/// the forwarder: the stored run maps back to spans with the same links and resource.
#[test]
fn links_and_resource_attributes_are_stored_redacted() {
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::Link;
    let h = Harness::start(quiet(60_000));
    let url = format!("{}/v1/traces", h.http_url());
    let mut root = span(3, 1, 0, "agent", vec![]);
    root.links = vec![Link {
        trace_id: vec![7; 16],
        span_id: vec![6; 8],
        attributes: vec![kv("note", s(SECRETS[0]))],
        ..Default::default()
    }];
    let mut req = request(vec![root]);
    req.resource_spans[0].resource = Some(Resource {
        attributes: vec![
            kv("service.name", s("billing")),
            kv("deployment.region", s("eu-1")),
            kv("owner", s(SECRETS[2])),
        ],
        ..Default::default()
    });
    assert_eq!(post(&url, protobuf(&req), &[PB]).0, 200);
    assert!(h.wait_for(|h| h.runs(None).len() == 1));
    let runs = h.runs(None);
    assert_no_secrets(&stored_json(&runs));
    let run = &runs[0];
    assert_eq!(run.attributes["service.name"], "billing");
    assert_eq!(
        run.attributes["tracecraft.resource"]["deployment.region"],
        "eu-1"
    );
    let links = &run.steps[0].attributes["tracecraft.links"];
    assert_eq!(links[0]["trace_id"], "07".repeat(16));
    assert_eq!(links[0]["span_id"], "06".repeat(8));
    // What the forwarder sends: the same link and resource attributes (redacted).
    #[allow(clippy::disallowed_methods)] // a stored run went through the pipeline
    let batch = [tracecraft_core::ProcessedRun::assume_processed(run.clone())];
    let again = tracecraft_otlp::mapping::to_request(
        &batch,
        &tracecraft_otlp::mapping::MappingOptions::default(),
    );
    let rs = &again.resource_spans[0];
    let resource_keys: Vec<&str> = rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert!(
        resource_keys.contains(&"deployment.region"),
        "{resource_keys:?}"
    );
    assert!(resource_keys.contains(&"owner"), "{resource_keys:?}");
    let spans = &rs.scope_spans[0].spans;
    assert!(
        spans
            .iter()
            .any(|s| s.links.first().is_some_and(|l| l.trace_id == vec![7; 16]))
    );
}

#[test]
fn an_incomplete_trace_is_processed_after_the_quiet_period() {
    let h = Harness::start(quiet(200));
    let url = format!("{}/v1/traces", h.http_url());
    let orphan = request(vec![span(2, 5, 9, "tool", vec![])]);
    assert_eq!(post(&url, protobuf(&orphan), &[PB]).0, 200);
    assert!(h.wait_for(|h| h.runs(None).len() == 1));
}

#[test]
fn otlp_json_over_http_is_accepted_and_redacted() {
    let h = Harness::start(quiet(60_000));
    let url = format!("{}/v1/traces", h.http_url());
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{
            "traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
            "name":"agent {email}","kind":1,
            "startTimeUnixNano":"{start}","endTimeUnixNano":"{end}",
            "attributes":[
              {{"key":"a","value":{{"arrayValue":{{"values":[{{"stringValue":"{key}"}}]}}}}}},
              {{"key":"kv","value":{{"kvlistValue":{{"values":[{{"key":"k","value":{{"stringValue":"{gh}"}}}}]}}}}}},
              {{"key":"n","value":{{"intValue":"42"}}}}
            ],
            "status":{{"code":2,"message":"failed for {email}"}}
        }}]}}]}}]}}"#,
        email = SECRETS[2],
        key = SECRETS[0],
        gh = SECRETS[1],
        start = now_ns() - 1000,
        end = now_ns(),
    );
    let (status, headers, resp) = post(&url, body.into_bytes(), &[JSON]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let resp: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert!(
        resp.get("partialSuccess").is_none_or(|p| p.is_null()),
        "{resp}"
    );
    assert!(h.wait_for(|h| h.runs(None).len() == 1));
    let runs = h.runs(None);
    let json = stored_json(&runs);
    assert_no_secrets(&json);
    let step = &runs[0].steps[0];
    assert_eq!(step.attributes["n"], 42);
    assert!(step.attributes["a"].is_array());
    assert!(step.attributes["kv"].is_object());
}

#[test]
fn tokens_are_required_and_nothing_is_stored_without_one() {
    let h = Harness::start(quiet(0).token(TokenConfig::sha256(token_digest("right"))));
    let url = format!("{}/v1/traces", h.http_url());
    let body = protobuf(&request(vec![span(3, 1, 0, "agent", vec![])]));
    let (status, headers, _) = post(&url, body.clone(), &[PB]);
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = post(&url, body.clone(), &[PB, ("authorization", "Bearer wrong")]);
    assert_eq!(status, 401);
    // gRPC: UNAUTHENTICATED.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let grpc = h.grpc_url();
    let code = rt.block_on(async {
        let mut client = TraceServiceClient::connect(grpc).await.unwrap();
        client
            .export(request(vec![span(3, 1, 0, "agent", vec![])]))
            .await
            .unwrap_err()
            .code()
    });
    assert_eq!(code, tonic::Code::Unauthenticated);
    h.gateway.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(h.runs(None).is_empty());
    assert_eq!(
        h.gateway.metrics().snapshot().rejected_requests["unauthenticated"],
        3
    );
    // The right token is accepted.
    let (status, _, _) = post(&url, body, &[PB, ("authorization", "Bearer right")]);
    assert_eq!(status, 200);
    assert!(h.wait_for(|h| h.runs(None).len() == 1));
    // /metrics needs the token too when tokens are configured.
    let metrics = format!("{}/metrics", h.http_url());
    assert_eq!(get(&metrics, &[]).0, 401);
    let (status, text) = get(&metrics, &[("authorization", "Bearer right")]);
    assert_eq!(status, 200);
    assert!(
        text.contains("tracecraft_gateway_requests_rejected_total{reason=\"unauthenticated\"} 3")
    );
}

#[test]
fn no_span_crosses_tenants() {
    let h = Harness::start(
        quiet(0)
            .token(TokenConfig::sha256(token_digest("ta")).tenant("a"))
            .token(TokenConfig::sha256(token_digest("tb")).tenant("b"))
            .tenant_store("memory:{tenant}"),
    );
    let url = format!("{}/v1/traces", h.http_url());
    // The same trace id from both tenants: two separate runs.
    for (token, name) in [("Bearer ta", "from-a"), ("Bearer tb", "from-b")] {
        let body = protobuf(&request(vec![span(4, 1, 0, name, vec![])]));
        assert_eq!(post(&url, body, &[PB, ("authorization", token)]).0, 200);
    }
    assert!(h.wait_for(|h| h.runs(Some("a")).len() == 1 && h.runs(Some("b")).len() == 1));
    assert_eq!(h.runs(Some("a"))[0].steps[0].name, "from-a");
    assert_eq!(h.runs(Some("b"))[0].steps[0].name, "from-b");
    assert!(h.runs(None).is_empty());
}

#[test]
fn limits_are_enforced_with_the_right_statuses() {
    let h = Harness::start(quiet(0).max_request_bytes(2000).max_spans_per_request(3));
    let url = format!("{}/v1/traces", h.http_url());
    // Too large by Content-Length: 413 before the body is read.
    let (status, _, _) = post(&url, vec![0u8; 5000], &[PB]);
    assert_eq!(status, 413);
    // A gzip bomb: small on the wire, too large decompressed.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![0u8; 1 << 20]).unwrap();
    let gz = enc.finish().unwrap();
    let (status, _, _) = post(&url, gz, &[PB, ("content-encoding", "gzip")]);
    assert_eq!(status, 413);
    // Too many spans.
    let many = request((1..=4).map(|i| span(5, i, 0, "x", vec![])).collect());
    let (status, _, body) = post(&url, protobuf(&many), &[PB]);
    assert_eq!(status, 413);
    let msg = String::from_utf8_lossy(&body);
    assert!(
        msg.contains("4 spans") && msg.contains("limit is 3"),
        "{msg}"
    );
    // gRPC: RESOURCE_EXHAUSTED for a message above the limit.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let grpc = h.grpc_url();
    let big = request(vec![span(5, 1, 0, &"n".repeat(5000), vec![])]);
    let code = rt.block_on(async {
        let mut client = TraceServiceClient::connect(grpc).await.unwrap();
        client.export(big).await.unwrap_err().code()
    });
    assert_eq!(code, tonic::Code::ResourceExhausted);
    // Gzip within limits is accepted.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let small = protobuf(&request(vec![span(5, 1, 0, "ok", vec![])]));
    std::io::Write::write_all(&mut enc, &small).unwrap();
    let (status, _, _) = post(
        &url,
        enc.finish().unwrap(),
        &[PB, ("content-encoding", "gzip")],
    );
    assert_eq!(status, 200);
    let snap = h.gateway.metrics().snapshot();
    assert_eq!(snap.rejected_requests["too_large"], 3, "{snap:?}");
    assert_eq!(snap.rejected_requests["too_many_spans"], 1);
}

#[test]
fn malformed_input_gets_400_and_the_server_keeps_serving() {
    let h = Harness::start(quiet(0));
    let url = format!("{}/v1/traces", h.http_url());
    // Fuzz-style: random bytes as protobuf, JSON and gzip never take the server down.
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for i in 0..200 {
        let len = (i * 7) % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let headers: &[(&str, &str)] = match i % 3 {
            0 => &[PB],
            1 => &[JSON],
            _ => &[PB, ("content-encoding", "gzip")],
        };
        let (status, _, _) = post(&url, bytes, headers);
        assert!(status == 400 || status == 200, "status {status}");
    }
    let (status, _, body) = post(&url, b"{\"resourceSpans\": [oops".to_vec(), &[JSON]);
    assert_eq!(status, 400);
    let msg = String::from_utf8_lossy(&body);
    assert!(
        msg.contains("malformed OTLP/JSON") && !msg.contains("oops"),
        "{msg}"
    );
    // Unsupported media type.
    assert_eq!(post(&url, vec![], &[("content-type", "text/plain")]).0, 415);
    // Invalid ids and absurd times: partial success, the valid span is kept.
    let mut bad_id = span(6, 1, 0, "bad", vec![]);
    bad_id.trace_id = vec![0; 16];
    let mut bad_time = span(6, 2, 0, "late", vec![]);
    bad_time.start_time_unix_nano = now_ns() + 10 * 86_400_000_000_000;
    let good = span(6, 3, 0, "good", vec![]);
    let (status, _, body) = post(
        &url,
        protobuf(&request(vec![bad_id, bad_time, good])),
        &[PB],
    );
    assert_eq!(status, 200);
    let resp = ExportTraceServiceResponse::decode(body.as_slice()).unwrap();
    let partial = resp.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );
    assert!(h.wait_for(|h| h.runs(None).len() == 1));
    // Still serving.
    assert_eq!(get(&format!("{}/health", h.http_url()), &[]).0, 200);
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_memory_stays_bounded() {
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = Arc::clone(&gate);
    let config = GatewayConfig::builder()
        .grpc(None)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .queue_capacity(2)
        .quiet_period(Duration::ZERO)
        .log_interval_s(0)
        .build()
        .unwrap();
    // The first pipeline opening blocks the processing thread until the test releases it.
    let gateway = Gateway::start(&config, move |_: Option<&str>| {
        g.wait();
        PipelineConfig::default()
            .builder()
            .and_then(|b| {
                b.store(Arc::new(tracecraft_core::testing::MemoryStore::new()))
                    .build()
            })
            .map_err(|e| e.to_string())
    })
    .unwrap();
    let url = format!("http://{}/v1/traces", gateway.http_addr().unwrap());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..20u8 {
        let body = protobuf(&request(vec![span(10 + i, 1, 0, "agent", vec![])]));
        let (status, headers, _) = post(&url, body, &[PB]);
        if status == 503 {
            retry_after = headers.get("retry-after").cloned();
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    assert_eq!(retry_after.unwrap(), "1");
    // Accepted = capacity plus what the worker took before blocking: bounded.
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(accepted <= 2 + 64 + 1, "{accepted}");
    gate.wait();
    let snap = gateway.metrics().snapshot();
    assert!(snap.rejected_requests["queue_full"] >= 1);
}

/// Over gRPC the same backpressure is `UNAVAILABLE` with a `RetryInfo` in the status details
/// (`grpc-status-details-bin`), which OpenTelemetry SDKs honour before retrying.
#[test]
fn a_full_queue_answers_unavailable_with_retry_info_over_grpc() {
    use http_body_util::{BodyExt, Full};
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = Arc::clone(&gate);
    let config = GatewayConfig::builder()
        .grpc(Some("127.0.0.1:0".parse().unwrap()))
        .http(None)
        .queue_capacity(2)
        .quiet_period(Duration::ZERO)
        .log_interval_s(0)
        .build()
        .unwrap();
    let gateway = Gateway::start(&config, move |_: Option<&str>| {
        g.wait();
        PipelineConfig::default()
            .builder()
            .and_then(|b| {
                b.store(Arc::new(tracecraft_core::testing::MemoryStore::new()))
                    .build()
            })
            .map_err(|e| e.to_string())
    })
    .unwrap();
    let url = format!(
        "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        gateway.grpc_addr().unwrap()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut answers = Vec::new();
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<Full<bytes::Bytes>>();
        for i in 0..20u8 {
            let message = protobuf(&request(vec![span(60 + i, 1, 0, "agent", vec![])]));
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(&message);
            let req = http::Request::post(url.clone())
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(Full::new(bytes::Bytes::from(frame)))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let headers = resp.headers().clone();
            let collected = resp.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let get = |k: &str| headers.get(k).or_else(|| trailers.get(k)).cloned();
            answers.push((get("grpc-status"), get("grpc-status-details-bin")));
        }
    });
    let unavailable: Vec<_> = answers
        .iter()
        .filter(|(status, _)| status.as_ref().is_some_and(|s| s == "14"))
        .collect();
    assert!(!unavailable.is_empty(), "{answers:?}");
    for (_, details) in unavailable {
        use base64::Engine;
        let details = details.as_ref().expect("status details");
        let text = details.to_str().unwrap().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .unwrap();
        assert_eq!(
            tracecraft_otlp::rpc::retry_delay(&bytes),
            Some(Duration::from_secs(1))
        );
    }
    gate.wait();
}

#[test]
fn shutdown_processes_everything_accepted() {
    let mut h = Harness::start(quiet(600_000));
    let url = format!("{}/v1/traces", h.http_url());
    // Incomplete traces (parents missing) would wait ten minutes.
    for t in 20..30u8 {
        let body = protobuf(&request(vec![span(t, 2, 1, "child", vec![])]));
        assert_eq!(post(&url, body, &[PB]).0, 200);
    }
    let summary = h.gateway.shutdown(Duration::from_secs(10));
    assert!(summary.is_clean(), "{summary:?}");
    assert_eq!(h.runs(None).len(), 10);
    // After shutdown nothing is accepted.
    let summary = h.gateway.shutdown(Duration::from_secs(1));
    assert!(summary.is_clean());
}

#[test]
fn health_and_metrics_endpoints() {
    let h = Harness::start(quiet(0));
    let base = h.http_url();
    let (status, body) = get(&format!("{base}/health"), &[]);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let body = protobuf(&request(vec![span(
        40,
        1,
        0,
        "agent",
        vec![kv("k", s(SECRETS[0]))],
    )]));
    assert_eq!(post(&format!("{base}/v1/traces"), body, &[PB]).0, 200);
    assert!(h.wait_for(|h| h.runs(None).len() == 1));
    h.gateway.flush().unwrap();
    let (status, text) = get(&format!("{base}/metrics"), &[]);
    assert_eq!(status, 200);
    for line in [
        "tracecraft_gateway_requests_total{protocol=\"http\"} 1",
        "tracecraft_gateway_spans_received_total 1",
        "tracecraft_gateway_runs_total{outcome=\"processed\"} 1",
        "tracecraft_gateway_runs_exported_total{exporter=\"memory\"} 1",
        "tracecraft_gateway_redactions_total{rule=\"openai_api_key\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(get(&format!("{base}/nope"), &[]).0, 404);
}

#[test]
fn undecodable_grpc_messages_get_invalid_argument() {
    use http_body_util::{BodyExt, Full};
    let h = Harness::start(quiet(0));
    let url = format!(
        "{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        h.grpc_url()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<Full<bytes::Bytes>>();
        // One gRPC frame (uncompressed, length 6) of bytes that are not a protobuf message.
        let frame = vec![0, 0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let req = http::Request::post(url)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(bytes::Bytes::from(frame)))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let in_headers = resp.headers().get("grpc-status").cloned();
        let collected = resp.into_body().collect().await.unwrap();
        in_headers.or_else(|| {
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status").cloned())
        })
    });
    assert_eq!(status.unwrap(), "3");
    assert_eq!(
        h.gateway.metrics().snapshot().rejected_requests["malformed"],
        1
    );
    assert_eq!(get(&format!("{}/health", h.http_url()), &[]).0, 200);
}

#[test]
fn many_traces_in_one_request_are_all_stored() {
    let h = Harness::start(quiet(60_000));
    let url = format!("{}/v1/traces", h.http_url());
    // 40 complete traces (above the parallel threshold, on machines with more than two
    // cores), each with a secret.
    let spans: Vec<_> = (1..=40u8)
        .flat_map(|t| {
            [
                span(t, 1, 0, "agent", vec![kv("k", s(SECRETS[1]))]),
                span(t, 2, 1, "chat", vec![kv("k", s(SECRETS[2]))]),
            ]
        })
        .collect();
    assert_eq!(post(&url, protobuf(&request(spans)), &[PB]).0, 200);
    assert!(
        h.wait_for(|h| h.runs(None).len() == 40),
        "{}",
        h.runs(None).len()
    );
    let runs = h.runs(None);
    assert_no_secrets(&stored_json(&runs));
    assert!(
        runs.iter()
            .all(|r| r.steps.len() == 1 && r.steps[0].children.len() == 1)
    );
    assert_eq!(h.gateway.metrics().snapshot().runs_processed, 40);
}
