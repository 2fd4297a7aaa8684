//! `tracecraft spool status|flush|drop` end to end, against the mock collector.
#![allow(clippy::disallowed_methods)] // the test spools ProcessedRuns directly

use std::process::{Command, Output};
use std::time::Duration;

use tracecraft_core::{AgentRun, Exporter, ProcessedRun};
use tracecraft_otlp::testing::MockCollector;
use tracecraft_otlp::{OtlpExporter, RetryPolicy, SpoolConfig};

fn tc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(args)
        .env_remove("TRACECRAFT_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn status_flush_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let spool = spool_dir.to_str().unwrap();

    // Nothing there: said so, and nothing is created.
    let out = tc(&["spool", "status", "--dir", spool]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("does not exist"));
    assert!(!spool_dir.exists());

    // Spool three requests while the collector is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/traces");
    let mut exporter = OtlpExporter::builder()
        .endpoint(&endpoint)
        .retry(RetryPolicy::none())
        .spool(
            SpoolConfig::builder(&spool_dir)
                .resend_interval(Duration::from_secs(3600))
                .build(),
        )
        .build()
        .unwrap();
    for name in ["a", "b", "c"] {
        exporter
            .export(&[ProcessedRun::assume_processed(AgentRun::new(name))])
            .unwrap();
    }
    exporter.shutdown(Duration::from_secs(1)).unwrap();
    let out = tc(&["spool", "status", "--dir", spool]);
    assert!(
        text(&out.stdout).contains("3 request(s), 3 span(s)"),
        "{}",
        text(&out.stdout)
    );

    // Still down: nothing sent, exit 2, the cause named.
    let out = tc(&[
        "spool",
        "flush",
        "--dir",
        spool,
        "--otlp",
        &endpoint,
        "--timeout",
        "10s",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("connection refused"),
        "{}",
        text(&out.stderr)
    );

    // Up: everything sent, the spool empty.
    let collector = MockCollector::start_on_port(port).unwrap();
    let out = tc(&["spool", "flush", "--dir", spool, "--otlp", &endpoint]);
    assert!(
        out.status.success(),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("sent 3 request(s) (3 span(s))"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(collector.spans().len(), 3);

    // Drop empties it.
    std::fs::write(
        spool_dir.join("00000000000000000001-1-000000-2s.tcspool"),
        b"x",
    )
    .unwrap();
    let out = tc(&["spool", "drop", "--dir", spool]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("dropped 1 request(s), 2 span(s)"),
        "{}",
        text(&out.stdout)
    );
    let out = tc(&["spool", "status", "--dir", spool]);
    assert!(
        text(&out.stdout).contains("0 request(s)"),
        "{}",
        text(&out.stdout)
    );
}
