//! # tracecraft-pipeline
//!
//! What happens to a finished run before anything stores or exports it. **Guarantee:** with
//! redaction enabled, no exporter or store receives a run that has not passed redaction — they
//! accept only [`ProcessedRun`](tracecraft_core::ProcessedRun), which this pipeline seals after
//! its processors ran; a processor that fails or panics drops the run (fail closed), it is
//! never exported in its original form.
//!
//! ```
//! use std::sync::Arc;
//! use tracecraft_core::{AgentRun, Step, StepType, testing::MemoryStore, TraceStore, TraceQuery};
//! use tracecraft_pipeline::{EnrichmentProcessor, Pipeline, SamplingConfig, SamplingProcessor, Submitted};
//!
//! let store = Arc::new(MemoryStore::new());
//! let pipeline = Pipeline::builder()
//!     .enrichment(EnrichmentProcessor::default())
//!     .without_redaction() // see the `redact` feature of the `tracecraft` facade for the default
//!     .sampling(SamplingProcessor::new(SamplingConfig::default())?)
//!     .store(store.clone())
//!     .build()?;
//!
//! let mut run = AgentRun::new("agent");
//! run.push_step(Step::builder(run.id, StepType::Llm, "chat").model("gpt-4o", "openai")
//!     .input("prompt", "hello there, how are you today?").build());
//! assert!(matches!(pipeline.submit(run), Submitted::Exported(_)));
//! let stored = store.query(&TraceQuery::new())?;
//! assert!(stored[0].total_cost_usd > 0.0); // estimated from the price table
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Invariants of this crate
//! - Order: [`ProcessorOrder::Safety`] (default) is enrich -> custom -> redact -> sample;
//!   [`ProcessorOrder::Efficiency`] is sample -> custom -> redact -> enrich. In both, redaction
//!   runs before anything is sealed.
//! - A pipeline cannot be built without a redaction processor unless redaction is disabled
//!   explicitly ([`PipelineBuilder::without_redaction`], logged at warn level).
//! - Fail closed: errors and panics of processors drop the run and are counted per processor;
//!   panic messages are never logged (they may quote payload).
//! - One exporter failing or panicking does not stop the others.
//! - [`BatchExporter`] never blocks the caller: a full queue drops and counts; shutdown drains.
//!
//! ## Security
//! Logs carry run ids, processor and exporter names and counts, never payload.
//!
//! ## Performance
//! `cargo xtask bench pipeline`: see this crate's README for figures beside the targets.
//!
//! ## Crate features
//! None.

mod batch;
mod config;
mod enrich;
mod pipeline;
mod processor;
pub mod queue;
mod redact;
mod sample;

pub use batch::{BatchConfig, BatchExporter, BatchShutdown, BatchStats};
pub use config::PipelineConfig;
pub use enrich::{
    ApproxTokenCounter, COST_ESTIMATED, EnrichmentConfig, EnrichmentProcessor, ModelPricing,
    PriceTable, TOKENS_ESTIMATED, TokenCounter, default_pricing, normalize_model,
};
pub use pipeline::{
    BuildError, Limits, Pipeline, PipelineBuilder, PipelineStats, ProcessorOrder,
    REDACTION_ATTRIBUTE, STEPS_DROPPED, ShutdownReport, Submitted, VALUES_TRUNCATED,
};
pub use processor::{Chain, DropReason, FnProcessor, Outcome, ProcessError, Processor};
pub use redact::{REDACTION_COUNT, REDACTION_RULE_PREFIX, RedactionProcessor};
pub use sample::{SamplingConfig, SamplingProcessor, SamplingRule, keep_by_rate};

/// An invalid setting: names the field (`sampling.rate`) and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct ConfigError {
    field: String,
    message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
    /// The field's path, e.g. `sampling.rules[2].rate`.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }
}
