//! The stored run body: the whole [`AgentRun`], in one column of `traces`.
//!
//! - Schema v2 writes a BLOB: one format byte ([`MSGPACK_V1`]) and the run as MessagePack
//!   (`rmp-serde`, structs as arrays in the model's field order, UUIDs as 16 bytes, times as
//!   the wire-format strings). About 35% smaller than the JSON and cheaper to decode.
//! - Schema v1 wrote the run's JSON as TEXT. Those rows are read as JSON, as before, until the
//!   run is saved again (a merge rewrites the row in the current format).
//!
//! SQLite's storage class tells the two apart. A change to the fields of `AgentRun` or `Step`
//! (their order or number) changes the MessagePack arrays: it needs a new format byte and a
//! decoder for the old one, like a schema migration (and a change to [`fast`], which reads
//! the arrays field by field).
//!
//! Bodies are read by [`fast`], a decoder written for exactly the form `rmp-serde` writes;
//! a body it does not accept (corrupt, or in a form `rmp-serde` reads but never writes for
//! the model) is decoded again by `rmp-serde`, whose result (run or error) is returned, as
//! before.

mod fast;

use rusqlite::types::ValueRef;
use tracecraft_core::AgentRun;

/// Format byte: MessagePack of `AgentRun` as `rmp-serde` 1.x writes it by default.
pub(crate) const MSGPACK_V1: u8 = 1;

/// Appends the body of `run` to `out` (cleared first).
pub(crate) fn encode(run: &AgentRun, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.push(MSGPACK_V1);
    rmp_serde::encode::write(out, run)
        .map_err(|e| tracecraft_core::json::elide_quoted(&e.to_string()))
}

/// Decodes a body read from the `run` column: MessagePack (v2) or JSON text (v1).
///
/// The error message never contains payload text.
pub(crate) fn decode(value: ValueRef<'_>) -> Result<AgentRun, String> {
    match value {
        ValueRef::Blob([MSGPACK_V1, rest @ ..]) => match fast::decode_run(rest) {
            Ok(run) => Ok(run),
            Err(fast::Unsupported) => rmp_serde::from_slice(rest).map_err(|e| {
                format!(
                    "bad MessagePack body: {}",
                    tracecraft_core::json::elide_quoted(&e.to_string())
                )
            }),
        },
        ValueRef::Blob([tag, ..]) => Err(format!(
            "unknown body format {tag} (written by a newer version?)"
        )),
        ValueRef::Text(json) => {
            tracecraft_core::json::parse_run_slice(json).map_err(|e| e.to_string())
        }
        _ => Err("run body is neither MessagePack nor JSON".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tracecraft_core::{JsonMap, Step, StepType, Uuid, Value, contract, json};

    #[test]
    fn round_trips_and_reads_v1_json() {
        let mut buf = Vec::new();
        for run in contract::sample_runs()
            .into_iter()
            .chain(contract::fixture_runs(30))
        {
            encode(&run, &mut buf).unwrap();
            assert_eq!(buf[0], MSGPACK_V1);
            let back = decode(ValueRef::Blob(&buf)).unwrap();
            assert_eq!(back, run);
            // Byte-identical JSON after the round trip (exact floats, key order).
            assert_eq!(
                tracecraft_core::to_json(&back),
                tracecraft_core::to_json(&run)
            );
            let json = tracecraft_core::to_json(&run);
            assert_eq!(decode(ValueRef::Text(json.as_bytes())).unwrap(), run);
        }
    }

    /// Fixture runs (the shared samples, the contract fixtures) and the odd values a run
    /// may hold, in the places they can be.
    fn fixtures() -> Vec<AgentRun> {
        let mut runs: Vec<AgentRun> = contract::sample_runs()
            .into_iter()
            .chain(contract::fixture_runs(30))
            .collect();
        let mut odd = AgentRun::builder("odd ünïcödé 名前 🚀")
            .description("")
            .input(json!({
                "big": u64::MAX, "min": i64::MIN, "neg": -1, "zero": 0,
                "f": 1.5e308, "tiny": 5e-324, "negzero": -0.0, "third": 1.0 / 3.0,
                "null": null, "t": true, "empty": {}, "list": [], "s": "",
                "deep": [[[[[[[[[[{"a": [{"b": [1, "x", null]}]}]]]]]]]]]],
                "unicode \u{0} \u{7f} \u{80} \u{10ffff}": "é\u{0}\n\"\\",
            }))
            .output(json!([u64::MAX, i64::MIN, 0.1, "🚀", null, {"k": {"k": {"k": {}}}}]))
            .attribute("dup", 1)
            .build();
        odd.total_cost_usd = f64::MAX;
        odd.total_tokens = u64::MAX;
        odd.error_count = u64::MAX;
        odd.error = Some(String::new());
        odd.should_export = false;
        odd.sample_reason = Some("r".repeat(70_000));
        let mut step = Step::builder(odd.id, StepType::Tool, "t").build();
        step.duration_ms = Some(-0.0);
        step.input_tokens = Some(u64::MAX);
        step.output_tokens = Some(0);
        step.cost_usd = Some(f64::MIN_POSITIVE);
        step.is_streaming = true;
        step.streaming_chunks = vec![String::new(), "ü".into(), "x".repeat(300)];
        step.inputs
            .insert("n".repeat(40), json!("v".repeat(40_000)));
        // A step tree 60 levels deep.
        let mut chain = step.clone();
        for depth in 0..60 {
            let mut parent =
                Step::builder(odd.id, StepType::ALL[depth % 9], format!("{depth}")).build();
            parent.push_child(chain);
            chain = parent;
        }
        odd.push_step(step);
        odd.push_step(chain);
        runs.push(odd);
        runs
    }

    fn rmp_reference(body: &[u8]) -> Result<AgentRun, String> {
        rmp_serde::from_slice(body).map_err(|e| e.to_string())
    }

    #[test]
    fn fast_decoder_reads_every_fixture_like_rmp_serde() {
        let mut buf = Vec::new();
        for run in fixtures() {
            encode(&run, &mut buf).unwrap();
            let fast = fast::decode_run(&buf[1..]).expect("fast decoder accepts the body");
            assert_eq!(Ok(&fast), rmp_reference(&buf[1..]).as_ref());
            assert_eq!(fast, run);
            assert_eq!(
                tracecraft_core::to_json(&fast),
                tracecraft_core::to_json(&run)
            );
        }
    }

    #[test]
    fn fast_decoder_leaves_what_it_does_not_read_to_rmp_serde() {
        let run = contract::fixture_runs(1).remove(0);
        // Trailing bytes (rmp-serde ignores them), a struct written as a map (rmp-serde
        // reads it): the fast decoder declines, `decode` still returns the run.
        let mut body = vec![MSGPACK_V1];
        rmp_serde::encode::write(&mut body, &run).unwrap();
        body.push(0xc0);
        assert_eq!(fast::decode_run(&body[1..]), Err(fast::Unsupported));
        assert_eq!(decode(ValueRef::Blob(&body)).unwrap(), run);
        let mut body = vec![MSGPACK_V1];
        rmp_serde::encode::write_named(&mut body, &run).unwrap();
        assert_eq!(fast::decode_run(&body[1..]), Err(fast::Unsupported));
        assert_eq!(decode(ValueRef::Blob(&body)).unwrap(), run);
        // Nested deeper than the fast decoder goes: rmp-serde decodes it (on a thread with
        // room for its recursion in a debug build).
        let mut deep = json!(1);
        for _ in 0..fast::MAX_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        let mut run = run;
        run.input = deep;
        let mut body = vec![MSGPACK_V1];
        rmp_serde::encode::write(&mut body, &run).unwrap();
        assert_eq!(fast::decode_run(&body[1..]), Err(fast::Unsupported));
        let back = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || decode(ValueRef::Blob(&body)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(back.unwrap(), run);
    }

    #[test]
    fn truncated_and_damaged_bodies_never_panic_and_agree_with_rmp_serde() {
        let mut buf = Vec::new();
        for run in fixtures().into_iter().step_by(3) {
            encode(&run, &mut buf).unwrap();
            let body = &buf[1..];
            for cut in (0..body.len()).step_by(7) {
                assert_eq!(fast::decode_run(&body[..cut]), Err(fast::Unsupported));
                assert!(decode(ValueRef::Blob(&buf[..=cut])).is_err());
            }
            // Every single-byte change the fast decoder accepts, rmp-serde reads alike.
            let mut damaged = body.to_vec();
            for at in (0..body.len()).step_by(11) {
                for x in [0x01, 0x80, 0xff] {
                    damaged[at] ^= x;
                    if let Ok(fast) = fast::decode_run(&damaged) {
                        assert_eq!(Ok(fast), rmp_reference(&damaged), "byte {at} ^ {x:#x}");
                    }
                    damaged[at] ^= x;
                }
            }
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<f32>().prop_map(|f| Value::from(f64::from(f))),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(8, 96, 10, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..10).prop_map(Value::from),
                prop::collection::vec((".{0,8}", inner), 0..10)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn json_map() -> impl Strategy<Value = JsonMap> {
        prop::collection::vec((".{0,12}", json_value()), 0..6)
            .prop_map(|kv| kv.into_iter().collect())
    }

    /// A finite float (an `f64` field holding NaN would not equal itself).
    fn float() -> impl Strategy<Value = f64> {
        any::<f64>().prop_map(|f| if f.is_finite() { f } else { 0.5 })
    }

    fn arb_step(trace_id: Uuid) -> impl Strategy<Value = Step> {
        (
            (json_map(), json_map(), json_map(), ".*", any::<u128>()),
            (
                proptest::option::of(float()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(".*"),
                prop::collection::vec(".*", 0..3),
                proptest::option::of(".{0,20}"),
                any::<i64>(),
            ),
        )
            .prop_map(
                move |((inputs, outputs, attributes, name, id), (d, t, model, chunks, err, at))| {
                    let mut s = Step::builder(trace_id, StepType::ALL[(id % 9) as usize], name)
                        .id(Uuid::from_u128(id))
                        .start_time(
                            chrono::DateTime::from_timestamp_nanos(at / 4)
                                .with_timezone(&chrono::Utc),
                        )
                        .build();
                    s.inputs = inputs;
                    s.outputs = outputs;
                    s.attributes = attributes;
                    s.duration_ms = d;
                    s.input_tokens = t;
                    s.output_tokens = t.map(|t| t / 3);
                    s.cost_usd = d.map(|d| d / 7.0);
                    s.model_provider = model.clone();
                    s.model_name = model;
                    s.is_streaming = !chunks.is_empty();
                    s.streaming_chunks = chunks;
                    s.error_type = err.clone();
                    s.error = err;
                    s
                },
            )
    }

    fn arb_run() -> impl Strategy<Value = AgentRun> {
        (
            (0..40usize, json_value(), json_value(), json_map()),
            (
                ".*",
                proptest::option::of(".*"),
                prop::collection::vec(".*", 0..4),
            ),
            (
                any::<u64>(),
                float(),
                any::<bool>(),
                proptest::option::of(float()),
            ),
            prop::collection::vec(
                (
                    arb_step(Uuid::nil()),
                    prop::collection::vec(arb_step(Uuid::nil()), 0..3),
                ),
                0..4,
            ),
        )
            .prop_map(
                |((i, input, output, attributes), (name, session, tags), (n, f, b, d), steps)| {
                    let mut run = fixtures().swap_remove(i);
                    run.name = name;
                    run.session_id = session;
                    run.tags = tags;
                    run.input = input;
                    run.output = output;
                    run.attributes = attributes;
                    run.total_tokens = n;
                    run.total_cost_usd = f;
                    run.should_export = b;
                    run.duration_ms = d;
                    for (mut step, children) in steps {
                        for child in children {
                            step.push_child(child);
                        }
                        run.push_step(step);
                    }
                    run
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn fast_decoder_round_trips_random_runs_like_rmp_serde(run in arb_run()) {
            let mut buf = Vec::new();
            encode(&run, &mut buf).unwrap();
            let fast = fast::decode_run(&buf[1..]);
            prop_assert!(fast.is_ok());
            let fast = fast.unwrap();
            let reference = rmp_reference(&buf[1..]);
            prop_assert_eq!(Ok(&fast), reference.as_ref());
            // The run itself, up to serde_json's float -> Value conversion (NaN -> null),
            // which the JSON shows the same way.
            prop_assert_eq!(tracecraft_core::to_json(&fast), tracecraft_core::to_json(&run));
        }
    }

    #[test]
    fn bad_bodies_are_errors_without_payload() {
        let run = AgentRun::builder("secret-name")
            .input("sk-secret-value")
            .build();
        let mut buf = Vec::new();
        encode(&run, &mut buf).unwrap();
        for bad in [&buf[..buf.len() / 2], &[MSGPACK_V1][..], &[]] {
            let e = decode(ValueRef::Blob(bad)).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
        let mut newer = buf.clone();
        newer[0] = 9;
        assert!(
            decode(ValueRef::Blob(&newer))
                .unwrap_err()
                .contains("newer")
        );
        let e = decode(ValueRef::Text(b"{\"id\": \"secret-value")).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(decode(ValueRef::Integer(1)).is_err());
    }
}
