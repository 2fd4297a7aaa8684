//! `cargo xtask ci`: the same steps as `.ci/run`.

use crate::util::{cargo, exec};

/// The CI steps, in order. `.ci/run` runs exactly these (README's test command first).
pub(crate) fn run_steps() -> Vec<Vec<&'static str>> {
    vec![
        vec!["test", "--workspace"],
        vec!["fmt", "--all", "--check"],
        vec![
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ]
}

pub(crate) fn run() -> Result<(), String> {
    for step in run_steps() {
        exec(cargo().args(&step))?;
    }
    eprintln!("ci: all steps passed");
    Ok(())
}
