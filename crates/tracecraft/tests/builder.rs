//! `Runtime::builder()`: redaction on unless turned off explicitly, contradictions refused
//! with a message fit for `main`.
#![cfg(feature = "pipeline")]

use std::sync::Arc;

use tracecraft::config::{StorageUrl, TraceCraftConfig};
use tracecraft::core::testing::{MemoryExporter, MemoryStore};
use tracecraft::pipeline::Pipeline;
use tracecraft::{InitError, Runtime};

const EMAIL: &str = "jane.doe@example.com";

fn run_one(rt: &Runtime) {
    let mut run = rt.run("agent").start();
    run.set_output(&format!("mail {EMAIL}"));
}

#[test]
fn redaction_is_on_by_default_and_off_only_when_asked() {
    let sink = MemoryExporter::new();
    let rt = Runtime::builder().exporter(sink.clone()).build().unwrap();
    run_one(&rt);
    assert!(!tracecraft::core::json::to_json(&sink.runs()[0]).contains(EMAIL));

    let sink = MemoryExporter::new();
    let rt = Runtime::builder()
        .exporter(sink.clone())
        .without_redaction()
        .build()
        .unwrap();
    run_one(&rt);
    let run = &sink.runs()[0];
    assert!(tracecraft::core::json::to_json(run).contains(EMAIL));
    assert_eq!(run.attributes["tracecraft.redaction"], "disabled");
}

#[test]
fn options_from_code_override_the_configuration_and_the_store_is_queryable() {
    let store = Arc::new(MemoryStore::new());
    let mut config = TraceCraftConfig::default();
    config.storage.url = StorageUrl::None;
    config.exclude_inputs = vec!["a".into()];
    let rt = Runtime::builder()
        .config(config)
        .store(store.clone())
        .exclude_inputs(["b"])
        .service_name("svc")
        .background_processing(false)
        .build()
        .unwrap();
    assert_eq!(rt.options().exclude_inputs, ["a", "b"]);
    assert_eq!(rt.options().service_name.as_deref(), Some("svc"));
    assert!(rt.store().is_some());
    run_one(&rt);
    rt.shutdown(std::time::Duration::from_secs(5));
    use tracecraft::core::{TraceQuery, TraceStore};
    assert_eq!(store.query(&TraceQuery::new()).unwrap().len(), 1);
}

#[test]
fn contradictions_are_refused_with_a_sentence() {
    let pipeline = || Pipeline::builder().without_redaction().build().unwrap();
    let cases: Vec<(Result<Runtime, InitError>, &str)> = vec![
        (
            Runtime::builder()
                .pipeline(pipeline())
                .exporter(MemoryExporter::new())
                .build(),
            "beside a built pipeline",
        ),
        (
            Runtime::builder()
                .pipeline(pipeline())
                .without_redaction()
                .build(),
            "processor settings beside a built pipeline",
        ),
        (
            Runtime::builder()
                .config(TraceCraftConfig::default())
                .pipeline(pipeline())
                .build(),
            "a configuration and a built pipeline",
        ),
        (
            Runtime::builder()
                .config(TraceCraftConfig::default())
                .store(Arc::new(MemoryStore::new()))
                .build(),
            "storage.url",
        ),
    ];
    for (result, needle) in cases {
        let err = result.unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(needle), "{shown}");
        assert!(shown.starts_with("Runtime::builder(): "), "{shown}");
        // Returned from `main`, it prints the sentence, not a struct.
        assert_eq!(format!("{err:?}"), shown);
    }
}
