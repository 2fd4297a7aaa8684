//! The `Exporter` contract suite against the OTLP exporter (both protocols, with and without
//! a spool), sending to the mock collector.

use std::time::Duration;

use tracecraft_core::exporter_contract;
use tracecraft_otlp::testing::MockCollector;
use tracecraft_otlp::{OtlpExporter, Protocol, SpoolConfig};

#[test]
fn otlp_exporter_follows_the_exporter_contract() {
    let collector = MockCollector::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        for spool in [false, true] {
            exporter_contract::run_all(|| {
                let endpoint = match protocol {
                    Protocol::Grpc => collector.grpc_endpoint(),
                    Protocol::HttpProtobuf | Protocol::HttpJson => collector.http_endpoint(),
                };
                let mut b = OtlpExporter::builder()
                    .protocol(protocol)
                    .endpoint(endpoint)
                    .timeout(Duration::from_secs(5));
                if spool {
                    b = b.spool(SpoolConfig::builder(dir.path().join("spool")).build());
                }
                b.build().unwrap()
            });
        }
    }
}

#[test]
fn otlp_shutdown_is_bounded_with_the_collector_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut e = OtlpExporter::builder()
        .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
        .timeout(Duration::from_secs(1))
        .spool(SpoolConfig::builder(dir.path().join("spool")).build())
        .build()
        .unwrap();
    exporter_contract::check_shutdown_within_timeout(&mut e);
}
