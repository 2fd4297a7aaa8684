//! `tracecraft import` and `tracecraft traces ...` end to end.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = include_str!("../../tracecraft-core/testdata/runs_sample.jsonl");
const KEY: &str = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678";

fn tc(args: &[&str], stdin: Option<&str>, dir: &std::path::Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(args)
        .current_dir(dir)
        .env_remove("TRACECRAFT_STORAGE")
        .env_remove("TRACECRAFT_REDACTION_ENABLED")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written on a thread while the output is read: the binary reads a bounded amount ahead
    // of what it has written out.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.map(|s| s.as_bytes().to_vec());
    let writer = std::thread::spawn(move || {
        if let Some(input) = input {
            pipe.write_all(&input).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn secret_line() -> String {
    let mut v: serde_json::Value = serde_json::from_str(SAMPLE.lines().next().unwrap()).unwrap();
    v["id"] = serde_json::json!("11111111-2222-4333-8444-555555555555");
    v["input"] = serde_json::json!(format!("use key {KEY}"));
    v.to_string()
}

#[test]
fn import_to_stdout_redacts_reports_bad_lines_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{}\nnot json\n{}\n",
        secret_line(),
        SAMPLE.lines().nth(1).unwrap()
    );
    let out = tc(&["import", "-"], Some(&input), dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "a malformed line is a partial import: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2);
    assert!(!stdout.contains(KEY));
    for line in stdout.lines() {
        tracecraft_core::parse_run(line).expect("output is AgentRun JSONL");
    }
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(
        stderr.contains("3 read, 2 kept, 0 dropped, 0 failed, 1 malformed"),
        "{stderr}"
    );
}

#[test]
fn import_applies_sampling_from_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tc.toml"),
        "[sampling]\nrate = 0.0\nalways_keep_errors = false\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("runs.jsonl"), SAMPLE).unwrap();
    let out = tc(
        &["import", "runs.jsonl", "--config", "tc.toml"],
        None,
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("20 read, 0 kept, 20 dropped (Dropped: default rate (0.0): 20)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_config_is_a_one_line_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tc.toml"), "[sampling]\nrate = 7\n").unwrap();
    let out = tc(
        &["import", "-", "--config", "tc.toml"],
        Some(""),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("sampling.rate"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
}

#[test]
fn import_into_sqlite_then_list_show_rm_purge_stats() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("runs.jsonl"),
        format!("{SAMPLE}{}\n", secret_line()),
    )
    .unwrap();
    let out = tc(
        &[
            "import",
            "runs.jsonl",
            "--store",
            "sqlite:db/t.db",
            "--store",
            "jsonl:jl",
        ],
        None,
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());

    let stats = tc(
        &["traces", "stats", "--store", "sqlite:db/t.db", "--json"],
        None,
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["traces"], 21);
    let jl = tc(
        &["traces", "stats", "--store", "jsonl:jl", "--json"],
        None,
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&jl.stdout).unwrap();
    assert_eq!(v["traces"], 21);

    let list = tc(
        &[
            "traces",
            "list",
            "--store",
            "sqlite:db/t.db",
            "--json",
            "--limit",
            "5",
        ],
        None,
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5);
    let session = v[0]["session_id"].as_str().unwrap().to_owned();
    let by_session = tc(
        &[
            "traces",
            "list",
            "--store",
            "sqlite:db/t.db",
            "--json",
            "--session",
            &session,
        ],
        None,
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&by_session.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|r| r["session_id"] == session.as_str())
    );

    let id = "11111111-2222-4333-8444-555555555555";
    let show = tc(
        &["traces", "show", id, "--store", "sqlite:db/t.db", "--json"],
        None,
        dir.path(),
    );
    assert!(show.status.success(), "{}", text(&show.stderr));
    assert!(
        !text(&show.stdout).contains(KEY),
        "the store holds the redacted run"
    );
    let tree = tc(
        &["traces", "show", id, "--store", "sqlite:db/t.db"],
        None,
        dir.path(),
    );
    assert!(text(&tree.stdout).contains("llm"), "{}", text(&tree.stdout));

    let rm = tc(
        &["traces", "rm", id, "--store", "sqlite:db/t.db", "--json"],
        None,
        dir.path(),
    );
    assert_eq!(
        text(&rm.stdout).trim(),
        format!("{{\"id\":\"{id}\",\"existed\":true}}")
    );
    let rm = tc(
        &["traces", "rm", id, "--store", "sqlite:db/t.db"],
        None,
        dir.path(),
    );
    assert!(text(&rm.stdout).contains("nothing deleted"));

    // The sample's runs are from 2026 or earlier; a 1-second age purges them all.
    let purge = tc(
        &[
            "traces",
            "purge",
            "--older-than",
            "1s",
            "--store",
            "sqlite:db/t.db",
        ],
        None,
        dir.path(),
    );
    assert!(
        text(&purge.stdout).contains("purged 20"),
        "{}",
        text(&purge.stdout)
    );

    let bad = tc(
        &["traces", "show", "nope", "--store", "sqlite:db/t.db"],
        None,
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("not a trace id"));
}

#[test]
fn traces_defaults_to_the_embedded_sqlite_store_and_never_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["traces", "stats"][..],
        &["traces", "list"],
        &["traces", "rm", "11111111-2222-4333-8444-555555555555"],
    ] {
        let out = tc(args, None, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("traces/tracecraft.db"), "{err}");
        assert!(
            !dir.path().join("traces").exists(),
            "{args:?} created a store"
        );
    }
    std::fs::write(dir.path().join("runs.jsonl"), SAMPLE).unwrap();
    let out = tc(
        &[
            "import",
            "runs.jsonl",
            "--store",
            "sqlite:traces/tracecraft.db",
        ],
        None,
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tc(&["traces", "stats"], None, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("traces: 20"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn import_exports_redacted_runs_to_an_otlp_collector() {
    use prost::Message;
    use tracecraft_otlp::testing::MockCollector;
    let dir = tempfile::tempdir().unwrap();
    let collector = MockCollector::start().unwrap();
    for (protocol, endpoint) in [
        ("grpc", collector.grpc_endpoint()),
        ("http/protobuf", collector.http_endpoint()),
    ] {
        let input = format!("{}\n", secret_line());
        let out = tc(
            &[
                "import",
                "-",
                "--otlp",
                &endpoint,
                "--otlp-protocol",
                protocol,
            ],
            Some(&input),
            dir.path(),
        );
        assert!(out.status.success(), "{protocol}: {}", text(&out.stderr));
        assert!(text(&out.stdout).is_empty(), "runs went to stdout too");
        assert!(
            text(&out.stderr).contains("1 read, 1 kept"),
            "{}",
            text(&out.stderr)
        );
    }
    let received = collector.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        let bytes = r.request.encode_to_vec();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
        assert_eq!(
            r.spans()[0].trace_id,
            uuid::Uuid::parse_str("11111111-2222-4333-8444-555555555555")
                .unwrap()
                .as_bytes()
                .to_vec()
        );
    }
}

/// With the collector down, the batch goes to the OTLP spool and the summary says so.
#[test]
fn import_summary_counts_what_the_otlp_spool_took() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(["import", "-", "--otlp", &format!("http://127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("TRACECRAFT_STORAGE")
        .env("TRACECRAFT_OTLP_SPOOL_DIR", dir.path().join("spool"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", secret_line()).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains("1 read, 1 kept"), "{stderr}");
    assert!(
        stderr.contains("OTLP spool: ") && stderr.contains("in 1 requests spooled"),
        "{stderr}"
    );
}

#[test]
fn import_otlp_errors_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = tc(
        &["import", "-", "--otlp", "collector:4317"],
        Some(""),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--otlp") && stderr.contains("otlp.endpoint"),
        "{stderr}"
    );
    let out = tc(
        &[
            "import",
            "-",
            "--otlp",
            "http://127.0.0.1:1",
            "--otlp-protocol",
            "http/xml",
        ],
        Some(""),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--otlp-protocol")
            && text(&out.stderr).contains("`grpc`, `http/protobuf` or `http/json`"),
        "{}",
        text(&out.stderr)
    );
}
