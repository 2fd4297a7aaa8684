//! Explained failures: every cause reaches the caller as a typed [`ExportFailure`] whose
//! `Display` is one summary line (cause, hint, collector, attempts; no header value, no server
//! text), and the pipeline's stats count failed runs by that line. Each cause is produced by
//! the mock collector (or by a port where nothing listens).
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use std::time::{Duration, Instant};

use tracecraft_core::{AgentRun, ExportError, Exporter, ProcessedRun};
use tracecraft_otlp::testing::{MockCollector, Reply};
use tracecraft_otlp::{
    Cause, ConnectProblem, ExportFailure, OtlpExporter, Protocol, RetryPolicy, TlsProblem,
};

const SECRET: &str = "Bearer tok-5e5e5e5e";

fn run() -> ProcessedRun {
    ProcessedRun::assume_processed(AgentRun::builder("r").input("user text 12345").build())
}

fn retries(n: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: n,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        max_elapsed: Duration::from_secs(20),
    }
}

fn failure(e: &ExportError) -> ExportFailure {
    e.cause()
        .and_then(|c| c.downcast_ref::<ExportFailure>())
        .unwrap_or_else(|| panic!("not an OTLP failure: {e:?}"))
        .clone()
}

/// One line, no credential, no payload.
fn assert_summary_line(e: &ExportError) -> String {
    let line = e.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(!line.contains("tok-5e5e"), "{line}");
    assert!(!line.contains("12345"), "{line}");
    assert!(!line.contains("scripted"), "server text echoed: {line}");
    line
}

fn http_exporter(endpoint: String, attempts: u32) -> OtlpExporter {
    OtlpExporter::builder()
        .protocol(Protocol::HttpProtobuf)
        .endpoint(endpoint)
        .header("authorization", SECRET)
        .retry(retries(attempts))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[test]
fn http_statuses_name_status_reason_and_hint_without_retrying() {
    for (status, expected) in [
        (401, "HTTP 401 Unauthorized: check the credentials"),
        (403, "HTTP 403 Forbidden: check the credentials"),
        (
            422,
            "HTTP 422 Unprocessable Entity: the collector refused the request: does it require a header",
        ),
        (413, "HTTP 413 Payload Too Large: the request is too large"),
    ] {
        let collector = MockCollector::start().unwrap();
        collector.script([Reply::Http {
            status,
            retry_after: None,
        }]);
        let mut exporter = http_exporter(collector.http_endpoint(), 5);
        let e = exporter.export(&[run()]).unwrap_err();
        let f = failure(&e);
        assert_eq!(f.cause, Cause::Http { status });
        assert_eq!(f.attempts, 1, "{status} retried");
        assert_eq!(f.collector, collector.addr().to_string());
        let line = assert_summary_line(&e);
        assert!(line.contains(expected), "{line}");
        assert!(line.contains(&collector.addr().to_string()), "{line}");
        assert_eq!(collector.received().len(), 1);
    }
}

#[test]
fn a_wrong_path_is_a_404_that_says_where_traces_go() {
    let collector = MockCollector::start().unwrap();
    let mut exporter = http_exporter(format!("http://{}/otlp/wrong", collector.addr()), 5);
    let e = exporter.export(&[run()]).unwrap_err();
    assert_eq!(failure(&e).cause, Cause::Http { status: 404 });
    let line = assert_summary_line(&e);
    assert!(
        line.contains("HTTP 404 Not Found: is the endpoint"),
        "{line}"
    );
    assert!(line.contains("/v1/traces"), "{line}");
}

#[test]
fn a_base_url_without_path_is_completed_for_http() {
    let collector = MockCollector::start().unwrap();
    let mut exporter = http_exporter(format!("http://{}", collector.addr()), 1);
    assert!(exporter.endpoint_completed());
    assert_eq!(exporter.endpoint().path(), "/v1/traces");
    exporter.export(&[run()]).unwrap();
    assert_eq!(collector.spans().len(), 1);
    // gRPC endpoints have no path: nothing to complete.
    let grpc = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(format!("http://{}", collector.addr()))
        .build()
        .unwrap();
    assert!(!grpc.endpoint_completed());
}

#[test]
fn a_refused_connection_is_retried_then_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
            .retry(retries(3))
            .build()
            .unwrap();
        let e = exporter.export(&[run()]).unwrap_err();
        let f = failure(&e);
        assert_eq!(
            f.cause,
            Cause::Connect(ConnectProblem::Refused),
            "{protocol}"
        );
        assert_eq!(f.attempts, 3);
        let line = assert_summary_line(&e);
        assert!(
            line.contains("cannot connect: connection refused: is the collector running?"),
            "{line}"
        );
    }
}

#[test]
fn an_unknown_ca_fails_at_once_without_retries() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let collector =
        MockCollector::start_tls(&cert.cert.pem(), &cert.signing_key.serialize_pem()).unwrap();
    for (protocol, endpoint) in [
        (Protocol::Grpc, collector.grpc_endpoint()),
        (Protocol::HttpProtobuf, collector.http_endpoint()),
    ] {
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(endpoint)
            .retry(retries(5))
            .build()
            .unwrap();
        let e = exporter.export(&[run()]).unwrap_err();
        let f = failure(&e);
        assert_eq!(f.cause, Cause::Tls(TlsProblem::UnknownIssuer), "{protocol}");
        assert_eq!(f.attempts, 1, "{protocol}: a certificate error was retried");
        assert_eq!(exporter.stats_handle().get().retries, 0);
        let line = assert_summary_line(&e);
        assert!(
            line.contains("TLS handshake failed: the collector's certificate is signed by an unknown CA: set ca_file"),
            "{line}"
        );
    }
}

#[test]
fn a_slow_collector_is_a_timeout_that_says_data_may_be_stored() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let collector = MockCollector::start().unwrap();
        collector.script([Reply::Stall(Duration::from_secs(5))]);
        let endpoint = match protocol {
            Protocol::Grpc => collector.grpc_endpoint(),
            Protocol::HttpProtobuf | Protocol::HttpJson => collector.http_endpoint(),
        };
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(endpoint)
            .timeout(Duration::from_millis(200))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let e = exporter.export(&[run()]).unwrap_err();
        assert_eq!(
            failure(&e).cause,
            Cause::Timeout {
                after: Duration::from_millis(200)
            }
        );
        let line = assert_summary_line(&e);
        assert!(line.contains("may have stored the spans"), "{line}");
    }
}

#[test]
fn grpc_retry_info_is_read_from_a_trailer() {
    let collector = MockCollector::start().unwrap();
    // RESOURCE_EXHAUSTED is retried only with RetryInfo: here it comes as its own trailer.
    collector.script([Reply::GrpcRetryTrailer {
        code: tonic::Code::ResourceExhausted,
        retry_delay: Duration::from_millis(600),
    }]);
    let mut exporter = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(collector.grpc_endpoint())
        .retry(retries(3))
        .build()
        .unwrap();
    let started = Instant::now();
    exporter.export(&[run()]).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the delay was not honoured"
    );
    assert_eq!(collector.received().len(), 2);
}

/// A collector whose status details are not base64 (broken, or hostile) gets its status
/// reported, not a panic: tonic's client decodes that header with an `expect`, so the
/// exporter drops it first (the code and message are kept). The exporter goes on working.
#[test]
fn grpc_status_details_that_are_not_base64_do_not_panic() {
    let collector = MockCollector::start().unwrap();
    collector.script([Reply::GrpcBadDetails {
        code: tonic::Code::PermissionDenied,
    }]);
    let mut exporter = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(collector.grpc_endpoint())
        .retry(retries(3))
        .build()
        .unwrap();
    let e = exporter.export(&[run()]).unwrap_err();
    assert_eq!(
        failure(&e).cause,
        Cause::Grpc {
            code: tonic::Code::PermissionDenied
        }
    );
    exporter.export(&[run()]).unwrap();
    assert_eq!(collector.received().len(), 1, "the second export arrived");
}

#[test]
fn grpc_statuses_name_the_code() {
    let collector = MockCollector::start().unwrap();
    collector.script([Reply::Grpc {
        code: tonic::Code::Unauthenticated,
        retry_delay: None,
    }]);
    let mut exporter = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(collector.grpc_endpoint())
        .header("authorization", SECRET)
        .retry(retries(5))
        .build()
        .unwrap();
    let e = exporter.export(&[run()]).unwrap_err();
    assert_eq!(
        failure(&e).cause,
        Cause::Grpc {
            code: tonic::Code::Unauthenticated
        }
    );
    let line = assert_summary_line(&e);
    assert!(
        line.contains("gRPC status UNAUTHENTICATED: check the credentials"),
        "{line}"
    );
}

#[test]
fn the_pipeline_summary_counts_failed_runs_by_cause() {
    let collector = MockCollector::start().unwrap();
    collector.script([
        Reply::Http {
            status: 401,
            retry_after: None,
        },
        Reply::Http {
            status: 401,
            retry_after: None,
        },
    ]);
    let pipeline = tracecraft_pipeline::Pipeline::builder()
        .without_redaction()
        .exporter(http_exporter(collector.http_endpoint(), 1))
        .build()
        .unwrap();
    pipeline.submit(AgentRun::new("a"));
    pipeline.submit(AgentRun::new("b"));
    let stats = pipeline.stats();
    assert_eq!(stats.export_failed.get("otlp-http"), Some(&2));
    let (line, n) = stats.export_failure_causes["otlp-http"]
        .iter()
        .next()
        .unwrap();
    assert_eq!(*n, 2);
    assert!(
        line.starts_with("exporter `otlp-http`: HTTP 401 Unauthorized"),
        "{line}"
    );
}
