//! Iterative, in-place redaction of `serde_json::Value` trees.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::Report;
use crate::engine::{Engine, normalize_key};
use crate::memo;

enum Field {
    Path,
    Sensitive,
}

/// Bit `i`: the `i`-th key of a map (of the first 64) is a [`memo::Kind::Key`], known to
/// need nothing, as text or as a key (see [`Engine::redact_keys`]).
type KnownKeys = u64;

fn known(keys: KnownKeys, i: usize) -> bool {
    keys & key_bit(i) != 0
}

/// The bit of the `i`-th key in [`KnownKeys`] (none past the 64th).
fn key_bit(i: usize) -> KnownKeys {
    u32::try_from(i)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .unwrap_or(0)
}

impl Engine {
    /// The whole-value rule for the value under `key` (at dotted `path`, when tracked);
    /// `plain`: the key is known to be neither a field-path leaf nor sensitive.
    fn field_rule(&self, key: &str, path: Option<&str>, plain: bool) -> Option<Field> {
        if path.is_some_and(|p| self.field_dotted.contains(p)) {
            return Some(Field::Path);
        }
        if plain {
            return None;
        }
        self.key_rule(key)
    }

    /// The whole-value rule that the key alone calls for.
    fn key_rule(&self, key: &str) -> Option<Field> {
        // A leaf rule also matches the last segment of a dotted key (`db.password` for
        // `password`, as OTLP attributes are named).
        if !self.field_leaf.is_empty()
            && (self.field_leaf.contains(key)
                || key
                    .rsplit_once('.')
                    .is_some_and(|(_, leaf)| self.field_leaf.contains(leaf)))
        {
            return Some(Field::Path);
        }
        if self.is_sensitive(key) {
            return Some(Field::Sensitive);
        }
        None
    }

    /// Whether `key` is a sensitive key, or ends with one as whole words: `db.password`,
    /// `smtp_password`, `clientSecret`, `X-Api-Key` (words split at `.`, `-`, `_`, spaces and
    /// lower-to-upper case changes; `max_token` and the other count words before `token` are
    /// not sensitive). ASCII keys are normalised into a stack buffer, and only suffixes of a
    /// length some sensitive key has are looked up (no allocation).
    pub(crate) fn is_sensitive(&self, key: &str) -> bool {
        const CAP: usize = 64;
        if self.sensitive.is_empty() {
            return false;
        }
        if !key.is_ascii() || key.len() > CAP || self.sensitive_max >= CAP {
            // `char::to_lowercase` can map non-ASCII to ASCII (`K`, the Kelvin sign).
            return self.sensitive.contains(&normalize_key(key));
        }
        let mut buf = [0u8; CAP];
        // Bit `i`: a word begins at `buf[i]`.
        let mut starts = 1u64;
        let mut n = 0;
        let mut prev = 0u8;
        for &b in key.as_bytes() {
            if matches!(b, b'-' | b'_' | b'.' | b' ') {
                starts |= 1 << n.min(CAP - 1);
                prev = b;
                continue;
            }
            if b.is_ascii_uppercase() && prev.is_ascii_lowercase() {
                starts |= 1 << n;
            }
            buf[n] = b.to_ascii_lowercase();
            prev = b;
            n += 1;
        }
        let lookup = |k: &[u8]| match &self.sensitive_few {
            Some(few) => few.iter().any(|s| s.as_bytes() == k),
            None => std::str::from_utf8(k).is_ok_and(|k| self.sensitive.contains(k)),
        };
        // `.` and spaces are kept by `normalize_key`: the whole key as the set holds it.
        // A 64-byte key is longer than any sensitive key (`sensitive_max < CAP`).
        if !key.contains(['.', ' '])
            && self
                .sensitive_lens
                .checked_shr(n as u32)
                .is_some_and(|l| l & 1 == 1)
            && lookup(&buf[..n])
        {
            return true;
        }
        let mut prev_word = 0;
        for p in 1..n {
            if (starts >> p) & 1 == 0 {
                continue;
            }
            let len = n - p;
            if len <= self.sensitive_max
                && (self.sensitive_lens >> len) & 1 == 1
                && lookup(&buf[p..n])
            {
                let before = &buf[prev_word..p];
                let counted = buf[p..n] == *b"token"
                    && crate::rules::TOKEN_COUNT_WORDS
                        .iter()
                        .any(|w| w.as_bytes() == before);
                if !counted {
                    return true;
                }
            }
            prev_word = p;
        }
        false
    }

    /// Replaces a whole value under a field-path or sensitive-key rule.
    fn replace_whole(&self, v: &mut Value, why: Field, report: &mut Report) {
        if v.is_null() {
            return;
        }
        // A boolean under a sensitive key (`"secret": false`, `has_password: true`) holds no
        // secret; field paths, which the user named, replace values of every type.
        if matches!(why, Field::Sensitive) && v.is_boolean() {
            return;
        }
        let name = match why {
            Field::Path => "field_path",
            Field::Sensitive => "sensitive_key",
        };
        report.add(name, 0, 0);
        let (original, was_string) = match &*v {
            Value::String(s) => (s.clone(), true),
            other => (other.to_string(), false),
        };
        let rep = self.replacement(None, &original).into_owned();
        *v = if was_string || !rep.is_empty() {
            Value::String(rep)
        } else {
            Value::Null
        };
    }

    fn redact_string(&self, s: &mut String, report: &mut Report) {
        if let Cow::Owned(out) = self.redact(s, report, false) {
            *s = out;
        }
    }

    /// Redacts object keys matched by value rules, keeping order; colliding keys get `#n`.
    /// Returns the keys known to need nothing, as text or as keys: a trace spells few
    /// distinct keys, over and over, and each is looked up once in the memo (`memo.rs`) for
    /// both questions.
    fn redact_keys(&self, map: &mut Map<String, Value>, report: &mut Report) -> KnownKeys {
        let mut hits = Vec::new();
        let mut plain: KnownKeys = 0;
        if !map.keys().enumerate().any(|(i, k)| {
            if memo::contains(self.id, memo::Kind::Key, k) {
                plain |= key_bit(i);
                return false;
            }
            if !self.clean_short(k) {
                self.find(k, &mut hits);
                if !hits.is_empty() {
                    return true;
                }
                memo::insert(self.id, memo::Kind::Clean, k);
            }
            if self.key_rule(k).is_none() {
                memo::insert(self.id, memo::Kind::Key, k);
                plain |= key_bit(i);
            }
            false
        }) {
            return plain;
        }
        // A key has a finding: the keys are written again (their order kept), and none is
        // taken as known.
        let old = std::mem::take(map);
        for (k, v) in old {
            let mut key = self.redact(&k, report, false).into_owned();
            if map.contains_key(&key) {
                let base = key.clone();
                let mut n = 1;
                while map.contains_key(&key) {
                    key = format!("{base}#{n}");
                    n += 1;
                }
            }
            map.insert(key, v);
        }
        0
    }

    pub(crate) fn walk_map(&self, root: &mut Map<String, Value>, report: &mut Report) {
        if !self.enabled {
            return;
        }
        let flat = root.len() <= 64
            && root
                .values()
                .all(|v| !matches!(v, Value::Array(_) | Value::Object(_)));
        if flat {
            // No nesting (the common case): no stack. Same order as `push_map` + `drain`:
            // whole-value rules first, then the strings.
            let plain = self.redact_keys(root, report);
            let mut whole = 0u64;
            for (i, (k, v)) in root.iter_mut().enumerate() {
                let path = (self.max_dotted_depth >= 1).then_some(k.as_str());
                if let Some(why) = self.field_rule(k, path, known(plain, i)) {
                    self.replace_whole(v, why, report);
                    whole |= 1 << i;
                }
            }
            for (i, v) in root.values_mut().enumerate() {
                if let Value::String(s) = v
                    && (whole >> i) & 1 == 0
                {
                    self.redact_string(s, report);
                }
            }
            return;
        }
        let mut stack = Vec::new();
        self.push_map(root, 0, None, &mut stack, report);
        self.drain(stack, report);
    }

    pub(crate) fn walk_value(&self, root: &mut Value, report: &mut Report) {
        if !self.enabled {
            return;
        }
        match root {
            Value::String(s) => self.redact_string(s, report),
            Value::Object(map) => self.walk_map(map, report),
            Value::Array(_) => self.drain(vec![(root, 0, None)], report),
            _ => {}
        }
    }

    /// Depth-first over an explicit stack: no recursion, so nesting depth is unbounded.
    fn drain(&self, mut stack: Vec<(&mut Value, usize, Option<String>)>, report: &mut Report) {
        while let Some((v, depth, path)) = stack.pop() {
            match v {
                Value::String(s) => self.redact_string(s, report),
                Value::Array(items) => {
                    for item in items.iter_mut().rev() {
                        if matches!(item, Value::String(_) | Value::Array(_) | Value::Object(_)) {
                            stack.push((item, depth, path.clone()));
                        }
                    }
                }
                Value::Object(map) => {
                    self.push_map(map, depth, path.as_deref(), &mut stack, report);
                }
                _ => {}
            }
        }
    }

    fn push_map<'v>(
        &self,
        map: &'v mut Map<String, Value>,
        depth: usize,
        path: Option<&str>,
        stack: &mut Vec<(&'v mut Value, usize, Option<String>)>,
        report: &mut Report,
    ) {
        let plain = self.redact_keys(map, report);
        let child_depth = depth + 1;
        let track = child_depth <= self.max_dotted_depth;
        let base = stack.len();
        for (i, (k, v)) in map.iter_mut().enumerate() {
            let child_path = if track {
                Some(match path {
                    Some(p) => format!("{p}.{k}"),
                    None => k.clone(),
                })
            } else {
                None
            };
            if let Some(why) = self.field_rule(k, child_path.as_deref(), known(plain, i)) {
                self.replace_whole(v, why, report);
                continue;
            }
            if matches!(v, Value::String(_) | Value::Array(_) | Value::Object(_)) {
                stack.push((v, child_depth, child_path));
            }
        }
        // Reversed so that the first key is processed first (findings in document order).
        stack[base..].reverse();
    }
}
