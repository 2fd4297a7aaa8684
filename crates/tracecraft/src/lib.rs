//! # tracecraft
//!
//! A security-first tracing SDK for LLM agents. **Guarantee:** every run TraceCraft captures is
//! enriched, redacted and sampled before any byte reaches a file, a database or a collector;
//! redaction is on by default and turning it off is explicit.
//!
//! This facade re-exports each crate of the workspace as a module, behind a feature of the same
//! name, so an application adds one dependency and picks what it deploys.
//!
//! ```
//! use tracecraft::{AgentRun, Step, StepType};
//!
//! let run = AgentRun::builder("support_agent")
//!     .session_id("sess-42")
//!     .step(Step::builder(uuid::Uuid::nil(), StepType::Llm, "openai.chat").model("gpt-4o", "openai").tokens(12, 30).build())
//!     .build();
//! assert_eq!(run.total_tokens, 42);
//! assert!(tracecraft::core::json::to_json(&run).contains("\"type\":\"llm\""));
//! ```
//!
//! ## Security
//! See `docs/security.md`: redaction defaults, modes, capture controls, file permissions.
//!
//! ## Performance
//! Each crate's README lists its criterion figures beside the targets (`cargo xtask bench`).
//!
//! ## Crate features
//! | feature | what it adds |
//! |---|---|
//! | (always) | [`core`]: the span model, JSON wire format, `Exporter` / `TraceStore` traits |
//! | `redact` | the redaction engine |
//! | `pipeline` | processors (enrich, redact, sample) and the batch exporter |
//! | `jsonl` | the JSONL store |
//! | `sqlite` | the embedded SQLite store |
//! | `otlp`, `receiver` | OTLP export and the redacting OTLP receiver |
//! | `tracing` | a `tracing_subscriber::Layer` that turns spans into steps |
//! | `full` | all of the above |
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The span model, wire format and extension traits (`tracecraft-core`).
pub use tracecraft_core as core;

/// The redaction engine (`tracecraft-redact`).
#[cfg(feature = "redact")]
#[cfg_attr(docsrs, doc(cfg(feature = "redact")))]
pub use tracecraft_redact as redact;

pub use tracecraft_core::{
    AgentRun, AgentRunBuilder, ExportError, Exporter, JsonMap, OrderBy, ParseError, ProcessedRun,
    Step, StepBuilder, StepType, StoreError, StoreStats, TraceQuery, TraceStore, Uuid,
};
