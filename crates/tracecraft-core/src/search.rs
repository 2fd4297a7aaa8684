//! Text search: what [`TraceQuery::text`](crate::TraceQuery::text) matches, for every store.
//!
//! A search is a list of **words** (runs of letters and digits, lower-cased; everything else
//! separates them). A run matches when each word of the search begins a word of the run's
//! searchable text ([`for_each_text`]): its names and its stored content, which is the
//! redacted content when redaction is on. `refund ord` matches a run whose output says
//! "Refunded order #12"; `#`, `-` and other punctuation only separate words. A search without
//! any word matches every run.
//!
//! Stores with an index (SQLite: FTS5, given the words this module cuts) answer from it; the
//! others scan with [`run_matches`], the reference.

use serde_json::Value;

use crate::model::{AgentRun, Step};

/// The words of `text` as text search sees them: maximal runs of alphanumeric characters,
/// lower-cased character by character (`char::to_lowercase`: no context rules such as
/// Greek final sigma, so a word and its upper-case form always give the same word), in
/// order (duplicates kept).
#[must_use]
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().flat_map(char::to_lowercase).collect())
        .collect()
}

/// Calls `f` on every string of `run` that text search covers: the run's name, description,
/// agent name and description, tags, error and error type, the string values (not the keys)
/// of its input, output and attributes at any depth; and for every step its name, model,
/// provider, error, error type, streaming chunks and the string values of its inputs, outputs
/// and attributes. Ids, pseudonymous session and user ids, the environment and other
/// identifiers are left out (they have their own filters).
///
/// Every field of [`AgentRun`] and [`Step`] is named here, so a new field does not compile
/// until someone decides whether search covers it.
pub fn for_each_text(run: &AgentRun, f: &mut impl FnMut(&str)) {
    let AgentRun {
        id: _,
        name,
        description,
        start_time: _,
        end_time: _,
        duration_ms: _,
        session_id: _,
        user_id: _,
        environment: _,
        tags,
        agent_name,
        agent_id: _,
        agent_description,
        cloud_provider: _,
        cloud_trace_id: _,
        input,
        output,
        steps: _,
        total_tokens: _,
        total_cost_usd: _,
        error_count: _,
        error,
        error_type,
        attributes,
        should_export: _,
        sample_reason: _,
    } = run;
    f(name);
    for s in [
        description,
        agent_name,
        agent_description,
        error,
        error_type,
    ]
    .into_iter()
    .flatten()
    {
        f(s);
    }
    tags.iter().for_each(|t| f(t));
    values(input, f);
    values(output, f);
    attributes.values().for_each(|v| values(v, f));
    for step in run.walk() {
        step_text(step, f);
    }
}

fn step_text(step: &Step, f: &mut impl FnMut(&str)) {
    let Step {
        id: _,
        parent_id: _,
        trace_id: _,
        step_type: _,
        name,
        start_time: _,
        end_time: _,
        duration_ms: _,
        inputs,
        outputs,
        attributes,
        model_name,
        model_provider,
        input_tokens: _,
        output_tokens: _,
        cost_usd: _,
        is_streaming: _,
        streaming_chunks,
        error,
        error_type,
        children: _,
    } = step;
    f(name);
    for s in [model_name, model_provider, error, error_type]
        .into_iter()
        .flatten()
    {
        f(s);
    }
    streaming_chunks.iter().for_each(|c| f(c));
    for map in [inputs, outputs, attributes] {
        map.values().for_each(|v| values(v, f));
    }
}

/// The string values in `v` at any depth (an explicit stack: depth is unbounded).
fn values(v: &Value, f: &mut impl FnMut(&str)) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => f(s),
            Value::Array(a) => stack.extend(a.iter().rev()),
            Value::Object(m) => stack.extend(m.values().rev()),
            _ => {}
        }
    }
}

/// Whether each of `search` (as given by [`words`]) begins some word of `run`'s searchable
/// text. The reference semantics of [`TraceQuery::text`](crate::TraceQuery::text).
#[must_use]
pub fn run_matches(run: &AgentRun, search: &[String]) -> bool {
    let mut missing: Vec<&str> = search.iter().map(String::as_str).collect();
    if missing.is_empty() {
        return true;
    }
    let mut lower = String::new();
    for_each_text(run, &mut |s| {
        if missing.is_empty() {
            return;
        }
        for word in s.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            lower.clear();
            lower.extend(word.chars().flat_map(char::to_lowercase));
            missing.retain(|m| !lower.starts_with(m));
        }
    });
    missing.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StepType;
    use serde_json::json;

    #[test]
    fn words_split_on_anything_but_letters_and_digits() {
        assert_eq!(
            words("Refund: order #12-B, École"),
            ["refund", "order", "12", "b", "école"]
        );
        assert!(words(" -!? ").is_empty());
    }

    #[test]
    fn matches_word_prefixes_in_names_and_content_not_keys_or_ids() {
        let mut run = AgentRun::builder("Support agent")
            .tag("eu-west")
            .session_id("sess-hidden")
            .build();
        run.output = json!({"answer": ["Refunded the ORDER [EMAIL] today"]});
        run.push_step(
            Step::builder(run.id, StepType::Llm, "chat")
                .model("gpt-4o", "openai")
                .input(
                    "messages",
                    json!([{"role": "user", "content": "where is parcel 42?"}]),
                )
                .build(),
        );
        let m = |s: &str| run_matches(&run, &words(s));
        assert!(m("refund order"));
        assert!(m("SUPPORT"));
        assert!(m("west"));
        assert!(m("email"));
        assert!(m("parcel 42"));
        assert!(m("gpt 4o"));
        assert!(m("openai"));
        assert!(m(""));
        assert!(!m("fund"), "a word must begin a word of the run");
        assert!(!m("answer"), "keys are not searched");
        assert!(!m("role"), "keys are not searched");
        assert!(!m("hidden"), "session ids are not searched");
        assert!(!m("refund absent"));
    }
}
