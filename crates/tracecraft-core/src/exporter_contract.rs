//! The shared [`Exporter`] contract suite: every exporter (the store adapter, console, OTLP,
//! batch, memory) runs these same checks from its own tests, so the lifecycle written in the
//! trait's docs holds everywhere.
//!
//! Each `check_*` takes a fresh exporter and panics with a message naming the check when the
//! exporter breaks the contract; [`run_all`] runs them all, asking the factory for a new
//! exporter before each check.
//!
//! ```
//! use tracecraft_core::{exporter_contract, testing::MemoryExporter};
//! exporter_contract::run_all(MemoryExporter::new);
//! ```
//!
//! The contract:
//! - `export` of a batch and of an empty batch succeed on a working destination; `force_flush`
//!   after them succeeds;
//! - after `shutdown`, `export` returns [`ExportError::Shutdown`] (also for an empty batch);
//! - `shutdown` is idempotent: a second call returns `Ok` and changes nothing;
//! - `shutdown(timeout)` and `force_flush` after it return within the timeout (plus
//!   [`SLACK`] for scheduling): they never block past it.

#![allow(clippy::disallowed_methods)] // test code: wraps fixture runs as processed runs.

use std::time::{Duration, Instant};

use crate::export::{ExportError, Exporter, ProcessedRun};
use crate::model::{AgentRun, Step, StepType};

/// What a check allows beyond a timeout for thread scheduling on a loaded machine.
pub const SLACK: Duration = Duration::from_secs(5);

fn runs(n: usize) -> Vec<ProcessedRun> {
    (0..n)
        .map(|i| {
            let mut run = AgentRun::builder(format!("contract-{i}"))
                .session_id("s")
                .build();
            run.push_step(Step::builder(run.id, StepType::Tool, "t").build());
            ProcessedRun::assume_processed(run)
        })
        .collect()
}

/// Runs every check, each against a fresh exporter from `make`.
///
/// # Panics
/// When an exporter breaks the contract (the message names the check).
pub fn run_all<E: Exporter>(make: impl Fn() -> E) {
    check_export_and_flush(&mut make());
    check_export_after_shutdown_is_refused(&mut make());
    check_shutdown_is_idempotent(&mut make());
    check_shutdown_within_timeout(&mut make());
}

/// `export` (a batch, an empty batch) and `force_flush` succeed.
///
/// # Panics
/// When one fails.
pub fn check_export_and_flush<E: Exporter>(e: &mut E) {
    let name = e.name().to_owned();
    e.export(&runs(3))
        .unwrap_or_else(|err| panic!("[export_and_flush] {name}: export failed: {err}"));
    e.export(&[])
        .unwrap_or_else(|err| panic!("[export_and_flush] {name}: an empty export failed: {err}"));
    e.force_flush()
        .unwrap_or_else(|err| panic!("[export_and_flush] {name}: force_flush failed: {err}"));
    e.shutdown(Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("[export_and_flush] {name}: shutdown failed: {err}"));
}

/// After `shutdown`, `export` returns [`ExportError::Shutdown`].
///
/// # Panics
/// When an export after shutdown is accepted or fails otherwise.
pub fn check_export_after_shutdown_is_refused<E: Exporter>(e: &mut E) {
    let name = e.name().to_owned();
    e.export(&runs(1))
        .unwrap_or_else(|err| panic!("[export_after_shutdown] {name}: export failed: {err}"));
    e.shutdown(Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("[export_after_shutdown] {name}: shutdown failed: {err}"));
    for batch in [runs(1), Vec::new()] {
        match e.export(&batch) {
            Err(ExportError::Shutdown { .. }) => {}
            other => panic!(
                "[export_after_shutdown] {name}: export of {} run(s) after shutdown returned {other:?}, expected ExportError::Shutdown",
                batch.len()
            ),
        }
    }
}

/// A second `shutdown` returns `Ok`, and exports stay refused.
///
/// # Panics
/// When the second shutdown fails or re-opens the exporter.
pub fn check_shutdown_is_idempotent<E: Exporter>(e: &mut E) {
    let name = e.name().to_owned();
    e.shutdown(Duration::from_secs(10))
        .unwrap_or_else(|err| panic!("[idempotent_shutdown] {name}: shutdown failed: {err}"));
    e.shutdown(Duration::from_secs(10)).unwrap_or_else(|err| {
        panic!("[idempotent_shutdown] {name}: a second shutdown failed: {err}")
    });
    assert!(
        matches!(e.export(&runs(1)), Err(ExportError::Shutdown { .. })),
        "[idempotent_shutdown] {name}: a second shutdown re-opened the exporter"
    );
}

/// `shutdown(timeout)` with runs exported just before, and `force_flush` after it, return
/// within the timeout plus [`SLACK`].
///
/// # Panics
/// When either blocks longer.
pub fn check_shutdown_within_timeout<E: Exporter>(e: &mut E) {
    let name = e.name().to_owned();
    let _ = e.export(&runs(50));
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let _ = e.shutdown(timeout);
    let took = started.elapsed();
    assert!(
        took <= timeout + SLACK,
        "[shutdown_within_timeout] {name}: shutdown({timeout:?}) took {took:?}"
    );
    let started = Instant::now();
    let _ = e.force_flush();
    let took = started.elapsed();
    assert!(
        took <= SLACK,
        "[shutdown_within_timeout] {name}: force_flush after shutdown took {took:?}"
    );
}
