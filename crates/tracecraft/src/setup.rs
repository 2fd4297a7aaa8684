//! The process-wide runtime: [`init`] and [`global`].

use std::sync::OnceLock;

use crate::config::TraceCraftConfig;
use crate::error::InitError;
use crate::runtime::Runtime;

static GLOBAL: OnceLock<Runtime> = OnceLock::new();

/// Builds the process-wide runtime from `config` and returns its owning handle.
///
/// A second call returns [`InitError::AlreadyInitialized`] and leaves the first runtime in
/// place: new arguments are never silently ignored.
///
/// **Keep the returned handle alive for the life of the program** (`let tracecraft =
/// tracecraft::init(..)?;` at the top of `main`). When it and its clones are dropped, the
/// runtime shuts down (flushes and closes every exporter and store, 5 s timeout,
/// [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::runtime::DEFAULT_SHUTDOWN_TIMEOUT)): Rust never drops
/// statics, so this is how queued runs reach their stores at exit. `let _ = init(..)` shuts the
/// runtime down at once. Destructors do not run on `std::process::exit` or an abort: call
/// [`Runtime::shutdown`] first there. [`global`] hands out handles that do not own the runtime.
///
/// # Errors
/// [`InitError`] when the configuration is invalid or `init` already ran.
pub fn init(config: TraceCraftConfig) -> Result<Runtime, InitError> {
    if GLOBAL.get().is_some() {
        return Err(InitError::AlreadyInitialized);
    }
    let (plain, owner) = Runtime::builder().config(config).build()?.with_owner();
    GLOBAL
        .set(plain)
        .map_err(|_| InitError::AlreadyInitialized)?;
    Ok(owner)
}

/// The runtime set by [`init`], if any.
#[must_use]
pub fn global() -> Option<Runtime> {
    GLOBAL.get().cloned()
}
