//! Shared by the facade's integration tests.

use tracecraft::core::testing::MemoryExporter;
use tracecraft::pipeline::Pipeline;
use tracecraft::{Runtime, RuntimeOptions};

/// A runtime without redaction whose only exporter records every run in memory.
pub(crate) fn memory_runtime(options: RuntimeOptions) -> (Runtime, MemoryExporter) {
    let sink = MemoryExporter::new();
    let pipeline = Pipeline::builder()
        .without_redaction()
        .exporter(sink.clone())
        .build()
        .unwrap();
    (
        Runtime::builder()
            .options(options)
            .pipeline(pipeline)
            .build()
            .unwrap(),
        sink,
    )
}
