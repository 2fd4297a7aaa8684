//! `cargo xtask bench [NAME]`: generates the shared corpus if missing, runs the criterion
//! benches (all, or the bench target NAME: `json`, `redact`, `pipeline`, `store`, `runtime`),
//! then prints each figure beside its target and the Python reference's figure.
//! `cargo xtask bench detect` scores redaction quality instead (tracecraft-redact's `detect`
//! bench: recall per rule and form on its labelled corpus, false positives, findings on
//! `corpus_clean.txt`), printed beside the targets by the bench itself.
//!
//! Targets live beside the benches, as data: `crates/*/benches/targets.tsv`, one line per
//! benchmark: `criterion id <TAB> unit <TAB> target <TAB> reference <TAB> note`. Units:
//! `MB/s`, `runs/s` and `spans/s` (higher is better; need criterion throughput), `ns`, `us`, `ms` (per
//! iteration, or per element when the bench sets element throughput; lower is better).
//!
//! `cargo xtask bench --report [NAME]` prints the last results without running anything.
//! `cargo xtask bench cli`: the release binary, whole-process, beside Python (`bench_cli`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{cargo, exec as run_cmd, root, target_dir};

struct Target {
    id: String,
    unit: String,
    target: f64,
    reference: Option<f64>,
    note: String,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args.first().is_some_and(|a| a == "cli") {
        return crate::bench_cli::run(&args[1..]);
    }
    // `--report`: only print the last results beside their targets.
    let report_only = args.iter().any(|a| a == "--report");
    let args: Vec<String> = args.iter().filter(|a| *a != "--report").cloned().collect();
    if report_only {
        return report(args.first().map(String::as_str));
    }
    let corpus = ensure_corpus()?;
    let mut cmd = cargo();
    cmd.env("TRACECRAFT_BENCH_CORPUS", &corpus)
        .args(["bench", "--workspace"]);
    if let Some(name) = args.first() {
        cmd.args(["--bench", name]);
    }
    run_cmd(&mut cmd)?;
    if args.first().is_some_and(|a| a == "detect") {
        // Detection quality: the bench prints its own table beside the targets.
        return Ok(());
    }
    report(args.first().map(String::as_str))
}

/// The corpus directory, generated with `../shared/bench/corpus.py` when missing.
pub(crate) fn ensure_corpus() -> Result<PathBuf, String> {
    let root = root();
    let out = root.join("target").join("bench-corpus");
    if out.join("runs.jsonl").exists() && out.join("corpus_dirty.txt").exists() {
        return Ok(out);
    }
    let generator = root
        .join("..")
        .join("shared")
        .join("bench")
        .join("corpus.py");
    if !generator.exists() {
        return Err(format!(
            "no corpus at {} and no generator at {}",
            out.display(),
            generator.display()
        ));
    }
    eprintln!("bench: generating the corpus (about 25 s, once)");
    run_cmd(
        std::process::Command::new("python3")
            .arg(&generator)
            .arg("--out")
            .arg(&out),
    )?;
    Ok(out)
}

fn load_targets(root: &Path) -> Vec<Target> {
    let mut targets = Vec::new();
    let Ok(crates) = std::fs::read_dir(root.join("crates")) else {
        return targets;
    };
    for krate in crates.flatten() {
        let Ok(text) = std::fs::read_to_string(krate.path().join("benches").join("targets.tsv"))
        else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 3 {
                continue;
            }
            targets.push(Target {
                id: cols[0].trim().to_owned(),
                unit: cols[1].trim().to_owned(),
                target: cols[2].trim().parse().unwrap_or(f64::NAN),
                reference: cols.get(3).and_then(|s| s.trim().parse().ok()),
                note: cols.get(4).map(|s| s.trim().to_owned()).unwrap_or_default(),
            });
        }
    }
    targets
}

/// Every criterion result under target/criterion: (full id, ns per iteration, throughput).
/// A criterion result: full id, median ns per iteration, throughput (kind, amount).
type BenchResult = (String, f64, Option<(String, f64)>);

fn load_results(dir: &Path, out: &mut Vec<BenchResult>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let bench = path.join("new").join("benchmark.json");
        let estimates = path.join("new").join("estimates.json");
        if bench.exists() && estimates.exists() {
            let read = |p: &Path| -> Option<Value> {
                serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
            };
            if let (Some(b), Some(e)) = (read(&bench), read(&estimates)) {
                let id = b["full_id"].as_str().unwrap_or_default().to_owned();
                let ns = e["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
                let tp = b["throughput"].as_object().and_then(|o| {
                    o.iter()
                        .next()
                        .and_then(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                });
                out.push((id, ns, tp));
            }
        } else {
            load_results(&path, out);
        }
    }
}

fn measure(unit: &str, ns: f64, tp: Option<&(String, f64)>) -> Option<f64> {
    let per_sec = 1e9 / ns;
    match (unit, tp) {
        ("MB/s", Some((kind, n))) if kind.starts_with("Bytes") => Some(n * per_sec / 1e6),
        ("runs/s" | "spans/s", Some((kind, n))) if kind == "Elements" => Some(n * per_sec),
        ("runs/s" | "spans/s", None) => Some(per_sec),
        ("ns" | "us" | "ms", tp) => {
            let per = match tp {
                Some((kind, n)) if kind == "Elements" && *n > 0.0 => ns / n,
                _ => ns,
            };
            Some(match unit {
                "ns" => per,
                "us" => per / 1e3,
                _ => per / 1e6,
            })
        }
        _ => None,
    }
}

fn report(filter: Option<&str>) -> Result<(), String> {
    let root = root();
    let targets = load_targets(&root);
    let mut results = Vec::new();
    // Where criterion wrote: the target directory (`CARGO_TARGET_DIR` when set).
    load_results(&target_dir().join("criterion"), &mut results);
    results.sort_by(|a, b| a.0.cmp(&b.0));
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>6} {:>14} {:>10}",
        "benchmark", "measured", "target", "met", "python ref", "vs ref"
    );
    let mut missed = 0;
    for t in &targets {
        if let Some(f) = filter
            && !t.id.starts_with(f)
            && !t.id.contains(&format!("{f}/"))
        {
            continue;
        }
        let Some((_, ns, tp)) = results.iter().find(|r| r.0 == t.id) else {
            println!("{:<44} {:>14}", t.id, "(not run)");
            continue;
        };
        let Some(value) = measure(&t.unit, *ns, tp.as_ref()) else {
            println!("{:<44} {:>14}", t.id, "(no throughput)");
            continue;
        };
        let higher_better = matches!(t.unit.as_str(), "MB/s" | "runs/s" | "spans/s");
        let has_target = t.target.is_finite();
        let met = if higher_better {
            value >= t.target
        } else {
            value <= t.target
        };
        missed += usize::from(has_target && !met);
        let ratio = t
            .reference
            .map(|r| if higher_better { value / r } else { r / value });
        let target = if has_target {
            format!(
                "{}{:>8.2} {:<4}",
                if higher_better { ">=" } else { "<=" },
                t.target,
                t.unit
            )
        } else {
            format!("{:>15}", "-")
        };
        println!(
            "{:<44} {:>9.2} {:<4} {} {:>6} {:>14} {:>10}  {}",
            t.id,
            value,
            t.unit,
            target,
            if !has_target {
                "-"
            } else if met {
                "yes"
            } else {
                "NO"
            },
            t.reference
                .map(|r| format!("{r:.2} {}", t.unit))
                .unwrap_or_else(|| "-".into()),
            ratio
                .map(|r| format!("{r:.0}x"))
                .unwrap_or_else(|| "-".into()),
            t.note
        );
    }
    for (id, ns, _) in &results {
        if !targets.iter().any(|t| &t.id == id) && filter.is_none_or(|f| id.starts_with(f)) {
            println!("{:<44} {:>9.0} ns/iter (no target)", id, ns);
        }
    }
    if missed > 0 {
        println!("\n{missed} target(s) not met");
    }
    Ok(())
}
