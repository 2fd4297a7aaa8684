//! The `[redaction]` configuration table.

use std::fmt;

use serde::{Deserialize, Serialize};

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
            _ => Err(BuildError::UnknownMode),
        }
    }
}

impl RedactionMode {
    /// `mask`, `hash` or `remove`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mask => "mask",
            Self::Hash => "hash",
            Self::Remove => "remove",
        }
    }
}

impl Serialize for RedactionMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RedactionMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // The value is not named in the error: it may be anything a user pasted.
        s.parse().map_err(|_| {
            serde::de::Error::custom(
                "unknown redaction mode, expected one of `mask`, `hash`, `remove`",
            )
        })
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

    /// The stable pseudonym of `value`: `[HASH:<16 hex>]`, the first 8 bytes of
    /// HMAC-SHA-256(key, value) (plain SHA-256 when unkeyed), the same token HASH mode writes
    /// for the same text. Used for identifiers of people (`user_id`, `session_id`), so that
    /// stores never hold the id while queries and erasure by the real id still work.
    #[must_use]
    pub fn pseudonym(&self, value: &str) -> String {
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = if self.is_unkeyed() {
            Sha256::digest(value.as_bytes()).into()
        } else {
            match Hmac::<Sha256>::new_from_slice(self.expose()) {
                Ok(mut mac) => {
                    mac.update(value.as_bytes());
                    mac.finalize().into_bytes().into()
                }
                // HMAC takes keys of any length; kept total rather than panicking.
                Err(_) => Sha256::digest(value.as_bytes()).into(),
            }
        };
        format!("[HASH:{}]", hex::encode(&digest[..8]))
    }

    /// Whether `value` is already a pseudonym (`[HASH:<16 hex>]`).
    #[must_use]
    pub fn is_pseudonym(value: &str) -> bool {
        value.len() == 23
            && value.starts_with("[HASH:")
            && value.ends_with(']')
            && value[6..22].bytes().all(|b| b.is_ascii_hexdigit())
    }
}

/// Serializes as `"<hidden>"` (or `"unkeyed"`): configurations are serialized to show them
/// (`tracecraft config`), never to carry the key.
impl Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_unkeyed() {
            "unkeyed"
        } else {
            "<hidden>"
        })
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Accept the rule even though the speed check finds it slow
    /// ([`BuildError::TooSlow`](crate::BuildError::TooSlow)): for rules whose cost you have
    /// measured (`tracecraft doctor`) and accept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_slow: bool,
}

impl CustomRule {
    /// A rule with the mode's replacement.
    pub fn new(name: impl Into<String>, pattern: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pattern: pattern.into(),
            replacement: None,
            allow_slow: false,
        }
    }
}

/// The `[redaction]` table. `Debug` and `Serialize` hide the hash key.
///
/// Besides `custom_rules` (named rules), the file accepts the Python package's
/// `custom_patterns = ["EMP-\\d{6}", ...]`: a list of patterns, appended to `custom_rules` as
/// rules named `custom_1`, `custom_2`, ... (the names reports use).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, from = "RedactionFile")]
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
    /// Identifier fields stored as keyed pseudonyms ([`HashKey::pseudonym`]) instead of
    /// being masked: `user_id`, `session_id` (the run's fields) and any run or step attribute
    /// key (default `["user_id", "session_id"]`; `[]` turns it off). Needs `hash_key`;
    /// without one the fields are redacted by the rules like any other string.
    pub pseudonymize: Vec<String>,
}

/// The identifier fields pseudonymized by default.
fn default_pseudonymize() -> Vec<String> {
    vec!["user_id".to_owned(), "session_id".to_owned()]
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
            pseudonymize: default_pseudonymize(),
        }
    }
}

/// The `[redaction]` table as written: [`RedactionConfig`] plus the `custom_patterns` list.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RedactionFile {
    enabled: bool,
    mode: RedactionMode,
    hash_key: Option<HashKey>,
    include_defaults: bool,
    disable: Vec<String>,
    custom_rules: Vec<CustomRule>,
    custom_patterns: Vec<String>,
    field_paths: Vec<String>,
    sensitive_keys: Option<Vec<String>>,
    allowlist: Vec<String>,
    allowlist_patterns: Vec<String>,
    pseudonymize: Vec<String>,
}

impl Default for RedactionFile {
    fn default() -> Self {
        let RedactionConfig {
            enabled,
            mode,
            hash_key,
            include_defaults,
            disable,
            custom_rules,
            field_paths,
            sensitive_keys,
            allowlist,
            allowlist_patterns,
            pseudonymize,
        } = RedactionConfig::default();
        RedactionFile {
            enabled,
            mode,
            hash_key,
            include_defaults,
            disable,
            custom_rules,
            custom_patterns: Vec::new(),
            field_paths,
            sensitive_keys,
            allowlist,
            allowlist_patterns,
            pseudonymize,
        }
    }
}

impl From<RedactionFile> for RedactionConfig {
    fn from(f: RedactionFile) -> Self {
        let RedactionFile {
            enabled,
            mode,
            hash_key,
            include_defaults,
            disable,
            mut custom_rules,
            custom_patterns,
            field_paths,
            sensitive_keys,
            allowlist,
            allowlist_patterns,
            pseudonymize,
        } = f;
        custom_rules.extend(
            custom_patterns
                .into_iter()
                .enumerate()
                .map(|(i, pattern)| CustomRule::new(format!("custom_{}", i + 1), pattern)),
        );
        RedactionConfig {
            enabled,
            mode,
            hash_key,
            include_defaults,
            disable,
            custom_rules,
            field_paths,
            sensitive_keys,
            allowlist,
            allowlist_patterns,
            pseudonymize,
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
            .field("pseudonymize", &self.pseudonymize)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        redaction: RedactionConfig,
    }

    #[test]
    fn custom_patterns_from_the_security_guide_become_numbered_rules() {
        let f: File = toml::from_str(
            "[redaction]\ncustom_rules = [{ name = \"emp\", pattern = \"E-\\\\d+\" }]\ncustom_patterns = [\"EMP-\\\\d{6}\", \"PRJ-[A-Z]{4}\"]\n",
        )
        .unwrap();
        let names: Vec<_> = f
            .redaction
            .custom_rules
            .iter()
            .map(|r| (r.name.as_str(), r.pattern.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("emp", "E-\\d+"),
                ("custom_1", "EMP-\\d{6}"),
                ("custom_2", "PRJ-[A-Z]{4}")
            ]
        );
        assert!(f.redaction.enabled, "defaults still apply");
    }

    #[test]
    fn unknown_fields_and_modes_are_refused_without_echoing_the_value() {
        // `message()` is what loaders show (`Display` adds a snippet of the source text).
        let e = toml::from_str::<File>("[redaction]\nmode = \"sk-live-secret-value\"\n")
            .err()
            .unwrap()
            .message()
            .to_owned();
        assert!(!e.contains("sk-live-secret-value"), "{e}");
        assert!(toml::from_str::<File>("[redaction]\ncustom_pattern = []\n").is_err());
        assert!(!BuildError::UnknownMode.to_string().contains('`'));
    }

    #[test]
    fn serialize_hides_the_hash_key() {
        let cfg = RedactionConfig {
            hash_key: Some(HashKey::new("hmac-key-do-not-print")),
            ..RedactionConfig::default()
        };
        let text = toml::to_string(&cfg).unwrap();
        assert!(!text.contains("hmac-key-do-not-print"), "{text}");
        assert!(text.contains("<hidden>"), "{text}");
    }
}
