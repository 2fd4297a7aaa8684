//! TLS: a private CA (made here with rcgen) signs the mock collector's certificate; the
//! exporter trusts it through `ca_file`, over both protocols; without the CA file the
//! handshake fails with a transport error. 127.0.0.1 only.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tracecraft_core::{AgentRun, ExportError, Exporter, ProcessedRun};
use tracecraft_otlp::testing::MockCollector;
use tracecraft_otlp::{OtlpExporter, Protocol, RetryPolicy};

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tracecraft test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn run() -> ProcessedRun {
    ProcessedRun::assume_processed(AgentRun::builder("tls").session_id("s").build())
}

#[test]
fn private_ca_file_is_trusted_over_both_protocols() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let collector = MockCollector::start_tls(&pki.cert_pem, &pki.key_pem).unwrap();
    for (protocol, endpoint) in [
        (Protocol::Grpc, collector.grpc_endpoint()),
        (Protocol::HttpProtobuf, collector.http_endpoint()),
    ] {
        assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(endpoint)
            .ca_file(&ca_file)
            .header("authorization", "Bearer over-tls")
            .timeout(Duration::from_secs(10))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        exporter.export(&[run()]).unwrap();
    }
    let received = collector.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].protocol, Protocol::Grpc);
    assert_eq!(received[1].protocol, Protocol::HttpProtobuf);
    for r in &received {
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer over-tls");
    }
}

#[test]
fn unknown_ca_fails_the_handshake() {
    let pki = pki();
    let collector = MockCollector::start_tls(&pki.cert_pem, &pki.key_pem).unwrap();
    for (protocol, endpoint) in [
        (Protocol::Grpc, collector.grpc_endpoint()),
        (Protocol::HttpProtobuf, collector.http_endpoint()),
    ] {
        let mut exporter = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(endpoint)
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let e = exporter.export(&[run()]).unwrap_err();
        assert!(
            matches!(e, ExportError::Transport { .. }),
            "{protocol}: {e:?}"
        );
        assert!(e.to_string().contains("certificate"), "{protocol}: {e}");
    }
    assert!(collector.received().is_empty());
}

#[test]
fn malformed_ca_file_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, "not a certificate").unwrap();
    let e = OtlpExporter::builder()
        .ca_file(&ca_file)
        .build()
        .unwrap_err();
    assert_eq!(e.setting, "ca_file");
    assert!(e.to_string().contains("ca.pem"), "{e}");
}
