//! # tracecraft-redact
//!
//! The TraceCraft redaction engine. **Guarantee:** for every rule set it accepts, redacting a
//! string takes time linear in its length, so it is safe on untrusted input; any rule that
//! would need a backtracking engine (look-around, backreferences) or an oversized automaton
//! is rejected when the [`Redactor`] is built, with an error naming the rule. It never panics
//! on any UTF-8 input and never splits a character.
//!
//! ```
//! use tracecraft_redact::{Redactor, RedactionConfig, Report};
//!
//! let redactor = Redactor::new(&RedactionConfig::default())?;
//! let mut report = Report::default();
//! let out = redactor.redact_str("mail bob@example.com, password=hunter22", &mut report);
//! assert_eq!(out, "mail [REDACTED], password=[REDACTED]");
//! assert_eq!(report.count("email"), 1);
//!
//! let mut v = serde_json::json!({"user": {"api_key": 12345, "note": "call 415-555-0132"}});
//! redactor.redact_value(&mut v, &mut report);
//! assert_eq!(v, serde_json::json!({"user": {"api_key": "[REDACTED]", "note": "call [REDACTED]"}}));
//! # Ok::<(), tracecraft_redact::BuildError>(())
//! ```
//!
//! ## Rules and semantics
//! 17 built-in rules, on by default, with stable names: `email`, `phone`, `credit_card`,
//! `ssn`, `openai_api_key`, `anthropic_api_key`, `aws_access_key`, `aws_secret_key`,
//! `bearer_token`, `github_token`, `google_api_key`, `azure_connection_string`,
//! `generic_api_key_param`, `private_key`, `slack_token`, `stripe_key`, `password_field`.
//! Key=value rules keep the key (`password=[REDACTED]`, `Bearer [REDACTED]`). Custom rules
//! redact their whole match. A byte is redacted if any enabled rule's match covers it
//! (each rule's matches are its leftmost-first, non-overlapping matches in the original
//! text); overlapping or adjacent matches merge into one replacement, so no rule ever sees
//! another's replacement. Allowlisted values (exact, or a pattern matching the whole value)
//! are kept. JSON values are walked in place, iteratively: field-path rules
//! (`credentials.password` from the root, or a leaf key such as `password`) and the
//! sensitive keys replace the whole value of any type; object keys are redacted like strings.
//!
//! ## Security
//! - HASH mode is HMAC-SHA-256 under a configured key (`hash_key` or
//!   `TRACECRAFT_REDACTION_HASH_KEY`), printed as `[HASH:<16 hex>]`; without a key the build
//!   fails unless `hash_key = "unkeyed"` opts into plain SHA-256 (brute-forceable for
//!   phone numbers, SSNs and other low-entropy values).
//! - The key never appears in `Debug`, `Display` or errors; errors never echo patterns or
//!   values; [`Redactor::explain`] returns rule names and byte ranges, never values.
//! - Detection favours recall on secrets (a token's tail never survives, a bare JWT goes
//!   whole, secrets inside percent-encoding, base64, JSON escapes and wrapped lines are found
//!   by the decoders and their encoded span is redacted) and precision on ordinary trace text:
//!   cards need Luhn and an issuer prefix, 40-character AWS secrets need a nearby
//!   `aws`/`secret`, international phones must fit E.164 lengths, national phone formats and
//!   dashless SSNs need a context word before them, placeholders and values already redacted
//!   are kept, so UUIDs, hashes, epoch timestamps, invoice numbers and versions survive.
//!
//! ## Performance
//! SIMD (Teddy) searches over anchor literals (`@`, `sk-`, `AKIA`, `-----BEGIN`, `password`,
//! `://`, ...) and one blockwise digit scan find candidates for all rules at once; each rule's
//! lazy DFA then runs only at those candidates (anchored) or in small merged windows. Short
//! strings (names, ids, object keys: up to 64 bytes) are searched by a scalar byte-pair table
//! instead, with no per-call SIMD setup, and most are shown clean before any candidate is
//! collected. Anchors where no match can begin (nothing key-like right after `sk-`, no
//! 40-character run within reach of `aws`) and digit runs of lengths no phone, card or SSN has
//! are dropped before any regex runs, so keyword- or digit-dense text stays fast. The extra
//! passes that make redaction idempotent search again only around the replacements. A text
//! over 2 MB (or dense with anchors) is searched in blocks of 256 KB with the same results,
//! so memory beside the text and its output stays bounded. A text of 512 KiB or more uses a
//! second thread (scoped: it ends before the call returns) for the parts of its search that
//! do not depend on what was found before them, when the machine has a second core; results
//! are the same. A string with nothing to redact is returned borrowed, without allocation; JSON
//! walks check sensitive keys without allocating. Figures are in the
//! crate's README (`cargo bench -p tracecraft-redact --bench redact`).
//!
//! ## Crate features
//! None; the crate always depends on regex-automata, aho-corasick, memchr, hmac and sha2.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The pieces of the `private_key` rule's pattern (`rules.rs`), shared with `pem.rs`, which
/// follows a block across the pieces of a text redacted in parts.
macro_rules! pem_header {
    () => {
        r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    };
}
/// A character of a private key block's body (see `pem_header!`).
macro_rules! pem_body {
    () => {
        r"[A-Za-z0-9+/=\s.,:\\\-]"
    };
}
/// A private key block's footer (see `pem_header!`).
macro_rules! pem_footer {
    () => {
        r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    };
}

mod anchors;
mod blocks;
mod candidates;
mod config;
mod decode;
mod digits;
mod engine;
mod error;
mod memo;
mod pem;
mod replace;
mod report;
mod rules;
mod speed;
mod stream;
mod tables;
mod walk;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

pub use config::{CustomRule, HashKey, RedactionConfig, RedactionMode};
pub use error::BuildError;
pub use report::{Finding, MAX_FINDINGS, Report};
pub use rules::DEFAULT_SENSITIVE_KEYS;
pub use speed::{MAX_NFA_STATES, probe_texts};
pub use stream::{PieceContext, StreamTracker};

/// The names of the 17 built-in rules, in their fixed order.
pub const BUILTIN_RULES: [&str; 17] = [
    "email",
    "phone",
    "credit_card",
    "ssn",
    "openai_api_key",
    "anthropic_api_key",
    "aws_access_key",
    "aws_secret_key",
    "bearer_token",
    "github_token",
    "google_api_key",
    "azure_connection_string",
    "generic_api_key_param",
    "private_key",
    "slack_token",
    "stripe_key",
    "password_field",
];

// `BUILTIN_RULES` is the built-in detectors' names, in order, each once: a rule's detectors
// are adjacent, no name is missing, extra or repeated. Checked when the crate compiles.
const _: () = assert!(rules::builtin_names_are(&BUILTIN_RULES));

/// A compiled rule set. Cheap to clone (`Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct Redactor {
    engine: Arc<engine::Engine>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.rule_names().collect();
        f.debug_struct("Redactor")
            .field("enabled", &self.engine.enabled)
            .field("rules", &names)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// Compiles a configuration.
    ///
    /// # Errors
    /// [`BuildError`] for an invalid or non-linear pattern (naming the rule and position),
    /// an oversized automaton, an unknown name in `disable`, a bad custom rule name, or HASH
    /// mode without a key.
    pub fn new(config: &RedactionConfig) -> Result<Redactor, BuildError> {
        Ok(Redactor {
            engine: Arc::new(engine::Engine::new(config)?),
        })
    }

    /// The enabled rule names (built-ins in fixed order, then custom rules).
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        // A built-in rule may have several detectors (e.g. `phone`: digit forms and numbers
        // after a phone word), adjacent in the list.
        let rules = &self.engine.rules;
        rules
            .iter()
            .enumerate()
            .filter(|(i, r)| *i == 0 || rules[i - 1].name != r.name)
            .map(|(_, r)| &*r.name)
    }

    /// Redacts one string. Returns it borrowed when nothing matched.
    pub fn redact_str<'a>(&self, text: &'a str, report: &mut Report) -> Cow<'a, str> {
        if !self.engine.enabled {
            return Cow::Borrowed(text);
        }
        self.engine.redact(text, report, false)
    }

    /// Redacts a JSON value in place; `value` is the root for dotted field paths.
    pub fn redact_value(&self, value: &mut serde_json::Value, report: &mut Report) {
        self.engine.walk_value(value, report);
    }

    /// Redacts a JSON object in place; `map` is the root for dotted field paths.
    pub fn redact_map(
        &self,
        map: &mut serde_json::Map<String, serde_json::Value>,
        report: &mut Report,
    ) {
        self.engine.walk_map(map, report);
    }

    /// For a long text redacted in pieces cut at line breaks (as `tracecraft redact` streams
    /// stdin): a tracker of private key blocks, which says after each piece whether one is
    /// still open, so the piece may be cut there and the next one continue the block (see
    /// `BlockTracker`). `None` when the `private_key` rule is off (or redaction disabled):
    /// no block is then redacted, and a piece may be cut anywhere a line ends.
    #[must_use]
    pub(crate) fn block_tracker(&self) -> Option<pem::BlockTracker> {
        (self.engine.enabled && self.engine.rules.iter().any(|r| &*r.name == "private_key"))
            .then(pem::BlockTracker::new)
    }

    /// For a long text redacted in pieces cut at line breaks: a tracker of CSV/TSV tables
    /// whose header names a sensitive column, which gives after each piece the header of a
    /// table whose rows may go on in the next one (see [`StreamTracker`]).
    /// `None` when tables are not searched (redaction disabled, `password_field` off, or no
    /// sensitive keys).
    #[must_use]
    pub(crate) fn table_tracker(&self) -> Option<tables::TableTracker> {
        let e = &self.engine;
        (e.enabled && e.table_rule.is_some() && !e.sensitive.is_empty())
            .then(|| tables::TableTracker::new(Arc::clone(&self.engine)))
    }

    /// Which rule matched where in `text` (byte ranges, before merging), never the value.
    /// Empty when redaction is disabled.
    pub fn explain(&self, text: &str) -> Vec<Finding> {
        if !self.engine.enabled {
            return Vec::new();
        }
        let mut hits = Vec::new();
        self.engine.find(text, &mut hits);
        self.engine.findings(&mut hits)
    }

    /// `text` redacted in two pieces, as a streaming caller does: cut at the first line break
    /// from its middle on (see [`redact_cut_at`](Self::redact_cut_at)). `None` when there is
    /// no such cut. For the fuzz target and tests (it must equal
    /// [`redact_str`](Self::redact_str) of the whole text).
    #[doc(hidden)]
    pub fn redact_in_two_pieces(&self, text: &str) -> Option<String> {
        let mut half = text.len() / 2;
        while !text.is_char_boundary(half) {
            half -= 1;
        }
        let nl = text[half..].find('\n')?;
        self.redact_cut_at(text, half + nl + 1)
    }

    /// `text` redacted in two pieces cut after byte `cut` (a line end), as a streaming caller
    /// does, the second piece in the context a [`StreamTracker`] gives after the first; `None`
    /// when the tracker does not allow the cut there. For tests.
    #[doc(hidden)]
    pub fn redact_cut_at(&self, text: &str, cut: usize) -> Option<String> {
        let (first, second) = text.split_at(cut);
        let mut tracker = self.stream_tracker();
        if !tracker.feed(first.as_bytes()) {
            return None;
        }
        let mut out = self.redact_str(first, &mut Report::default()).into_owned();
        out.push_str(&self.redact_piece(&tracker.context(), second, &mut Report::default()));
        Some(out)
    }

    /// The reference semantics, computed naively: every rule searched over the whole text
    /// on its own. For tests (the fast path must agree); not for production use.
    #[doc(hidden)]
    pub fn redact_str_naive<'a>(&self, text: &'a str, report: &mut Report) -> Cow<'a, str> {
        if !self.engine.enabled {
            return Cow::Borrowed(text);
        }
        self.engine.redact(text, report, true)
    }

    /// [`explain`](Self::explain) computed by the naive oracle. For tests.
    #[doc(hidden)]
    pub fn explain_naive(&self, text: &str) -> Vec<Finding> {
        let mut hits = Vec::new();
        self.engine.find_naive(text, &mut hits);
        self.engine.findings(&mut hits)
    }
}

#[cfg(test)]
mod tests {
    use crate::{CustomRule, RedactionConfig, Redactor, Report};

    /// What one thread remembers of one engine's clean strings and plain keys (`memo.rs`)
    /// never answers for another engine on the same thread, whichever is built first, and a
    /// remembered answer is the engine's own.
    #[test]
    fn the_memo_answers_for_its_own_engine_only() {
        let plain = Redactor::new(&RedactionConfig::default()).unwrap();
        let mut cfg = RedactionConfig::default();
        cfg.custom_rules
            .push(CustomRule::new("ticket", "TCK-[0-9]{3}"));
        cfg.sensitive_keys = Some(vec!["role".into()]);
        let custom = Redactor::new(&cfg).unwrap();
        let run =
            || serde_json::json!({"role": "user", "note": "TCK-123", "nested": {"role": "x"}});
        for _ in 0..3 {
            // Twice each, in turn: the second call of each may be answered by the memo.
            for _ in 0..2 {
                let mut r = Report::new();
                assert_eq!(plain.redact_str("TCK-123", &mut r), "TCK-123");
                let mut v = run();
                plain.redact_value(&mut v, &mut r);
                assert_eq!(v, run(), "the default rules leave it");
                assert_eq!(r.total(), 0);
            }
            for _ in 0..2 {
                let mut r = Report::new();
                assert_eq!(custom.redact_str("TCK-123", &mut r), "[REDACTED]");
                let mut v = run();
                custom.redact_value(&mut v, &mut r);
                assert_eq!(v["note"], "[REDACTED]");
                assert_eq!(r.count("ticket"), 2);
                assert_eq!(v["role"], "[REDACTED]", "a sensitive key here");
                assert_eq!(v["nested"]["role"], "[REDACTED]");
                assert_eq!(r.count("sensitive_key"), 2);
            }
        }
    }

    /// A key is remembered as needing nothing only when it is clean as text and neither a
    /// sensitive key nor a field-path leaf; the same keys, met again and again (in the same
    /// map, in other maps, nested under a field path), get the same answers as the first time.
    #[test]
    fn keys_met_again_get_the_same_answers() {
        let cfg = RedactionConfig {
            field_paths: vec!["config.region".into(), "token_leaf".into()],
            ..RedactionConfig::default()
        };
        let redactor = Redactor::new(&cfg).unwrap();
        let run = || {
            serde_json::json!({
                "region": "eu-west-1",
                "user": "bob",
                "password": "hunter2",
                "alice@example.com": "an e-mail as a key",
                "token_leaf": "x",
                "config": {"region": "us-east-1", "user": "bob", "password": "p2"},
            })
        };
        let mut first = None;
        for _ in 0..4 {
            let mut r = Report::new();
            let mut v = run();
            redactor.redact_value(&mut v, &mut r);
            assert_eq!(v["region"], "eu-west-1", "not a path at the top");
            assert_eq!(v["user"], "bob");
            assert_eq!(v["password"], "[REDACTED]");
            assert_eq!(v["token_leaf"], "[REDACTED]");
            assert_eq!(v["config"]["region"], "[REDACTED]", "the field path");
            assert_eq!(v["config"]["user"], "bob");
            assert_eq!(v["config"]["password"], "[REDACTED]");
            assert!(v.get("alice@example.com").is_none(), "{v}");
            let answer = (v, r.total());
            assert_eq!(first.get_or_insert_with(|| answer.clone()), &answer);
        }
    }

    /// `BUILTIN_RULES` is `BUILTINS`' names in order, each once: a rule's detectors are
    /// adjacent, and no name is missing or extra.
    #[test]
    fn builtin_rules_are_the_builtins_names() {
        let mut names: Vec<&str> = crate::rules::BUILTINS.iter().map(|b| b.name).collect();
        names.dedup();
        assert_eq!(names, crate::BUILTIN_RULES);
    }

    /// The compile-time check rejects every way the list can drift from the detectors.
    #[test]
    fn builtin_names_check_bites() {
        use crate::rules::builtin_names_are;
        let good = crate::BUILTIN_RULES;
        assert!(builtin_names_are(&good));
        assert!(!builtin_names_are(&good[1..]), "missing");
        assert!(!builtin_names_are(&good[..16]), "missing last");
        let mut extra = good.to_vec();
        extra.push("new_rule");
        assert!(!builtin_names_are(&extra), "extra");
        let mut swapped = good;
        swapped.swap(0, 1);
        assert!(!builtin_names_are(&swapped), "order");
        let mut repeated = good.to_vec();
        repeated.insert(2, "email");
        assert!(!builtin_names_are(&repeated), "repeated");
        let mut renamed = good;
        renamed[3] = "ssn2";
        assert!(!builtin_names_are(&renamed), "renamed");
    }
}
