//! `cargo xtask fuzz TARGET [--seconds N]`: runs a cargo-fuzz target from `fuzz/` and copies
//! every crash into `fuzz/regressions/TARGET/`, where the owning crate's regression test
//! replays it on every `cargo test`.

use std::path::Path;

use crate::util::{cargo, exec, has_cargo_subcommand, root};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut target = None;
    let mut seconds = 60u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds takes a whole number")?;
            }
            t if target.is_none() && !t.starts_with('-') => target = Some(t.to_owned()),
            other => return Err(format!("fuzz: unexpected argument `{other}`")),
        }
    }
    let target =
        target.ok_or("usage: cargo xtask fuzz TARGET [--seconds N] (see fuzz/fuzz_targets/)")?;
    let fuzz_dir = root().join("fuzz");
    if !fuzz_dir
        .join("fuzz_targets")
        .join(format!("{target}.rs"))
        .exists()
    {
        return Err(format!("no fuzz target `{target}` in fuzz/fuzz_targets/"));
    }
    if !has_cargo_subcommand("fuzz") {
        eprintln!("cargo-fuzz is missing: installing it (a few minutes, once)");
        exec(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let max_time = format!("-max_total_time={seconds}");
    // A target's dictionary (`fuzz/dicts/TARGET.dict`: the literals its parser or rules look
    // for), when it has one.
    let dict = fuzz_dir.join("dicts").join(format!("{target}.dict"));
    let dict = dict.exists().then(|| format!("-dict={}", dict.display()));
    // libFuzzer needs nightly-only flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain
    // accept them. No sanitizer: the workspace forbids unsafe code.
    let result = exec(
        cargo()
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args([
                "fuzz",
                "run",
                "--sanitizer",
                "none",
                &target,
                "--",
                &max_time,
            ])
            .args(dict.as_deref()),
    );
    let saved = save_crashes(&fuzz_dir, &target)?;
    if saved > 0 {
        eprintln!(
            "fuzz: {saved} crash input(s) copied to fuzz/regressions/{target}/; `cargo test` now replays them"
        );
    }
    result
}

fn save_crashes(fuzz_dir: &Path, target: &str) -> Result<usize, String> {
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let Ok(entries) = std::fs::read_dir(&artifacts) else {
        return Ok(0);
    };
    let dest = fuzz_dir.join("regressions").join(target);
    let mut saved = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["crash-", "oom-", "timeout-", "leak-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            std::fs::create_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            let to = dest.join(&name);
            if !to.exists() {
                std::fs::copy(entry.path(), &to).map_err(|e| format!("{}: {e}", to.display()))?;
                saved += 1;
            }
        }
    }
    Ok(saved)
}
