//! Runs every case in `testdata/redaction/*.toml` through the fast path, the naive oracle,
//! and (for text cases) checks idempotence.
//!
//! A file holds `[[case]]` tables: `name`, `input`, `expected`, optional `mode`
//! (`mask`/`hash`/`remove`), optional `json = true` (input and expected are JSON texts,
//! redacted with `redact_value`), optional `rules` (the rule names that must be reported),
//! and an optional `[case.config]` table, a `[redaction]` table.
#![allow(missing_docs)]

use serde::Deserialize;
use tracecraft_redact::{RedactionConfig, RedactionMode, Redactor, Report};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    input: String,
    expected: String,
    #[serde(default)]
    mode: Option<RedactionMode>,
    #[serde(default)]
    json: bool,
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    config: Option<RedactionConfig>,
}

#[test]
fn conformance_suite() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/redaction");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut n = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file: File =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for case in file.case {
            n += 1;
            let id = format!(
                "{}::{}",
                path.file_name().unwrap().to_string_lossy(),
                case.name
            );
            let mut cfg = case.config.clone().unwrap_or_default();
            if let Some(m) = case.mode {
                cfg.mode = m;
                if m == RedactionMode::Hash && cfg.hash_key.is_none() {
                    cfg.hash_key = Some("test-key".into());
                }
            }
            let r = match Redactor::new(&cfg) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{id}: build error {e}"));
                    continue;
                }
            };
            let mut report = Report::default();
            let got = if case.json {
                let mut v: serde_json::Value = serde_json::from_str(&case.input).unwrap();
                r.redact_value(&mut v, &mut report);
                let want: serde_json::Value = serde_json::from_str(&case.expected).unwrap();
                if v != want {
                    failures.push(format!("{id}:\n   got  {v}\n   want {want}"));
                }
                continue_rules(&id, &case, &report, &mut failures);
                continue;
            } else {
                r.redact_str(&case.input, &mut report).into_owned()
            };
            if got != case.expected {
                failures.push(format!(
                    "{id}:\n   got  {got:?}\n   want {:?}",
                    case.expected
                ));
                continue;
            }
            let mut naive_report = Report::default();
            let naive = r.redact_str_naive(&case.input, &mut naive_report);
            if naive != got || naive_report != report {
                failures.push(format!("{id}: naive oracle disagrees: {naive:?}"));
            }
            if cfg.mode != RedactionMode::Remove {
                let again = r.redact_str(&got, &mut Report::default());
                if again != got {
                    failures.push(format!("{id}: not idempotent: {again:?}"));
                }
            }
            continue_rules(&id, &case, &report, &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn continue_rules(id: &str, case: &Case, report: &Report, failures: &mut Vec<String>) {
    if let Some(rules) = &case.rules {
        let mut got: Vec<&str> = report.counts().map(|(k, _)| k).collect();
        got.sort_unstable();
        let mut want: Vec<&str> = rules.iter().map(String::as_str).collect();
        want.sort_unstable();
        want.dedup();
        if got != want {
            failures.push(format!("{id}: rules {got:?}, want {want:?}"));
        }
    }
}
