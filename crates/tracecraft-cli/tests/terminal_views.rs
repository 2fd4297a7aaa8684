//! `traces list` and `traces show` as a person reads them.
#![allow(missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

const SAMPLE: &str = include_str!("../../tracecraft-core/testdata/runs_sample.jsonl");

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

fn store(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::write(dir.join("runs.jsonl"), SAMPLE).unwrap();
    assert!(
        tc(&["import", "runs.jsonl", "--store", "sqlite:t.db"], dir)
            .status
            .success()
    );
    SAMPLE
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn show_takes_a_unique_prefix_and_draws_a_waterfall() {
    let dir = tempfile::tempdir().unwrap();
    let runs = store(dir.path());
    let id = runs[0]["id"].as_str().unwrap();
    let out = tc(
        &[
            "traces",
            "--store",
            "sqlite:t.db",
            "show",
            &id[..8],
            "--utc",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains(id), "{shown}");
    assert!(shown.contains("UTC"), "{shown}");
    assert!(shown.contains('█'), "bars on a time axis: {shown}");
    assert!(shown.lines().count() > 3, "{shown}");
    // --full prints inputs and outputs without cutting them.
    let full = tc(
        &[
            "traces",
            "--store",
            "sqlite:t.db",
            "show",
            &id[..8],
            "--full",
        ],
        dir.path(),
    );
    assert!(text(&full.stdout).len() > shown.len(), "--full shows more");
    assert!(
        text(&full.stdout).contains("input "),
        "{}",
        text(&full.stdout)
    );
    // A prefix matching nothing, and one matching several, are errors that say so.
    let none = tc(
        &["traces", "--store", "sqlite:t.db", "show", "ffffffff"],
        dir.path(),
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("no trace id starts with"),
        "{}",
        text(&none.stderr)
    );
    // Find a prefix shared by two ids.
    let ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let shared = (1..8).rev().find_map(|n| {
        ids.iter().find_map(|a| {
            let p = &a[..n];
            (n >= 4 && ids.iter().filter(|b| b.starts_with(p)).count() > 1).then_some(p)
        })
    });
    if let Some(p) = shared {
        let amb = tc(&["traces", "--store", "sqlite:t.db", "show", p], dir.path());
        assert_eq!(amb.status.code(), Some(2));
        assert!(
            text(&amb.stderr).contains("ambiguous"),
            "{}",
            text(&amb.stderr)
        );
    }
    // Prefixes work on JSONL stores too, and for rm.
    assert!(
        tc(&["import", "runs.jsonl", "--store", "jsonl:j"], dir.path())
            .status
            .success()
    );
    let out = tc(
        &["traces", "--store", "jsonl:j", "rm", &id[..8]],
        dir.path(),
    );
    assert!(
        text(&out.stdout).contains(&format!("deleted trace {id}")),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn list_filters_pages_and_says_when_nothing_matches() {
    let dir = tempfile::tempdir().unwrap();
    let runs = store(dir.path());
    let list = |extra: &[&str]| {
        let mut args = vec![
            "traces",
            "--store",
            "sqlite:t.db",
            "list",
            "--json",
            "--limit",
            "100",
        ];
        args.extend_from_slice(extra);
        let out = tc(&args, dir.path());
        assert!(out.status.success(), "{extra:?}: {}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(list(&[]), runs.len());
    assert_eq!(list(&["--offset", "5"]), runs.len() - 5);
    let with_model = runs
        .iter()
        .filter(|r| r.to_string().contains("gpt-4o"))
        .count();
    assert_eq!(list(&["--model", "GPT-4O"]), with_model);
    let with_tag = runs
        .iter()
        .filter(|r| r["tags"].as_array().is_some_and(|t| !t.is_empty()))
        .find_map(|r| r["tags"][0].as_str().map(str::to_owned));
    if let Some(tag) = with_tag {
        let expected = runs
            .iter()
            .filter(|r| {
                r["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == tag.as_str()))
            })
            .count();
        assert_eq!(list(&["--tag", &tag]), expected);
    }
    assert_eq!(list(&["--min-cost", "1000000"]), 0);
    assert_eq!(list(&["--min-duration", "1000000h"]), 0);
    let name = runs[3]["name"].as_str().unwrap();
    assert!(list(&["--search", &name.to_uppercase()]) >= 1);
    let out = tc(
        &[
            "traces",
            "--store",
            "sqlite:t.db",
            "list",
            "--search",
            "no-such-text-anywhere",
        ],
        dir.path(),
    );
    assert_eq!(text(&out.stdout).trim(), "no traces match");
    let out = tc(
        &["traces", "--store", "sqlite:t.db", "list", "--utc"],
        dir.path(),
    );
    let table = text(&out.stdout);
    assert!(
        table.starts_with("ID") && table.contains("STEPS") && table.contains("USER"),
        "{table}"
    );
    assert!(table.contains(" UTC "), "{table}");
}
