//! Redaction of every string of a run (DESIGN invariant 3).

use std::borrow::Cow;

use serde_json::Value;
use tracecraft_core::{AgentRun, Step};
use tracecraft_redact::{RedactionConfig, Redactor, Report};

use crate::processor::{Outcome, ProcessError, Processor};

/// Run attribute holding the number of redactions in the run.
pub const REDACTION_COUNT: &str = "tracecraft.redaction.count";
/// Prefix of the per-rule count attributes: `tracecraft.redaction.rule.email`, ...
pub const REDACTION_RULE_PREFIX: &str = "tracecraft.redaction.rule.";

/// Applies a [`Redactor`] to every string of a run and its steps.
///
/// Covered: run name, description, session and user ids, environment, tags, agent fields,
/// cloud trace id, input, output, attributes (keys and values), error and error type; per
/// step: name, model name and provider, inputs, outputs, attributes (keys and values), streaming
/// chunks, error and error type. Value rules apply to every string; field-path and
/// sensitive-key rules apply inside `input`/`output` and every inputs/outputs/attributes map,
/// to values of any type.
///
/// The run gets [`REDACTION_COUNT`] and one [`REDACTION_RULE_PREFIX`]`<rule>` attribute per rule
/// that fired (counts only, never values).
#[derive(Clone, Debug)]
pub struct RedactionProcessor {
    redactor: Redactor,
}

impl RedactionProcessor {
    /// Builds the redactor from configuration.
    ///
    /// # Errors
    /// The redactor's build error (invalid or non-linear pattern, missing hash key, unknown
    /// rule name), naming the rule.
    pub fn new(config: &RedactionConfig) -> Result<Self, tracecraft_redact::BuildError> {
        Ok(RedactionProcessor {
            redactor: Redactor::new(config)?,
        })
    }

    /// Wraps an existing redactor.
    #[must_use]
    pub fn from_redactor(redactor: Redactor) -> Self {
        RedactionProcessor { redactor }
    }

    /// Redacts a run in place and returns what was found.
    pub fn redact_run(&self, run: &mut AgentRun) -> Report {
        let r = &self.redactor;
        let mut report = Report::default();
        let text = |s: &mut String, report: &mut Report| {
            if let Cow::Owned(new) = r.redact_str(s, report) {
                *s = new;
            }
        };
        let opt = |s: &mut Option<String>, report: &mut Report| {
            if let Some(s) = s {
                text(s, report);
            }
        };
        text(&mut run.name, &mut report);
        opt(&mut run.description, &mut report);
        opt(&mut run.session_id, &mut report);
        opt(&mut run.user_id, &mut report);
        text(&mut run.environment, &mut report);
        for tag in &mut run.tags {
            text(tag, &mut report);
        }
        opt(&mut run.agent_name, &mut report);
        opt(&mut run.agent_id, &mut report);
        opt(&mut run.agent_description, &mut report);
        opt(&mut run.cloud_provider, &mut report);
        opt(&mut run.cloud_trace_id, &mut report);
        r.redact_value(&mut run.input, &mut report);
        r.redact_value(&mut run.output, &mut report);
        r.redact_map(&mut run.attributes, &mut report);
        opt(&mut run.error, &mut report);
        opt(&mut run.error_type, &mut report);
        opt(&mut run.sample_reason, &mut report);
        run.walk_mut(|step: &mut Step, _| {
            text(&mut step.name, &mut report);
            opt(&mut step.model_name, &mut report);
            opt(&mut step.model_provider, &mut report);
            r.redact_map(&mut step.inputs, &mut report);
            r.redact_map(&mut step.outputs, &mut report);
            r.redact_map(&mut step.attributes, &mut report);
            for chunk in &mut step.streaming_chunks {
                text(chunk, &mut report);
            }
            opt(&mut step.error, &mut report);
            opt(&mut step.error_type, &mut report);
        });
        report
    }
}

impl Processor for RedactionProcessor {
    fn name(&self) -> &str {
        "redact"
    }

    fn process(&self, mut run: AgentRun) -> Result<Outcome, ProcessError> {
        let report = self.redact_run(&mut run);
        // Summary attributes are added after redaction, so they are not redacted themselves.
        run.attributes
            .insert(REDACTION_COUNT.to_owned(), Value::from(report.total()));
        for (rule, count) in report.counts() {
            run.attributes
                .insert(format!("{REDACTION_RULE_PREFIX}{rule}"), Value::from(count));
        }
        Ok(Outcome::Keep(run))
    }
}
