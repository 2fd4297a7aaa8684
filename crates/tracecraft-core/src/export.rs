//! What exporters and stores receive: [`ProcessedRun`], and the [`Exporter`] trait.

use std::sync::Arc;
use std::time::Duration;

use crate::model::AgentRun;
use crate::store::{StoreError, TraceStore};

/// A run that has been through the processor pipeline (enriched, redacted, sampled).
///
/// [`Exporter`]s and [`TraceStore`]s accept only this type, so an unredacted [`AgentRun`]
/// cannot reach one by mistake (DESIGN invariant 1). The pipeline (`tracecraft-pipeline`)
/// constructs it after its processors ran; [`ProcessedRun::assume_processed`] is the one escape
/// hatch, named so that it stands out in review, and disallowed by the workspace's
/// `clippy.toml` outside tests.
///
/// Cloning is cheap (the run is shared): the pipeline fans one processed run out to several
/// exporters and queues without copying it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedRun {
    run: Arc<AgentRun>,
}

impl ProcessedRun {
    /// Wraps a run that its caller guarantees has been processed (redacted where redaction is
    /// enabled).
    ///
    /// Only the pipeline, code that re-reads runs it already stored, and tests should call
    /// this. The workspace's `clippy.toml` disallows it elsewhere.
    #[must_use]
    pub fn assume_processed(run: AgentRun) -> Self {
        ProcessedRun { run: Arc::new(run) }
    }

    /// The run.
    #[must_use]
    pub fn run(&self) -> &AgentRun {
        &self.run
    }

    /// The run, by value.
    #[must_use]
    pub fn into_run(self) -> AgentRun {
        Arc::unwrap_or_clone(self.run)
    }
}

impl AsRef<AgentRun> for ProcessedRun {
    fn as_ref(&self) -> &AgentRun {
        &self.run
    }
}

/// Why an export failed. Messages never contain payload text or credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The destination could not be reached or refused the connection.
    #[error("exporter `{exporter}`: transport error: {message}")]
    Transport {
        /// The exporter's name.
        exporter: String,
        /// What went wrong (no payload).
        message: String,
    },
    /// The destination rejected the batch.
    #[error("exporter `{exporter}`: rejected: {message}")]
    Rejected {
        /// The exporter's name.
        exporter: String,
        /// Why (no payload).
        message: String,
    },
    /// The operation did not finish in time.
    #[error("exporter `{exporter}`: timed out after {timeout:?}")]
    Timeout {
        /// The exporter's name.
        exporter: String,
        /// The limit that was exceeded.
        timeout: Duration,
    },
    /// The exporter was already shut down.
    #[error("exporter `{exporter}`: already shut down")]
    Shutdown {
        /// The exporter's name.
        exporter: String,
    },
    /// A store behind the exporter failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A failure whose cause the exporter's crate types (for OTLP,
    /// `tracecraft_otlp::ExportFailure`: HTTP status, gRPC code, TLS problem, connection
    /// error, timeout). `Display` is one line fit for a summary, without payload or
    /// credentials; [`ExportError::cause`] gives the typed cause to downcast.
    #[error("exporter `{exporter}`: {cause}")]
    Failed {
        /// The exporter's name.
        exporter: String,
        /// The typed cause.
        cause: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl ExportError {
    /// The typed cause of a [`ExportError::Failed`], to downcast
    /// (`e.cause().and_then(|c| c.downcast_ref::<tracecraft_otlp::ExportFailure>())`).
    #[must_use]
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            ExportError::Failed { cause, .. } => Some(cause.as_ref()),
            _ => None,
        }
    }

    /// The exporter's name, where the error names one.
    #[must_use]
    pub fn exporter(&self) -> Option<&str> {
        match self {
            ExportError::Transport { exporter, .. }
            | ExportError::Rejected { exporter, .. }
            | ExportError::Timeout { exporter, .. }
            | ExportError::Shutdown { exporter }
            | ExportError::Failed { exporter, .. } => Some(exporter),
            ExportError::Store(_) => None,
        }
    }
}

/// Sends processed runs somewhere: a file, a database, a collector, the console.
///
/// # Lifecycle
/// 1. [`export`](Exporter::export) is called with batches of one or more runs, in order.
/// 2. [`force_flush`](Exporter::force_flush) asks that everything exported so far be made
///    durable or sent; it returns when that is done or failed.
/// 3. [`shutdown`](Exporter::shutdown) flushes and releases resources, within `timeout`;
///    after it, `export` returns [`ExportError::Shutdown`].
///
/// Methods take `&mut self`: an exporter is **never called concurrently**; wrappers such as the
/// pipeline's batch exporter own it on one thread. An implementation **must not block
/// indefinitely**: network exporters bound every call with a timeout.
pub trait Exporter: Send {
    /// A short name for logs and stats (`"sqlite"`, `"otlp-grpc"`, ...).
    fn name(&self) -> &str;

    /// Exports a batch of runs.
    ///
    /// # Errors
    /// [`ExportError`] when the batch (or part of it) could not be exported; the caller counts
    /// the failure and goes on with other exporters.
    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError>;

    /// Makes everything exported so far durable or sent.
    ///
    /// # Errors
    /// As [`Exporter::export`].
    fn force_flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    /// Flushes and releases resources within `timeout`.
    ///
    /// # Errors
    /// [`ExportError::Timeout`] when it could not finish in time, or the flush's error.
    fn shutdown(&mut self, timeout: Duration) -> Result<(), ExportError> {
        let _ = timeout;
        self.force_flush()
    }

    /// Keeps `batch` durably for a later delivery, without waiting for the destination (the
    /// OTLP exporter writes it to its spool). Wrappers with a queue call it at shutdown for
    /// the runs their deadline left unexported, so that those are kept rather than dropped
    /// (DESIGN invariant 6). Returns whether the batch was kept; the default keeps nothing.
    ///
    /// # Errors
    /// When keeping failed (the caller counts the runs as not exported).
    fn persist(&mut self, batch: &[ProcessedRun]) -> Result<bool, ExportError> {
        let _ = batch;
        Ok(false)
    }
}

impl<E: Exporter + ?Sized> Exporter for Box<E> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        (**self).export(batch)
    }
    fn force_flush(&mut self) -> Result<(), ExportError> {
        (**self).force_flush()
    }
    fn shutdown(&mut self, timeout: Duration) -> Result<(), ExportError> {
        (**self).shutdown(timeout)
    }
    fn persist(&mut self, batch: &[ProcessedRun]) -> Result<bool, ExportError> {
        (**self).persist(batch)
    }
}

/// A shared store as an exporter that follows the whole [`Exporter`] lifecycle: after
/// `shutdown` (which flushes the store once), `export` returns [`ExportError::Shutdown`]. The
/// pipeline's `store(..)` wraps stores in it; the application keeps querying through its own
/// `Arc` clone.
#[derive(Debug)]
pub struct StoreExporter<S: ?Sized> {
    store: Arc<S>,
    shut_down: bool,
}

impl<S: TraceStore + ?Sized> StoreExporter<S> {
    /// Exports to `store`.
    #[must_use]
    pub fn new(store: Arc<S>) -> Self {
        StoreExporter {
            store,
            shut_down: false,
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }
}

impl<S: TraceStore + ?Sized> Exporter for StoreExporter<S> {
    fn name(&self) -> &str {
        TraceStore::name(&*self.store)
    }
    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        if self.shut_down {
            return Err(ExportError::Shutdown {
                exporter: TraceStore::name(&*self.store).to_owned(),
            });
        }
        self.store.save_batch(batch).map_err(ExportError::from)
    }
    fn force_flush(&mut self) -> Result<(), ExportError> {
        if self.shut_down {
            return Ok(());
        }
        self.store.flush().map_err(ExportError::from)
    }
    fn shutdown(&mut self, _timeout: Duration) -> Result<(), ExportError> {
        if std::mem::replace(&mut self.shut_down, true) {
            return Ok(());
        }
        self.store.flush().map_err(ExportError::from)
    }
}

/// A shared store is an exporter: `Arc<SqliteStore>` can be handed to the pipeline while the
/// application keeps querying through its own clone.
///
/// This adapter has no state, so it cannot refuse exports after `shutdown` (which only
/// flushes): prefer [`StoreExporter`] (what the pipeline's `store(..)` uses), which follows the
/// whole lifecycle.
impl<S: TraceStore + ?Sized> Exporter for Arc<S> {
    fn name(&self) -> &str {
        TraceStore::name(&**self)
    }
    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        self.save_batch(batch).map_err(ExportError::from)
    }
    fn force_flush(&mut self) -> Result<(), ExportError> {
        self.flush().map_err(ExportError::from)
    }
}
