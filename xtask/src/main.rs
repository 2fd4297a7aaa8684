//! `cargo xtask`: the one entry point for project chores.
//!
//! - `cargo xtask ci`: what `.ci/run` runs (tests, rustfmt, clippy with warnings as errors).
//! - `cargo xtask deny`: cargo-deny's licenses, bans and sources checks, offline.
//! - `cargo xtask bench [NAME]`: criterion benches on the shared corpus, figures beside targets.
//! - `cargo xtask bench cli [--runs N] [--quick] [--no-python]`: the release binary, whole-process,
//!   beside the Python reference, on the corpus and on multi-MB adversarial lines.
//! - `cargo xtask fuzz TARGET [--seconds N]`: a cargo-fuzz target; crashes become regressions.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_macros)]

// The adversarial input families: one copy, shared with the CLI's linear-growth test.
#[path = "../../crates/tracecraft-cli/tests/adversarial/mod.rs"]
mod adversarial;
mod bench;
mod bench_cli;
mod ci;
mod deny;
mod fuzz;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <ci | deny | bench [--report] [NAME] | bench cli [--runs N] [--quick] \
     [--no-python] | fuzz TARGET [--seconds N]>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("deny") => deny::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
