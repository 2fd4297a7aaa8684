//! TLS and mutual TLS: a private CA (rcgen) signs the gateway's certificate; TraceCraft's own
//! OTLP exporter (the forwarder's client) sends over both protocols; with `client_ca` a
//! client without a certificate is refused and one with a certificate signed by the CA is
//! accepted. 127.0.0.1 only.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tracecraft_core::testing::MemoryStore;
use tracecraft_core::{AgentRun, Exporter, ProcessedRun, TraceQuery, TraceStore};
use tracecraft_gateway::{Gateway, GatewayConfig, TlsFiles};
use tracecraft_otlp::{OtlpExporter, Protocol, RetryPolicy};
use tracecraft_pipeline::PipelineConfig;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gateway test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["agent".to_owned()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        w("ca.pem", ca.pem());
        w("cert.pem", leaf.pem());
        w("key.pem", leaf_key.serialize_pem());
        w("client.pem", client.pem());
        w("client-key.pem", client_key.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn start(tls: TlsFiles, store: Arc<MemoryStore>) -> Gateway {
    let config = GatewayConfig::builder()
        .grpc(Some("127.0.0.1:0".parse().unwrap()))
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .tls(tls)
        .quiet_period(Duration::ZERO)
        .log_interval_s(0)
        .build()
        .unwrap();
    Gateway::start(&config, move |_: Option<&str>| {
        PipelineConfig::default()
            .builder()
            .and_then(|b| b.store(Arc::clone(&store)).build())
            .map_err(|e| e.to_string())
    })
    .unwrap()
}

fn send(
    protocol: Protocol,
    endpoint: String,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<(), String> {
    let mut b = OtlpExporter::builder()
        .protocol(protocol)
        .endpoint(endpoint)
        .ca_file(ca)
        .timeout(Duration::from_secs(10))
        .retry(RetryPolicy::none());
    if let Some((cert, key)) = identity {
        b = b.client_identity(cert, key);
    }
    let mut exporter = b.build().map_err(|e| e.to_string())?;
    let run = ProcessedRun::assume_processed(AgentRun::builder("over-tls").build());
    exporter.export(&[run]).map_err(|e| e.to_string())
}

fn stored(store: &MemoryStore, n: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if store.query(&TraceQuery::default()).unwrap().len() == n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn tls_over_both_protocols() {
    let pki = Pki::new();
    let store = Arc::new(MemoryStore::new());
    let gw = start(
        TlsFiles::new(pki.path("cert.pem"), pki.path("key.pem")),
        Arc::clone(&store),
    );
    let grpc = format!("https://{}", gw.grpc_addr().unwrap());
    let http = format!("https://{}/v1/traces", gw.http_addr().unwrap());
    send(Protocol::Grpc, grpc, &pki.path("ca.pem"), None).unwrap();
    send(
        Protocol::HttpProtobuf,
        http.clone(),
        &pki.path("ca.pem"),
        None,
    )
    .unwrap();
    assert!(stored(&store, 2));
    // Plaintext to a TLS port fails.
    let plain = http.replace("https://", "http://");
    let e = send(Protocol::HttpProtobuf, plain, &pki.path("ca.pem"), None);
    assert!(e.is_err());
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let store = Arc::new(MemoryStore::new());
    let gw = start(
        TlsFiles::new(pki.path("cert.pem"), pki.path("key.pem")).client_ca(pki.path("ca.pem")),
        Arc::clone(&store),
    );
    let http = format!("https://{}/v1/traces", gw.http_addr().unwrap());
    let grpc = format!("https://{}", gw.grpc_addr().unwrap());
    assert!(
        send(
            Protocol::HttpProtobuf,
            http.clone(),
            &pki.path("ca.pem"),
            None
        )
        .is_err()
    );
    assert!(send(Protocol::Grpc, grpc.clone(), &pki.path("ca.pem"), None).is_err());
    let id = Some((pki.path("client.pem"), pki.path("client-key.pem")));
    let id = id.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    send(Protocol::HttpProtobuf, http, &pki.path("ca.pem"), id).unwrap();
    send(Protocol::Grpc, grpc, &pki.path("ca.pem"), id).unwrap();
    assert!(stored(&store, 2));
}

#[test]
fn unusable_tls_files_are_named() {
    let pki = Pki::new();
    let config = GatewayConfig::builder()
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .grpc(None)
        .tls(TlsFiles::new(pki.path("cert.pem"), pki.path("missing.pem")))
        .build()
        .unwrap();
    let e = Gateway::start(&config, |_: Option<&str>| {
        Err::<tracecraft_pipeline::Pipeline, _>("unused".to_owned())
    })
    .unwrap_err();
    assert!(e.to_string().contains("gateway.tls.key"), "{e}");
}
