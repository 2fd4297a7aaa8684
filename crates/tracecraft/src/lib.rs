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
//! ## Instrumenting code
//! A [`Runtime`] (from [`Runtime::builder`], or [`init`] with a configuration) sends finished
//! runs through redaction to its stores and exporters; runs and steps are guards that end when
//! dropped (also during a panic: the error is recorded as `"panicked"`, and the run is still
//! exported).
//!
//! ```
//! # #[cfg(feature = "pipeline")] {
//! use tracecraft::core::testing::MemoryExporter;
//! use tracecraft::{Runtime, StepType};
//!
//! let sink = MemoryExporter::new();
//! let runtime = Runtime::builder()
//!     .exporter(sink.clone())
//!     .exclude_inputs(["api_key"])
//!     .build()
//!     .unwrap();
//!
//! fn call_llm(prompt: &str) -> String {
//!     // Attaches to the current run and step, wherever it is called from.
//!     let mut step = tracecraft::step(StepType::Llm, "chat")
//!         .model("gpt-4o", "openai")
//!         .input("prompt", prompt)
//!         .input("api_key", "sk-never-recorded")
//!         .start();
//!     step.set_tokens(12, 30);
//!     step.set_output(&"Your order has shipped.");
//!     "Your order has shipped.".to_owned()
//! }
//!
//! {
//!     let mut run = runtime.run("support_agent").user_id("user-7").session_id("sess-42").start();
//!     let _plan = run.step(StepType::Agent, "answer").start();
//!     let answer = call_llm("Where is my order?");
//!     run.set_output(&answer);
//! } // the step, then the run end here; the run goes through the pipeline
//!
//! let run = &sink.runs()[0];
//! assert_eq!(run.total_tokens, 42);
//! // Excluded, never captured (and the sensitive-key rule would have masked it anyway).
//! assert!(!tracecraft::core::json::to_json(run).contains("sk-never-recorded"));
//! runtime.shutdown(std::time::Duration::from_secs(5));
//! # }
//! ```
//!
//! ## Attributes
//! With the `macros` feature (on by default), an attribute records each call of a function as
//! a step of the current run: arguments by name, the return value as the output (a
//! `Result`'s `Ok` value; its `Err` as the step's error, with the error's type name), on sync
//! and async functions. Arguments named in `exclude_inputs` are recorded as `"[EXCLUDED]"`
//! and never read. Outside a run the function just runs.
//!
//! ```
//! # #[cfg(feature = "macros")] {
//! # use tracecraft::core::testing::MemoryExporter;
//! # use tracecraft::{Runtime, RuntimeOptions};
//! # let sink = MemoryExporter::new();
//! # let runtime = Runtime::builder().exporter(sink.clone()).build().unwrap();
//! #[tracecraft::trace_llm(model = "gpt-4o", provider = "openai", exclude_inputs = ["api_key"])]
//! fn chat(prompt: &str, api_key: &str) -> Result<String, std::io::Error> {
//!     let _ = api_key; // sent to the provider, never recorded
//!     tracecraft::current_step().set_tokens(12, 30);
//!     Ok(format!("echo: {prompt}"))
//! }
//!
//! #[tracecraft::trace_tool]
//! fn lookup(order: u32) -> &'static str {
//!     "shipped"
//! }
//!
//! #[tracecraft::trace_agent(name = "support")]
//! fn answer(question: &str) -> Result<String, std::io::Error> {
//!     let status = lookup(1001);
//!     chat(&format!("{question} ({status})"), "sk-live-never-recorded")
//! }
//!
//! {
//!     let _run = runtime.run("support_agent").start();
//!     answer("Where is my order?").unwrap();
//! }
//! let run = &sink.runs()[0];
//! let llm = &run.steps[0].children[1];
//! assert!(!tracecraft::core::json::to_json(run).contains("sk-live-never-recorded"));
//! assert_eq!(llm.output_tokens, Some(30));
//! # }
//! ```
//!
//! `#[trace_llm]`, `#[trace_tool]`, `#[trace_retrieval]`, `#[trace_agent]` and
//! `#[trace_step(type = guardrail)]` take `name`, `exclude_inputs`, `capture_inputs = false`,
//! `capture_outputs = false` (and `model`, `provider` for LLM steps); a misspelled option or an
//! `exclude_inputs` name that is not an argument is a compile error. [`current_step`] sets
//! what is known only inside the call (model, tokens, cost).
//!
//! Threads and async tasks take the context along: [`context::current`], `ctx.enter(..)`, and
//! [`InRun::in_current_run`] for futures (see [`context`]). Several runtimes (tenants) can
//! coexist: a step always lands in the run it was started in.
//!
//! ## Security
//! See `docs/security.md`: redaction defaults, modes, capture controls, file permissions.
//! Inputs and outputs are serialized when captured; a value that fails to serialize is
//! recorded as `"[unserializable: REASON]"` without its text. `Debug` of runtimes, guards and
//! contexts shows ids only. Panic messages are never recorded.
//!
//! ## Performance
//! Each crate's README lists its criterion figures beside the targets (`cargo xtask bench`);
//! this crate's `runtime` bench measures the cost on the traced thread of a step and of a run.
//!
//! ## Crate features
//! | feature | what it adds |
//! |---|---|
//! | (always) | [`core`]: the span model, JSON wire format, `Exporter` / `TraceStore` traits; the [`ConsoleExporter`] |
//! | `redact` | the redaction engine |
//! | `pipeline` (default) | processors (enrich, redact, sample), the batch exporter, and the instrumentation runtime ([`Runtime`], guards, [`context`]) |
//! | `jsonl` | `jsonl`: the JSONL store (`JsonlStore`) |
//! | `sqlite` | `sqlite`: the embedded SQLite store (`SqliteStore`) |
//! | `otlp` | `otlp`: the OTLP exporter (gRPC or HTTP/protobuf, rustls); `[otlp]` settings use it |
//! | `gateway` | `gateway`: the redacting OTLP gateway behind `tracecraft serve` and the `[gateway]` table (`receiver` is an alias) |
//! | `tracing` | `layer::TraceCraftLayer`, a `tracing_subscriber::Layer` that turns spans into runs and steps; `fmt::RedactingWriter` and `fmt::RedactingFields`, which redact what a `tracing_subscriber::fmt` layer prints |
//! | `macros` (default) | the attributes `#[trace_llm]`, `#[trace_tool]`, `#[trace_retrieval]`, `#[trace_agent]`, `#[trace_step]` |
//! | `ui` | `ui`: the trace browser (`ui::Server`) that `tracecraft ui` serves |
//! | `full` | all of the above |
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The span model, wire format and extension traits (`tracecraft-core`).
pub use tracecraft_core as core;

/// The redaction engine (`tracecraft-redact`).
#[cfg(feature = "redact")]
#[cfg_attr(docsrs, doc(cfg(feature = "redact")))]
pub use tracecraft_redact as redact;

/// The JSONL store (`tracecraft-store-jsonl`).
#[cfg(feature = "jsonl")]
#[cfg_attr(docsrs, doc(cfg(feature = "jsonl")))]
pub use tracecraft_store_jsonl as jsonl;

/// The embedded SQLite store (`tracecraft-store-sqlite`).
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use tracecraft_store_sqlite as sqlite;

/// The OTLP exporter (`tracecraft-otlp`).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use tracecraft_otlp as otlp;

/// The redacting OTLP gateway (`tracecraft-gateway`).
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub use tracecraft_gateway as gateway;
/// The local trace browser (`tracecraft-ui`).
#[cfg(feature = "ui")]
#[cfg_attr(docsrs, doc(cfg(feature = "ui")))]
pub use tracecraft_ui as ui;

/// Processors, the pipeline and the batch exporter (`tracecraft-pipeline`).
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
pub use tracecraft_pipeline as pipeline;

#[cfg(feature = "macros")]
#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;
#[cfg(feature = "pipeline")]
mod builder;
#[cfg(feature = "pipeline")]
mod capture;
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
pub mod config;
pub mod console;
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
pub mod context;
#[cfg(feature = "pipeline")]
mod error;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod fmt;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod layer;
#[cfg(feature = "pipeline")]
mod open;
#[cfg(feature = "pipeline")]
mod record;
#[cfg(feature = "pipeline")]
mod run;
#[cfg(feature = "pipeline")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipeline")))]
pub mod runtime;
#[cfg(feature = "pipeline")]
mod setup;
#[cfg(feature = "pipeline")]
mod step;
#[cfg(feature = "pipeline")]
mod worker;

#[cfg(feature = "pipeline")]
pub use builder::RuntimeBuilder;
#[cfg(feature = "pipeline")]
pub use capture::EXCLUDED;
pub use console::{ColorMode, ConsoleExporter};
#[cfg(feature = "pipeline")]
pub use context::InRun;
#[cfg(feature = "pipeline")]
pub use error::InitError;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use open::open_otlp_export;
#[cfg(feature = "pipeline")]
pub use open::{open_existing_store, open_store, spawn_retention};
#[cfg(feature = "pipeline")]
pub use runtime::{RunBuilder, RunGuard, Runtime, RuntimeOptions, RuntimeStats};
#[cfg(feature = "pipeline")]
pub use setup::{global, init};
#[cfg(feature = "pipeline")]
pub use step::{CurrentStep, StepGuard, StepGuardBuilder, current_step, step};

/// Attributes that record each call of a function as a step (`tracecraft-macros`); see the
/// [crate docs](crate#attributes).
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use tracecraft_macros::{trace_agent, trace_llm, trace_retrieval, trace_step, trace_tool};

/// The README's examples run as doc tests.
#[cfg(all(doctest, feature = "macros", feature = "sqlite"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The security guide (`docs/security.md`); its Rust examples run as doc tests.
#[cfg(all(
    feature = "pipeline",
    feature = "sqlite",
    feature = "macros",
    feature = "tracing"
))]
#[doc = include_str!("../../../docs/security.md")]
pub mod security_guide {}

pub use tracecraft_core::{
    AgentRun, AgentRunBuilder, ExportError, Exporter, JsonMap, OrderBy, ParseError, ProcessedRun,
    Step, StepBuilder, StepType, StoreError, StoreStats, TraceQuery, TraceStore, Uuid,
};
