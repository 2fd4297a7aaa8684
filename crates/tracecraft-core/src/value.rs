//! Deeply nested JSON values without recursion.
//!
//! `serde_json::Value`'s `Clone`, `Drop` and serialization recurse once per nesting level, so
//! a hostile 10,000-level input overflows the stack. [`limit_depth`] cuts such values at a
//! depth, iteratively, and [`dismantle`] frees what was cut without recursion. Capping depth
//! also keeps every run TraceCraft writes readable by its own parser (serde_json refuses
//! documents nested deeper than 128 levels).

use serde_json::Value;

/// What replaces a subtree cut by [`limit_depth`].
pub const TRUNCATED: &str = "[TRUNCATED: nested too deep]";

/// Drops a value of any depth using a heap stack instead of the call stack.
pub fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Replaces every array or object nested deeper than `max_depth` (the value itself is depth 1)
/// with the string [`TRUNCATED`]; returns how many subtrees were cut. Iterative: safe on any
/// depth.
pub fn limit_depth(value: &mut Value, max_depth: usize) -> u64 {
    // Most values are scalars or shallow: no stack for those.
    match value {
        Value::Array(items) if max_depth > 1 && items.iter().all(is_scalar) => return 0,
        Value::Object(map) if max_depth > 1 && map.values().all(is_scalar) => return 0,
        Value::Array(_) | Value::Object(_) => {}
        _ => return 0,
    }
    let mut cut = 0;
    let mut stack: Vec<(&mut Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        let nested = matches!(v, Value::Array(_) | Value::Object(_));
        if nested && depth > max_depth {
            dismantle(std::mem::replace(v, Value::String(TRUNCATED.to_owned())));
            cut += 1;
            continue;
        }
        match v {
            Value::Array(items) => stack.extend(items.iter_mut().map(|c| (c, depth + 1))),
            Value::Object(map) => stack.extend(map.values_mut().map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cuts_at_depth_and_keeps_shallow_values() {
        let mut v = json!({"a": {"b": {"c": [1, 2]}}, "x": 1});
        assert_eq!(limit_depth(&mut v, 3), 1);
        assert_eq!(v, json!({"a": {"b": {"c": TRUNCATED}}, "x": 1}));
        let mut v = json!({"a": [1, {"b": 2}]});
        assert_eq!(limit_depth(&mut v, 3), 0);
        // Flat containers (depth 1) are kept at limit 1 and cut at 0; scalars are never cut.
        let mut v = json!([1, "x", null]);
        assert_eq!(limit_depth(&mut v, 2), 0);
        assert_eq!(limit_depth(&mut v, 1), 0);
        assert_eq!(limit_depth(&mut v, 0), 1);
        assert_eq!(v, json!(TRUNCATED));
        let mut v = json!("scalar");
        assert_eq!(limit_depth(&mut v, 0), 0);
    }

    #[test]
    fn handles_hostile_depth_without_recursion() {
        let mut v = json!("leaf");
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(limit_depth(&mut v, 10), 1);
        let mut depth = 0;
        let mut cur = &v;
        while let Value::Array(items) = cur {
            depth += 1;
            cur = &items[0];
        }
        assert_eq!(depth, 10);
        assert_eq!(cur, &json!(TRUNCATED));
    }
}
