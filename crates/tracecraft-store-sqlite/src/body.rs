//! The stored run body: the whole [`AgentRun`], in one column of `traces`.
//!
//! - Schema v4 writes a BLOB: format byte [`MSGPACK_SPLIT_V2`], the length of the structure
//!   section (4 bytes, little-endian), the structure, and the text section. The structure is
//!   the run's MessagePack as `rmp-serde` writes it (structs as arrays in the model's field
//!   order, UUIDs as 16 bytes, times as the wire-format strings), except that each string is
//!   only its marker and length: the strings' bytes are in the text section, one after the
//!   other, in the order the structure lists them. The text section is checked as UTF-8 once
//!   per body instead of once per string (a corpus run has ~300), and the body is 4 bytes
//!   longer. A run nested deeper than [`read::MAX_DEPTH`] levels is written in format 1.
//! - Schemas v2 and v3 wrote format byte [`MSGPACK_V1`] and the run as MessagePack (`rmp-serde`:
//!   each string's bytes after its marker). Those rows are read as before (by [`read`], with
//!   `rmp-serde` deciding whatever it declines) until the run is saved again (a merge
//!   rewrites the row in the current format).
//! - Schema v1 wrote the run's JSON as TEXT. Those rows are read as JSON, as before.
//!
//! SQLite's storage class tells JSON from the others, the format byte the rest. A change to
//! the fields of `AgentRun` or `Step` (their order or number) changes the MessagePack arrays:
//! it needs a new format byte and a decoder for the old one, like a schema migration (and
//! changes to [`read`] and [`write`], which read and write the arrays field by field).

mod read;
mod write;

use rusqlite::types::ValueRef;
use tracecraft_core::AgentRun;

/// Format byte: MessagePack of `AgentRun` as `rmp-serde` 1.x writes it by default (schemas
/// v2 and v3; runs nested too deep for format 2).
pub(crate) const MSGPACK_V1: u8 = 1;

/// Format byte: the run's MessagePack with the strings' bytes in a text section (schema v4).
pub(crate) const MSGPACK_SPLIT_V2: u8 = 2;

/// Appends the format 1 body of `run` to `out` (cleared first): what schemas v2 and v3
/// wrote, and what the store writes for runs nested too deep for format 2.
pub(crate) fn encode(run: &AgentRun, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.push(MSGPACK_V1);
    rmp_serde::encode::write(out, run)
        .map_err(|e| tracecraft_core::json::elide_values(&e.to_string()))
}

/// Appends the body the store writes for `run` to `out` (cleared first): format 2, or
/// format 1 for a run nested deeper than format 2 is read.
pub(crate) fn encode_current(run: &AgentRun, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.push(MSGPACK_SPLIT_V2);
    match write::write_v2(run, out) {
        Ok(()) => Ok(()),
        Err(write::NotV2) => encode(run, out),
    }
}

/// Decodes a body read from the `run` column: format 2, format 1 (MessagePack) or JSON text.
///
/// The error message never contains payload text.
pub(crate) fn decode(value: ValueRef<'_>) -> Result<AgentRun, String> {
    match value {
        ValueRef::Blob([MSGPACK_SPLIT_V2, rest @ ..]) => {
            read::decode_v2(rest).map_err(|read::Malformed(e)| format!("bad body (format 2): {e}"))
        }
        ValueRef::Blob([MSGPACK_V1, rest @ ..]) => match read::decode_v1(rest) {
            Ok(run) => Ok(run),
            Err(read::Unsupported) => rmp_serde::from_slice(rest).map_err(|e| {
                format!(
                    "bad MessagePack body: {}",
                    tracecraft_core::json::elide_values(&e.to_string())
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

    /// A run saved from a thread-local's destructor at thread exit, after the encoder's
    /// per-thread buffer is gone, is still written in format 2, not a panic (an abort there).
    #[test]
    fn encodes_after_the_thread_buffer_is_destroyed() {
        use std::cell::RefCell;
        use std::sync::mpsc;
        struct AtExit(AgentRun, mpsc::Sender<Vec<u8>>);
        impl Drop for AtExit {
            fn drop(&mut self) {
                let mut out = Vec::new();
                encode_current(&self.0, &mut out).unwrap();
                let _ = self.1.send(out);
            }
        }
        thread_local! {
            static GUARD: RefCell<Option<AtExit>> = const { RefCell::new(None) };
        }
        let run = contract::sample_runs().remove(0);
        let (tx, rx) = mpsc::channel();
        let r = run.clone();
        std::thread::spawn(move || {
            // The guard's slot is set up before the buffer, so it is destroyed after it.
            let mut out = Vec::new();
            GUARD.with(|g| *g.borrow_mut() = Some(AtExit(r.clone(), tx)));
            encode_current(&r, &mut out).unwrap();
        })
        .join()
        .unwrap();
        let body = rx.recv().unwrap();
        assert_eq!(body[0], MSGPACK_SPLIT_V2);
        assert_eq!(decode(ValueRef::Blob(&body)).unwrap(), run);
    }

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
            let fast = read::decode_v1(&buf[1..]).expect("fast decoder accepts the body");
            assert_eq!(Ok(&fast), rmp_reference(&buf[1..]).as_ref());
            assert_eq!(fast, run);
            assert_eq!(
                tracecraft_core::to_json(&fast),
                tracecraft_core::to_json(&run)
            );
            // Format 2: the same run back.
            encode_current(&run, &mut buf).unwrap();
            assert_eq!(buf[0], MSGPACK_SPLIT_V2);
            let v2 = decode(ValueRef::Blob(&buf)).unwrap();
            assert_eq!(v2, run);
            assert_eq!(
                tracecraft_core::to_json(&v2),
                tracecraft_core::to_json(&run)
            );
        }
    }

    #[test]
    fn format_2_is_format_1_with_the_strings_moved_to_the_text_section() {
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        for run in fixtures() {
            encode(&run, &mut v1).unwrap();
            encode_current(&run, &mut v2).unwrap();
            let len = u32::from_le_bytes(v2[1..5].try_into().unwrap()) as usize;
            let (structure, text) = v2[5..].split_at(len);
            // Rebuild format 1 from the structure, putting each string's bytes back after
            // its marker: rmp-serde's own bytes, so the two formats encode the same values.
            let mut rebuilt = vec![MSGPACK_V1];
            let mut text = text;
            let mut at = 0;
            while at < structure.len() {
                let (m, head, n) = marker(structure, at);
                rebuilt.extend_from_slice(&structure[at..at + head]);
                at += head;
                if let Some(n) = n {
                    rebuilt.extend_from_slice(&text[..n]);
                    text = &text[n..];
                }
                let _ = m;
            }
            assert!(text.is_empty());
            assert_eq!(rebuilt, v1);
        }
    }

    /// The MessagePack item header at `structure[at]`: its marker, the length of its header
    /// and fixed-size payload, and for a string its byte count (in the text section).
    fn marker(structure: &[u8], at: usize) -> (u8, usize, Option<usize>) {
        let m = structure[at];
        let be = |n: usize| {
            structure[at + 1..at + 1 + n]
                .iter()
                .fold(0usize, |v, &b| v << 8 | usize::from(b))
        };
        match m {
            0xa0..=0xbf => (m, 1, Some(usize::from(m & 0x1f))),
            0xd9 => (m, 2, Some(be(1))),
            0xda => (m, 3, Some(be(2))),
            0xdb => (m, 5, Some(be(4))),
            0xc4 => (m, 2 + be(1), None),
            0xcc | 0xd0 => (m, 2, None),
            0xcd | 0xd1 => (m, 3, None),
            0xce | 0xd2 | 0xca => (m, 5, None),
            0xcf | 0xd3 | 0xcb => (m, 9, None),
            0xdc | 0xde => (m, 3, None),
            0xdd | 0xdf => (m, 5, None),
            _ => (m, 1, None),
        }
    }

    #[test]
    fn runs_too_deep_for_format_2_are_written_in_format_1() {
        let mut run = contract::fixture_runs(1).remove(0);
        let mut deep = json!("leaf");
        for _ in 0..read::MAX_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        run.output = deep;
        let mut buf = Vec::new();
        encode_current(&run, &mut buf).unwrap();
        assert_eq!(buf[0], MSGPACK_V1);
        let back = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || decode(ValueRef::Blob(&buf)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(back.unwrap(), run);
        // Just below the limit: format 2.
        let Value::Array(mut items) = std::mem::take(&mut run.output) else {
            unreachable!()
        };
        run.output = items.pop().unwrap();
        let Value::Array(mut items) = std::mem::take(&mut run.output) else {
            unreachable!()
        };
        run.output = items.pop().unwrap();
        let mut buf = Vec::new();
        encode_current(&run, &mut buf).unwrap();
        assert_eq!(buf[0], MSGPACK_SPLIT_V2);
        assert_eq!(decode(ValueRef::Blob(&buf)).unwrap(), run);
    }

    #[test]
    fn fast_decoder_leaves_what_it_does_not_read_to_rmp_serde() {
        let run = contract::fixture_runs(1).remove(0);
        // Trailing bytes (rmp-serde ignores them), a struct written as a map (rmp-serde
        // reads it): the fast decoder declines, `decode` still returns the run.
        let mut body = vec![MSGPACK_V1];
        rmp_serde::encode::write(&mut body, &run).unwrap();
        body.push(0xc0);
        assert_eq!(read::decode_v1(&body[1..]), Err(read::Unsupported));
        assert_eq!(decode(ValueRef::Blob(&body)).unwrap(), run);
        let mut body = vec![MSGPACK_V1];
        rmp_serde::encode::write_named(&mut body, &run).unwrap();
        assert_eq!(read::decode_v1(&body[1..]), Err(read::Unsupported));
        assert_eq!(decode(ValueRef::Blob(&body)).unwrap(), run);
        // Nested deeper than the fast decoder goes: rmp-serde decodes it (on a thread with
        // room for its recursion in a debug build).
        let mut deep = json!(1);
        for _ in 0..read::MAX_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        let mut run = run;
        run.input = deep;
        let mut body = vec![MSGPACK_V1];
        rmp_serde::encode::write(&mut body, &run).unwrap();
        assert_eq!(read::decode_v1(&body[1..]), Err(read::Unsupported));
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
                assert_eq!(read::decode_v1(&body[..cut]), Err(read::Unsupported));
                assert!(decode(ValueRef::Blob(&buf[..=cut])).is_err());
            }
            // Every single-byte change the fast decoder accepts, rmp-serde reads alike.
            let mut damaged = body.to_vec();
            for at in (0..body.len()).step_by(11) {
                for x in [0x01, 0x80, 0xff] {
                    damaged[at] ^= x;
                    if let Ok(fast) = read::decode_v1(&damaged) {
                        assert_eq!(Ok(fast), rmp_reference(&damaged), "byte {at} ^ {x:#x}");
                    }
                    damaged[at] ^= x;
                }
            }
        }
    }

    #[test]
    fn damaged_format_2_bodies_are_errors_without_payload() {
        let mut run = contract::fixture_runs(1).remove(0);
        run.name = "secret-name".into();
        run.input = json!({"secret-key": "secret-value", "n": [1, 2.5, -3]});
        let mut buf = Vec::new();
        encode_current(&run, &mut buf).unwrap();
        assert_eq!(buf[0], MSGPACK_SPLIT_V2);
        let check = |body: &[u8]| match decode(ValueRef::Blob(body)) {
            Ok(_) => {}
            Err(e) => {
                assert!(!e.contains("secret"), "{e}");
                assert!(e.contains("format 2"), "{e}");
            }
        };
        for cut in 1..buf.len() {
            assert!(decode(ValueRef::Blob(&buf[..cut])).is_err(), "cut {cut}");
            check(&buf[..cut]);
        }
        let mut damaged = buf.clone();
        for at in 1..buf.len() {
            for x in [0x01, 0x10, 0x80, 0xff] {
                damaged[at] ^= x;
                check(&damaged);
                damaged[at] ^= x;
            }
        }
        // Invalid UTF-8 in the text section (its last byte); a string that ends inside a
        // character (`sample_reason`, the last string, "é" read as one byte: its marker
        // is the structure's last byte).
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert!(decode(ValueRef::Blob(&bad)).unwrap_err().contains("UTF-8"));
        let mut run2 = run.clone();
        run2.sample_reason = Some("é".into());
        encode_current(&run2, &mut bad).unwrap();
        let structure_end = 5 + u32::from_le_bytes(bad[1..5].try_into().unwrap()) as usize;
        assert_eq!(bad[structure_end - 1], 0xa2);
        bad[structure_end - 1] = 0xa1;
        let e = decode(ValueRef::Blob(&bad)).unwrap_err();
        assert!(e.contains("malformed structure"), "{e}");
        // A text section longer than its strings.
        let mut long = buf.clone();
        long.push(b'x');
        assert!(
            decode(ValueRef::Blob(&long))
                .unwrap_err()
                .contains("text section")
        );
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
            let fast = read::decode_v1(&buf[1..]);
            prop_assert!(fast.is_ok());
            let fast = fast.unwrap();
            let reference = rmp_reference(&buf[1..]);
            prop_assert_eq!(Ok(&fast), reference.as_ref());
            // The run itself, up to serde_json's float -> Value conversion (NaN -> null),
            // which the JSON shows the same way.
            prop_assert_eq!(tracecraft_core::to_json(&fast), tracecraft_core::to_json(&run));
            // Format 2 gives the same run.
            encode_current(&run, &mut buf).unwrap();
            prop_assert_eq!(buf[0], MSGPACK_SPLIT_V2);
            let v2 = decode(ValueRef::Blob(&buf));
            prop_assert_eq!(v2.as_ref(), Ok(&fast));
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
