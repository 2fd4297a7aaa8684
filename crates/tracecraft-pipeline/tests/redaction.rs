//! The redaction processor covers every string of a run (DESIGN invariant 3) and deep inputs.
#![allow(clippy::disallowed_methods)]

use serde_json::{Value, json};
use tracecraft_core::testing::MemoryExporter;
use tracecraft_core::{AgentRun, Step, StepType};
use tracecraft_pipeline::*;
use tracecraft_redact::RedactionConfig;

const EMAIL: &str = "carol.secret@example.com";
const KEY: &str = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678";

fn pipeline(sink: &MemoryExporter, config: &PipelineConfig) -> Pipeline {
    config
        .builder()
        .unwrap()
        .exporter(sink.clone())
        .build()
        .unwrap()
}

fn everywhere() -> AgentRun {
    let mut run = AgentRun::builder(format!("agent for {EMAIL}"))
        .description(format!("description {KEY}"))
        .session_id(EMAIL)
        .user_id(EMAIL)
        .tag(format!("tag-{EMAIL}"))
        .input(json!({"q": format!("mail {EMAIL}"), "nested": [{"k": KEY}]}))
        .output(format!("answer {KEY}"))
        .attribute("debug.note", format!("saw {EMAIL}"))
        .attribute(EMAIL, "value under a secret key")
        .error(format!("failed for {EMAIL}"), "RuntimeError")
        .build();
    run.agent_description = Some(format!("agent of {EMAIL}"));
    let step = Step::builder(run.id, StepType::Llm, format!("call {EMAIL}"))
        .input("prompt", format!("key={KEY}"))
        .input("credentials", json!({"password": 123456, "pin": [1, 2, 3]}))
        .output("text", format!("reply to {EMAIL}"))
        .attribute(
            "http.url",
            format!("https://api.example.com/v1?api_key={KEY}"),
        )
        .chunk(format!("chunk {EMAIL}"))
        .error(format!("timeout calling {KEY}"), "TimeoutError")
        .build();
    run.push_step(step);
    run
}

#[test]
fn every_string_of_a_run_is_redacted() {
    let sink = MemoryExporter::new();
    let config = PipelineConfig::default();
    let p = pipeline(&sink, &config);
    assert!(matches!(p.submit(everywhere()), Submitted::Exported(_)));
    let out = &sink.runs()[0];
    let text = tracecraft_core::json::to_json(out);
    assert!(!text.contains(EMAIL), "email survived: {text}");
    assert!(!text.contains(KEY), "key survived: {text}");
    assert!(
        !text.contains("123456"),
        "numeric password under a sensitive key survived"
    );
    assert!(out.attributes[REDACTION_COUNT].as_u64().unwrap() >= 15);
    assert!(
        out.attributes
            .keys()
            .any(|k| k == &format!("{REDACTION_RULE_PREFIX}email"))
    );
}

#[test]
fn field_paths_replace_values_of_any_type() {
    let sink = MemoryExporter::new();
    let mut config = PipelineConfig::default();
    config.redaction.field_paths = vec!["profile.age".into(), "card".into()];
    let p = pipeline(&sink, &config);
    let mut run = AgentRun::new("r");
    run.push_step(
        Step::builder(run.id, StepType::Tool, "t")
            .input("profile", json!({"age": 42, "name": "x"}))
            .input("card", json!({"number": 4111, "cvc": [1, 2, 3]}))
            .build(),
    );
    p.submit(run);
    let step = &sink.runs()[0].steps[0];
    assert_ne!(step.inputs["profile"]["age"], json!(42));
    assert_eq!(step.inputs["profile"]["name"], json!("x"));
    assert!(
        !step.inputs["card"].is_object(),
        "the whole value is replaced"
    );
}

#[test]
fn ten_thousand_level_nested_input_is_cut_and_redacted_without_overflow() {
    let sink = MemoryExporter::new();
    let p = pipeline(&sink, &PipelineConfig::default());
    // Built iteratively; the pipeline owns it from here and takes it apart without recursion.
    let mut deep = json!({"leaf": format!("reach me at {EMAIL}")});
    for _ in 0..10_000 {
        // Not `json!({"next": deep})`: that macro copies `deep` recursively.
        let mut m = serde_json::Map::new();
        m.insert("next".into(), deep);
        deep = Value::Object(m);
    }
    let mut run = AgentRun::new("deep");
    run.push_step(
        Step::builder(run.id, StepType::Tool, "t")
            .input("payload", deep)
            .input("shallow", format!("mail {EMAIL}"))
            .build(),
    );
    let out = p.submit(run);
    assert!(
        matches!(out, Submitted::Exported(_)),
        "deep run was not exported: {out:?}"
    );
    let runs = sink.runs();
    let text = tracecraft_core::json::to_json(&runs[0]);
    assert!(!text.contains(EMAIL), "a secret survived");
    assert!(text.contains(tracecraft_core::value::TRUNCATED));
    assert_eq!(runs[0].attributes[VALUES_TRUNCATED], json!(1));
    // What the pipeline emits can be read back by our own parser.
    assert_eq!(tracecraft_core::parse_run(&text).unwrap().id, runs[0].id);
}

#[test]
fn panicking_processor_with_deep_input_exports_nothing() {
    let sink = MemoryExporter::new();
    let p = Pipeline::builder()
        .processor(FnProcessor::new(
            "crashy",
            |_run: AgentRun| -> Result<Outcome, ProcessError> { panic!("boom") },
        ))
        .redaction(RedactionProcessor::new(&RedactionConfig::default()).unwrap())
        .exporter(sink.clone())
        .build()
        .unwrap();
    let mut deep = json!(format!("key {KEY}"));
    for _ in 0..10_000 {
        deep = Value::Array(vec![deep]);
    }
    let run = AgentRun::builder("r").input(deep).build();
    assert_eq!(
        p.submit(run),
        Submitted::Failed {
            processor: "crashy".into()
        }
    );
    assert!(sink.is_empty());
}

#[test]
fn step_trees_deeper_than_the_limit_are_cut_and_counted() {
    let sink = MemoryExporter::new();
    let p = pipeline(&sink, &PipelineConfig::default());
    let mut run = AgentRun::new("deep-steps");
    let mut step = Step::new(run.id, StepType::Tool, "leaf");
    for i in 0..1_000 {
        let mut parent = Step::new(run.id, StepType::Workflow, format!("l{i}"));
        parent.push_child(step);
        step = parent;
    }
    run.push_step(step);
    p.submit(run);
    let out = &sink.runs()[0];
    assert_eq!(out.step_count(), 40);
    assert_eq!(out.attributes[STEPS_DROPPED], json!(961));
    assert!(tracecraft_core::parse_run(&tracecraft_core::json::to_json(out)).is_ok());
}

#[test]
fn efficiency_order_also_redacts_and_skips_dropped_runs() {
    let sink = MemoryExporter::new();
    let mut config = PipelineConfig {
        processor_order: ProcessorOrder::Efficiency,
        ..PipelineConfig::default()
    };
    let p = pipeline(&sink, &config);
    assert_eq!(p.processor_names(), ["sample", "redact", "enrich"]);
    p.submit(everywhere());
    assert!(!tracecraft_core::json::to_json(&sink.runs()[0]).contains(EMAIL));

    config.sampling.rate = 0.0;
    config.sampling.always_keep_errors = false;
    let sink = MemoryExporter::new();
    let p = pipeline(&sink, &config);
    assert!(matches!(p.submit(everywhere()), Submitted::Dropped(_)));
    assert!(sink.is_empty());
}

#[test]
fn invalid_redaction_rule_fails_the_build_naming_the_rule() {
    let config = PipelineConfig {
        redaction: RedactionConfig {
            custom_rules: vec![tracecraft_redact::CustomRule::new("backref", r"(a)\1")],
            ..RedactionConfig::default()
        },
        ..PipelineConfig::default()
    };
    let err = config.builder().expect_err("must fail");
    assert!(err.to_string().contains("backref"), "{err}");
}

/// Sets every string the visitor reaches to a secret: text fields to a sentence with an email,
/// values and maps to an object holding one (and a sensitive key).
struct Fill;

impl tracecraft_core::StringsMut for Fill {
    fn text(&mut self, field: &'static str, s: &mut String) {
        *s = format!("{field} of {EMAIL}");
    }
    fn value(&mut self, field: &'static str, v: &mut Value) {
        *v = json!({"note": format!("{field}: {EMAIL}"), "password": 123456});
    }
    fn map(&mut self, field: &'static str, m: &mut tracecraft_core::JsonMap) {
        m.insert("note".into(), json!(format!("{field}: {EMAIL}")));
        m.insert(format!("key {EMAIL}"), json!([format!("{EMAIL}")]));
    }
}

/// Every string field of a run and of nested steps (the fixture is filled through the
/// exhaustive visitor, so `agent_*`, `cloud_*`, model fields, chunks, ... are all set), is
/// redacted: no email survives anywhere in the run's JSON.
#[test]
fn every_visited_field_is_filled_and_redacted() {
    let mut run = AgentRun::new("r");
    let mut child = Step::builder(run.id, StepType::Llm, "child").build();
    child.streaming_chunks = vec![String::new(), String::new()];
    child.model_name = Some(String::new());
    child.model_provider = Some(String::new());
    child.error = Some(String::new());
    child.error_type = Some(String::new());
    let mut parent = Step::builder(run.id, StepType::Agent, "parent").build();
    parent.children.push(child.clone());
    run.push_step(parent);
    run.push_step(child);
    run.description = Some(String::new());
    run.session_id = Some(String::new());
    run.user_id = Some(String::new());
    run.tags = vec![String::new(), String::new()];
    run.agent_name = Some(String::new());
    run.agent_id = Some(String::new());
    run.agent_description = Some(String::new());
    run.cloud_provider = Some(String::new());
    run.cloud_trace_id = Some(String::new());
    run.error = Some(String::new());
    run.error_type = Some(String::new());
    run.sample_reason = Some(String::new());
    run.visit_strings_mut(&mut Fill);
    let before = tracecraft_core::json::to_json(&run);
    // 14 run text fields + 2 tags, input, output, attributes; per step 5 texts, 2 chunks, 3 maps.
    assert!(before.matches(EMAIL).count() >= 16 + 3 * 2 + 3 * (5 + 2 + 3 * 2));
    let processor = RedactionProcessor::new(&RedactionConfig::default()).unwrap();
    let report = processor.redact_run(&mut run);
    let after = tracecraft_core::json::to_json(&run);
    assert!(!after.contains(EMAIL), "{after}");
    assert!(!after.contains("123456"), "{after}");
    assert!(report.count("email") >= 40);
}
