//! [`InitError`]: why a runtime could not be built.

use crate::config::ConfigError;

/// Why a runtime could not be built.
///
/// `Debug` prints the same message as `Display`, so `fn main() -> Result<(), Box<dyn Error>>`
/// ends with a sentence naming the setting, not a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline could not be built (invalid redaction rule or sampling setting).
    #[error(transparent)]
    Pipeline(#[from] tracecraft_pipeline::BuildError),
    /// The store could not be opened.
    #[error("storage: {0}")]
    Store(#[from] tracecraft_core::StoreError),
    /// [`init`](crate::init) was already called: the global runtime is not replaced (its configuration
    /// would silently differ from the new arguments).
    #[error(
        "tracecraft::init was already called; use tracecraft::global() to get the runtime, or Runtime::builder() for another one"
    )]
    AlreadyInitialized,
    /// Two settings given to [`Runtime::builder`](crate::Runtime::builder) contradict each other (neither is applied
    /// silently).
    #[error("Runtime::builder(): {0}")]
    Conflict(&'static str),
}

impl std::fmt::Debug for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
