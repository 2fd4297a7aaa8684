//! The `[redaction]` configuration table.

use std::fmt;

use serde::Deserialize;

use crate::BuildError;

/// What replaces a redacted span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedactionMode {
    /// Replace with `[REDACTED]` (the default).
    #[default]
    Mask,
    /// Replace with `[HASH:<16 hex>]`: HMAC-SHA-256 under the configured key (or plain
    /// SHA-256 with `hash_key = "unkeyed"`), so equal secrets stay correlatable.
    Hash,
    /// Remove the span.
    Remove,
}

impl std::str::FromStr for RedactionMode {
    type Err = BuildError;
    fn from_str(s: &str) -> Result<Self, BuildError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mask" => Ok(Self::Mask),
            "hash" => Ok(Self::Hash),
            "remove" => Ok(Self::Remove),
            other => Err(BuildError::UnknownMode(other.chars().take(32).collect())),
        }
    }
}

impl<'de> Deserialize<'de> for RedactionMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::unknown_variant(&s, &["mask", "hash", "remove"]))
    }
}

/// The HMAC key for HASH mode. Its `Debug` shows `HashKey(***)`; it never appears in errors.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct HashKey(String);

impl HashKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    /// `true` for the literal `unkeyed`, the opt-in to plain SHA-256.
    pub fn is_unkeyed(&self) -> bool {
        self.0 == "unkeyed"
    }
    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unkeyed() {
            f.write_str("HashKey(unkeyed)")
        } else {
            f.write_str("HashKey(***)")
        }
    }
}

impl From<String> for HashKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for HashKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A user-defined pattern rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// The rule's name, used in reports.
    pub name: String,
    /// A regular expression (regex-syntax dialect, no look-around, no backreferences).
    /// The whole match is redacted.
    pub pattern: String,
    /// Replacement text instead of the mode's replacement.
    #[serde(default)]
    pub replacement: Option<String>,
}

impl CustomRule {
    /// A rule with the mode's replacement.
    pub fn new(name: impl Into<String>, pattern: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pattern: pattern.into(),
            replacement: None,
        }
    }
}

/// The `[redaction]` table. `Debug` hides the hash key.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// Redact at all (default `true`). When `false` the redactor builds but changes nothing.
    pub enabled: bool,
    /// Mask (default), hash or remove.
    pub mode: RedactionMode,
    /// HMAC key for HASH mode; `"unkeyed"` opts into plain SHA-256 (weaker).
    pub hash_key: Option<HashKey>,
    /// Use the 17 built-in rules (default `true`).
    pub include_defaults: bool,
    /// Built-in rule names to turn off, e.g. `["phone"]`.
    pub disable: Vec<String>,
    /// Extra pattern rules.
    pub custom_rules: Vec<CustomRule>,
    /// JSON field paths whose whole value is replaced: `credentials.password` (from the root)
    /// or a leaf key such as `password` (anywhere).
    pub field_paths: Vec<String>,
    /// Keys whose values are always replaced (case-, `-`- and `_`-insensitive).
    /// `None` = the built-in set ([`DEFAULT_SENSITIVE_KEYS`](crate::DEFAULT_SENSITIVE_KEYS));
    /// `Some(vec![])` turns it off.
    pub sensitive_keys: Option<Vec<String>>,
    /// Exact matched values that are kept.
    pub allowlist: Vec<String>,
    /// Patterns; a matched value that they match in full is kept.
    pub allowlist_patterns: Vec<String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: RedactionMode::Mask,
            hash_key: None,
            include_defaults: true,
            disable: Vec::new(),
            custom_rules: Vec::new(),
            field_paths: Vec::new(),
            sensitive_keys: None,
            allowlist: Vec::new(),
            allowlist_patterns: Vec::new(),
        }
    }
}

impl fmt::Debug for RedactionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactionConfig")
            .field("enabled", &self.enabled)
            .field("mode", &self.mode)
            .field("hash_key", &self.hash_key)
            .field("include_defaults", &self.include_defaults)
            .field("disable", &self.disable)
            .field("custom_rules", &self.custom_rules.len())
            .field("field_paths", &self.field_paths)
            .field("sensitive_keys", &self.sensitive_keys)
            .field("allowlist", &self.allowlist.len())
            .field("allowlist_patterns", &self.allowlist_patterns.len())
            .finish()
    }
}

impl RedactionConfig {
    /// Applies `TRACECRAFT_REDACTION_HASH_KEY` and `TRACECRAFT_REDACTION_MODE` when set.
    ///
    /// # Errors
    /// [`BuildError::UnknownMode`] for a mode other than mask, hash or remove.
    pub fn apply_env(&mut self) -> Result<(), BuildError> {
        if let Ok(key) = std::env::var("TRACECRAFT_REDACTION_HASH_KEY")
            && !key.is_empty()
        {
            self.hash_key = Some(HashKey(key));
        }
        if let Ok(mode) = std::env::var("TRACECRAFT_REDACTION_MODE")
            && !mode.trim().is_empty()
        {
            self.mode = mode.parse()?;
        }
        Ok(())
    }
}
