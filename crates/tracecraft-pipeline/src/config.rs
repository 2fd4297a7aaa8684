//! [`PipelineConfig`]: the processing part of a TraceCraft configuration, as loaded from TOML
//! (`processor_order`, `[redaction]`, `[sampling]`, `[enrichment]`).

use serde::Deserialize;
use tracecraft_redact::RedactionConfig;

use crate::enrich::{EnrichmentConfig, EnrichmentProcessor};
use crate::pipeline::{BuildError, PipelineBuilder, ProcessorOrder};
use crate::pseudonymize::PseudonymizeProcessor;
use crate::redact::RedactionProcessor;
use crate::sample::{SamplingConfig, SamplingProcessor};

/// Processing settings. Redaction is enabled by default.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// `safety` (default) or `efficiency`.
    pub processor_order: ProcessorOrder,
    /// `[redaction]`.
    pub redaction: RedactionConfig,
    /// `[sampling]`.
    pub sampling: SamplingConfig,
    /// `[enrichment]`.
    pub enrichment: EnrichmentConfig,
}

impl PipelineConfig {
    /// A pipeline builder with the configured processors, in the configured order; add
    /// exporters and stores, then `build()`.
    ///
    /// With `redaction.enabled = false` the builder is explicitly `without_redaction()`, which
    /// logs a warning when built.
    ///
    /// # Errors
    /// [`BuildError`] when the redaction rules or the sampling settings are invalid (the error
    /// names the rule or the field).
    pub fn builder(&self) -> Result<PipelineBuilder, BuildError> {
        let mut b = crate::Pipeline::builder().order(self.processor_order);
        if self.enrichment.enabled {
            b = b.enrichment(EnrichmentProcessor::new(&self.enrichment));
        }
        b = if self.redaction.enabled {
            let r = &self.redaction;
            if !r.pseudonymize.is_empty() {
                match &r.hash_key {
                    // A custom processor: runs before redaction in both orders.
                    Some(key) => {
                        b = b.processor(PseudonymizeProcessor::new(key.clone(), &r.pseudonymize));
                    }
                    None => tracing::warn!(
                        fields = ?r.pseudonymize,
                        "identifier fields are masked, not pseudonymized: set TRACECRAFT_REDACTION_HASH_KEY (or [redaction] hash_key) to store them as keyed pseudonyms that per-person queries and erasure can find"
                    ),
                }
            }
            b.redaction(RedactionProcessor::new(r)?)
        } else {
            b.without_redaction()
        };
        Ok(b.sampling(SamplingProcessor::new(self.sampling.clone())?))
    }
}
