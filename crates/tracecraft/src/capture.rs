//! Capture of inputs and outputs: serialization to JSON at capture time, capture controls
//! (`capture_inputs`, `capture_outputs`, `exclude_inputs`), error type names, fast ids.

use std::cell::Cell;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tracecraft_core::Uuid;

/// What an excluded input is recorded as.
pub const EXCLUDED: &str = "[EXCLUDED]";

/// Capture settings in force for a run or a step.
#[derive(Clone)]
pub(crate) struct Capture {
    pub(crate) inputs: bool,
    pub(crate) outputs: bool,
    /// Names whose values are replaced by [`EXCLUDED`], at any depth (ASCII case-insensitive).
    pub(crate) exclude: Arc<[String]>,
}

impl Capture {
    pub(crate) fn is_excluded(&self, name: &str) -> bool {
        self.exclude.iter().any(|e| e.eq_ignore_ascii_case(name))
    }

    /// Replaces the values of excluded keys at any depth of `value` (no recursion).
    pub(crate) fn exclude_nested(&self, value: &mut Value) {
        if self.exclude.is_empty() {
            return;
        }
        let mut stack: Vec<&mut Value> = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(map) => {
                    for (k, child) in map.iter_mut() {
                        if self.is_excluded(k) {
                            *child = Value::String(EXCLUDED.to_owned());
                        } else {
                            stack.push(child);
                        }
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                _ => {}
            }
        }
    }
}

/// Serializes `value` to JSON. A value that fails to serialize becomes the string
/// `"[unserializable: REASON]"` (REASON never quotes the value); it never fails the run.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Value {
    match serde_json::to_value(value) {
        Ok(v) => v,
        Err(e) => Value::String(unserializable(&e)),
    }
}

pub(crate) fn unserializable(err: &serde_json::Error) -> String {
    // Custom messages of `Serialize` impls may quote the value: only serde_json's and std's
    // own fixed messages are kept.
    const KNOWN: [&str; 4] = [
        "key must be a string",
        "path contains invalid UTF-8 characters",
        "already mutably borrowed",
        "float key must be finite",
    ];
    let msg = err.to_string();
    let reason = KNOWN
        .iter()
        .find(|k| msg.starts_with(**k))
        .copied()
        .unwrap_or("custom serialization error");
    format!("[unserializable: {reason}]")
}

/// The last path segment of `E`'s type name, without generic arguments (`"Error"` for
/// `std::io::Error`, `"MyError"` for `app::MyError<T>`).
pub(crate) fn type_name_of<E: ?Sized>() -> &'static str {
    short_type_name(std::any::type_name::<E>())
}

pub(crate) fn short_type_name(full: &'static str) -> &'static str {
    let mut s = full;
    while let Some(rest) = s.strip_prefix('&') {
        s = rest;
    }
    let s = s.strip_prefix("mut ").unwrap_or(s);
    let s = s.strip_prefix("dyn ").unwrap_or(s);
    let s = s.split('<').next().unwrap_or(s);
    let s = s.rsplit("::").next().unwrap_or(s);
    let s = s.trim();
    if s.is_empty() { full } else { s }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let (a, b) = Uuid::new_v4().as_u64_pair();
    a ^ b.rotate_left(17)
}

fn next_u64() -> u64 {
    // wyrand: fast, good enough for ids (they need to be unique, not secret).
    RNG.with(|c| {
        let s = c.get().wrapping_add(0xa076_1d64_78bd_642f);
        c.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A random (version 4) UUID from a per-thread generator seeded by the OS: no system call per
/// id, which matters on the traced thread.
pub(crate) fn new_id() -> Uuid {
    let v = (u128::from(next_u64()) << 64) | u128::from(next_u64());
    uuid::Builder::from_random_bytes(v.to_le_bytes()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cap(exclude: &[&str]) -> Capture {
        Capture {
            inputs: true,
            outputs: true,
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn excludes_at_any_depth() {
        let c = cap(&["api_key"]);
        let mut v = json!({"a": 1, "API_KEY": "sk-1", "nested": [{"api_key": "sk-2"}]});
        c.exclude_nested(&mut v);
        assert_eq!(
            v,
            json!({"a": 1, "API_KEY": EXCLUDED, "nested": [{"api_key": EXCLUDED}]})
        );
        assert!(c.is_excluded("Api_Key") && !c.is_excluded("api"));
    }

    #[test]
    fn unserializable_never_quotes_the_value() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("secret sk-live-123"))
            }
        }
        let v = to_json(&Bad);
        assert_eq!(v, json!("[unserializable: custom serialization error]"));
        let mut m = std::collections::HashMap::new();
        m.insert(vec![1u8], 2);
        assert_eq!(to_json(&m), json!("[unserializable: key must be a string]"));
    }

    #[test]
    fn short_type_names() {
        assert_eq!(type_name_of::<std::io::Error>(), "Error");
        assert_eq!(type_name_of::<std::num::ParseIntError>(), "ParseIntError");
        assert_eq!(type_name_of::<Vec<String>>(), "Vec");
        assert_eq!(type_name_of::<&dyn std::error::Error>(), "Error");
        assert_eq!(type_name_of::<str>(), "str");
    }

    #[test]
    fn ids_are_v4_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
    }
}
