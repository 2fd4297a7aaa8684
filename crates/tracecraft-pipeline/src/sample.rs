//! Tail sampling: deterministic on the run id, with error/slow overrides, ordered rules and an
//! optional rate limit.

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracecraft_core::AgentRun;

use crate::ConfigError;
use crate::processor::{DropReason, Outcome, ProcessError, Processor};

/// One sampling rule: when every condition it sets matches, its rate decides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingRule {
    /// The rule's name (used in `sample_reason`).
    pub name: String,
    /// Keep probability for matching runs, 0..=1 (default 1).
    pub rate: f64,
    /// Run name is one of these.
    pub match_names: Vec<String>,
    /// Run has any of these tags.
    pub match_tags: Vec<String>,
    /// Run (or a step) has an error.
    pub match_error: bool,
    /// Run lasted at least this long.
    pub min_duration_ms: Option<f64>,
    /// Run attributes equal these values.
    pub match_attributes: serde_json::Map<String, Value>,
}

impl SamplingRule {
    /// A rule named `name` with rate `rate` and no conditions (matches everything).
    #[must_use]
    pub fn new(name: impl Into<String>, rate: f64) -> Self {
        SamplingRule {
            name: name.into(),
            rate,
            ..SamplingRule::default()
        }
    }

    fn matches(&self, run: &AgentRun) -> bool {
        (!self.match_error || has_error(run))
            && (self.match_names.is_empty() || self.match_names.contains(&run.name))
            && (self.match_tags.is_empty() || self.match_tags.iter().any(|t| run.tags.contains(t)))
            && self
                .min_duration_ms
                .is_none_or(|min| run.duration_ms.is_some_and(|d| d >= min))
            && self
                .match_attributes
                .iter()
                .all(|(k, v)| run.attributes.get(k) == Some(v))
    }
}

/// Sampling settings (the `[sampling]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Default keep probability, 0..=1 (default 1: keep everything).
    pub rate: f64,
    /// Keep every run with an error anywhere, run-level included (default true).
    pub always_keep_errors: bool,
    /// Keep every run at least `slow_threshold_ms` long (default false).
    pub always_keep_slow: bool,
    /// The slow threshold (default 5000 ms).
    pub slow_threshold_ms: f64,
    /// Ordered rules; the first that matches decides with its own rate.
    pub rules: Vec<SamplingRule>,
    /// At most this many kept runs per second (token bucket); error runs kept by
    /// `always_keep_errors` are not limited.
    pub max_per_second: Option<f64>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            rate: 1.0,
            always_keep_errors: true,
            always_keep_slow: false,
            slow_threshold_ms: 5000.0,
            rules: Vec::new(),
            max_per_second: None,
        }
    }
}

fn check_rate(field: String, rate: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be between 0 and 1, got {rate}"),
        ))
    }
}

impl SamplingConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field: `sampling.rate`, `sampling.rules[1].rate`, ...
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_rate("sampling.rate".into(), self.rate)?;
        if !(self.slow_threshold_ms.is_finite() && self.slow_threshold_ms >= 0.0) {
            return Err(ConfigError::new(
                "sampling.slow_threshold_ms",
                "must be a non-negative number",
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.name.is_empty() {
                return Err(ConfigError::new(
                    format!("sampling.rules[{i}].name"),
                    "must not be empty",
                ));
            }
            check_rate(format!("sampling.rules[{i}].rate"), rule.rate)?;
        }
        if let Some(m) = self.max_per_second
            && !(m.is_finite() && m > 0.0)
        {
            return Err(ConfigError::new(
                "sampling.max_per_second",
                format!("must be a positive number, got {m}"),
            ));
        }
        Ok(())
    }
}

/// Whether the run or any step failed (run-level errors included; the Python package only
/// looks at root steps and `error_count`).
fn has_error(run: &AgentRun) -> bool {
    run.error_count > 0 || run.has_any_error()
}

/// The OpenTelemetry consistent-probability decision: keep when the low 56 bits of the id
/// are at least `(1 - rate) * 2^56`. Every process decides the same way for the same id.
#[must_use]
pub fn keep_by_rate(id: &uuid::Uuid, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 || rate.is_nan() {
        return false;
    }
    let bytes = id.as_bytes();
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&bytes[9..16]);
    let value = u64::from_be_bytes(low);
    const TWO_56: f64 = (1u64 << 56) as f64;
    let threshold = ((1.0 - rate) * TWO_56) as u64;
    value >= threshold
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Decides whether each run is exported and records why in `should_export`/`sample_reason`.
///
/// Order: errors (if `always_keep_errors`), slow runs (if `always_keep_slow`), rules (first
/// match wins, with its rate), the default rate; then the rate limit on what was kept.
/// Reasons use the Python package's strings (`"Kept: default rate (0.1)"`,
/// `"Dropped: matched rule 'x' (rate=0.0)"`, ...).
#[derive(Debug)]
pub struct SamplingProcessor {
    config: SamplingConfig,
    bucket: Option<Mutex<Bucket>>,
    /// The default-rate reasons, formatted once (most runs get one of them).
    kept_default: String,
    dropped_default: String,
}

impl SamplingProcessor {
    /// From a validated configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the invalid field.
    pub fn new(config: SamplingConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let bucket = config.max_per_second.map(|m| {
            Mutex::new(Bucket {
                tokens: m.max(1.0),
                last: Instant::now(),
            })
        });
        Ok(SamplingProcessor {
            kept_default: format!("Kept: default rate ({:?})", config.rate),
            dropped_default: format!("Dropped: default rate ({:?})", config.rate),
            config,
            bucket,
        })
    }

    /// The decision for a run, without changing it: `(keep, reason)`.
    #[must_use]
    pub fn decide(&self, run: &AgentRun) -> (bool, String) {
        let c = &self.config;
        if c.always_keep_errors && has_error(run) {
            return (true, "Kept: error trace (always_keep_errors=True)".into());
        }
        let (keep, reason) = self.decide_by_rate(run);
        if keep && !self.take_token() {
            let limit = c.max_per_second.unwrap_or_default();
            return (false, format!("Dropped: rate limit ({limit:?}/s)"));
        }
        (keep, reason)
    }

    fn decide_by_rate(&self, run: &AgentRun) -> (bool, String) {
        let c = &self.config;
        if c.always_keep_slow && run.duration_ms.is_some_and(|d| d >= c.slow_threshold_ms) {
            return (
                true,
                format!("Kept: slow trace (>{:?}ms)", c.slow_threshold_ms),
            );
        }
        for rule in &c.rules {
            if rule.matches(run) {
                return if keep_by_rate(&run.id, rule.rate) {
                    (true, format!("Kept: matched rule '{}'", rule.name))
                } else {
                    (
                        false,
                        format!(
                            "Dropped: matched rule '{}' (rate={:?})",
                            rule.name, rule.rate
                        ),
                    )
                };
            }
        }
        if keep_by_rate(&run.id, c.rate) {
            (true, self.kept_default.clone())
        } else {
            (false, self.dropped_default.clone())
        }
    }

    fn take_token(&self) -> bool {
        let (Some(bucket), Some(rate)) = (&self.bucket, self.config.max_per_second) else {
            return true;
        };
        let mut b = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let burst = rate.max(1.0);
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Processor for SamplingProcessor {
    fn name(&self) -> &str {
        "sample"
    }
    fn process(&self, mut run: AgentRun) -> Result<Outcome, ProcessError> {
        let (keep, reason) = self.decide(&run);
        if keep {
            run.should_export = true;
            run.sample_reason = Some(reason);
            Ok(Outcome::Keep(run))
        } else {
            Ok(Outcome::Drop(DropReason(reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_consistent_probability_on_low_56_bits() {
        let id = |low: u64| {
            let mut b = [0u8; 16];
            b[8..].copy_from_slice(&low.to_be_bytes());
            b[8] = 0xff; // byte 8 is above the low 56 bits and must not matter
            uuid::Uuid::from_bytes(b)
        };
        let half = 1u64 << 55;
        assert!(keep_by_rate(&id(half), 0.5));
        assert!(!keep_by_rate(&id(half - 1), 0.5));
        assert!(keep_by_rate(&id(0), 1.0));
        assert!(!keep_by_rate(&id((1 << 56) - 1), 0.0));
        // About `rate` of random ids are kept.
        let kept = (0..20_000)
            .filter(|_| keep_by_rate(&uuid::Uuid::new_v4(), 0.1))
            .count();
        assert!(
            (1_600..2_400).contains(&kept),
            "kept {kept} of 20000 at 0.1"
        );
    }
}
