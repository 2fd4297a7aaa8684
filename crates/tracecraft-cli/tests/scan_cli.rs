//! `tracecraft scan`: residual secrets in files and stores, reported without values, fixed on request.
#![allow(missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const SAMPLE: &str = include_str!("../../tracecraft-core/testdata/runs_sample.jsonl");

/// Planted secrets of the built-in classes, as a trace would carry them.
const PLANTED: &[&str] = &[
    "bob.smith@example.org",
    "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "4111 1111 1111 1111",
    "123-45-6789",
    "(415) 555-0132",
];

fn tc(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracecraft"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TRACECRAFT_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).current_dir(dir).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A JSONL file as an unredacted writer (the Python package with redaction off) leaves it.
fn unredacted_runs(dir: &Path) -> std::path::PathBuf {
    let mut lines = String::new();
    for (i, line) in SAMPLE.lines().take(PLANTED.len()).enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["input"] = serde_json::json!(format!("please use {} for this", PLANTED[i]));
        lines.push_str(&v.to_string());
        lines.push('\n');
    }
    let path = dir.join("raw.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn scan_finds_every_planted_secret_without_printing_one() {
    let dir = tempfile::tempdir().unwrap();
    unredacted_runs(dir.path());
    let out = tc(&["scan", "raw.jsonl"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for (i, secret) in PLANTED.iter().enumerate() {
        assert!(
            all.contains(&format!("raw.jsonl:{}:", i + 1)),
            "line {} not reported:\n{all}",
            i + 1
        );
        assert!(!all.contains(secret), "printed {secret}");
    }
    assert!(
        text(&out.stderr).contains(&format!("{} place(s)", PLANTED.len())),
        "{all}"
    );
}

#[test]
fn clean_and_already_redacted_text_is_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("log.txt"),
        "plain words\nkey [REDACTED] and [HASH:0123456789abcdef]\npassword: ***\n",
    )
    .unwrap();
    let out = tc(&["scan", "log.txt"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("0 finding(s)"));
}

#[test]
fn fix_rewrites_files_atomically_keeping_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = unredacted_runs(dir.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = tc(&["scan", "raw.jsonl", "--fix"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let body = std::fs::read_to_string(&path).unwrap();
    for secret in PLANTED {
        assert!(!body.contains(secret), "{secret} survived the fix");
    }
    for line in body.lines() {
        tracecraft_core::parse_run(line).expect("still AgentRun JSONL");
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let out = tc(&["scan", "raw.jsonl", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("\"findings\":0"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn stores_are_scanned_and_fixed_by_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    unredacted_runs(dir.path());
    // Written with redaction off, as an older configuration would have.
    let out = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(["import", "raw.jsonl", "--store", "sqlite:t.db"])
        .env("TRACECRAFT_REDACTION_ENABLED", "false")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tc(&["scan", "--store", "sqlite:t.db", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("\"place\":\"trace "), "{stdout}");
    for secret in PLANTED {
        assert!(!stdout.contains(secret));
    }
    let out = tc(&["scan", "--store", "sqlite:t.db", "--fix"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{} stored run(s)", PLANTED.len())),
        "{}",
        text(&out.stderr)
    );
    let out = tc(&["scan", "--store", "sqlite:t.db"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = tc(&["traces", "--store", "sqlite:t.db", "stats"], dir.path());
    assert!(text(&out.stdout).contains(&format!("traces: {}", PLANTED.len())));
    // A missing store is an error, not an empty scan.
    let out = tc(&["scan", "--store", "sqlite:nope.db"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("nope.db").exists());
}

/// The bench corpus's planted secrets (generated by `../shared/bench/corpus.py`, as the
/// benches do), written unredacted as AgentRun JSONL the way the Python package writes with
/// redaction disabled: `scan` reports the line of every secret the engine detects, and never
/// prints one.
#[test]
fn scan_finds_every_detected_planted_secret_of_the_bench_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let generator = root.join("shared/bench/corpus.py");
    assert!(
        generator.exists(),
        "the shared bench corpus generator is missing at {}",
        generator.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .arg(&generator)
        .args(["--out"])
        .arg(dir.path().join("corpus"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "corpus.py failed");
    let planted = std::fs::read_to_string(dir.path().join("corpus/planted.jsonl")).unwrap();
    let engine =
        tracecraft_redact::Redactor::new(&tracecraft_redact::RedactionConfig::default()).unwrap();
    let template: serde_json::Value = serde_json::from_str(SAMPLE.lines().next().unwrap()).unwrap();
    let mut lines = String::new();
    let mut expected = Vec::new(); // (line number, core value) of detected secrets
    let mut cores = Vec::new();
    for (i, rec) in planted.lines().enumerate() {
        let rec: serde_json::Value = serde_json::from_str(rec).unwrap();
        let snippet = rec["snippet"].as_str().unwrap();
        let core = rec["core"].as_str().unwrap_or_default();
        let mut run = template.clone();
        run["id"] = serde_json::json!(format!("00000000-0000-4000-8000-{:012x}", i + 1));
        run["input"] = serde_json::json!(snippet);
        lines.push_str(&run.to_string());
        lines.push('\n');
        let redacted = engine.redact_str(snippet, &mut tracecraft_redact::Report::default());
        if core.len() >= 6 && snippet.contains(core) && !redacted.contains(core) {
            expected.push(i + 1);
            cores.push(core.to_owned());
        }
    }
    assert!(
        expected.len() > 1000,
        "only {} detected planted secrets",
        expected.len()
    );
    std::fs::write(dir.path().join("raw.jsonl"), lines).unwrap();
    let out = tc(&["scan", "raw.jsonl", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let reported: std::collections::HashSet<usize> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["place"]
                .as_str()
                .and_then(|p| p.rsplit(':').next())
                .and_then(|n| n.parse().ok())
        })
        .collect();
    let missed: Vec<_> = expected.iter().filter(|n| !reported.contains(n)).collect();
    assert!(
        missed.is_empty(),
        "{} detected secrets not reported, e.g. line {:?}",
        missed.len(),
        missed.first()
    );
    let all = format!("{stdout}{}", text(&out.stderr));
    for core in &cores {
        assert!(
            !all.contains(core.as_str()),
            "scan printed a planted secret"
        );
    }
}

/// Secrets that span lines in plain files: a private key block (header, body lines, footer)
/// and a CSV table whose header names a password column, long enough that the file is read
/// in several chunks. Each is found where it begins (the block at its header line, every
/// row's cell at its row), `--fix` leaves none of it, and a second scan is clean.
#[test]
fn blocks_and_tables_spanning_lines_are_found_and_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n";
    let mut file = String::from("log start\n-----BEGIN RSA PRIVATE KEY-----\n");
    file.push_str(&body.repeat(3));
    file.push_str("-----END RSA PRIVATE KEY-----\nid,password,city\n");
    let rows = 60_000;
    for i in 0..rows {
        file.push_str(&format!("{i},Pw{i:08}xq,Paris\n"));
    }
    file.push_str("the end\n");
    assert!(file.len() > 1 << 20, "read in more than one chunk");
    std::fs::write(dir.path().join("app.log"), &file).unwrap();

    let out = tc(&["scan", "app.log", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let found: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("rule").is_some())
        .collect();
    assert_eq!(found[0]["place"], "app.log:2");
    assert_eq!(found[0]["rule"], "private_key");
    let cells: Vec<&serde_json::Value> = found
        .iter()
        .filter(|f| f["rule"] == "password_field")
        .collect();
    assert_eq!(cells.len(), rows, "every row's password cell");
    assert_eq!(cells[rows - 1]["place"], format!("app.log:{}", 7 + rows));
    assert!(!text(&out.stdout).contains("Pw0") && !text(&out.stdout).contains("MIIE"));

    let out = tc(&["scan", "app.log", "--fix"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let fixed = std::fs::read_to_string(dir.path().join("app.log")).unwrap();
    assert!(!fixed.contains("MIIE"), "the key's body survived the fix");
    assert!(!fixed.contains(",Pw"), "a password survived the fix");
    assert!(fixed.starts_with("log start\n[REDACTED]\nid,password,city\n0,[REDACTED],Paris\n"));
    assert!(fixed.ends_with("the end\n"));
    let out = tc(&["scan", "app.log"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
