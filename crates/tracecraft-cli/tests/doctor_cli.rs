//! `tracecraft doctor`: every checklist item, passing and failing.
#![allow(missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn doctor(dir: &Path, config: &str, env: &[(&str, &str)]) -> Output {
    std::fs::write(dir.join("tracecraft.toml"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracecraft"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TRACECRAFT_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("doctor")
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn status_of(out: &Output, check: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find(|l| l[6..].starts_with(check))
        .map(|l| l[..4].to_owned())
        .unwrap_or_else(|| panic!("no line for {check}:\n{stdout}"))
}

/// (check, config that passes, config that fails, status of the failing one)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "redaction enabled",
        "",
        "[redaction]\nenabled = false\n",
        "FAIL",
    ),
    (
        "hash mode keyed",
        "[redaction]\nmode = \"mask\"\n",
        "[redaction]\nmode = \"hash\"\nhash_key = \"unkeyed\"\n",
        "FAIL",
    ),
    (
        "built-in rules",
        "",
        "[redaction]\ndisable = [\"phone\"]\n",
        "WARN",
    ),
    (
        "built-in rules",
        "",
        "[redaction]\ninclude_defaults = false\n",
        "FAIL",
    ),
    (
        "custom rules",
        "[redaction]\ncustom_patterns = [\"EMP-\\\\d{6}\"]\n",
        "[redaction]\ncustom_patterns = [\"(?:[a-z]{1,100}){1,100}[0-9]{1,1000}\"]\n",
        "FAIL",
    ),
    (
        "custom rules",
        "[redaction]\ncustom_patterns = [\"EMP-\\\\d{6}\"]\n",
        "[redaction]\ncustom_rules = [{ name = \"crawl\", pattern = \"(?:[a-z]{1,100}){1,100}[0-9]{1,1000}\", allow_slow = true }]\n",
        "WARN",
    ),
    (
        "processor order",
        "processor_order = \"safety\"\n",
        "processor_order = \"efficiency\"\n",
        "WARN",
    ),
    (
        "allowlist",
        "[redaction]\nallowlist = [\"test@example.com\"]\n",
        "[redaction]\nallowlist = [\"jane.doe@acme-corp.io\"]\n",
        "WARN",
    ),
    (
        "credentials not in the file",
        "",
        "[redaction]\nmode = \"hash\"\nhash_key = \"a-literal-key-in-the-file\"\n",
        "FAIL",
    ),
    ("retention", "[storage]\nretention = \"30d\"\n", "", "WARN"),
    (
        "gateway exposure",
        "[gateway]\nhttp = \"127.0.0.1:4318\"\n",
        "[gateway]\nhttp = \"0.0.0.0:4318\"\nallow_insecure = true\n",
        "FAIL",
    ),
    (
        "identifiers pseudonymized",
        "[redaction]\nhash_key = \"some-key\"\n",
        "",
        "WARN",
    ),
    (
        "identifiers pseudonymized",
        "[redaction]\nhash_key = \"some-key\"\n",
        "[redaction]\nhash_key = \"unkeyed\"\n",
        "FAIL",
    ),
    (
        "identifiers pseudonymized",
        "[redaction]\nhash_key = \"some-key\"\n",
        "[redaction]\npseudonymize = []\n",
        "WARN",
    ),
    (
        "OTLP over TLS",
        "[otlp]\nenabled = true\nendpoint = \"https://collector.example.com:4318/v1/traces\"\n",
        "[otlp]\nenabled = true\nendpoint = \"http://collector.example.com:4318/v1/traces\"\n",
        "FAIL",
    ),
    (
        "OTLP over TLS",
        "[otlp]\nenabled = true\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n",
        "[otlp]\nenabled = true\nendpoint = \"http://10.0.0.8:4318/v1/traces\"\n",
        "FAIL",
    ),
];

#[test]
fn every_check_passes_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    for (check, pass, fail, status) in CASES {
        let out = doctor(dir.path(), pass, &[]);
        assert_eq!(status_of(&out, check), "PASS", "{check} with {pass:?}");
        let out = doctor(dir.path(), fail, &[]);
        assert_eq!(&status_of(&out, check), status, "{check} with {fail:?}");
        let code = out.status.code();
        if *status == "FAIL" {
            assert_eq!(code, Some(1), "{check}: a failing item is exit 1");
        }
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("a-literal-key-in-the-file") && !text.contains("jane.doe@acme-corp.io"),
            "{text}"
        );
    }
}

#[test]
fn the_environment_counts_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = doctor(dir.path(), "", &[("TRACECRAFT_REDACTION_ENABLED", "false")]);
    assert_eq!(status_of(&out, "redaction enabled"), "FAIL");
    assert!(String::from_utf8_lossy(&out.stdout).contains("TRACECRAFT_REDACTION_ENABLED"));
    // A key from the environment is the recommended way: no credential finding.
    let out = doctor(
        dir.path(),
        "[redaction]\nmode = \"hash\"\n",
        &[("TRACECRAFT_REDACTION_HASH_KEY", "k-from-env")],
    );
    assert_eq!(status_of(&out, "credentials not in the file"), "PASS");
    assert_eq!(status_of(&out, "hash mode keyed"), "PASS");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn store_permissions_git_ignore_and_old_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sample = include_str!("../../tracecraft-core/testdata/runs_sample.jsonl");
    std::fs::write(dir.path().join("runs.jsonl"), sample).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(["import", "runs.jsonl", "--store", "sqlite:traces/t.db"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let cfg = "[storage]\nurl = \"sqlite:traces/t.db\"\nretention_days = 1\n";
    let out = doctor(dir.path(), cfg, &[]);
    assert_eq!(status_of(&out, "storage permissions"), "PASS");
    assert_eq!(status_of(&out, "traces ignored by git"), "PASS");
    assert_eq!(
        status_of(&out, "retention applied"),
        "WARN",
        "the sample runs are years old"
    );
    std::fs::set_permissions(
        dir.path().join("traces/t.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = doctor(dir.path(), cfg, &[]);
    assert_eq!(status_of(&out, "storage permissions"), "FAIL");
    // Inside a git repository the trace directory must be ignored.
    if Command::new("git").arg("--version").output().is_ok() {
        assert!(
            Command::new("git")
                .args(["init", "-q"])
                .current_dir(dir.path())
                .status()
                .unwrap()
                .success()
        );
        let out = doctor(dir.path(), cfg, &[]);
        assert_eq!(status_of(&out, "traces ignored by git"), "FAIL");
        std::fs::write(dir.path().join(".gitignore"), "traces/\n").unwrap();
        let out = doctor(dir.path(), cfg, &[]);
        assert_eq!(status_of(&out, "traces ignored by git"), "PASS");
    }
    let out = doctor(dir.path(), cfg, &[]);
    let json = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(["doctor", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "FAIL")
    );
    assert_eq!(out.status.code(), Some(1));
}
