//! Subcommands, one module each.

pub(crate) mod import;
pub(crate) mod redact;
pub(crate) mod spool;
pub(crate) mod traces;

use std::fmt;

/// A command's failure: one line, no payload values; exit code 2.
#[derive(Debug)]
pub(crate) struct CliError(pub(crate) String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep it to one line whatever the cause says.
        f.write_str(&self.0.replace(['\n', '\r'], " "))
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}
