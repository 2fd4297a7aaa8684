//! [`PseudonymizeProcessor`]: identifiers of people stored as keyed pseudonyms (DESIGN
//! invariant 11), so a store never holds `alice@example.com` yet queries and per-person
//! erasure by the real id still work (the caller pseudonymizes the argument the same way).

use tracecraft_core::{AgentRun, Step};
use tracecraft_redact::HashKey;

use crate::processor::{Outcome, ProcessError, Processor};

/// Replaces `user_id`, `session_id` and the configured attribute keys (on the run and every
/// step) with [`HashKey::pseudonym`] of their value. Values that already are pseudonyms are
/// left as they are, so processing twice changes nothing. Runs before redaction in both
/// processor orders.
pub struct PseudonymizeProcessor {
    key: HashKey,
    user_id: bool,
    session_id: bool,
    attributes: Vec<String>,
}

impl std::fmt::Debug for PseudonymizeProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymizeProcessor")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

impl PseudonymizeProcessor {
    /// Pseudonymizes `fields` (`user_id`, `session_id`, or attribute keys) under `key`.
    #[must_use]
    pub fn new(key: HashKey, fields: &[String]) -> Self {
        PseudonymizeProcessor {
            key,
            user_id: fields.iter().any(|f| f == "user_id"),
            session_id: fields.iter().any(|f| f == "session_id"),
            attributes: fields
                .iter()
                .filter(|f| *f != "user_id" && *f != "session_id")
                .cloned()
                .collect(),
        }
    }

    fn pseudonymize(&self, value: &mut String) {
        if !HashKey::is_pseudonym(value) {
            *value = self.key.pseudonym(value);
        }
    }

    fn attributes(&self, map: &mut tracecraft_core::JsonMap) {
        for key in &self.attributes {
            if let Some(serde_json::Value::String(v)) = map.get_mut(key) {
                self.pseudonymize(v);
            }
        }
    }

    fn steps(&self, steps: &mut [Step]) {
        for step in steps {
            self.attributes(&mut step.attributes);
            self.steps(&mut step.children);
        }
    }
}

impl Processor for PseudonymizeProcessor {
    fn name(&self) -> &str {
        "pseudonymize"
    }

    fn process(&self, mut run: AgentRun) -> Result<Outcome, ProcessError> {
        if self.user_id
            && let Some(v) = run.user_id.as_mut()
        {
            self.pseudonymize(v);
        }
        if self.session_id
            && let Some(v) = run.session_id.as_mut()
        {
            self.pseudonymize(v);
        }
        if !self.attributes.is_empty() {
            self.attributes(&mut run.attributes);
            self.steps(&mut run.steps);
        }
        Ok(Outcome::Keep(run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_stable_keyed_pseudonyms_and_stay_so() {
        let p = PseudonymizeProcessor::new(
            HashKey::new("k1"),
            &["user_id".into(), "session_id".into(), "customer.id".into()],
        );
        let mut run = AgentRun::builder("a")
            .user_id("alice@example.com")
            .session_id("s-1")
            .build();
        run.attributes
            .insert("customer.id".into(), serde_json::json!("C-42"));
        let Outcome::Keep(once) = p.process(run).unwrap() else {
            panic!("dropped")
        };
        let expected = HashKey::new("k1").pseudonym("alice@example.com");
        assert_eq!(once.user_id.as_deref(), Some(expected.as_str()));
        assert!(HashKey::is_pseudonym(once.session_id.as_deref().unwrap()));
        assert!(HashKey::is_pseudonym(
            once.attributes["customer.id"].as_str().unwrap()
        ));
        assert_ne!(
            HashKey::new("k2").pseudonym("alice@example.com"),
            expected,
            "keyed"
        );
        let Outcome::Keep(twice) = p.process(once.clone()).unwrap() else {
            panic!("dropped")
        };
        assert_eq!(twice.user_id, once.user_id, "idempotent");
    }
}
