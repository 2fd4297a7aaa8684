//! `tracecraft ui`: refuses a missing store (and creates none), serves an existing one.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn tracecraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracecraft"))
}

#[test]
fn a_missing_store_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nope.db");
    let jsonl = dir.path().join("nope");
    for url in [
        format!("sqlite:{}", db.display()),
        format!("jsonl:{}", jsonl.display()),
    ] {
        let out = tracecraft()
            .args(["ui", "--no-open", "--port", "0", "--store", &url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no store here"), "{err}");
    }
    assert!(!db.exists() && !jsonl.exists(), "nothing was created");
}

#[test]
fn a_public_address_without_a_short_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    tracecraft_store_sqlite_open(&db);
    let out = tracecraft()
        .args([
            "ui",
            "--no-open",
            "--port",
            "0",
            "--bind",
            "0.0.0.0",
            "--token",
            "short",
        ])
        .args(["--store", &format!("sqlite:{}", db.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at least 16 characters") && !err.contains("short"),
        "{err}"
    );
}

/// Creates an empty SQLite store at `path`.
fn tracecraft_store_sqlite_open(path: &std::path::Path) {
    let mut storage = tracecraft::config::StorageConfig::default();
    storage.url = tracecraft::config::StorageUrl::Sqlite(path.to_path_buf());
    let store = tracecraft::open_store(&storage).unwrap().unwrap();
    tracecraft_core::TraceStore::flush(&*store).unwrap();
}

#[test]
fn serves_an_existing_store_on_the_printed_url() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    tracecraft_store_sqlite_open(&db);
    assert!(db.is_file(), "fixture store exists");
    let mut child = tracecraft()
        .args([
            "ui",
            "--no-open",
            "--port",
            "0",
            "--store",
            &format!("sqlite:{}", db.display()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Keep reading stdout (a closed pipe would end the command at its next line).
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line.split(" at ").nth(1).unwrap().trim().to_owned();
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut s = std::net::TcpStream::connect(&hostport).unwrap();
    write!(
        s,
        "GET /api/meta HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"allow_erase\":false"), "{resp}");
    assert!(resp.contains("\"store\":\"sqlite\""), "{resp}");
}
