//! `cargo xtask deny`: supply-chain policy (deny.toml) checked offline.

use crate::util::{cargo, exec, has_cargo_subcommand};

pub(crate) fn run() -> Result<(), String> {
    if !has_cargo_subcommand("deny") {
        eprintln!("cargo-deny is missing: installing it (a few minutes, once)");
        exec(cargo().args(["install", "cargo-deny", "--locked"]))?;
    }
    // cargo-deny reads `cargo metadata`, which needs every platform's crates on disk.
    exec(cargo().args(["fetch"]))?;
    // Advisories need the network; licenses, bans and sources are checked against the local
    // index and deny.toml.
    exec(cargo().args([
        "deny",
        "--workspace",
        "--offline",
        "check",
        "licenses",
        "bans",
        "sources",
    ]))
}
