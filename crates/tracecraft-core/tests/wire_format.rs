//! The AgentRun JSON wire format against the Python tracecraft 0.2.1 corpus sample.

use serde_json::Value;
use tracecraft_core::{ParseErrorKind, json, parse_run, read_jsonl};

const SAMPLE: &str = include_str!("../testdata/runs_sample.jsonl");

const RUN_KEYS: [&str; 26] = [
    "id",
    "name",
    "description",
    "start_time",
    "end_time",
    "duration_ms",
    "session_id",
    "user_id",
    "environment",
    "tags",
    "agent_name",
    "agent_id",
    "agent_description",
    "cloud_provider",
    "cloud_trace_id",
    "input",
    "output",
    "steps",
    "total_tokens",
    "total_cost_usd",
    "error_count",
    "error",
    "error_type",
    "attributes",
    "should_export",
    "sample_reason",
];
const STEP_KEYS: [&str; 21] = [
    "id",
    "parent_id",
    "trace_id",
    "type",
    "name",
    "start_time",
    "end_time",
    "duration_ms",
    "inputs",
    "outputs",
    "attributes",
    "model_name",
    "model_provider",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "is_streaming",
    "streaming_chunks",
    "error",
    "error_type",
    "children",
];

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn sample_round_trips_losslessly_in_reference_key_order() {
    let mut n = 0;
    for (line, parsed) in read_jsonl(SAMPLE.as_bytes()) {
        let run = parsed.unwrap_or_else(|e| panic!("line {line}: {e}"));
        let text = json::to_json(&run);
        let again = parse_run(&text).unwrap();
        assert_eq!(
            again, run,
            "line {line}: parse -> serialize -> parse differs"
        );
        assert_eq!(json::to_json(&again), text, "serialization is not stable");

        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(keys(&v), RUN_KEYS, "run keys out of order");
        let mut stack: Vec<&Value> = v["steps"].as_array().unwrap().iter().collect();
        while let Some(s) = stack.pop() {
            assert_eq!(keys(s), STEP_KEYS, "step keys out of order");
            stack.extend(s["children"].as_array().unwrap());
        }

        // Every value the reference wrote survives: compare the original line field by field.
        let original: Value =
            serde_json::from_str(SAMPLE.lines().nth(line as usize - 1).unwrap()).unwrap();
        for (k, want) in original.as_object().unwrap() {
            if k != "steps" {
                assert_eq!(&v[k], want, "line {line}: run field {k} changed");
            }
        }
        n += 1;
    }
    assert_eq!(n, 20);
}

#[test]
fn step_types_and_uuids_use_the_wire_forms() {
    let run = read_jsonl(SAMPLE.as_bytes()).next().unwrap().1.unwrap();
    let v: Value = serde_json::from_str(&json::to_json(&run)).unwrap();
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(id.matches('-').count(), 4);
    assert_eq!(v["steps"][0]["type"], "agent");
    assert!(v["start_time"].as_str().unwrap().ends_with('Z'));
}

fn first_line() -> String {
    SAMPLE.lines().next().unwrap().to_owned()
}

#[test]
fn unknown_field_is_rejected_naming_field_and_line() {
    let mut v: Value = serde_json::from_str(&first_line()).unwrap();
    v["steps"][0]["children"][1]["colour"] = Value::from("blue");
    let text = format!(
        "\n{}\n{}\n",
        first_line(),
        serde_json::to_string(&v).unwrap()
    );
    let results: Vec<_> = read_jsonl(text.as_bytes()).collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].1.is_ok());
    let err = results[1].1.as_ref().unwrap_err();
    assert_eq!(err.line(), Some(3));
    assert_eq!(err.kind(), ParseErrorKind::Data);
    let msg = err.to_string();
    assert!(msg.starts_with("line 3: "), "{msg}");
    assert!(msg.contains("colour"), "{msg}");
    assert!(msg.contains("steps[0].children[1]"), "{msg}");
}

#[test]
fn wrong_types_name_the_field_and_do_not_echo_values() {
    let mut v: Value = serde_json::from_str(&first_line()).unwrap();
    v["total_tokens"] = Value::from("sk-proj-SECRETSECRETSECRET");
    let err = parse_run(&v.to_string()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.path(), "total_tokens");
    assert!(msg.contains("total_tokens"), "{msg}");
    assert!(!msg.contains("SECRET"), "error echoes payload: {msg}");
}

#[test]
fn invalid_uuid_and_zoneless_time_are_clear_errors() {
    let mut v: Value = serde_json::from_str(&first_line()).unwrap();
    v["steps"][0]["id"] = Value::from("not-a-uuid");
    let err = parse_run(&v.to_string()).unwrap_err();
    assert_eq!(err.path(), "steps[0].id");

    let mut v: Value = serde_json::from_str(&first_line()).unwrap();
    v["start_time"] = Value::from("2026-11-24T09:13:00");
    let err = parse_run(&v.to_string()).unwrap_err();
    assert_eq!(err.path(), "start_time");
    assert!(err.to_string().contains("no UTC offset"), "{err}");

    let mut v: Value = serde_json::from_str(&first_line()).unwrap();
    v["steps"][0]["type"] = Value::from("banana");
    let err = parse_run(&v.to_string()).unwrap_err();
    assert_eq!(err.path(), "steps[0].type");
}

#[test]
fn missing_required_field_is_named() {
    let mut v: Value = serde_json::from_str(&first_line()).unwrap();
    v.as_object_mut().unwrap().remove("name");
    let err = parse_run(&v.to_string()).unwrap_err();
    assert!(err.to_string().contains("missing field `name`"), "{err}");
}

#[test]
fn malformed_and_torn_lines_are_reported_and_the_rest_is_read() {
    let line = first_line();
    let torn = &line[..line.len() / 2];
    let text = format!("{line}\n{{not json\n{line}\n{torn}");
    let results: Vec<_> = read_jsonl(text.as_bytes()).collect();
    assert_eq!(results.len(), 4);
    assert!(results[0].1.is_ok() && results[2].1.is_ok());
    let bad = results[1].1.as_ref().unwrap_err();
    assert_eq!((bad.line(), bad.kind()), (Some(2), ParseErrorKind::Syntax));
    let torn = results[3].1.as_ref().unwrap_err();
    assert_eq!((torn.line(), torn.kind()), (Some(4), ParseErrorKind::Eof));
}

#[test]
fn hostile_inputs_error_without_panicking() {
    for input in [
        "",
        "null",
        "[]",
        "\"x\"",
        "{}",
        "{\"name\": 5}",
        &"[".repeat(100_000),
        &format!(
            "{{\"name\":\"a\",\"start_time\":\"2026-01-01T00:00:00Z\",\"steps\":{}",
            "[".repeat(50_000)
        ),
        "{\"name\":\"a\",\"start_time\":\"2026-01-01T00:00:00Z\",\"total_tokens\":-1}",
        "{\"name\":\"a\",\"start_time\":\"2026-01-01T00:00:00Z\"} trailing",
    ] {
        assert!(
            parse_run(input).is_err(),
            "accepted {:?}",
            &input[..input.len().min(40)]
        );
    }
    assert!(tracecraft_core::json::parse_run_slice(b"{\"name\":\"\xff\"}").is_err());
}

#[test]
fn defaults_match_the_python_model() {
    let run = parse_run(r#"{"name":"a","start_time":"2026-01-01T00:00:00Z"}"#).unwrap();
    assert_eq!(run.environment, "development");
    assert!(run.should_export);
    assert_eq!(run.input, Value::Null);
    let v: Value = serde_json::from_str(&json::to_json(&run)).unwrap();
    assert_eq!(v["description"], Value::Null);
    assert_eq!(v["tags"], serde_json::json!([]));
    assert_eq!(v["total_cost_usd"].to_string(), "0.0");
}

/// Fuzz crashes (`cargo xtask fuzz parse_run`) are replayed here: no input may panic.
#[test]
fn fuzz_regressions_do_not_panic() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/parse_run");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        let _ = tracecraft_core::json::parse_run_slice(&bytes);
    }
}

/// Runs written by the Python package itself (`AgentRun.model_dump_json()`, tracecraft 0.2.1,
/// all fields present): we read them and write them back byte for byte.
#[test]
fn python_model_dump_round_trips_byte_for_byte() {
    let text = include_str!("../testdata/python_model_dump.jsonl");
    let mut n = 0;
    for (line_no, parsed) in read_jsonl(text.as_bytes()) {
        let run = parsed.unwrap_or_else(|e| panic!("line {line_no}: {e}"));
        let original = text.lines().nth(line_no as usize - 1).unwrap();
        assert_eq!(json::to_json(&run), original, "line {line_no} differs");
        n += 1;
    }
    assert_eq!(n, 3);
}
