//! `[otlp]`: a Runtime with OTLP enabled exports redacted runs to a collector (the mock
//! collector of tracecraft-otlp on 127.0.0.1:0); malformed settings are errors naming the
//! field. Built when the `otlp` feature is on (the CLI turns it on in the workspace).
#![cfg(feature = "otlp")]

use std::time::Duration;

use prost::Message;
use tracecraft::config::{StorageUrl, TraceCraftConfig};
use tracecraft::otlp::testing::MockCollector;
use tracecraft::{Runtime, StepType};

const KEY: &str = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678";

fn config(endpoint: String, protocol: &str) -> TraceCraftConfig {
    let mut c = TraceCraftConfig::default();
    c.storage.url = StorageUrl::None;
    c.service_name = Some("support-bot".into());
    c.batch.flush_interval = std::time::Duration::from_millis(20);
    c.otlp.enabled = true;
    c.otlp.endpoint = Some(endpoint);
    c.otlp.protocol = Some(protocol.parse().unwrap());
    c.otlp.headers = vec![("x-api-key".into(), "collector-credential".into())];
    c.otlp.timeout_ms = Some(10_000);
    c.otlp.compression = Some(tracecraft::otlp::Compression::Gzip);
    c
}

#[test]
fn runtime_exports_redacted_runs_over_otlp() {
    for protocol in ["grpc", "http/protobuf"] {
        let collector = MockCollector::start().unwrap();
        let endpoint = if protocol == "grpc" {
            collector.grpc_endpoint()
        } else {
            collector.http_endpoint()
        };
        let rt = Runtime::builder()
            .config(config(endpoint, protocol))
            .build()
            .unwrap();
        {
            let run = rt
                .run("agent")
                .user_id("alice@example.com")
                .input(&format!("key {KEY}"))
                .start();
            let mut step = run
                .step(StepType::Llm, "chat")
                .model("gpt-4o", "openai")
                .input("prompt", &format!("email bob@example.com and {KEY}"))
                .start();
            step.output("text", &"ok");
        }
        assert!(
            rt.shutdown(Duration::from_secs(30)).is_clean(),
            "{protocol}"
        );
        let received = collector.received();
        assert_eq!(received.len(), 1, "{protocol}");
        let r = &received[0];
        assert!(r.gzip, "{protocol}: otlp.compression unused");
        assert_eq!(r.headers.get("x-api-key").unwrap(), "collector-credential");
        let spans = r.spans();
        assert_eq!(spans.len(), 2, "{protocol}");
        // Span names after the GenAI conventions (the step's own name is an attribute).
        assert_eq!(spans[0].name, "invoke_agent agent");
        assert_eq!(spans[1].name, "chat gpt-4o");
        assert_eq!(spans[1].parent_span_id, spans[0].span_id);
        let bytes = r.request.encode_to_vec();
        for secret in [KEY, "bob@example.com", "alice@example.com"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{protocol}: {secret} reached the collector"
            );
        }
        assert!(bytes.windows(10).any(|w| w == b"[REDACTED]"));
        let service = r.request.resource_spans[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.clone());
        assert_eq!(
            format!("{service:?}"),
            format!(
                "{:?}",
                Some(tracecraft::otlp::proto::common::v1::AnyValue {
                    value: Some(
                        tracecraft::otlp::proto::common::v1::any_value::Value::StringValue(
                            "support-bot".into()
                        )
                    )
                })
            )
        );
    }
}

#[test]
fn base_endpoint_from_the_environment_reaches_the_collector() {
    let collector = MockCollector::start().unwrap();
    let mut c = TraceCraftConfig::default();
    c.storage.url = StorageUrl::None;
    c.batch.flush_interval = std::time::Duration::from_millis(20);
    let base = format!("http://{}", collector.addr());
    c.apply_env_from(|name| match name {
        "TRACECRAFT_OTLP_ENABLED" => Some("true".into()),
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(base.clone()),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".into()),
        "OTEL_EXPORTER_OTLP_HEADERS" => Some("authorization=Bearer%20t0k".into()),
        _ => None,
    })
    .unwrap();
    let rt = Runtime::builder().config(c).build().unwrap();
    drop(rt.run("env").start());
    assert!(rt.shutdown(Duration::from_secs(30)).is_clean());
    let received = collector.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].headers.get("authorization").unwrap(),
        "Bearer t0k"
    );
}

#[test]
fn malformed_otlp_settings_name_the_field() {
    type Mutate = fn(&mut TraceCraftConfig);
    let cases: [(&str, Mutate); 4] = [
        ("otlp.endpoint", |c| {
            c.otlp.endpoint = Some("collector:4317".into())
        }),
        ("otlp.base_endpoint", |c| {
            c.otlp.base_endpoint = Some("ftp://collector".into());
        }),
        ("otlp.ca_file", |c| {
            c.otlp.ca_file = Some("/nonexistent/tracecraft-ca.pem".into());
        }),
        ("otlp.headers", |c| {
            c.otlp.headers = vec![("bad header".into(), "secret-value".into())];
        }),
    ];
    for (field, mutate) in cases {
        let mut c = TraceCraftConfig::default();
        c.storage.url = StorageUrl::None;
        c.otlp.enabled = true;
        mutate(&mut c);
        let e = Runtime::builder()
            .config(c)
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{field}: {e}");
        assert!(!e.contains("secret-value"), "{e}");
    }
}

#[test]
fn ca_file_and_timeout_settings_are_used() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tracecraft::otlp::testing::Reply;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let collector = MockCollector::start_tls(&cert.pem(), &key.serialize_pem()).unwrap();
    // The first attempt stalls; otlp.timeout_ms (1.5 s, not the 10 s default) cuts it and a
    // retry succeeds.
    collector.script([Reply::Stall(Duration::from_secs(60))]);
    let mut c = config(collector.http_endpoint(), "http/protobuf");
    c.otlp.ca_file = Some(ca_file);
    c.otlp.timeout_ms = Some(1_500);
    let started = std::time::Instant::now();
    let rt = Runtime::builder().config(c).build().unwrap();
    drop(rt.run("tls").start());
    assert!(rt.shutdown(Duration::from_secs(60)).is_clean());
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the stalled attempt was not cut by otlp.timeout_ms"
    );
    let received = collector.received();
    assert!(received.len() >= 2, "{}", received.len());
    assert_eq!(received.last().unwrap().spans().len(), 1);
}

#[test]
fn client_certificate_settings_are_used_for_mutual_tls() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["bot".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let collector =
        MockCollector::start_mtls(&server.pem(), &server_key.serialize_pem(), &ca.pem()).unwrap();
    let ca_file = write("ca.pem", ca.pem());
    let cert_file = write("client.pem", client.pem());
    let key_file = write("client.key", client_key.serialize_pem());
    let env = |name: &str| match name {
        "OTEL_EXPORTER_OTLP_CERTIFICATE" => Some(ca_file.display().to_string()),
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE" => Some(cert_file.display().to_string()),
        "OTEL_EXPORTER_OTLP_CLIENT_KEY" => Some(key_file.display().to_string()),
        _ => None,
    };
    let mut c = config(collector.grpc_endpoint(), "grpc");
    c.apply_env_from(env).unwrap();
    let rt = Runtime::builder().config(c).build().unwrap();
    drop(rt.run("mtls").start());
    assert!(rt.shutdown(Duration::from_secs(30)).is_clean());
    assert_eq!(collector.spans().len(), 1);
    // A key file that is not a key: an error naming the setting, not the content.
    let bad = write("bad.key", "not a key: s3cr3t-bytes".into());
    let mut c = config(collector.grpc_endpoint(), "grpc");
    c.otlp.client_cert_file = Some(cert_file.clone());
    c.otlp.client_key_file = Some(bad);
    let e = Runtime::builder()
        .config(c)
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("otlp.client_key_file"), "{e}");
    assert!(!e.contains("s3cr3t"), "{e}");
}

#[test]
fn a_dead_collector_fills_the_configured_spool_and_resource_attributes_reach_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    // Nothing listens on this port: every export fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut c = config(
        format!("http://127.0.0.1:{port}/v1/traces"),
        "http/protobuf",
    );
    c.otlp.compression = None;
    c.otlp.timeout_ms = Some(500);
    c.apply_env_from(|name| match name {
        "TRACECRAFT_OTLP_SPOOL_DIR" => Some(spool_dir.display().to_string()),
        "OTEL_RESOURCE_ATTRIBUTES" => {
            Some("service.version=1.2.3,openinference.project.name=bots".into())
        }
        _ => None,
    })
    .unwrap();
    let rt = Runtime::builder().config(c.clone()).build().unwrap();
    {
        let _run = rt.run("agent").input(&format!("key {KEY}")).start();
    }
    rt.shutdown(Duration::from_secs(30));
    let spool = tracecraft::otlp::Spool::open_existing(&spool_dir)
        .unwrap()
        .expect("the spool directory exists");
    assert_eq!(
        spool.status().unwrap().spans,
        1,
        "the run's span is spooled, not lost"
    );
    // The next runtime with a live collector sends what the spool holds, with the resource
    // attributes from OTEL_RESOURCE_ATTRIBUTES.
    let collector = MockCollector::start().unwrap();
    c.otlp.endpoint = Some(collector.http_endpoint());
    let rt = Runtime::builder().config(c).build().unwrap();
    assert!(
        collector.wait_for_spans(1, Duration::from_secs(20)),
        "spool not re-sent"
    );
    rt.shutdown(Duration::from_secs(5));
    let received = collector.received();
    let bytes = received[0].request.encode_to_vec();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("service.version") && has("1.2.3") && has("openinference.project.name"));
    assert!(!has(KEY));
}
