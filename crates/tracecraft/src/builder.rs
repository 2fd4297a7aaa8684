//! [`RuntimeBuilder`]: the one way to build a [`Runtime`] (besides the [`crate::init`]
//! one-liner, which uses it).

use std::sync::Arc;

use tracecraft_core::{Exporter, TraceStore};
use tracecraft_pipeline::{BatchExporter, Pipeline, PipelineConfig};

use crate::config::{StorageUrl, TraceCraftConfig};
use crate::console::ConsoleExporter;
use crate::error::InitError;
use crate::open::{open_jsonl_export, open_store, spawn_retention};
use crate::runtime::{DEFAULT_MAX_STEP_DEPTH, Runtime, RuntimeOptions};

/// Builds a [`Runtime`]: where finished runs go (a configuration, or processors plus
/// exporters and stores, or a pipeline built by hand) and how runs are captured.
///
/// **Redaction is on** unless the configuration says `redaction.enabled = false`, or
/// [`without_redaction`](RuntimeBuilder::without_redaction) is called, or the pipeline given
/// was built without it.
///
/// ```
/// use std::sync::Arc;
/// use tracecraft::core::{testing::MemoryStore, TraceQuery, TraceStore};
/// use tracecraft::{Runtime, StepType};
///
/// let store = Arc::new(MemoryStore::new());
/// let runtime = Runtime::builder()
///     .store(store.clone())
///     .exclude_inputs(["account_notes"])
///     .build()?;
/// {
///     let run = runtime.run("agent").start();
///     let _step = run.step(StepType::Llm, "chat")
///         .input("prompt", "mail jane.doe@example.com")
///         .input("account_notes", "VIP, disputes every invoice")
///         .start();
/// }
/// runtime.shutdown(std::time::Duration::from_secs(5));
/// let stored = tracecraft::core::json::to_json(&store.query(&TraceQuery::new())?[0]);
/// assert!(!stored.contains("jane.doe@example.com"), "redacted by default");
/// assert!(stored.contains("[EXCLUDED]") && !stored.contains("disputes"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "call `.build()` to get the runtime"]
#[derive(Default)]
pub struct RuntimeBuilder {
    config: Option<TraceCraftConfig>,
    pipeline: Option<Pipeline>,
    processing: Option<PipelineConfig>,
    without_redaction: bool,
    exporters: Vec<Box<dyn Exporter>>,
    store: Option<Arc<dyn TraceStore>>,
    options: Option<RuntimeOptions>,
    edits: Vec<OptionEdit>,
}

/// One option set on the builder, applied over the base options when built.
type OptionEdit = Box<dyn FnOnce(&mut RuntimeOptions) + Send>;

/// What a configuration builds: the pipeline, its store, the capture options.
type Configured = (Pipeline, Option<Arc<dyn TraceStore>>, RuntimeOptions);

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("config", &self.config.is_some())
            .field("pipeline", &self.pipeline.is_some())
            .field("exporters", &self.exporters.len())
            .field("store", &self.store.as_ref().map(|s| s.name().to_owned()))
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A [`RuntimeBuilder`].
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }
}

impl RuntimeBuilder {
    /// Everything from a configuration (what [`crate::init`] does): the pipeline
    /// (enrichment, redaction, sampling in `processor_order`), the store, the console, JSONL
    /// and OTLP exporters (each behind a [`BatchExporter`], so traced code never waits for
    /// I/O), and the capture options. Options set on this builder override the
    /// configuration's; exporters added here are added to its own.
    pub fn config(mut self, config: TraceCraftConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// A pipeline built by hand, used as it is (its processors, exporters and stores).
    pub fn pipeline(mut self, pipeline: Pipeline) -> Self {
        self.pipeline = Some(pipeline);
        self
    }

    /// The processors, from settings (default: [`PipelineConfig::default`]: enrichment,
    /// redaction with the built-in rules, no sampling, in the safety order).
    pub fn processing(mut self, processing: PipelineConfig) -> Self {
        self.processing = Some(processing);
        self
    }

    /// Turns redaction off, explicitly (logged once at warn level when built; every run is
    /// marked `tracecraft.redaction = "disabled"`).
    pub fn without_redaction(mut self) -> Self {
        self.without_redaction = true;
        self
    }

    /// Adds an exporter. It is called on the thread that processes the run (the traced
    /// thread unless [`background_processing`](Self::background_processing) is on): wrap
    /// slow ones in a [`BatchExporter`].
    pub fn exporter(mut self, exporter: impl Exporter + 'static) -> Self {
        self.exporters.push(Box::new(exporter));
        self
    }

    /// Adds a store (an exporter too), which [`Runtime::store`] returns for queries.
    pub fn store(mut self, store: Arc<dyn TraceStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// All capture options at once (the fields set one by one below apply after it).
    pub fn options(mut self, options: RuntimeOptions) -> Self {
        self.options = Some(options);
        self
    }

    fn edit(mut self, f: impl FnOnce(&mut RuntimeOptions) + Send + 'static) -> Self {
        self.edits.push(Box::new(f));
        self
    }

    /// See [`RuntimeOptions::exclude_inputs`] (added to those already set).
    pub fn exclude_inputs<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        self.edit(move |o| o.exclude_inputs.extend(names))
    }

    /// See [`RuntimeOptions::capture_inputs`].
    pub fn capture_inputs(self, on: bool) -> Self {
        self.edit(move |o| o.capture_inputs = on)
    }

    /// See [`RuntimeOptions::capture_outputs`].
    pub fn capture_outputs(self, on: bool) -> Self {
        self.edit(move |o| o.capture_outputs = on)
    }

    /// See [`RuntimeOptions::service_name`].
    pub fn service_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(move |o| o.service_name = Some(name))
    }

    /// See [`RuntimeOptions::environment`].
    pub fn environment(self, environment: impl Into<String>) -> Self {
        let environment = environment.into();
        self.edit(move |o| o.environment = Some(environment))
    }

    /// See [`RuntimeOptions::max_step_depth`] (`None`: unlimited).
    pub fn max_step_depth(self, depth: Option<usize>) -> Self {
        self.edit(move |o| o.max_step_depth = depth)
    }

    /// See [`RuntimeOptions::processing_queue_size`].
    pub fn processing_queue_size(self, runs: usize) -> Self {
        self.edit(move |o| o.processing_queue_size = runs)
    }

    /// See [`RuntimeOptions::background_processing`].
    pub fn background_processing(self, on: bool) -> Self {
        self.edit(move |o| o.background_processing = on)
    }

    /// Builds the runtime.
    ///
    /// # Errors
    /// [`InitError`] naming the invalid field, rule or file; [`InitError::Conflict`] when two
    /// settings contradict each other (a built pipeline and exporters to add to it, a
    /// configuration and processor settings beside it, a configured store and another).
    pub fn build(self) -> Result<Runtime, InitError> {
        let RuntimeBuilder {
            config,
            pipeline,
            processing,
            without_redaction,
            exporters,
            store,
            options,
            edits,
        } = self;
        let conflict = |what: &'static str| Err(InitError::Conflict(what));
        let (pipeline, store, mut base) = match (config, pipeline) {
            (Some(_), Some(_)) => {
                return conflict(
                    "a configuration and a built pipeline: the configuration builds its own",
                );
            }
            (None, Some(pipeline)) => {
                if processing.is_some() || without_redaction {
                    return conflict(
                        "processor settings beside a built pipeline: set them on the pipeline",
                    );
                }
                if !exporters.is_empty() || store.is_some() {
                    return conflict(
                        "exporters or a store beside a built pipeline: add them to the pipeline",
                    );
                }
                (pipeline, None, RuntimeOptions::default())
            }
            (Some(config), None) => {
                if processing.is_some() || without_redaction {
                    return conflict(
                        "processor settings beside a configuration: set them in the configuration ([redaction], [sampling], ...)",
                    );
                }
                if store.is_some() && config.storage.url != StorageUrl::None {
                    return conflict(
                        "a store beside a configuration that names one: set storage.url = \"none\" or drop one",
                    );
                }
                let (pipeline, configured, options) = from_config(&config, exporters, &store)?;
                (pipeline, store.or(configured), options)
            }
            (None, None) => {
                let mut processing = processing.unwrap_or_default();
                if without_redaction {
                    processing.redaction.enabled = false;
                }
                let mut b = processing.builder()?;
                for e in exporters {
                    b = b.exporter(e);
                }
                if let Some(s) = &store {
                    b = b.exporter(Arc::clone(s));
                }
                (b.build()?, store, RuntimeOptions::default())
            }
        };
        if let Some(o) = options {
            base = o;
        }
        for edit in edits {
            edit(&mut base);
        }
        Ok(Runtime::assemble(base, pipeline, store))
    }
}

/// The pipeline, the store and the options a configuration describes.
fn from_config(
    config: &TraceCraftConfig,
    extra: Vec<Box<dyn Exporter>>,
    extra_store: &Option<Arc<dyn TraceStore>>,
) -> Result<Configured, InitError> {
    config.validate()?;
    let mut builder = config.pipeline_config().builder()?;
    let batch = config.batch;
    let store = open_store(&config.storage)?;
    if let Some(store) = &store {
        builder = builder.exporter(BatchExporter::new(Arc::clone(store), batch));
        if let Some(age) = config.storage.max_age() {
            spawn_retention(store, age);
        }
    }
    if let Some(s) = extra_store {
        builder = builder.exporter(Arc::clone(s));
    }
    if let Some(jsonl) = open_jsonl_export(config)? {
        builder = builder.exporter(BatchExporter::new(jsonl, batch));
    }
    #[cfg(feature = "otlp")]
    if let Some(otlp) = crate::open::open_otlp_export(config)? {
        builder = builder.exporter(BatchExporter::new(otlp, batch));
    }
    if config.console.enabled {
        builder = builder.exporter(BatchExporter::new(
            ConsoleExporter::new().verbose(config.console.verbose),
            batch,
        ));
    }
    for e in extra {
        builder = builder.exporter(e);
    }
    let pipeline = builder.build()?;
    let options = RuntimeOptions {
        service_name: config.service_name.clone(),
        environment: config.environment.clone(),
        capture_inputs: config.capture_inputs,
        capture_outputs: config.capture_outputs,
        exclude_inputs: config.exclude_inputs.clone(),
        max_step_depth: match config.max_step_depth {
            None => Some(DEFAULT_MAX_STEP_DEPTH),
            Some(0) => None,
            Some(n) => Some(n),
        },
        background_processing: config.background_processing,
        processing_queue_size: config.batch.max_queue_size,
    };
    Ok((pipeline, store, options))
}
