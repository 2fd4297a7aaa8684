//! `cargo xtask ci`: the one definition of CI. `.ci/run` installs what a fresh machine lacks,
//! then runs exactly this.

use crate::util::{cargo, exec, has_cargo_subcommand};

/// One CI step: a name and the cargo arguments.
struct Step {
    name: &'static str,
    args: Vec<&'static str>,
    /// Extra environment for the step.
    env: Vec<(&'static str, &'static str)>,
}

fn step(name: &'static str, args: &[&'static str]) -> Step {
    Step {
        name,
        args: args.to_vec(),
        env: Vec::new(),
    }
}

/// The CI steps, in order: the README's test command first.
fn steps() -> Vec<Step> {
    let mut steps = vec![
        step(
            "test (README): cargo test --workspace",
            &["test", "--workspace"],
        ),
        step("fmt", &["fmt", "--all", "--check"]),
        step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step {
            name: "doc",
            args: vec!["doc", "--workspace", "--no-deps"],
            env: vec![("RUSTDOCFLAGS", "-D warnings")],
        },
    ];
    // The facade's features one by one: each must build on its own.
    for features in [
        "redact",
        "pipeline",
        "pipeline,jsonl",
        "pipeline,sqlite",
        "otlp",
        "gateway",
        "tracing",
        "macros",
    ] {
        steps.push(Step {
            name: "feature subset",
            args: vec![
                "check",
                "-p",
                "tracecraft",
                "--no-default-features",
                "--features",
                features,
            ],
            env: Vec::new(),
        });
    }
    steps.push(step(
        "quickstart (README main job)",
        &[
            "run",
            "--quiet",
            "--example",
            "quickstart",
            "-p",
            "tracecraft",
        ],
    ));
    steps
}

pub(crate) fn run() -> Result<(), String> {
    for s in steps() {
        eprintln!("== {}", s.name);
        let mut cmd = cargo();
        cmd.args(&s.args);
        for (k, v) in &s.env {
            cmd.env(k, v);
        }
        if s.name.starts_with("quickstart") {
            cmd.stdout(std::process::Stdio::null());
        }
        exec(&mut cmd)?;
    }
    if has_cargo_subcommand("deny") {
        eprintln!("== deny");
        crate::deny::run()?;
    } else {
        eprintln!(
            "== deny: cargo-deny is not installed here; `cargo xtask deny` installs and runs it"
        );
    }
    eprintln!("ci: all steps passed");
    Ok(())
}
