//! What a redaction call found.

use std::collections::BTreeMap;

/// One finding: which rule matched which bytes. Never the matched value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Finding {
    /// The rule's stable name (`email`, ..., a custom rule's name, `field_path`,
    /// `sensitive_key`).
    pub rule: String,
    /// Start byte offset of the redacted span, in the string where it was found.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
}

/// Findings are kept up to this many per report (counts are always complete).
pub const MAX_FINDINGS: usize = 10_000;

/// Counts per rule and the spans found by one or more redaction calls.
///
/// Spans are byte offsets into the string in which they were found (for JSON values, each
/// string leaf; field-path hits have the span `0..0`).
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Report {
    counts: BTreeMap<String, u64>,
    findings: Vec<Finding>,
}

impl Report {
    /// A new, empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total findings across all rules.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// `(rule name, count)` in rule-name order.
    pub fn counts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The count for one rule (0 when it never matched).
    pub fn count(&self, rule: &str) -> u64 {
        self.counts.get(rule).copied().unwrap_or(0)
    }

    /// The findings, in the order they were made (at most [`MAX_FINDINGS`]).
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Adds another report's counts and findings.
    pub fn merge(&mut self, other: &Report) {
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0) += v;
        }
        let room = MAX_FINDINGS.saturating_sub(self.findings.len());
        self.findings
            .extend(other.findings.iter().take(room).cloned());
    }

    /// `true` when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Clears counts and findings.
    pub fn clear(&mut self) {
        self.counts.clear();
        self.findings.clear();
    }

    pub(crate) fn add(&mut self, rule: &str, start: usize, end: usize) {
        match self.counts.get_mut(rule) {
            Some(c) => *c += 1,
            None => {
                self.counts.insert(rule.to_owned(), 1);
            }
        }
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                rule: rule.to_owned(),
                start,
                end,
            });
        }
    }
}
