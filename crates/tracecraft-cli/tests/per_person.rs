//! Per-person access and erasure with pseudonymous ids, on both stores.
#![allow(missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

const SAMPLE: &str = include_str!("../../tracecraft-core/testdata/runs_sample.jsonl");
const KEY: &str = "per-person-test-key-0123456789";

fn tc(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracecraft"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TRACECRAFT_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TRACECRAFT_REDACTION_HASH_KEY", KEY)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// 20 sample runs: alice owns 3 (two in session s-a), bob 2, the rest nobody.
fn runs(dir: &Path) {
    let mut out = String::new();
    for (i, line) in SAMPLE.lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (user, session) = match i {
            0 | 1 => ("alice@example.com", "s-a"),
            2 => ("alice@example.com", "s-other"),
            3 | 4 => ("bob@example.com", "s-b"),
            _ => ("", ""),
        };
        v["user_id"] = if user.is_empty() {
            serde_json::Value::Null
        } else {
            user.into()
        };
        v["session_id"] = if session.is_empty() {
            serde_json::Value::Null
        } else {
            session.into()
        };
        out.push_str(&v.to_string());
        out.push('\n');
    }
    std::fs::write(dir.join("runs.jsonl"), out).unwrap();
}

fn per_person(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    runs(dir.path());
    let out = tc(&["import", "runs.jsonl", "--store", store], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The store never holds the id; every user is a distinct stable pseudonym.
    let all = tc(
        &[
            "traces", "--store", store, "list", "--json", "--limit", "100",
        ],
        dir.path(),
    );
    let listed = text(&all.stdout);
    assert!(
        !listed.contains("alice@example.com") && !listed.contains("bob@example.com"),
        "{listed}"
    );
    assert!(listed.contains("[HASH:"), "{listed}");
    // Queries take the real id.
    let alice = tc(
        &[
            "traces",
            "--store",
            store,
            "list",
            "--json",
            "--user",
            "alice@example.com",
        ],
        dir.path(),
    );
    let list: serde_json::Value = serde_json::from_slice(&alice.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{}", text(&alice.stdout));
    // A subject access request: everything stored about alice, as JSONL.
    let export = tc(
        &[
            "traces",
            "--store",
            store,
            "export",
            "--user",
            "alice@example.com",
        ],
        dir.path(),
    );
    assert!(export.status.success(), "{}", text(&export.stderr));
    let lines: Vec<_> = text(&export.stdout)
        .lines()
        .map(|l| tracecraft_core::parse_run(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    // Erasure by person: all of alice's runs, nobody else's.
    let rm = tc(
        &[
            "traces",
            "--store",
            store,
            "rm",
            "--user",
            "alice@example.com",
        ],
        dir.path(),
    );
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(
        text(&rm.stdout).contains("erased 3 trace(s)"),
        "{}",
        text(&rm.stdout)
    );
    let again = tc(
        &[
            "traces",
            "--store",
            store,
            "rm",
            "--user",
            "alice@example.com",
        ],
        dir.path(),
    );
    assert_eq!(
        again.status.code(),
        Some(1),
        "nothing erased is not success"
    );
    let stats = tc(&["traces", "--store", store, "stats"], dir.path());
    assert!(
        text(&stats.stdout).contains("traces: 17"),
        "{}",
        text(&stats.stdout)
    );
    let rm = tc(
        &["traces", "--store", store, "rm", "--session", "s-b"],
        dir.path(),
    );
    assert!(
        text(&rm.stdout).contains("erased 2 trace(s)"),
        "{}",
        text(&rm.stdout)
    );
    // Purge --dry-run counts and deletes nothing.
    let dry = tc(
        &[
            "traces",
            "--store",
            store,
            "purge",
            "--older-than",
            "1d",
            "--dry-run",
        ],
        dir.path(),
    );
    assert!(
        text(&dry.stdout).contains("would purge 15 trace(s)"),
        "{}",
        text(&dry.stdout)
    );
    let stats = tc(&["traces", "--store", store, "stats"], dir.path());
    assert!(
        text(&stats.stdout).contains("traces: 15"),
        "{}",
        text(&stats.stdout)
    );
    // Raw bytes: no trace of the erased person's pseudonym either.
    for entry in walk(&dir.path().join(store.split_once(':').unwrap().1)) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("alice@example.com"));
    }
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flat_map(|e| walk(&e.unwrap().path()))
            .collect()
    } else if p.exists() {
        vec![p.to_path_buf()]
    } else {
        Vec::new()
    }
}

#[test]
fn per_person_access_and_erasure_on_sqlite() {
    per_person("sqlite:t.db");
}

#[test]
fn per_person_access_and_erasure_on_jsonl() {
    per_person("jsonl:traces");
}
