//! Every way TraceCraft used to fail quietly, as a user and an operator would meet it: each
//! test reproduces one observed failure (issue 12) and checks it is now loud and exact.
#![allow(missing_docs)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = include_str!("../../tracecraft-core/testdata/runs_sample.jsonl");

/// Runs `tracecraft` in `dir` with a clean TraceCraft/OTel environment plus `env`.
fn tc(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>, dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracecraft"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("TRACECRAFT_") || k.starts_with("OTEL_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written on a thread while the output is read: the binary reads a bounded amount ahead
    // of what it has written out.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let Some(input) = input {
            let _ = pipe.write_all(&input);
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A sample run whose input carries an employee number only a custom rule knows.
fn employee_run(id: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(SAMPLE.lines().next().unwrap()).unwrap();
    v["id"] = serde_json::json!(id);
    v["input"] = serde_json::json!("ticket for EMP-123456 please");
    v.to_string()
}

const RULES: &str = "[redaction]\ncustom_patterns = [\"EMP-\\\\d{6}\"]\n";

#[test]
fn the_configuration_file_is_found_the_documented_ways_by_import_and_redact() {
    let run = format!("{}\n", employee_run("11111111-2222-4333-8444-555555555555"));
    // TRACECRAFT_CONFIG, ./tracecraft.toml, ./.tracecraft/config.toml, --config.
    for how in ["env", "cwd", "dotdir", "flag"] {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![];
        let mut args_extra = vec![];
        let rules_path = dir.path().join("rules.toml");
        match how {
            "env" => {
                std::fs::write(&rules_path, RULES).unwrap();
                env.push(("TRACECRAFT_CONFIG", rules_path.to_str().unwrap().to_owned()));
            }
            "cwd" => std::fs::write(dir.path().join("tracecraft.toml"), RULES).unwrap(),
            "dotdir" => {
                std::fs::create_dir(dir.path().join(".tracecraft")).unwrap();
                std::fs::write(dir.path().join(".tracecraft/config.toml"), RULES).unwrap();
            }
            _ => {
                std::fs::write(&rules_path, RULES).unwrap();
                args_extra = vec!["--config".to_owned(), "rules.toml".to_owned()];
            }
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut args = vec!["import", "-"];
        args.extend(args_extra.iter().map(String::as_str));
        let out = tc(&args, &env, Some(run.as_bytes()), dir.path());
        assert!(out.status.success(), "{how}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            !stdout.contains("EMP-123456"),
            "{how}: custom rule not applied by import"
        );
        assert!(stdout.contains("[REDACTED]"), "{how}");
        let mut args = vec!["redact"];
        args.extend(args_extra.iter().map(String::as_str));
        let out = tc(&args, &env, Some(b"id EMP-654321"), dir.path());
        assert!(out.status.success(), "{how}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "id [REDACTED]",
            "{how}: custom rule not applied by redact"
        );
    }
}

#[test]
fn a_named_configuration_file_that_is_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tc(
        &["redact"],
        &[("TRACECRAFT_CONFIG", "nope.toml")],
        Some(b"x"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nope.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn traces_commands_use_the_store_that_tracecraft_storage_names() {
    let dir = tempfile::tempdir().unwrap();
    let id = "11111111-2222-4333-8444-555555555555";
    std::fs::write(
        dir.path().join("runs.jsonl"),
        format!("{}\n", employee_run(id)),
    )
    .unwrap();
    let env = [("TRACECRAFT_STORAGE", "jsonl:elsewhere")];
    let out = tc(&["import", "runs.jsonl"], &env, None, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("1 stored in jsonl:elsewhere"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "a configured store replaces stdout");
    let out = tc(&["traces", "list", "--json"], &env, None, dir.path());
    assert!(text(&out.stdout).contains(id), "{}", text(&out.stderr));
    let out = tc(&["traces", "rm", id], &env, None, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("deleted trace"));
    // Really gone from that store, and no default store was created on the way.
    let out = tc(&["traces", "rm", id], &env, None, dir.path());
    assert_eq!(out.status.code(), Some(1), "erasing nothing is not success");
    assert!(!dir.path().join("traces").exists());
    for f in std::fs::read_dir(dir.path().join("elsewhere")).unwrap() {
        let body = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!body.contains(id));
    }
}

#[test]
fn read_only_and_erasing_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo/x.db");
    let url = format!("sqlite:{}", typo.display());
    for args in [
        vec!["traces", "list"],
        vec!["traces", "list", "--store", &url],
        vec!["traces", "rm", "11111111-2222-4333-8444-555555555555"],
        vec![
            "traces",
            "purge",
            "--older-than",
            "1d",
            "--store",
            "jsonl:nodir",
        ],
        vec!["traces", "show", "11111111-2222-4333-8444-555555555555"],
        vec!["traces", "stats"],
    ] {
        let out = tc(&args, &[], None, dir.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("no store here"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("traces").exists());
    assert!(!dir.path().join("typo").exists());
    assert!(!dir.path().join("nodir").exists());
    // An import whose only input is missing creates nothing either.
    let out = tc(
        &["import", "/missing.jsonl", "--store", "sqlite:db/t.db"],
        &[],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/missing.jsonl"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("db").exists());
}

#[test]
fn modes_of_what_tracecraft_did_not_create_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("README"), "hello").unwrap();
    std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("runs.jsonl"), SAMPLE).unwrap();
    for (store_dir, expected) in [(&shared, 0o1777), (&project, 0o755)] {
        let url = format!("sqlite:{}", store_dir.join("t.db").display());
        let out = tc(
            &["import", "runs.jsonl", "--store", &url],
            &[],
            None,
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = tc(&["traces", "list", "--store", &url], &[], None, dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(mode(store_dir), expected, "{}", store_dir.display());
        assert_eq!(
            mode(&store_dir.join("t.db")),
            0o600,
            "a file it created is 0600"
        );
    }
    // A looser existing store file is reported, not silently tightened.
    let db = project.join("t.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("sqlite:{}", db.display());
    let out = tc(&["traces", "list", "--store", &url], &[], None, dir.path());
    assert!(out.status.success());
    assert_eq!(mode(&db), 0o644);
    assert!(
        text(&out.stderr).contains("looser"),
        "{}",
        text(&out.stderr)
    );
    // `permissions = "error"` refuses it.
    std::fs::write(
        dir.path().join("strict.toml"),
        "[storage]\npermissions = \"error\"\n",
    )
    .unwrap();
    let out = tc(
        &["traces", "list", "--store", &url, "--config", "strict.toml"],
        &[],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("644"), "{}", text(&out.stderr));
}

#[test]
fn errors_never_echo_keys_variants_or_values_from_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad_type: serde_json::Value =
        serde_json::from_str(SAMPLE.lines().next().unwrap()).unwrap();
    bad_type["steps"][0]["type"] = serde_json::json!("secret-type-sk-proj-Abc123Def456Ghi789Jkl0");
    let mut bad_key =
        serde_json::from_str::<serde_json::Value>(SAMPLE.lines().nth(1).unwrap()).unwrap();
    bad_key["steps"][0]
        .as_object_mut()
        .unwrap()
        .insert("leaky.person@example.com".into(), serde_json::json!(1));
    let input = format!("{bad_type}\n{bad_key}\n");
    let out = tc(&["import", "-"], &[], Some(input.as_bytes()), dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("line 1") && err.contains("line 2"), "{err}");
    assert!(
        !err.contains("sk-proj-Abc123") && !err.contains("leaky.person"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("c.toml"),
        "[redaction]\nmode = \"sk-live-Abc123Def456Ghi789\"\n",
    )
    .unwrap();
    let out = tc(
        &["redact", "--config", "c.toml"],
        &[],
        Some(b"x"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !text(&out.stderr).contains("Abc123Def456"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        dir.path().join("c.toml"),
        "[redaction]\nenabled = \"hunter2-password\"\n",
    )
    .unwrap();
    let out = tc(
        &["redact", "--config", "c.toml"],
        &[],
        Some(b"x"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("c.toml:2") && !err.contains("hunter2"),
        "{err}"
    );

    let out = tc(
        &["redact"],
        &[(
            "TRACECRAFT_REDACTION_MODE",
            "sk-proj-Abc123Def456Ghi789Jkl0",
        )],
        Some(b"x"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("TRACECRAFT_REDACTION_MODE") && !err.contains("Abc123"),
        "{err}"
    );
}

#[test]
fn partial_imports_exit_1_and_name_every_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), SAMPLE).unwrap();
    let out = tc(
        &[
            "import",
            "a.jsonl",
            "/missing.jsonl",
            "--store",
            "sqlite:t.db",
        ],
        &[],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("20 read, 20 kept"), "{err}");
    assert!(err.contains("20 stored in sqlite:t.db"), "{err}");
    assert!(err.contains("cannot read /missing.jsonl"), "{err}");

    // A full device is named, with the count of what it cost.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .args(["import", "a.jsonl"])
        .current_dir(dir.path())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(child.status.code(), Some(1));
    let err = text(&child.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("0 written to stdout"), "{err}");
}

#[test]
fn export_failures_carry_their_cause_into_the_summary() {
    use tracecraft_otlp::testing::{MockCollector, Reply};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), SAMPLE).unwrap();
    let collector = MockCollector::start().unwrap();
    collector.script([Reply::Http {
        status: 401,
        retry_after: None,
    }]);
    // The endpoint comes from the OpenTelemetry environment alone (no --otlp).
    let base = collector.http_endpoint().replace("/v1/traces", "");
    let out = tc(
        &["import", "a.jsonl"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
            ("TRACECRAFT_OTLP_ENABLED", "true"),
        ],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("20 not exported") && err.contains("401"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn redaction_disabled_is_loud_and_marks_runs_and_empty_booleans_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = format!("{}\n", employee_run("11111111-2222-4333-8444-555555555555"));
    let out = tc(
        &["import", "-"],
        &[("TRACECRAFT_REDACTION_ENABLED", "false")],
        Some(run.as_bytes()),
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("DISABLED"),
        "{}",
        text(&out.stderr)
    );
    let stored = tracecraft_core::parse_run(text(&out.stdout).trim()).unwrap();
    assert_eq!(stored.attributes["tracecraft.redaction"], "disabled");
    let out = tc(
        &["import", "-"],
        &[("TRACECRAFT_REDACTION_ENABLED", "")],
        Some(run.as_bytes()),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("TRACECRAFT_REDACTION_ENABLED"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_byte_order_mark_does_not_lose_the_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!("\u{feff}{SAMPLE}");
    let out = tc(&["import", "-"], &[], Some(input.as_bytes()), dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("20 read, 20 kept"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn since_takes_ages_dates_and_times() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), SAMPLE).unwrap();
    assert!(
        tc(
            &["import", "a.jsonl", "--store", "sqlite:t.db"],
            &[],
            None,
            dir.path()
        )
        .status
        .success()
    );
    for since in [
        "2000-01-06",
        "2000-01-06T10:00",
        "2000-01-06 10:00:00",
        "2000-01-06T10:00:00Z",
        "30d",
    ] {
        let out = tc(
            &["traces", "list", "--store", "sqlite:t.db", "--since", since],
            &[],
            None,
            dir.path(),
        );
        assert!(out.status.success(), "{since}: {}", text(&out.stderr));
    }
    let out = tc(
        &[
            "traces",
            "list",
            "--store",
            "sqlite:t.db",
            "--since",
            "sk-proj-Abc123Def456Ghi789Jkl0",
        ],
        &[],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stderr).contains("Abc123"));
}

#[test]
fn config_shows_each_setting_with_its_source_and_check_validates_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tracecraft.toml"),
        "service_name = \"bot\"\n[redaction]\nmode = \"hash\"\nhash_key = \"do-not-print-this-key\"\n",
    )
    .unwrap();
    let out = tc(
        &["config"],
        &[("TRACECRAFT_SAMPLING_RATE", "0.5")],
        None,
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("tracecraft.toml:1"), "{shown}");
    assert!(shown.contains("redaction.mode = \"hash\""), "{shown}");
    assert!(
        shown.contains("environment TRACECRAFT_SAMPLING_RATE"),
        "{shown}"
    );
    assert!(
        shown.contains("storage.url = \"sqlite:traces/tracecraft.db\""),
        "{shown}"
    );
    assert!(!shown.contains("do-not-print-this-key"), "{shown}");

    std::fs::write(
        dir.path().join("bad.toml"),
        "[redaction]\ncustom_rules = [{ name = \"slow\", pattern = \"(?<=a)b\" }]\n",
    )
    .unwrap();
    let out = tc(&["config", "--check", "bad.toml"], &[], None, dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("slow"), "{}", text(&out.stderr));
    let out = tc(
        &["config", "--check", "tracecraft.toml"],
        &[],
        None,
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tc(
        &["config"],
        &[("TRACECRAFT_SAMPLING_RATE", "2")],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("TRACECRAFT_SAMPLING_RATE"));
}

mod planted {
    use super::*;
    use proptest::prelude::*;

    /// Secrets of shapes the built-in rules know, with random bodies.
    fn secret() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9]{32}".prop_map(|b| format!("sk-proj-{b}")),
            "[a-z]{3,10}\\.[a-z]{3,10}".prop_map(|b| format!("{b}@example.com")),
            "[A-Z0-9]{16}".prop_map(|b| format!("AKIA{b}")),
            "[A-Za-z0-9]{36}".prop_map(|b| format!("ghp_{b}")),
        ]
    }

    /// Every error path that reads user input: JSON lines, TOML files, environment
    /// variables, CLI flags. Returns the stderr of each failing command.
    fn error_paths(secret: &str, dir: &Path) -> Vec<(String, Output)> {
        let mut outs = Vec::new();
        let mut run: serde_json::Value =
            serde_json::from_str(SAMPLE.lines().next().unwrap()).unwrap();
        run["steps"][0]["type"] = serde_json::json!(secret);
        let line2 = format!("{{\"{secret}\": 1, \"id\": 5}}");
        let line3 = format!("{{\"id\": \"{secret}\"}}");
        let input = format!("{run}\n{line2}\n{line3}\n");
        outs.push((
            "jsonl".into(),
            tc(&["import", "-"], &[], Some(input.as_bytes()), dir),
        ));
        outs.push((
            "redact jsonl".into(),
            tc(
                &["redact", "--jsonl"],
                &[],
                Some(format!("{{\"a\": {secret}}}\n").as_bytes()),
                dir,
            ),
        ));
        for (i, toml) in [
            format!("{secret} = 1\n"),
            format!("[redaction]\nmode = \"{secret}\"\n"),
            format!("[sampling]\nrate = \"{secret}\"\n"),
            format!("[storage]\nurl = \"{secret}\"\n"),
            format!("[redaction]\ndisable = [\"x\"]\n[\"{secret}\"]\n"),
        ]
        .iter()
        .enumerate()
        {
            let path = dir.join(format!("c{i}.toml"));
            std::fs::write(&path, toml).unwrap();
            outs.push((
                format!("toml {i}"),
                tc(
                    &["redact", "--config", path.to_str().unwrap()],
                    &[],
                    Some(b"x"),
                    dir,
                ),
            ));
        }
        for var in [
            "TRACECRAFT_REDACTION_MODE",
            "TRACECRAFT_SAMPLING_RATE",
            "TRACECRAFT_STORAGE",
            "TRACECRAFT_REDACTION_ENABLED",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ] {
            outs.push((var.into(), tc(&["config"], &[(var, secret)], None, dir)));
        }
        for args in [
            vec!["traces", "list", "--since", secret],
            vec!["traces", "show", secret],
            vec![
                "traces",
                "list",
                "--store",
                &format!("sqlite:{secret}/x.db"),
            ],
            vec!["import", &format!("/nonexistent/{secret}.jsonl")],
            vec!["import", "-", "--otlp", secret],
        ] {
            outs.push((format!("{args:?}"), tc(&args, &[], Some(b""), dir)));
        }
        outs
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
        #[test]
        fn no_planted_secret_reaches_stderr(secret in secret()) {
            let dir = tempfile::tempdir().unwrap();
            for (path, out) in error_paths(&secret, dir.path()) {
                let err = text(&out.stderr);
                prop_assert!(!out.status.success(), "{path}: expected a failure");
                prop_assert!(!err.is_empty(), "{path}: failed without a word");
                prop_assert!(!err.contains(&secret), "{path} echoed the secret: {err}");
            }
        }
    }
}

#[test]
fn runs_merged_into_existing_traces_are_counted_apart() {
    // 20 runs, imported once, then again with 3 of them a second time in the same file: the
    // second import keeps 23 runs, each a trace the store already held, so all 23 are
    // merges, and the store still holds 20 traces.
    let first3: Vec<&str> = SAMPLE.lines().take(3).collect();
    let again = format!("{SAMPLE}{}\n", first3.join("\n"));
    for store in ["sqlite:t.db", "jsonl:runs"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), SAMPLE).unwrap();
        std::fs::write(dir.path().join("b.jsonl"), &again).unwrap();
        let out = tc(
            &["import", "a.jsonl", "--store", store],
            &[],
            None,
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(&format!("20 stored in {store}\n")), "{err}");
        assert!(!err.contains("merged"), "{err}");

        let out = tc(
            &["import", "b.jsonl", "--store", store],
            &[],
            None,
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("23 read, 23 kept"), "{err}");
        assert!(
            err.contains(&format!(
                "23 stored in {store} (23 merged into existing traces)"
            )),
            "{err}"
        );
        let list = tc(
            &[
                "traces", "list", "--json", "--store", store, "--limit", "100",
            ],
            &[],
            None,
            dir.path(),
        );
        assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
        let listed = text(&list.stdout);
        let n = serde_json::from_str::<serde_json::Value>(&listed)
            .map(|v| v.as_array().map_or(0, Vec::len))
            .unwrap_or_else(|_| listed.lines().filter(|l| !l.trim().is_empty()).count());
        assert_eq!(n, 20, "{listed}");
    }
}
