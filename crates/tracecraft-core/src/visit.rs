//! Every string of a run, by construction.
//!
//! [`AgentRun::visit_strings_mut`] hands each text field, each JSON value and each JSON map of
//! a run and of all its steps to a [`StringsMut`] visitor. It destructures [`AgentRun`] and
//! [`Step`] with every field named (no `..`), so a field added to either does not compile
//! until it is classified here: visited (as text, value or map) or not a string (ids, times,
//! numbers, flags). Redaction uses it, so no new field can escape redaction silently.

use serde_json::Value;

use crate::model::{AgentRun, JsonMap, Step};

/// What a visitor of a run's strings does with each kind of field. Each method gets the
/// field's name (`name`, `step.inputs`, ...) for reports; never its value.
pub trait StringsMut {
    /// A text field (`name`, `error`, a tag, a streaming chunk, ...).
    fn text(&mut self, field: &'static str, s: &mut String);
    /// A JSON value (`input`, `output`): its strings and keys at any depth.
    fn value(&mut self, field: &'static str, v: &mut Value);
    /// A JSON map (`attributes`, `inputs`, `outputs`): its strings and keys at any depth.
    fn map(&mut self, field: &'static str, m: &mut JsonMap);
}

impl AgentRun {
    /// Visits every string of the run and of every step, in document order (see the module
    /// docs of `visit`). Iterative: step nesting depth is unbounded.
    pub fn visit_strings_mut(&mut self, v: &mut impl StringsMut) {
        let AgentRun {
            id: _,
            name,
            description,
            start_time: _,
            end_time: _,
            duration_ms: _,
            session_id,
            user_id,
            environment,
            tags,
            agent_name,
            agent_id,
            agent_description,
            cloud_provider,
            cloud_trace_id,
            input,
            output,
            steps,
            total_tokens: _,
            total_cost_usd: _,
            error_count: _,
            error,
            error_type,
            attributes,
            should_export: _,
            sample_reason,
        } = self;
        v.text("name", name);
        for (field, s) in [
            ("description", description),
            ("session_id", session_id),
            ("user_id", user_id),
        ] {
            if let Some(s) = s {
                v.text(field, s);
            }
        }
        v.text("environment", environment);
        for tag in tags.iter_mut() {
            v.text("tags", tag);
        }
        for (field, s) in [
            ("agent_name", agent_name),
            ("agent_id", agent_id),
            ("agent_description", agent_description),
            ("cloud_provider", cloud_provider),
            ("cloud_trace_id", cloud_trace_id),
            ("error", error),
            ("error_type", error_type),
            ("sample_reason", sample_reason),
        ] {
            if let Some(s) = s {
                v.text(field, s);
            }
        }
        v.value("input", input);
        v.value("output", output);
        v.map("attributes", attributes);
        let mut stack: Vec<&mut Step> = steps.iter_mut().rev().collect();
        while let Some(step) = stack.pop() {
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
                children,
            } = step;
            v.text("step.name", name);
            for (field, s) in [
                ("step.model_name", model_name),
                ("step.model_provider", model_provider),
                ("step.error", error),
                ("step.error_type", error_type),
            ] {
                if let Some(s) = s {
                    v.text(field, s);
                }
            }
            for chunk in streaming_chunks.iter_mut() {
                v.text("step.streaming_chunks", chunk);
            }
            v.map("step.inputs", inputs);
            v.map("step.outputs", outputs);
            v.map("step.attributes", attributes);
            stack.extend(children.iter_mut().rev());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StepType;

    struct Names(Vec<&'static str>);

    impl StringsMut for Names {
        fn text(&mut self, field: &'static str, _: &mut String) {
            self.0.push(field);
        }
        fn value(&mut self, field: &'static str, _: &mut Value) {
            self.0.push(field);
        }
        fn map(&mut self, field: &'static str, _: &mut JsonMap) {
            self.0.push(field);
        }
    }

    /// The classification, pinned: every string field of a run and a step is visited.
    #[test]
    fn visits_every_string_field() {
        let some = || Some(String::new());
        let mut run = AgentRun::new("r");
        let mut step = Step::new(run.id, StepType::Llm, "s");
        (
            step.model_name,
            step.model_provider,
            step.error,
            step.error_type,
        ) = (some(), some(), some(), some());
        step.streaming_chunks = vec![String::new()];
        step.children.push(step.clone());
        run.steps.push(step);
        (run.description, run.session_id, run.user_id) = (some(), some(), some());
        (run.agent_name, run.agent_id, run.agent_description) = (some(), some(), some());
        (run.cloud_provider, run.cloud_trace_id) = (some(), some());
        (run.error, run.error_type, run.sample_reason) = (some(), some(), some());
        run.tags = vec![String::new()];
        let mut names = Names(Vec::new());
        run.visit_strings_mut(&mut names);
        let mut got = names.0;
        got.sort_unstable();
        got.dedup();
        let mut want = vec![
            "name",
            "description",
            "session_id",
            "user_id",
            "environment",
            "tags",
            "agent_name",
            "agent_id",
            "agent_description",
            "cloud_provider",
            "cloud_trace_id",
            "error",
            "error_type",
            "sample_reason",
            "input",
            "output",
            "attributes",
            "step.name",
            "step.model_name",
            "step.model_provider",
            "step.error",
            "step.error_type",
            "step.streaming_chunks",
            "step.inputs",
            "step.outputs",
            "step.attributes",
        ];
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
