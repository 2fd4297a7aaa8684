//! Property: whatever a step records through the guard API comes out of the runtime exactly as
//! `serde_json` serializes it (compact recording and the build on the processing side lose
//! nothing), in both processing modes.
#![cfg(feature = "pipeline")]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use serde::Serialize;
use serde_json::Value;
use tracecraft::core::testing::MemoryExporter;
use tracecraft::{Runtime, RuntimeOptions, StepType};

/// A typical keyword-style argument set: nested, with every scalar kind.
#[derive(Debug, Clone, Serialize)]
struct Args {
    text: String,
    n: i64,
    x: f64,
    flag: Option<bool>,
    list: Vec<String>,
    map: BTreeMap<String, Vec<u32>>,
}

fn args() -> impl Strategy<Value = Args> {
    (
        ".*",
        any::<i64>(),
        any::<f64>(),
        proptest::option::of(any::<bool>()),
        prop::collection::vec(".*", 0..3),
        prop::collection::btree_map(".{0,6}", prop::collection::vec(any::<u32>(), 0..3), 0..3),
    )
        .prop_map(|(text, n, x, flag, list, map)| Args {
            text,
            n,
            x,
            flag,
            list,
            map,
        })
}

#[derive(Debug, Clone)]
struct Recorded {
    name: String,
    inputs: Vec<(String, Args)>,
    output: Option<Args>,
    attribute: Option<(String, String)>,
    model: Option<(String, String)>,
    tokens: Option<(u64, u64)>,
    cost: Option<f64>,
    chunks: Vec<String>,
    error: Option<(String, String)>,
}

fn recorded() -> impl Strategy<Value = Recorded> {
    (
        ".*",
        prop::collection::vec(("[a-z_]{1,6}", args()), 0..4),
        proptest::option::of(args()),
        proptest::option::of((".{1,8}", ".*")),
        proptest::option::of((".*", ".*")),
        proptest::option::of((any::<u64>(), any::<u64>())),
        proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        prop::collection::vec(".*", 0..3),
        proptest::option::of((".*", ".*")),
    )
        .prop_map(
            |(name, inputs, output, attribute, model, tokens, cost, chunks, error)| Recorded {
                name,
                inputs,
                output,
                attribute,
                model,
                tokens,
                cost,
                chunks,
                error,
            },
        )
}

fn record(rt: &Runtime, r: &Recorded) {
    let run = rt.run("prop").start();
    let mut b = run.step(StepType::Llm, &r.name);
    for (k, v) in &r.inputs {
        b = b.input(k, v);
    }
    let mut s = b.start();
    if let Some(o) = &r.output {
        s.set_output(o);
    }
    if let Some((k, v)) = &r.attribute {
        s.set_attribute(k, v);
    }
    if let Some((m, p)) = &r.model {
        s.set_model(m, p);
    }
    if let Some((i, o)) = r.tokens {
        s.set_tokens(i, o);
    }
    if let Some(c) = r.cost {
        s.set_cost_usd(c);
    }
    for c in &r.chunks {
        s.push_chunk(c);
    }
    if let Some((m, t)) = &r.error {
        s.fail_with(m, t);
    }
}

mod common;

fn runtime(background: bool) -> (Runtime, MemoryExporter) {
    common::memory_runtime({
        let mut o = RuntimeOptions::default();
        o.background_processing = background;
        o
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn recorded_fields_come_out_as_serialized(r in recorded(), background in any::<bool>()) {
        let (rt, sink) = runtime(background);
        record(&rt, &r);
        rt.shutdown(Duration::from_secs(5));
        let runs = sink.runs();
        prop_assert_eq!(runs.len(), 1);
        let step = &runs[0].steps[0];
        prop_assert_eq!(&step.name, &r.name);
        let mut expected = serde_json::Map::new();
        for (k, v) in &r.inputs {
            expected.insert(k.clone(), serde_json::to_value(v).unwrap());
        }
        prop_assert_eq!(&step.inputs, &expected);
        match &r.output {
            Some(o) => prop_assert_eq!(&step.outputs["result"], &serde_json::to_value(o).unwrap()),
            None => prop_assert!(step.outputs.is_empty()),
        }
        if let Some((k, v)) = &r.attribute {
            prop_assert_eq!(&step.attributes[k], &Value::String(v.clone()));
        }
        prop_assert_eq!(step.model_name.clone(), r.model.as_ref().map(|m| m.0.clone()));
        prop_assert_eq!(step.model_provider.clone(), r.model.as_ref().map(|m| m.1.clone()));
        prop_assert_eq!(step.input_tokens, r.tokens.map(|t| t.0));
        prop_assert_eq!(step.output_tokens, r.tokens.map(|t| t.1));
        prop_assert_eq!(step.cost_usd, r.cost);
        prop_assert_eq!(&step.streaming_chunks, &r.chunks);
        prop_assert_eq!(step.is_streaming, !r.chunks.is_empty());
        prop_assert_eq!(step.error.clone(), r.error.as_ref().map(|e| e.0.clone()));
        prop_assert_eq!(step.error_type.clone(), r.error.as_ref().map(|e| e.1.clone()));
    }
}
