//! The one filter the store cannot answer: the model of any step (matched in memory while
//! scanning). Text search is the store's ([`TraceQuery::text`](tracecraft_core::TraceQuery)).

use tracecraft_core::AgentRun;

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

/// Whether any step's model name contains `model` (lower-cased).
pub(crate) fn uses_model(run: &AgentRun, model: &str) -> bool {
    run.walk()
        .any(|s| s.model_name.as_deref().is_some_and(|m| has(m, model)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tracecraft_core::{Step, StepType};

    proptest! {
        /// The ASCII fast path agrees with the naive oracle (lower-case both, then search).
        #[test]
        fn matching_agrees_with_the_naive_oracle(h in "[a-zA-Z0-9 É-]{0,30}", n in "[a-zA-Z0-9 é-]{0,4}") {
            let needle = n.to_lowercase();
            prop_assert_eq!(has(&h, &needle), h.to_lowercase().contains(&needle));
        }
    }

    #[test]
    fn finds_models_ignoring_case() {
        let mut run = AgentRun::builder("Support").build();
        run.push_step(
            Step::builder(run.id, StepType::Llm, "chat")
                .model("GPT-4o", "openai")
                .build(),
        );
        assert!(uses_model(&run, "gpt-4"));
        assert!(!uses_model(&run, "claude"));
        assert!(has("ÉCOLE", "école"));
    }
}
