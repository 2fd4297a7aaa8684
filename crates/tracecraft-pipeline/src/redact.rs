//! Redaction of every string of a run (DESIGN invariant 3).

use std::borrow::Cow;

use serde_json::Value;
use tracecraft_core::{AgentRun, JsonMap, StringsMut};
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

    /// Redacts a run in place and returns what was found: every string that
    /// [`AgentRun::visit_strings_mut`] visits, which is every string field of the run and its
    /// steps by construction (a new field does not compile until it is classified there).
    pub fn redact_run(&self, run: &mut AgentRun) -> Report {
        struct Redact<'a> {
            redactor: &'a Redactor,
            report: Report,
        }
        impl StringsMut for Redact<'_> {
            fn text(&mut self, _: &'static str, s: &mut String) {
                if let Cow::Owned(new) = self.redactor.redact_str(s, &mut self.report) {
                    *s = new;
                }
            }
            fn value(&mut self, _: &'static str, v: &mut Value) {
                self.redactor.redact_value(v, &mut self.report);
            }
            fn map(&mut self, _: &'static str, m: &mut JsonMap) {
                self.redactor.redact_map(m, &mut self.report);
            }
        }
        let mut visitor = Redact {
            redactor: &self.redactor,
            report: Report::default(),
        };
        run.visit_strings_mut(&mut visitor);
        visitor.report
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
