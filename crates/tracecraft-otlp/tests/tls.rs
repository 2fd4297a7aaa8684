//! TLS: a private CA (made here with rcgen) signs the mock collector's certificate; the
//! exporter trusts it through `ca_file`, over both protocols; without the CA file the
//! handshake fails with a transport error. Mutual TLS: a collector that requires a client
//! certificate accepts the exporter's identity and refuses a client without one.
//! 127.0.0.1 only.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tracecraft_core::{AgentRun, Exporter, ProcessedRun};
use tracecraft_otlp::testing::MockCollector;
use tracecraft_otlp::{OtlpExporter, Protocol, RetryPolicy};

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
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
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["tracecraft-client".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
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
            matches!(
                e.cause()
                    .and_then(|c| c.downcast_ref::<tracecraft_otlp::ExportFailure>())
                    .map(|f| f.cause),
                Some(tracecraft_otlp::Cause::Tls(_))
            ),
            "{protocol}: {e:?}"
        );
        assert!(e.to_string().contains("certificate"), "{protocol}: {e}");
        let f = e
            .cause()
            .and_then(|c| c.downcast_ref::<tracecraft_otlp::ExportFailure>())
            .unwrap();
        assert_eq!(
            f.cause,
            tracecraft_otlp::Cause::Tls(tracecraft_otlp::TlsProblem::UnknownIssuer)
        );
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

#[test]
fn mutual_tls_presents_the_client_identity() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_file = write("ca.pem", &pki.ca_pem);
    let cert_file = write("client.pem", &pki.client_cert_pem);
    let key_file = write("client.key", &pki.client_key_pem);
    let collector = MockCollector::start_mtls(&pki.cert_pem, &pki.key_pem, &pki.ca_pem).unwrap();
    for (protocol, endpoint) in [
        (Protocol::Grpc, collector.grpc_endpoint()),
        (Protocol::HttpProtobuf, collector.http_endpoint()),
    ] {
        let mut with_identity = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(&endpoint)
            .ca_file(&ca_file)
            .client_identity(&cert_file, &key_file)
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        with_identity.export(&[run()]).unwrap();
        let mut without = OtlpExporter::builder()
            .protocol(protocol)
            .endpoint(&endpoint)
            .ca_file(&ca_file)
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let e = without.export(&[run()]).unwrap_err();
        // TLS 1.3: the collector's alert comes after the client's handshake ended; over
        // HTTP/2 it surfaces as a closed connection, whose hint names the client certificate.
        assert!(
            matches!(
                e.cause()
                    .and_then(|c| c.downcast_ref::<tracecraft_otlp::ExportFailure>())
                    .map(|f| f.cause),
                Some(
                    tracecraft_otlp::Cause::Tls(_)
                        | tracecraft_otlp::Cause::Connect(tracecraft_otlp::ConnectProblem::Closed)
                )
            ),
            "{protocol}: {e:?}"
        );
    }
    assert_eq!(collector.received().len(), 2);
}

#[test]
fn client_identity_errors_name_the_setting_not_the_key() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("client.pem");
    std::fs::write(&cert_file, &pki.client_cert_pem).unwrap();
    let bad_key = dir.path().join("client.key");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = OtlpExporter::builder()
        .client_identity(&cert_file, &bad_key)
        .build()
        .unwrap_err();
    assert_eq!(e.setting, "client_key_file", "{e}");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    // A key that is valid but not the certificate's.
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, &pki.key_pem).unwrap();
    let e = OtlpExporter::builder()
        .client_identity(&cert_file, &other_key)
        .build();
    // rustls checks the pairing when it can; either way nothing of the key is shown.
    if let Err(e) = e {
        assert_eq!(e.setting, "client_key_file", "{e}");
    }
    let e = OtlpExporter::builder()
        .client_identity(dir.path().join("missing.pem"), &bad_key)
        .build()
        .unwrap_err();
    assert_eq!(e.setting, "client_cert_file", "{e}");
}
