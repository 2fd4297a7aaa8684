//! In-memory filters the store cannot index: text search over names and stored (redacted)
//! content, and the model of any step.

use serde_json::Value;
use tracecraft_core::{AgentRun, Step};

/// Whether `haystack` contains `needle` (already lower-cased), ignoring case.
fn has(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        haystack
            .as_bytes()
            .windows(needle.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
            || needle.is_empty()
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

/// Whether any key or string of `value` contains `needle`; an explicit stack, so deep values
/// cannot overflow the stack.
fn value_has(value: &Value, needle: &str) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if has(s, needle) => return true,
            Value::Number(n) if has(&n.to_string(), needle) => return true,
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => {
                for (k, v) in m {
                    if has(k, needle) {
                        return true;
                    }
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    false
}

fn opt_has(v: Option<&String>, needle: &str) -> bool {
    v.is_some_and(|s| has(s, needle))
}

fn step_has(s: &Step, needle: &str) -> bool {
    has(&s.name, needle)
        || opt_has(s.model_name.as_ref(), needle)
        || opt_has(s.error.as_ref(), needle)
        || opt_has(s.error_type.as_ref(), needle)
        || s.inputs
            .iter()
            .any(|(k, v)| has(k, needle) || value_has(v, needle))
        || s.outputs
            .iter()
            .any(|(k, v)| has(k, needle) || value_has(v, needle))
        || s.attributes
            .iter()
            .any(|(k, v)| has(k, needle) || value_has(v, needle))
        || s.streaming_chunks.iter().any(|c| has(c, needle))
}

/// Whether the run's name, description, tags, input, output, attributes, error, or any
/// step's name, model, inputs, outputs, attributes, chunks or error contain `needle`
/// (lower-cased).
pub(crate) fn contains_text(run: &AgentRun, needle: &str) -> bool {
    has(&run.name, needle)
        || opt_has(run.description.as_ref(), needle)
        || opt_has(run.agent_name.as_ref(), needle)
        || opt_has(run.error.as_ref(), needle)
        || opt_has(run.error_type.as_ref(), needle)
        || run.tags.iter().any(|t| has(t, needle))
        || value_has(&run.input, needle)
        || value_has(&run.output, needle)
        || run
            .attributes
            .iter()
            .any(|(k, v)| has(k, needle) || value_has(v, needle))
        || run.walk().any(|s| step_has(s, needle))
}

/// Whether any step's model name contains `model` (lower-cased).
pub(crate) fn uses_model(run: &AgentRun, model: &str) -> bool {
    run.walk()
        .any(|s| s.model_name.as_deref().is_some_and(|m| has(m, model)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tracecraft_core::StepType;

    proptest! {
        /// The ASCII fast path agrees with the naive oracle (lower-case both, then search).
        #[test]
        fn matching_agrees_with_the_naive_oracle(h in "[a-zA-Z0-9 É-]{0,30}", n in "[a-zA-Z0-9 é-]{0,4}") {
            let needle = n.to_lowercase();
            prop_assert_eq!(has(&h, &needle), h.to_lowercase().contains(&needle));
        }
    }

    #[test]
    fn finds_text_anywhere_ignoring_case() {
        let mut run = AgentRun::builder("Support").tag("eu").build();
        let deep = serde_json::json!({"a": [{"b": "the Needle here"}]});
        run.push_step(
            Step::builder(run.id, StepType::Llm, "chat")
                .model("GPT-4o", "openai")
                .input("messages", deep)
                .build(),
        );
        assert!(contains_text(&run, "needle"));
        assert!(contains_text(&run, "support"));
        assert!(contains_text(&run, "eu"));
        assert!(!contains_text(&run, "absent"));
        assert!(uses_model(&run, "gpt-4"));
        assert!(!uses_model(&run, "claude"));
        assert!(has("ÉCOLE", "école"));
    }
}
