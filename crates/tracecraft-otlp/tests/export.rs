//! The exporter against the in-process mock collector (127.0.0.1:0 only): both protocols,
//! headers, compression, retries, fail-fast statuses, timeouts, splitting, partial success,
//! shutdown through the batch exporter.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use std::time::{Duration, Instant};

use tracecraft_core::{AgentRun, ExportError, Exporter, ProcessedRun, Step, StepType};
use tracecraft_otlp::testing::{MockCollector, Reply};
use tracecraft_otlp::{
    Cause, Compression, ConnectProblem, ExportFailure, OtlpExporter, OtlpExporterBuilder, Protocol,
    RetryPolicy,
};

/// The typed cause of an OTLP export error.
fn failure(e: &ExportError) -> ExportFailure {
    e.cause()
        .and_then(|c| c.downcast_ref::<ExportFailure>())
        .unwrap_or_else(|| panic!("not an OTLP failure: {e:?}"))
        .clone()
}

const SECRET: &str = "Bearer tok-9f8e7d6c5b4a";

fn run(name: &str) -> ProcessedRun {
    let mut run = AgentRun::builder(name).session_id("s1").build();
    let llm = Step::builder(run.id, StepType::Llm, "chat")
        .model("gpt-4o", "openai")
        .tokens(3, 4)
        .build();
    run.push_step(
        Step::builder(run.id, StepType::Agent, "plan")
            .child(llm)
            .build(),
    );
    ProcessedRun::assume_processed(run)
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_elapsed: Duration::from_secs(20),
    }
}

fn builder(collector: &MockCollector, protocol: Protocol) -> OtlpExporterBuilder {
    let endpoint = match protocol {
        Protocol::Grpc => collector.grpc_endpoint(),
        Protocol::HttpProtobuf | Protocol::HttpJson => collector.http_endpoint(),
    };
    OtlpExporter::builder()
        .protocol(protocol)
        .endpoint(endpoint)
        .timeout(Duration::from_secs(10))
        .retry(fast_retry(4))
}

const BOTH: [Protocol; 2] = [Protocol::Grpc, Protocol::HttpProtobuf];

#[test]
fn delivers_spans_and_headers_over_both_protocols() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        let mut exporter = builder(&collector, protocol)
            .header("Authorization", SECRET)
            .header("x-tenant", "acme")
            .service_name("svc")
            .build()
            .unwrap();
        assert_eq!(
            exporter.name(),
            if protocol == Protocol::Grpc {
                "otlp-grpc"
            } else {
                "otlp-http"
            }
        );
        let a = run("a");
        let b = run("b");
        exporter.export(&[a.clone(), b.clone()]).unwrap();
        let received = collector.received();
        assert_eq!(received.len(), 1, "{protocol}: one request per batch");
        let r = &received[0];
        assert_eq!(r.protocol, protocol);
        assert_eq!(r.headers.get("authorization").unwrap(), SECRET);
        assert_eq!(r.headers.get("x-tenant").unwrap(), "acme");
        assert!(
            r.headers
                .get("user-agent")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("tracecraft-otlp/"),
            "{:?}",
            r.headers.get("user-agent")
        );
        assert!(!r.gzip);
        let spans = r.spans();
        assert_eq!(spans.len(), 6);
        assert_eq!(spans[0].trace_id, a.run().id.as_bytes().to_vec());
        assert_eq!(spans[3].trace_id, b.run().id.as_bytes().to_vec());
        assert_eq!(spans[2].parent_span_id, spans[1].span_id);
        let stats = exporter.stats_handle().get();
        assert_eq!(
            (stats.requests_ok, stats.spans_sent, stats.retries),
            (1, 6, 0)
        );
        // Nothing to send: no request.
        exporter.export(&[]).unwrap();
        exporter.force_flush().unwrap();
        assert_eq!(collector.received().len(), 1);
        exporter.shutdown(Duration::from_secs(1)).unwrap();
        assert!(matches!(
            exporter.export(&[run("late")]),
            Err(ExportError::Shutdown { .. })
        ));
    }
}

#[test]
fn gzip_compression() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        let mut exporter = builder(&collector, protocol)
            .compression(Compression::Gzip)
            .build()
            .unwrap();
        exporter.export(&[run("z")]).unwrap();
        let received = collector.received();
        assert!(received[0].gzip, "{protocol}");
        assert_eq!(received[0].spans().len(), 3);
    }
}

#[test]
fn retries_retryable_failures_then_succeeds() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        collector.script([Reply::Unavailable, Reply::Unavailable]);
        if protocol == Protocol::HttpProtobuf {
            collector.script([
                Reply::Http {
                    status: 429,
                    retry_after: None,
                },
                Reply::Http {
                    status: 502,
                    retry_after: None,
                },
            ]);
        } else {
            collector.script([
                Reply::Grpc {
                    code: tonic::Code::ResourceExhausted,
                    retry_delay: Some(Duration::from_millis(20)),
                },
                Reply::Grpc {
                    code: tonic::Code::Aborted,
                    retry_delay: None,
                },
            ]);
        }
        let mut exporter = builder(&collector, protocol)
            .retry(fast_retry(5))
            .build()
            .unwrap();
        exporter.export(&[run("r")]).unwrap();
        let received = collector.received();
        assert_eq!(received.len(), 5, "{protocol}");
        assert!(received[4].accepted());
        assert_eq!(collector.spans().len(), 3);
        assert_eq!(exporter.stats_handle().get().retries, 4);
    }
}

#[test]
fn gives_up_after_max_attempts_with_a_clear_error() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        collector.script([Reply::Unavailable, Reply::Unavailable, Reply::Unavailable]);
        let mut exporter = builder(&collector, protocol)
            .retry(fast_retry(2))
            .build()
            .unwrap();
        let e = exporter.export(&[run("r")]).unwrap_err().to_string();
        assert_eq!(collector.received().len(), 2, "{protocol}");
        assert!(e.contains("after 2 attempts"), "{e}");
        assert!(e.contains("UNAVAILABLE") || e.contains("503"), "{e}");
        assert_eq!(exporter.stats_handle().get().requests_failed, 1);
    }
}

#[test]
fn non_retryable_statuses_fail_fast_naming_the_status() {
    let cases = [
        (
            Protocol::Grpc,
            Reply::Grpc {
                code: tonic::Code::InvalidArgument,
                retry_delay: None,
            },
            "INVALID_ARGUMENT",
        ),
        (
            Protocol::Grpc,
            Reply::Grpc {
                code: tonic::Code::Unauthenticated,
                retry_delay: None,
            },
            "UNAUTHENTICATED",
        ),
        // RESOURCE_EXHAUSTED without RetryInfo is not retried (specification).
        (
            Protocol::Grpc,
            Reply::Grpc {
                code: tonic::Code::ResourceExhausted,
                retry_delay: None,
            },
            "RESOURCE_EXHAUSTED",
        ),
        (
            Protocol::HttpProtobuf,
            Reply::Http {
                status: 400,
                retry_after: None,
            },
            "HTTP 400",
        ),
        (
            Protocol::HttpProtobuf,
            Reply::Http {
                status: 401,
                retry_after: None,
            },
            "HTTP 401",
        ),
        (
            Protocol::Grpc,
            Reply::Grpc {
                code: tonic::Code::Unimplemented,
                retry_delay: None,
            },
            "UNIMPLEMENTED: is the endpoint an OTLP/gRPC collector",
        ),
        (
            Protocol::HttpProtobuf,
            Reply::Http {
                status: 404,
                retry_after: None,
            },
            "HTTP 404 Not Found: is the endpoint",
        ),
        // A redirect is not followed (headers must not go to another host).
        (
            Protocol::HttpProtobuf,
            Reply::Http {
                status: 307,
                retry_after: None,
            },
            "HTTP 307",
        ),
        (
            Protocol::HttpProtobuf,
            Reply::Http {
                status: 413,
                retry_after: None,
            },
            "HTTP 413",
        ),
    ];
    for (protocol, reply, expected) in cases {
        let collector = MockCollector::start().unwrap();
        collector.script([reply]);
        let mut exporter = builder(&collector, protocol)
            .header("authorization", SECRET)
            .build()
            .unwrap();
        let e = exporter.export(&[run("r")]).unwrap_err();
        let cause = failure(&e).cause;
        assert!(
            matches!(cause, Cause::Http { .. } | Cause::Grpc { .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains(expected), "{msg}");
        assert!(!msg.contains("tok-9f8e"), "{msg}");
        assert!(!msg.contains("scripted"), "server text echoed: {msg}");
        assert_eq!(collector.received().len(), 1, "{expected} was retried");
    }
}

#[test]
fn retry_after_is_honoured() {
    let collector = MockCollector::start().unwrap();
    collector.script([Reply::Http {
        status: 503,
        retry_after: Some(1),
    }]);
    let mut exporter = builder(&collector, Protocol::HttpProtobuf).build().unwrap();
    let started = Instant::now();
    exporter.export(&[run("r")]).unwrap();
    // The retry waited at least the server's delay (a lower bound, not a speed assertion).
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(collector.received().len(), 2);
}

#[test]
fn retry_delay_beyond_the_total_budget_gives_up_at_once() {
    let collector = MockCollector::start().unwrap();
    collector.script([Reply::Grpc {
        code: tonic::Code::Unavailable,
        retry_delay: Some(Duration::from_secs(3600)),
    }]);
    let mut exporter = builder(&collector, Protocol::Grpc).build().unwrap();
    assert!(exporter.export(&[run("r")]).is_err());
    assert_eq!(collector.received().len(), 1);
}

#[test]
fn timeout_is_honoured() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        collector.script([Reply::Stall(Duration::from_secs(30))]);
        let mut exporter = builder(&collector, protocol)
            .timeout(Duration::from_millis(300))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let started = Instant::now();
        let e = exporter.export(&[run("slow")]).unwrap_err();
        assert!(
            matches!(failure(&e).cause, Cause::Timeout { .. }),
            "{protocol}: {e:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{protocol}: the timeout did not cut the call"
        );
    }
}

#[test]
fn unreachable_collector_is_a_transport_error_after_retries() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (protocol, url) in [
        (Protocol::Grpc, format!("http://127.0.0.1:{port}")),
        (
            Protocol::HttpProtobuf,
            format!("http://127.0.0.1:{port}/v1/traces"),
        ),
    ] {
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(url)
            .header("authorization", SECRET)
            .retry(fast_retry(3))
            .build()
            .unwrap();
        let e = exporter.export(&[run("r")]).unwrap_err();
        assert!(
            failure(&e).cause == Cause::Connect(ConnectProblem::Refused),
            "{protocol}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("after 3 attempts"), "{msg}");
        assert_eq!(failure(&e).attempts, 3);
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        assert!(msg.contains("refused"), "{msg}");
        assert!(!msg.contains("tok-9f8e"), "{msg}");
        assert_eq!(exporter.stats_handle().get().retries, 2);
    }
}

#[test]
fn large_batches_are_split_into_several_requests() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        let mut exporter = builder(&collector, protocol)
            .max_request_bytes(2_000)
            .build()
            .unwrap();
        let runs: Vec<ProcessedRun> = (0..10).map(|i| run(&format!("run-{i}"))).collect();
        exporter.export(&runs).unwrap();
        assert!(collector.received().len() > 1, "{protocol}");
        // In the batch's order, although the next request is encoded while one is sent.
        let names: Vec<String> = collector
            .spans()
            .into_iter()
            .filter_map(|s| s.name.strip_prefix("invoke_agent run-").map(str::to_owned))
            .collect();
        let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(names, expected, "{protocol}");
        assert_eq!(collector.spans().len(), 30);
        let stats = exporter.stats_handle().get();
        assert_eq!(stats.requests_ok, collector.received().len() as u64);
        assert_eq!(stats.spans_sent, 30);
    }
}

/// A request that times out stops the batch (the next one would time out too): the requests
/// after it are never sent, although the next one was already encoded.
#[test]
fn a_split_batch_stops_at_the_first_timeout() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        collector.script([Reply::Ok, Reply::Stall(Duration::from_secs(2))]);
        let mut exporter = builder(&collector, protocol)
            .max_request_bytes(2_000)
            .timeout(Duration::from_millis(300))
            .retry(fast_retry(1))
            .build()
            .unwrap();
        let runs: Vec<ProcessedRun> = (0..30).map(|i| run(&format!("run-{i}"))).collect();
        let e = exporter.export(&runs).unwrap_err();
        assert!(
            matches!(failure(&e).cause, Cause::Timeout { .. }),
            "{protocol}: {e}"
        );
        std::thread::sleep(Duration::from_millis(2_500));
        assert_eq!(collector.received().len(), 2, "{protocol}");
        let stats = exporter.stats_handle().get();
        assert_eq!((stats.requests_ok, stats.requests_failed), (1, 1));
        assert_eq!(
            stats.spans_sent,
            collector.received()[0].spans().len() as u64
        );
    }
}

#[test]
fn partial_success_is_counted() {
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        collector.script([Reply::Partial {
            rejected_spans: 2,
            message: "spans too old".into(),
        }]);
        let mut exporter = builder(&collector, protocol).build().unwrap();
        exporter.export(&[run("p")]).unwrap();
        let stats = exporter.stats_handle().get();
        assert_eq!(
            (stats.requests_ok, stats.spans_rejected),
            (1, 2),
            "{protocol}"
        );
    }
}

#[test]
fn shutdown_through_the_batch_exporter_sends_everything_queued() {
    use tracecraft_pipeline::{BatchConfig, BatchExporter};
    for protocol in BOTH {
        let collector = MockCollector::start().unwrap();
        let exporter = builder(&collector, protocol).build().unwrap();
        let stats = exporter.stats_handle();
        let mut batch = BatchExporter::new(
            exporter,
            BatchConfig {
                max_queue_size: 1_000,
                batch_size: 7,
                flush_interval: Duration::from_secs(3600),
            },
        );
        for i in 0..50 {
            batch.export(&[run(&format!("r{i}"))]).unwrap();
        }
        batch.shutdown(Duration::from_secs(30)).unwrap();
        assert_eq!(collector.spans().len(), 150, "{protocol}");
        assert_eq!(stats.get().spans_sent, 150);
    }
}

#[test]
fn build_errors_name_the_setting_and_hide_values() {
    let e = OtlpExporter::builder()
        .endpoint("collector:4317")
        .build()
        .unwrap_err();
    assert_eq!(e.setting, "endpoint");
    let e = OtlpExporter::builder()
        .header("authorization", "Bearer bad\u{1}value-s3cret")
        .build()
        .unwrap_err();
    assert_eq!(e.setting, "headers");
    assert!(!e.to_string().contains("s3cret"));
    let e = OtlpExporter::builder()
        .ca_file("/nonexistent/ca.pem")
        .build()
        .unwrap_err();
    assert_eq!(e.setting, "ca_file");
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let e = OtlpExporter::builder()
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.setting, "timeout");
    let exporter = OtlpExporter::builder()
        .header("authorization", SECRET)
        .build()
        .unwrap();
    let debug = format!("{exporter:?}");
    assert!(
        debug.contains("authorization") && !debug.contains("tok-9f8e"),
        "{debug}"
    );
    assert_eq!(
        exporter.endpoint().to_string(),
        tracecraft_otlp::DEFAULT_HTTP_ENDPOINT
    );
}

#[test]
fn base_endpoint_gets_the_traces_path_for_http() {
    let collector = MockCollector::start().unwrap();
    let mut exporter = OtlpExporter::builder()
        .protocol(Protocol::HttpProtobuf)
        .base_endpoint(format!("http://{}", collector.addr()))
        .build()
        .unwrap();
    exporter.export(&[run("b")]).unwrap();
    assert_eq!(collector.spans().len(), 3);
    let mut grpc = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .base_endpoint(format!("http://{}", collector.addr()))
        .build()
        .unwrap();
    grpc.export(&[run("g")]).unwrap();
    assert_eq!(collector.spans().len(), 6);
}

#[tokio::test(flavor = "current_thread")]
async fn works_when_called_from_inside_an_async_context() {
    // Not where it belongs (the batch exporter's thread is), but it must not panic.
    let collector = MockCollector::start().unwrap();
    for protocol in BOTH {
        let mut exporter = builder(&collector, protocol).build().unwrap();
        exporter.export(&[run("async")]).unwrap();
        exporter.shutdown(Duration::from_secs(1)).unwrap();
        drop(exporter);
    }
    let dropped_unused = OtlpExporter::builder().build().unwrap();
    drop(dropped_unused);
    assert_eq!(collector.spans().len(), 6);
}

/// OTLP/HTTP with JSON bodies: the specification's encoding (camelCase keys, hex ids), the
/// same spans as protobuf, gzip, and partial success read from a JSON reply.
#[test]
fn http_json_delivers_the_same_spans() {
    use tracecraft_otlp::mapping::{self, MappingOptions};
    let collector = MockCollector::start().unwrap();
    collector.script([
        Reply::Ok,
        Reply::Partial {
            rejected_spans: 1,
            message: "one too many".into(),
        },
    ]);
    let mut exporter = OtlpExporter::builder()
        .protocol(Protocol::HttpJson)
        .base_endpoint(format!("http://{}", collector.addr()))
        .compression(Compression::Gzip)
        .build()
        .unwrap();
    assert_eq!(exporter.endpoint().path(), "/v1/traces");
    let batch = [run("a"), run("b")];
    exporter.export(&batch).unwrap();
    exporter.export(&batch[..1]).unwrap();
    let received = collector.received();
    assert_eq!(received[0].protocol, Protocol::HttpJson);
    assert_eq!(
        received[0].headers.get("content-type").unwrap(),
        "application/json"
    );
    assert!(received[0].gzip);
    let expected = mapping::to_request(&batch, &MappingOptions::default());
    assert_eq!(received[0].request, expected);
    assert_eq!(exporter.stats_handle().get().spans_rejected, 1);
    // The JSON itself: camelCase keys, ids as hex strings.
    let json = serde_json::to_value(&expected).unwrap();
    let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    let trace_id = span["traceId"].as_str().unwrap();
    assert_eq!(trace_id, batch[0].run().id.simple().to_string());
    assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
}
