//! Pipeline behaviour: order, fail-closed, exporter isolation, enrichment and sampling.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracecraft_core::testing::{MemoryExporter, MemoryStore};
use tracecraft_core::{AgentRun, Step, StepType, TraceQuery, TraceStore};
use tracecraft_pipeline::*;
use tracecraft_redact::RedactionConfig;

const SECRET: &str = "sk-proj-SECRETSECRETSECRET";

/// The default redactor: SECRET is an OpenAI key it redacts everywhere in a run.
fn fake_redactor() -> RedactionProcessor {
    RedactionProcessor::new(&RedactionConfig::default()).unwrap()
}

fn secret_run() -> AgentRun {
    let mut run = AgentRun::builder("agent")
        .input(json!({"key": SECRET}))
        .build();
    run.push_step(
        Step::builder(run.id, StepType::Llm, "chat")
            .model("gpt-4o", "openai")
            .input(
                "prompt",
                format!("use {SECRET} please, thank you very much"),
            )
            .output("text", "done and done and done")
            .build(),
    );
    run
}

fn panicking(name: &'static str) -> impl Processor {
    FnProcessor::new(name, |run: AgentRun| -> Result<Outcome, ProcessError> {
        panic!("processor crashed while holding {}", run.name)
    })
}

#[test]
fn build_requires_redaction_or_explicit_opt_out() {
    let err = Pipeline::builder().build().unwrap_err();
    assert!(matches!(err, BuildError::RedactionMissing));
    assert!(err.to_string().contains("without_redaction"));
    assert!(Pipeline::builder().without_redaction().build().is_ok());
}

#[test]
fn processor_orders() {
    let build = |order| {
        Pipeline::builder()
            .order(order)
            .enrichment(EnrichmentProcessor::default())
            .redaction(fake_redactor())
            .sampling(SamplingProcessor::new(SamplingConfig::default()).unwrap())
            .processor(FnProcessor::new("custom", |r| Ok(Outcome::Keep(r))))
            .build()
            .unwrap()
    };
    assert_eq!(
        build(ProcessorOrder::Safety).processor_names(),
        ["enrich", "custom", "redact", "sample"]
    );
    assert_eq!(
        build(ProcessorOrder::Efficiency).processor_names(),
        ["sample", "custom", "redact", "enrich"]
    );
}

#[test]
fn panicking_processor_fails_closed_in_both_orders() {
    for order in [ProcessorOrder::Safety, ProcessorOrder::Efficiency] {
        for position in ["before", "after"] {
            let sink = MemoryExporter::new();
            let mut b = Pipeline::builder().order(order).exporter(sink.clone());
            // The redaction stage only takes the library's `RedactionProcessor`; a crashing
            // processor before it (or sampling after it) must not leak either.
            b = if position == "before" {
                b.processor(panicking("crashy")).redaction(fake_redactor())
            } else {
                b.redaction(fake_redactor()).sampling(panicking("crashy"))
            };
            let p = b.build().unwrap();
            let out = p.submit(secret_run());
            assert_eq!(
                out,
                Submitted::Failed {
                    processor: "crashy".into()
                }
            );
            assert!(
                sink.is_empty(),
                "{order:?}/{position}: a run was exported after a panic"
            );
            let stats = p.stats();
            assert_eq!(stats.failed.get("crashy"), Some(&1));
            assert_eq!(stats.processed, 0);
        }
    }
}

#[test]
fn erroring_processor_fails_closed() {
    let sink = MemoryExporter::new();
    let p = Pipeline::builder()
        .processor(FnProcessor::new("broken", |_| {
            Err(ProcessError("no".into()))
        }))
        .redaction(fake_redactor())
        .exporter(sink.clone())
        .build()
        .unwrap();
    assert!(matches!(p.submit(secret_run()), Submitted::Failed { .. }));
    assert!(sink.is_empty());
    assert_eq!(p.stats().failed_total(), 1);
}

#[test]
fn redacted_before_any_exporter_sees_it() {
    let sink = MemoryExporter::new();
    let store = Arc::new(MemoryStore::new());
    let p = Pipeline::builder()
        .enrichment(EnrichmentProcessor::default())
        .redaction(fake_redactor())
        .exporter(sink.clone())
        .store(store.clone())
        .build()
        .unwrap();
    p.submit(secret_run());
    let exported = tracecraft_core::json::to_json(&sink.runs()[0]);
    assert!(!exported.contains(SECRET));
    let stored = store.query(&TraceQuery::new()).unwrap();
    assert!(!tracecraft_core::json::to_json(&stored[0]).contains(SECRET));
}

#[test]
fn one_failing_exporter_does_not_stop_the_others() {
    let good = MemoryExporter::new();
    let p = Pipeline::builder()
        .without_redaction()
        .exporter(MemoryExporter::failing())
        .exporter(good.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        p.submit(AgentRun::new("r"));
    }
    assert_eq!(good.len(), 3);
    let s = p.stats();
    assert_eq!(s.exported.get("memory"), Some(&3));
    assert_eq!(s.export_failed.get("memory-failing"), Some(&3));
    // The cause is kept, once, with its count (for the CLI's summary line).
    let causes = &s.export_failure_causes["memory-failing"];
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes.values().sum::<u64>(), 3);
    assert!(!s.export_failure_causes.contains_key("memory"));
}

#[test]
fn runs_of_a_pipeline_without_redaction_are_marked() {
    let out = MemoryExporter::new();
    let p = Pipeline::builder()
        .without_redaction()
        .exporter(out.clone())
        .build()
        .unwrap();
    p.submit(AgentRun::new("r"));
    let runs = out.runs();
    assert_eq!(runs[0].attributes[REDACTION_ATTRIBUTE], json!("disabled"));
    let out = MemoryExporter::new();
    let p = Pipeline::builder()
        .redaction(fake_redactor())
        .exporter(out.clone())
        .build()
        .unwrap();
    p.submit(AgentRun::new("r"));
    assert!(!out.runs()[0].attributes.contains_key(REDACTION_ATTRIBUTE));
}

#[test]
fn enrichment_estimates_marks_and_recomputes_totals() {
    let p = Pipeline::builder()
        .enrichment(EnrichmentProcessor::default())
        .without_redaction()
        .build()
        .unwrap();
    let mut run = AgentRun::new("agent");
    let id = run.id;
    let llm = Step::builder(id, StepType::Llm, "chat")
        .model("openai/gpt-4o-2024-08-06", "openai")
        .input(
            "messages",
            json!([{"role": "user", "content": "a".repeat(400)}]),
        )
        .output("text", "b".repeat(40))
        .build();
    let known = Step::builder(id, StepType::Llm, "known")
        .model("gpt-4", "openai")
        .tokens(1000, 1000)
        .build();
    let unpriced = Step::builder(id, StepType::Llm, "new-model")
        .model("gpt-4.1", "openai")
        .tokens(10, 10)
        .build();
    let tool = Step::builder(id, StepType::Tool, "tool")
        .input("q", "x".repeat(100))
        .build();
    run.push_step(
        Step::builder(id, StepType::Agent, "root")
            .child(llm)
            .child(known)
            .child(unpriced)
            .child(tool)
            .build(),
    );
    let Submitted::Exported(out) = p.submit(run) else {
        panic!("dropped")
    };
    let out = out.run();
    let chat = out.walk().find(|s| s.name == "chat").unwrap();
    assert_eq!(
        (chat.input_tokens, chat.output_tokens),
        (Some(100), Some(10))
    );
    assert_eq!(chat.attributes[TOKENS_ESTIMATED], json!(true));
    assert_eq!(chat.attributes[COST_ESTIMATED], json!(true));
    let expected_chat = 100.0 * 0.0025 / 1000.0 + 10.0 * 0.01 / 1000.0;
    assert!((chat.cost_usd.unwrap() - expected_chat).abs() < 1e-12);
    let known = out.walk().find(|s| s.name == "known").unwrap();
    assert!((known.cost_usd.unwrap() - 0.09).abs() < 1e-12);
    assert!(!known.attributes.contains_key(TOKENS_ESTIMATED));
    let unpriced = out.walk().find(|s| s.name == "new-model").unwrap();
    assert_eq!(
        unpriced.cost_usd, None,
        "gpt-4.1 must not be priced as gpt-4"
    );
    let tool = out.walk().find(|s| s.name == "tool").unwrap();
    assert_eq!(tool.input_tokens, None, "only LLM steps are enriched");
    assert_eq!(out.total_tokens, 110 + 2000 + 20);
    assert!(
        (out.total_cost_usd - (expected_chat + 0.09)).abs() < 1e-12,
        "run totals recomputed after enrichment"
    );
}

fn sampler(cfg: SamplingConfig) -> Pipeline {
    Pipeline::builder()
        .without_redaction()
        .sampling(SamplingProcessor::new(cfg).unwrap())
        .build()
        .unwrap()
}

#[test]
fn sampling_reasons_match_the_reference_strings() {
    let keep_all = sampler(SamplingConfig::default());
    let Submitted::Exported(r) = keep_all.submit(AgentRun::new("a")) else {
        panic!()
    };
    assert_eq!(
        r.run().sample_reason.as_deref(),
        Some("Kept: default rate (1.0)")
    );
    assert!(r.run().should_export);

    let none = sampler(SamplingConfig {
        rate: 0.0,
        ..SamplingConfig::default()
    });
    assert_eq!(
        none.submit(AgentRun::new("a")),
        Submitted::Dropped("Dropped: default rate (0.0)".into())
    );
    assert_eq!(
        none.stats().dropped.get("Dropped: default rate (0.0)"),
        Some(&1)
    );

    let rules = sampler(SamplingConfig {
        rate: 1.0,
        rules: vec![
            SamplingRule {
                match_names: vec!["noisy".into()],
                ..SamplingRule::new("mute-noisy", 0.0)
            },
            SamplingRule {
                match_tags: vec!["vip".into(), "gold".into()],
                ..SamplingRule::new("vip", 1.0)
            },
        ],
        ..SamplingConfig::default()
    });
    assert_eq!(
        rules.submit(AgentRun::new("noisy")),
        Submitted::Dropped("Dropped: matched rule 'mute-noisy' (rate=0.0)".into())
    );
    let Submitted::Exported(r) = rules.submit(AgentRun::builder("x").tag("gold").build()) else {
        panic!()
    };
    assert_eq!(
        r.run().sample_reason.as_deref(),
        Some("Kept: matched rule 'vip'")
    );
}

#[test]
fn always_keep_errors_includes_run_level_errors() {
    let p = sampler(SamplingConfig {
        rate: 0.0,
        ..SamplingConfig::default()
    });
    let run = AgentRun::builder("failed")
        .error("", "RuntimeError")
        .build();
    let Submitted::Exported(r) = p.submit(run) else {
        panic!("run-level error dropped")
    };
    assert_eq!(
        r.run().sample_reason.as_deref(),
        Some("Kept: error trace (always_keep_errors=True)")
    );
    // A deep step error counts too.
    let mut run = AgentRun::new("deep");
    let leaf = Step::builder(run.id, StepType::Tool, "t")
        .error("boom", "E")
        .build();
    run.push_step(
        Step::builder(run.id, StepType::Agent, "a")
            .child(leaf)
            .build(),
    );
    assert!(matches!(p.submit(run), Submitted::Exported(_)));
}

#[test]
fn slow_and_attribute_rules_and_first_match_wins() {
    let p = sampler(SamplingConfig {
        rate: 0.0,
        always_keep_slow: true,
        slow_threshold_ms: 1000.0,
        rules: vec![
            SamplingRule {
                match_attributes: [("tier".to_owned(), json!("free"))].into_iter().collect(),
                ..SamplingRule::new("free", 0.0)
            },
            SamplingRule::new("everything", 1.0),
        ],
        ..SamplingConfig::default()
    });
    let mut slow = AgentRun::new("slow");
    slow.duration_ms = Some(2000.0);
    let Submitted::Exported(r) = p.submit(slow) else {
        panic!()
    };
    assert_eq!(
        r.run().sample_reason.as_deref(),
        Some("Kept: slow trace (>1000.0ms)")
    );
    let free = AgentRun::builder("x").attribute("tier", "free").build();
    assert!(matches!(p.submit(free), Submitted::Dropped(_)));
    let paid = AgentRun::builder("x").attribute("tier", "paid").build();
    assert!(matches!(p.submit(paid), Submitted::Exported(_)));
}

#[test]
fn sampling_is_deterministic_per_run_id() {
    let p = sampler(SamplingConfig {
        rate: 0.3,
        always_keep_errors: false,
        ..SamplingConfig::default()
    });
    for _ in 0..200 {
        let run = AgentRun::new("r");
        let a = matches!(p.submit(run.clone()), Submitted::Exported(_));
        let b = matches!(p.submit(run.clone()), Submitted::Exported(_));
        assert_eq!(a, b);
        assert_eq!(a, keep_by_rate(&run.id, 0.3));
    }
}

#[test]
fn rate_limit_caps_kept_runs() {
    let p = sampler(SamplingConfig {
        max_per_second: Some(5.0),
        ..SamplingConfig::default()
    });
    let start = std::time::Instant::now();
    let kept = (0..50)
        .filter(|_| matches!(p.submit(AgentRun::new("r")), Submitted::Exported(_)))
        .count();
    // The bucket holds 5 tokens and refills at 5/s: at least the initial 5, at most 5 more per
    // second elapsed (a slow, loaded machine refills a little more).
    let allowed = 5 + (start.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        kept >= 5 && kept <= allowed && kept < 50,
        "kept {kept}, allowed {allowed}"
    );
    assert!(
        p.stats()
            .dropped
            .keys()
            .any(|k| k.starts_with("Dropped: rate limit"))
    );
}

#[test]
fn invalid_sampling_config_names_the_field() {
    let e = SamplingProcessor::new(SamplingConfig {
        rate: 1.5,
        ..SamplingConfig::default()
    })
    .unwrap_err();
    assert_eq!(e.field(), "sampling.rate");
    assert!(e.to_string().contains("1.5"));
    let e = SamplingProcessor::new(SamplingConfig {
        rules: vec![SamplingRule::new("ok", 0.5), SamplingRule::new("bad", -0.1)],
        ..SamplingConfig::default()
    })
    .unwrap_err();
    assert_eq!(e.field(), "sampling.rules[1].rate");
    let e = SamplingProcessor::new(SamplingConfig {
        max_per_second: Some(0.0),
        ..SamplingConfig::default()
    })
    .unwrap_err();
    assert_eq!(e.field(), "sampling.max_per_second");
}

#[test]
fn sampling_config_loads_from_toml() {
    let cfg: SamplingConfig = toml::from_str(
        "rate = 0.1\nalways_keep_errors = false\n[[rules]]\nname = \"vip\"\nrate = 1.0\nmatch_tags = [\"vip\"]\n",
    )
    .unwrap();
    assert_eq!(cfg.rate, 0.1);
    assert_eq!(cfg.rules[0].match_tags, ["vip"]);
    let err = toml::from_str::<SamplingConfig>("rat = 0.1").unwrap_err();
    assert!(err.to_string().contains("rat"), "{err}");
}

#[test]
fn batch_exporter_behind_the_pipeline() {
    let sink = MemoryExporter::new();
    let p = Pipeline::builder()
        .without_redaction()
        .exporter(BatchExporter::new(sink.clone(), BatchConfig::default()))
        .build()
        .unwrap();
    for _ in 0..10 {
        p.submit(AgentRun::new("r"));
    }
    p.force_flush().unwrap();
    assert_eq!(sink.len(), 10);
    assert!(p.shutdown(Duration::from_secs(5)).is_clean());
    assert!(sink.is_shut_down());
}
