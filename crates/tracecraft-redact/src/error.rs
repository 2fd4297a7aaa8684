//! Build errors. `Display` never echoes a pattern, a value or the hash key.

/// Why a [`Redactor`](crate::Redactor) could not be built from a
/// [`RedactionConfig`](crate::RedactionConfig).
///
/// Messages name the rule and, for pattern errors, the position; they never contain the
/// pattern text (a custom pattern may embed a literal secret) or the hash key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A rule's pattern does not parse.
    #[error(
        "rule `{rule}`: invalid pattern at line {line}, column {column} (byte {offset}): {message}"
    )]
    InvalidPattern {
        /// The rule's name (`allowlist_patterns[i]` for allowlist entries).
        rule: String,
        /// Byte offset of the error in the pattern.
        offset: usize,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A pattern uses a feature that cannot run in guaranteed linear time.
    #[error(
        "rule `{rule}`: {feature} at byte {offset} is not supported: it needs a backtracking \
         engine, which can take exponential time on hostile input; rewrite the pattern without it"
    )]
    NotLinear {
        /// The rule's name.
        rule: String,
        /// The rejected feature (look-around, backreference).
        feature: &'static str,
        /// Byte offset of the feature in the pattern.
        offset: usize,
    },
    /// A pattern compiles to an automaton larger than the size limit.
    #[error(
        "rule `{rule}`: the compiled pattern exceeds the size limit of {limit} bytes; use smaller repetition counts"
    )]
    TooLarge {
        /// The rule's name.
        rule: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A custom rule would redact below 50 MB/s on hostile input (see the speed guarantee in
    /// the crate docs); `allow_slow = true` on the rule accepts it.
    #[error(
        "rule `{rule}`: {reason}; it would redact below 50 MB/s on hostile input. Use smaller \
         repetition counts or a literal prefix, or set `allow_slow = true` on the rule to accept it"
    )]
    TooSlow {
        /// The rule's name.
        rule: String,
        /// Why (the automaton's size, or its behaviour on probe text).
        reason: String,
    },
    /// A pattern matches the empty string, which would redact nothing but cost a match per byte.
    #[error("rule `{rule}`: the pattern matches the empty string")]
    EmptyMatch {
        /// The rule's name.
        rule: String,
    },
    /// `disable` names a rule that is not built in.
    #[error("unknown built-in rule `{name}` in `disable` (known: email, phone, credit_card, ...)")]
    UnknownRule {
        /// The unknown name.
        name: String,
    },
    /// A custom rule has an empty or reserved name, or two rules share a name.
    #[error("custom rule name `{name}` is empty, reserved or duplicated")]
    BadRuleName {
        /// The offending name.
        name: String,
    },
    /// HASH mode without a key.
    #[error(
        "hash mode needs a key: set `hash_key` in [redaction] or TRACECRAFT_REDACTION_HASH_KEY \
         (or `hash_key = \"unkeyed\"` to accept plain SHA-256, which is brute-forceable for \
         low-entropy values such as phone numbers)"
    )]
    MissingHashKey,
    /// An unknown redaction mode (from the environment or a flag). The value is not echoed:
    /// it may be anything the user pasted, a secret included.
    #[error("unknown redaction mode (expected mask, hash or remove)")]
    UnknownMode,
}
