//! The direct encoder (`mapping::encode_request(s)`) against the message-tree path
//! (`mapping::to_request(s)`): its bytes decode to exactly the request the tree path builds,
//! for any run, any dialects and content setting, and free-form attributes that collide with
//! derived or owned keys.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use prost::Message;
use serde_json::{Value, json};
use tracecraft_core::{AgentRun, ProcessedRun, Step, StepType};
use tracecraft_otlp::mapping::{self, Content, Dialect, Dialects, MappingOptions};
use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecraft_otlp::proto::trace::v1::Span;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        // Long enough to need multi-byte lengths at every level.
        "[a-z]{150,300}".prop_map(Value::from),
    ];
    leaf.prop_recursive(36, 128, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Attribute keys: free-form ones, and keys the mapping derives or owns.
fn attribute_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        prop::sample::select(vec![
            "gen_ai.operation.name",
            "gen_ai.request.model",
            "input.value",
            "output.mime_type",
            "openinference.span.kind",
            "llm.input_messages.0.message.role",
            "llm.output_messages.0.message.content",
            "retrieval.documents.1.document.score",
            "gen_ai.request.temperature",
            "temperature",
            "max_tokens",
            "mlflow.spanType",
            "session.id",
            "tracecraft.step.type",
            "tracecraft.run.id",
            "tracecraft.attribute_keys",
            "tracecraft.links",
            "tracecraft.resource",
            "service.name",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A `tracecraft.links` value as the reverse mapping writes it (any id length, optional
/// trace state and attributes).
fn links() -> impl Strategy<Value = Value> {
    let link = (
        "([0-9a-f]{2}){0,16}",
        "([0-9a-f]{2}){0,8}",
        "[a-z=,]{0,8}",
        prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..3),
    )
        .prop_map(|(t, s, state, attrs)| {
            let mut m = serde_json::Map::new();
            m.insert("trace_id".into(), json!(t));
            m.insert("span_id".into(), json!(s));
            if !state.is_empty() {
                m.insert("trace_state".into(), json!(state));
            }
            if !attrs.is_empty() {
                m.insert(
                    "attributes".into(),
                    Value::Object(attrs.into_iter().collect()),
                );
            }
            Value::Object(m)
        });
    prop::collection::vec(link, 1..3).prop_map(Value::Array)
}

fn attributes() -> impl Strategy<Value = Vec<(String, Value)>> {
    (
        prop::collection::vec((attribute_key(), json_value()), 0..4),
        prop::option::of(links()),
        prop::option::of(prop::collection::btree_map(
            "[a-z.]{1,6}",
            json_value(),
            0..3,
        )),
    )
        .prop_map(|(mut attrs, links, resource)| {
            if let Some(l) = links {
                attrs.push(("tracecraft.links".into(), l));
            }
            if let Some(r) = resource {
                attrs.push((
                    "tracecraft.resource".into(),
                    Value::Object(r.into_iter().collect()),
                ));
            }
            attrs
        })
}

type Fields = Vec<(String, Value)>;

/// Step content (inputs, outputs) in the shapes instrumentation records.
fn content() -> impl Strategy<Value = (Fields, Fields)> {
    let inputs = prop_oneof![
        Just(vec![]),
        ".{0,40}".prop_map(|p| vec![("prompt".to_owned(), json!(p))]),
        (".{0,20}", ".{0,20}").prop_map(|(s, u)| vec![
            ("system".to_owned(), json!(s)),
            (
                "messages".to_owned(),
                json!([{"role": "user", "content": u}, {"role": "assistant", "content": {"x": 1}}])
            ),
        ]),
        json_value().prop_map(|v| vec![("query".to_owned(), v)]),
    ];
    let outputs = prop_oneof![
        Just(vec![]),
        ".{0,40}".prop_map(|t| vec![("text".to_owned(), json!(t))]),
        ".{0,20}".prop_map(|t| vec![(
            "choices".to_owned(),
            json!([{"message": {"role": "assistant", "content": t}, "finish_reason": "stop"}])
        )]),
        (
            ".{0,20}",
            any::<f64>().prop_filter("finite", |f| f.is_finite())
        )
            .prop_map(|(d, s)| vec![(
                "documents".to_owned(),
                json!([{"content": d, "id": 7, "score": s}, "plain", {"page_content": [1, 2]}])
            )]),
        json_value().prop_map(|v| vec![("result".to_owned(), v)]),
    ];
    (inputs, outputs)
}

#[derive(Debug, Clone)]
struct StepShape {
    ty: StepType,
    name: String,
    depth: usize,
    error: Option<(String, String)>,
    tokens: Option<(u64, u64)>,
    model: Option<(String, String)>,
    cost: Option<f64>,
    chunks: Option<Vec<String>>,
    attributes: Vec<(String, Value)>,
    inputs: Vec<(String, Value)>,
    outputs: Vec<(String, Value)>,
}

fn step_shape() -> impl Strategy<Value = StepShape> {
    (
        (
            prop::sample::select(StepType::ALL.to_vec()),
            ".{0,10}",
            0usize..3,
            prop::option::of((".{0,12}", "[A-Za-z]{0,6}")),
            prop::option::of((0u64..u64::MAX, 0u64..100_000)),
            prop::option::of(("[a-z0-9-]{0,8}", "[a-z]{0,6}")),
        ),
        (
            prop::option::of(0.0f64..10.0),
            prop::option::of(prop::collection::vec(".{0,6}", 0..3)),
            attributes(),
            content(),
        ),
    )
        .prop_map(
            |(
                (ty, name, depth, error, tokens, model),
                (cost, chunks, attributes, (inputs, outputs)),
            )| StepShape {
                ty,
                name,
                depth,
                error,
                tokens,
                model,
                cost,
                chunks,
                attributes,
                inputs,
                outputs,
            },
        )
}

fn build_step(run: &AgentRun, i: usize, s: &StepShape) -> Step {
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut b = Step::builder(run.id, s.ty, s.name.clone())
        .start_time(t0 + chrono::Duration::microseconds(i as i64));
    for (k, v) in &s.inputs {
        b = b.input(k.clone(), v.clone());
    }
    for (k, v) in &s.outputs {
        b = b.output(k.clone(), v.clone());
    }
    for (k, v) in &s.attributes {
        b = b.attribute(k.clone(), v.clone());
    }
    if let Some((m, p)) = &s.model {
        b = b.model(m.clone(), p.clone());
    }
    if let Some((i, o)) = s.tokens {
        b = b.tokens(i, o);
    }
    if let Some(c) = s.cost {
        b = b.cost_usd(c);
    }
    if let Some((m, t)) = &s.error {
        b = b.error(m.clone(), t.clone());
    }
    if let Some(chunks) = &s.chunks {
        for c in chunks {
            b = b.chunk(c.clone());
        }
    }
    let mut step = b.build();
    if i.is_multiple_of(3) {
        step.finish_at(t0 + chrono::Duration::milliseconds(i as i64 + 5));
    }
    step
}

#[derive(Debug, Clone)]
struct RunShape {
    name: String,
    env: usize,
    service: Option<String>,
    session: Option<String>,
    tags: Vec<String>,
    error: Option<(String, String)>,
    input: Value,
    attributes: Vec<(String, Value)>,
    steps: Vec<StepShape>,
}

fn run_shape() -> impl Strategy<Value = RunShape> {
    (
        ".{0,10}",
        0usize..3,
        prop::option::of("[a-z]{1,5}"),
        prop::option::of(".{0,8}"),
        prop::collection::vec(".{0,5}", 0..3),
        prop::option::of((".{0,12}", "[A-Za-z]{0,6}")),
        json_value(),
        attributes(),
        prop::collection::vec(step_shape(), 0..6),
    )
        .prop_map(
            |(name, env, service, session, tags, error, input, attributes, steps)| RunShape {
                name,
                env,
                service,
                session,
                tags,
                error,
                input,
                attributes,
                steps,
            },
        )
}

fn build_run(shape: &RunShape) -> ProcessedRun {
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut b = AgentRun::builder(shape.name.clone())
        .start_time(t0)
        .environment(["prod", "dev", ""][shape.env])
        .input(shape.input.clone());
    if let Some(s) = &shape.session {
        b = b.session_id(s.clone());
    }
    for t in &shape.tags {
        b = b.tag(t.clone());
    }
    if let Some((m, t)) = &shape.error {
        b = b.error(m.clone(), t.clone());
    }
    for (k, v) in &shape.attributes {
        b = b.attribute(k.clone(), v.clone());
    }
    if let Some(s) = &shape.service {
        b = b.attribute("service.name", s.clone());
    }
    let mut run = b.build();
    let mut stack: Vec<Step> = Vec::new();
    for (i, s) in shape.steps.iter().enumerate() {
        let step = build_step(&run, i, s);
        while stack.len() > s.depth {
            let child = stack.pop().unwrap();
            match stack.last_mut() {
                Some(parent) => parent.push_child(child),
                None => run.push_step(child),
            }
        }
        stack.push(step);
    }
    while let Some(child) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.push_child(child),
            None => run.push_step(child),
        }
    }
    run.finish_at(t0 + chrono::Duration::seconds(1));
    run.aggregate();
    ProcessedRun::assume_processed(run)
}

fn options() -> impl Strategy<Value = MappingOptions> {
    (
        prop::collection::vec(prop::sample::select(Dialect::ALL.to_vec()), 0..3),
        any::<bool>(),
        prop::option::of("[a-z]{1,5}"),
        prop::collection::btree_map("[a-z.]{1,6}", ".{0,6}", 0..3),
    )
        .prop_map(|(dialects, full, service, resource)| {
            let mut b = MappingOptions::builder()
                .dialects(Dialects::from_iter(dialects))
                .content(if full { Content::Full } else { Content::None });
            if let Some(s) = service {
                b = b.service_name(s);
            }
            for (k, v) in resource {
                b = b.resource_attribute(k, v);
            }
            b.build()
        })
}

fn spans(r: &ExportTraceServiceRequest) -> Vec<Span> {
    r.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.iter().cloned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The direct encoder's bytes decode to exactly the tree path's request.
    #[test]
    fn direct_encoding_decodes_to_the_tree(
        runs in prop::collection::vec(run_shape(), 0..4),
        options in options(),
    ) {
        let batch: Vec<ProcessedRun> = runs.iter().map(build_run).collect();
        let tree = mapping::to_request(&batch, &options);
        let wire = mapping::encode_request(&batch, &options);
        let decoded = ExportTraceServiceRequest::decode(wire.body().clone()).expect("decodes");
        prop_assert_eq!(wire.spans() as usize, spans(&tree).len());
        prop_assert_eq!(&decoded, &tree);
        prop_assert_eq!(wire.body().len(), tree.encoded_len());
    }

    /// The direct encoder writes the very bytes prost writes for the tree path's request,
    /// and the request encoder (one request when nothing needs splitting, as the exporter
    /// runs it) the same bytes as `encode_request`: an optimisation of the encoder cannot
    /// change what collectors receive.
    #[test]
    fn direct_encoding_is_byte_identical_to_prost(
        runs in prop::collection::vec(run_shape(), 0..4),
        options in options(),
    ) {
        let batch: Vec<ProcessedRun> = runs.iter().map(build_run).collect();
        let tree = mapping::to_request(&batch, &options);
        let wire = mapping::encode_request(&batch, &options);
        prop_assert_eq!(&wire.body()[..], &tree.encode_to_vec()[..]);
        let requests = mapping::encode_requests(&batch, &options, usize::MAX);
        prop_assert!(requests.len() <= 1);
        let joined: Vec<u8> = requests.iter().flat_map(|r| r.body().to_vec()).collect();
        prop_assert_eq!(&joined[..], &wire.body()[..]);
    }

    /// Split requests hold every span once, in order, under the limit unless alone.
    #[test]
    fn direct_splitting_keeps_every_span(
        runs in prop::collection::vec(run_shape(), 1..5),
        limit in 100usize..6_000,
    ) {
        let batch: Vec<ProcessedRun> = runs.iter().map(build_run).collect();
        let options = MappingOptions::default();
        let tree = spans(&mapping::to_request(&batch, &options));
        let parts = mapping::encode_requests(&batch, &options, limit);
        let mut all = Vec::new();
        for p in &parts {
            let decoded = ExportTraceServiceRequest::decode(p.body().clone()).expect("decodes");
            let s = spans(&decoded);
            prop_assert_eq!(s.len() as u64, p.spans());
            prop_assert!(p.body().len() <= limit || s.len() == 1, "{} > {}", p.body().len(), limit);
            prop_assert_eq!(p.body().len(), decoded.encoded_len());
            all.extend(s);
        }
        let key = |s: &Span| (s.trace_id.clone(), s.span_id.clone());
        let mut a: Vec<_> = all.iter().map(key).collect();
        let mut b: Vec<_> = tree.iter().map(key).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
}

/// A span past 16 KiB (its length needs three bytes) and one under 128 B (one byte).
#[test]
fn spans_of_any_size_decode() {
    for size in [0usize, 10, 20_000, 3_000_000] {
        let run = AgentRun::builder("r").input("y".repeat(size)).build();
        let batch = [ProcessedRun::assume_processed(run)];
        for options in [
            MappingOptions::default(),
            MappingOptions::builder().content(Content::None).build(),
        ] {
            let wire = mapping::encode_request(&batch, &options);
            let decoded = ExportTraceServiceRequest::decode(wire.body().clone()).unwrap();
            assert_eq!(decoded, mapping::to_request(&batch, &options));
        }
    }
}

/// Keys and values around the lengths where a key-value's header needs another byte (one
/// byte up to 127, the key-value's own length up to 255 with a key and value under 128).
#[test]
fn attributes_of_every_length_around_the_header_sizes_decode() {
    let batch: Vec<ProcessedRun> = [1usize, 63, 100, 126, 127, 128, 130]
        .into_iter()
        .flat_map(|klen| (0..=260).map(move |vlen| (klen, vlen)))
        .map(|(klen, vlen)| {
            let run = AgentRun::builder("r".repeat(vlen.max(1)))
                .input("i".repeat(vlen))
                .attribute("k".repeat(klen), "v".repeat(vlen))
                .attribute("n", json!(vlen))
                .build();
            ProcessedRun::assume_processed(run)
        })
        .collect();
    let options = MappingOptions::default();
    let wire = mapping::encode_request(&batch, &options);
    let decoded = ExportTraceServiceRequest::decode(wire.body().clone()).unwrap();
    assert_eq!(decoded, mapping::to_request(&batch, &options));
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

proptest! {
    /// The one-pass JSON writer writes what `serde_json` writes, and the truncation marker
    /// past the depth cap.
    #[test]
    fn json_text_is_serde_json_within_the_cap(v in json_value()) {
        let expected = if depth(&v) > mapping::MAX_VALUE_DEPTH {
            serde_json::to_string(tracecraft_core::value::TRUNCATED).unwrap()
        } else {
            v.to_string()
        };
        prop_assert_eq!(mapping::json_text(&v), expected);
    }

    /// Strings (and keys) of any characters are escaped as `serde_json` escapes them.
    #[test]
    fn json_strings_are_serde_json(
        s in any::<String>(),
        ascii in "[\u{0}-\u{7f}]{0,40}",
    ) {
        for s in [s, ascii] {
            let v = json!({ s.clone(): [s.clone()] });
            prop_assert_eq!(mapping::json_text(&v), v.to_string());
        }
    }
}

/// The string attribute `key` of `span`.
fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    use tracecraft_otlp::proto::common::v1::any_value::Value as V;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            V::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// What `serde_json` writes for `v`, or the truncation marker past the depth cap.
fn serde_text(v: &Value) -> String {
    if depth(v) > mapping::MAX_VALUE_DEPTH {
        serde_json::to_string(tracecraft_core::value::TRUNCATED).unwrap()
    } else {
        v.to_string()
    }
}

proptest! {
    /// The texts the direct encoder writes into the request (inputs and outputs as JSON,
    /// tool arguments, invocation parameters, GenAI messages and system instructions) are
    /// what `serde_json` writes for the same values, control characters and quotes included.
    #[test]
    fn written_texts_are_serde_json(
        inputs in prop::collection::btree_map("[a-z]{1,4}", json_value(), 1..4),
        outputs in prop::collection::btree_map("[a-z]{1,4}", json_value(), 1..4),
        text in "[\u{0}-\u{1f}\"\\\\a-zé✓]{0,40}",
        temperature in any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ) {
        let inputs: serde_json::Map<String, Value> = inputs.into_iter().collect();
        let outputs: serde_json::Map<String, Value> = outputs.into_iter().collect();
        let mut run = AgentRun::builder("r").build();
        let mut tool = Step::builder(run.id, StepType::Tool, "t");
        for (k, v) in &inputs {
            tool = tool.input(k.clone(), v.clone());
        }
        for (k, v) in &outputs {
            tool = tool.output(k.clone(), v.clone());
        }
        let tool = tool.build();
        let llm = Step::builder(run.id, StepType::Llm, "chat")
            .input("messages", json!([{"role": "user", "content": text}]))
            .input("system", json!(text))
            .output("content", json!(text))
            .attribute("temperature", json!(temperature))
            .attribute("seed", json!(7))
            .build();
        run.push_step(tool);
        run.push_step(llm);
        let batch = [ProcessedRun::assume_processed(run)];
        let wire = mapping::encode_request(&batch, &MappingOptions::default());
        let decoded = ExportTraceServiceRequest::decode(wire.body().clone()).unwrap();
        let spans = spans(&decoded);
        let (tool, llm) = (&spans[1], &spans[2]);
        let inputs_text = serde_text(&Value::Object(inputs));
        prop_assert_eq!(str_attr(tool, "input.value"), Some(inputs_text.as_str()));
        prop_assert_eq!(str_attr(tool, "tool.parameters"), Some(inputs_text.as_str()));
        prop_assert_eq!(str_attr(tool, "gen_ai.tool.call.arguments"), Some(inputs_text.as_str()));
        let outputs_text = serde_text(&Value::Object(outputs));
        prop_assert_eq!(str_attr(tool, "output.value"), Some(outputs_text.as_str()));
        let params = json!({"temperature": temperature, "seed": 7}).to_string();
        prop_assert_eq!(str_attr(llm, "llm.invocation_parameters"), Some(params.as_str()));
        let messages =
            json!([{"role": "user", "parts": [{"type": "text", "content": text}]}]).to_string();
        prop_assert_eq!(str_attr(llm, "gen_ai.input.messages"), Some(messages.as_str()));
        let system = json!([{"type": "text", "content": text}]).to_string();
        prop_assert_eq!(str_attr(llm, "gen_ai.system_instructions"), Some(system.as_str()));
        // The tree path writes the same texts.
        prop_assert_eq!(&decoded, &mapping::to_request(&batch, &MappingOptions::default()));
    }
}
