//! # tracecraft-core
//!
//! The span model of TraceCraft and its contracts. **Guarantee:** an [`AgentRun`] serializes to
//! JSON field-for-field compatible with the Python `tracecraft` 0.2.1 package (same keys, same
//! order, hyphenated UUIDs, ISO-8601 UTC times, lower-case step types), and parsing never
//! panics: bad input is a [`ParseError`] that names the line and the field, without echoing the
//! payload.
//!
//! ```
//! use tracecraft_core::{AgentRun, Step, StepType};
//!
//! let mut run = AgentRun::builder("support_agent").session_id("sess-42").tag("eu").build();
//! let llm = Step::builder(run.id, StepType::Llm, "openai.chat")
//!     .model("gpt-4o", "openai")
//!     .input("prompt", "hello")
//!     .tokens(12, 30)
//!     .build();
//! run.push_step(Step::builder(run.id, StepType::Agent, "plan").child(llm).build());
//! run.aggregate();
//! assert_eq!(run.total_tokens, 42);
//!
//! let json = tracecraft_core::json::to_json(&run);
//! let back = tracecraft_core::json::parse_run(&json)?;
//! assert_eq!(back, run);
//! # Ok::<(), tracecraft_core::ParseError>(())
//! ```
//!
//! ## Invariants of this crate
//! - Depends only on serde, serde_json, uuid, chrono and thiserror: every other crate builds on
//!   it, so it stays small and stable.
//! - Tree walks ([`AgentRun::walk`], [`AgentRun::walk_mut`], [`AgentRun::find_step_mut`]) use an
//!   explicit stack: a 10,000-level tree does not overflow the stack.
//! - [`Exporter`]s and [`TraceStore`]s accept [`ProcessedRun`] only, the type the pipeline
//!   produces after redaction.
//! - Errors ([`ParseError`], [`ExportError`], [`StoreError`]) never contain payload text.
//!
//! ## Security
//! Parse errors elide quoted values from serde's messages (a wrong-typed `"sk-..."` value would
//! otherwise be echoed). [`ProcessedRun::assume_processed`] is the only way to bypass the
//! pipeline and is disallowed by the workspace's `clippy.toml` outside tests.
//!
//! ## Performance
//! `cargo xtask bench json` measures parse and serialize throughput on the shared corpus's
//! `runs.jsonl`; figures are in this crate's README.
//!
//! ## Crate features
//! - `testing`: `testing::MemoryStore` and `testing::MemoryExporter`, test doubles that
//!   follow the trait contracts, `contract`, the `TraceStore` contract suite every backend
//!   runs, and `exporter_contract`, the `Exporter` contract suite every exporter runs.

#[cfg(feature = "testing")]
pub mod contract;
pub mod export;
#[cfg(feature = "testing")]
pub mod exporter_contract;
pub mod fs;
pub mod groups;
pub mod json;
pub mod model;
pub mod overview;
pub mod search;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod value;
pub mod visit;

pub use export::{ExportError, Exporter, ProcessedRun, StoreExporter};
pub use groups::{GroupKey, GroupRow, GroupsBuilder, RunGroup};
pub use json::{ParseError, ParseErrorKind, parse_run, read_jsonl, to_json};
pub use model::{AgentRun, AgentRunBuilder, JsonMap, Step, StepBuilder, StepType, Steps};
pub use overview::{Overview, OverviewBuilder};
pub use store::{OrderBy, StoreError, StoreStats, TraceQuery, TraceStore, merge_runs};
pub use visit::StringsMut;

pub use chrono::{DateTime, Utc};
pub use serde_json::{Map, Value, json};
pub use uuid::Uuid;
