//! `tracecraft serve` end to end: spans with a secret arrive over OTLP/HTTP, SIGTERM drains
//! the incomplete trace into the SQLite store, the stored run holds no secret; refusals of
//! unusable settings.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use prost::Message;
use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecraft_otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
use tracecraft_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};

const KEY: &str = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678";

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn body() -> Vec<u8> {
    let span = Span {
        trace_id: vec![7; 16],
        span_id: vec![2; 8],
        // Its parent never arrives: only the shutdown drain processes this trace.
        parent_span_id: vec![1; 8],
        name: "chat gpt-4o".into(),
        start_time_unix_nano: now_ns() - 1000,
        end_time_unix_nano: now_ns(),
        attributes: vec![KeyValue {
            key: "app.prompt".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("key {KEY}"))),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn post(addr: &str, body: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.lines().next().unwrap_or_default().to_owned()
}

fn tc(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(args)
        .current_dir(dir)
        .env_remove("TRACECRAFT_CONFIG")
        .env_remove("TRACECRAFT_STORAGE")
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn serve_receives_redacts_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("t.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args([
            "serve",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--store",
            &store,
            "--quiet-period",
            "10m",
        ])
        .current_dir(dir.path())
        .env_remove("TRACECRAFT_CONFIG")
        .env_remove("TRACECRAFT_STORAGE")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // Warnings (e.g. no hash key for pseudonyms) may come before the line naming the addresses.
    let mut line = String::new();
    for _ in 0..20 {
        line.clear();
        stderr.read_line(&mut line).unwrap();
        if line.contains("OTLP/HTTP on http://") {
            break;
        }
    }
    let addr = line
        .split("OTLP/HTTP on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_owned();
    let status = post(&addr, &body());
    assert!(status.contains("200"), "{status}");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{line}{rest}");
    assert!(rest.contains("SIGTERM: draining"), "{rest}");
    let out = tc(&["traces", "list", "--store", &store], dir.path());
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.contains("chat gpt-4o"), "{listed}");
    let id = "07070707-0707-0707-0707-070707070707";
    let out = tc(
        &["traces", "show", id, "--json", "--store", &store],
        dir.path(),
    );
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("app.prompt"), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
}

#[test]
fn non_loopback_without_tls_is_refused_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = tc(&["serve", "--grpc", "0.0.0.0:0", "--no-http"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway.grpc") && err.contains("--allow-insecure"),
        "{err}"
    );
}
