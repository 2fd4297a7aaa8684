//! The reverse mapping on untrusted input: fuzz crashes (`cargo xtask fuzz otlp_reverse`) are
//! replayed here, and random requests (valid protobuf, arbitrary ids, parents, kinds,
//! attributes) never panic it.

use std::path::Path;

use prost::Message;
use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecraft_otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value as V};
use tracecraft_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecraft_otlp::{mapping, reverse};

fn check(bytes: &[u8]) {
    if let Ok(request) = ExportTraceServiceRequest::decode(bytes) {
        for run in reverse::runs_from_request(&request) {
            let _ = mapping::run_spans(&run);
        }
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/otlp_reverse");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        check(&std::fs::read(e.path()).unwrap());
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &[&str] = &[
        "tracecraft.span.type",
        "tracecraft.step.type",
        "tracecraft.step.id",
        "tracecraft.run.id",
        "tracecraft.attribute_keys",
        "openinference.span.kind",
        "gen_ai.operation.name",
        "gen_ai.input.messages",
        "llm.input_messages.0.message.role",
        "llm.input_messages.99999999999.message.content",
        "retrieval.documents.3.document.score",
        "input.value",
        "input.mime_type",
        "gen_ai.usage.input_tokens",
        "x",
    ];

    fn value() -> impl Strategy<Value = AnyValue> {
        prop_oneof![
            ".{0,12}".prop_map(V::StringValue),
            prop::sample::select(vec![
                "run",
                "step",
                "llm",
                "LLM",
                "TOOL",
                "chat",
                "application/json",
                "[1",
                "{}",
                "[{\"role\":1,\"parts\":3}]",
            ])
            .prop_map(|s| V::StringValue(s.to_owned())),
            any::<i64>().prop_map(V::IntValue),
            any::<f64>().prop_map(V::DoubleValue),
            any::<bool>().prop_map(V::BoolValue),
        ]
        .prop_map(|v| AnyValue { value: Some(v) })
    }

    fn span() -> impl Strategy<Value = Span> {
        (
            0u8..3,
            0u8..6,
            prop::option::of(0u8..6),
            ".{0,6}",
            any::<u64>(),
            any::<u64>(),
            0i32..6,
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..6),
        )
            .prop_map(|(t, s, p, name, start, end, kind, attrs)| Span {
                trace_id: vec![t; usize::from(t) * 8],
                span_id: vec![s; 8],
                parent_span_id: p.map(|p| vec![p; 8]).unwrap_or_default(),
                name,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                kind,
                attributes: attrs
                    .into_iter()
                    .map(|(k, v)| KeyValue {
                        key: k.to_owned(),
                        value: Some(v),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_requests_never_panic(spans in prop::collection::vec(span(), 0..12)) {
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                    ..Default::default()
                }],
            };
            check(&request.encode_to_vec());
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }
    }
}
