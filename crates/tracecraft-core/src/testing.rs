//! Test doubles: an in-memory [`MemoryStore`] and a recording [`MemoryExporter`].
//!
//! Enabled by the `testing` feature. The store follows the [`TraceStore`] contract exactly
//! (it is the third backend of the shared contract suite).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::export::{ExportError, Exporter, ProcessedRun};
use crate::model::AgentRun;
use crate::store::{StoreError, StoreStats, TraceQuery, TraceStore, merge_runs};

/// A [`TraceStore`] in memory, in insertion order.
#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<Vec<AgentRun>>,
    merged: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<AgentRun>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TraceStore for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn save(&self, run: &ProcessedRun) -> Result<(), StoreError> {
        let mut runs = self.lock();
        let run = run.run().clone();
        match runs.iter_mut().find(|r| r.id == run.id) {
            Some(slot) => {
                let existing = std::mem::replace(slot, AgentRun::new(""));
                *slot = merge_runs(existing, run);
                self.merged
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            None => runs.push(run),
        }
        Ok(())
    }

    fn merged(&self) -> u64 {
        self.merged.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn get(&self, trace_id: Uuid) -> Result<Option<AgentRun>, StoreError> {
        Ok(self.lock().iter().find(|r| r.id == trace_id).cloned())
    }

    fn query(&self, query: &TraceQuery) -> Result<Vec<AgentRun>, StoreError> {
        query.validate()?;
        Ok(query.apply(self.lock().iter().cloned()))
    }

    fn count(&self, query: &TraceQuery) -> Result<u64, StoreError> {
        query.validate()?;
        Ok(self.lock().iter().filter(|r| query.matches(r)).count() as u64)
    }

    fn delete(&self, trace_id: Uuid) -> Result<bool, StoreError> {
        let mut runs = self.lock();
        let before = runs.len();
        runs.retain(|r| r.id != trace_id);
        Ok(runs.len() != before)
    }

    fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut runs = self.lock();
        let before = runs.len();
        runs.retain(|r| r.start_time >= cutoff);
        Ok((before - runs.len()) as u64)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let runs = self.lock();
        Ok(StoreStats::new(
            runs.len() as u64,
            runs.iter().map(|r| r.step_count() as u64).sum(),
            runs.iter().filter(|r| r.has_any_error()).count() as u64,
            runs.iter().map(|r| r.total_tokens).sum(),
            runs.iter().map(|r| r.total_cost_usd).sum(),
            0,
        ))
    }
}

/// An [`Exporter`] that records every batch; clones share the record.
#[derive(Debug, Clone, Default)]
pub struct MemoryExporter {
    inner: Arc<Mutex<Recorded>>,
    fail: bool,
}

#[derive(Debug, Default)]
struct Recorded {
    runs: Vec<AgentRun>,
    batches: usize,
    flushes: usize,
    shut_down: bool,
}

impl MemoryExporter {
    /// A recording exporter.
    #[must_use]
    pub fn new() -> Self {
        MemoryExporter::default()
    }

    /// An exporter whose every export fails (for failure-isolation tests).
    #[must_use]
    pub fn failing() -> Self {
        MemoryExporter {
            fail: true,
            ..MemoryExporter::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every run exported so far, in order.
    #[must_use]
    pub fn runs(&self) -> Vec<AgentRun> {
        self.lock().runs.clone()
    }
    /// How many runs were exported.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().runs.len()
    }
    /// Whether nothing was exported.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// How many batches were exported.
    #[must_use]
    pub fn batches(&self) -> usize {
        self.lock().batches
    }
    /// How many times `force_flush` was called.
    #[must_use]
    pub fn flushes(&self) -> usize {
        self.lock().flushes
    }
    /// Whether `shutdown` was called.
    #[must_use]
    pub fn is_shut_down(&self) -> bool {
        self.lock().shut_down
    }
}

impl Exporter for MemoryExporter {
    fn name(&self) -> &str {
        if self.fail {
            "memory-failing"
        } else {
            "memory"
        }
    }

    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        let mut rec = self.lock();
        if rec.shut_down {
            return Err(ExportError::Shutdown {
                exporter: "memory".into(),
            });
        }
        if self.fail {
            return Err(ExportError::Transport {
                exporter: "memory-failing".into(),
                message: "configured to fail".into(),
            });
        }
        rec.batches += 1;
        rec.runs.extend(batch.iter().map(|r| r.run().clone()));
        Ok(())
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        self.lock().flushes += 1;
        Ok(())
    }

    fn shutdown(&mut self, _timeout: Duration) -> Result<(), ExportError> {
        let mut rec = self.lock();
        rec.flushes += 1;
        rec.shut_down = true;
        Ok(())
    }
}
