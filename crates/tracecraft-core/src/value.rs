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

fn is_nested(v: &Value) -> bool {
    matches!(v, Value::Array(_) | Value::Object(_))
}

/// Levels walked by recursion before [`limit_depth`] switches to a heap stack (bounded stack
/// use whatever the configured limit).
const RECURSION_CAP: usize = 48;

/// Replaces every array or object nested deeper than `max_depth` (the value itself is depth 1)
/// with the string [`TRUNCATED`]; returns how many subtrees were cut. Safe on any depth: it
/// recurses at most `RECURSION_CAP` (a private constant) levels, then walks with a heap stack.
pub fn limit_depth(value: &mut Value, max_depth: usize) -> u64 {
    let mut cut = 0;
    limit_at(value, 1, max_depth, &mut cut);
    cut
}

fn limit_at(v: &mut Value, depth: usize, max_depth: usize, cut: &mut u64) {
    if !is_nested(v) {
        return;
    }
    if depth > max_depth {
        dismantle(std::mem::replace(v, Value::String(TRUNCATED.to_owned())));
        *cut += 1;
        return;
    }
    if depth >= RECURSION_CAP {
        *cut += limit_iteratively(v, depth, max_depth);
        return;
    }
    match v {
        Value::Array(items) => {
            for c in items.iter_mut().filter(|c| is_nested(c)) {
                limit_at(c, depth + 1, max_depth, cut);
            }
        }
        Value::Object(map) => {
            for c in map.values_mut().filter(|c| is_nested(c)) {
                limit_at(c, depth + 1, max_depth, cut);
            }
        }
        _ => {}
    }
}

fn limit_iteratively(value: &mut Value, depth: usize, max_depth: usize) -> u64 {
    let mut cut = 0;
    let mut stack: Vec<(&mut Value, usize)> = vec![(value, depth)];
    while let Some((v, depth)) = stack.pop() {
        if is_nested(v) && depth > max_depth {
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

    #[test]
    fn limits_beyond_the_recursion_cap_like_below_it() {
        // Objects and arrays alternating, deeper than the recursion cap, with a scalar sibling
        // at every level; limits below, at and above the cap.
        let build = |levels: usize| {
            let mut v = json!("leaf");
            for i in 0..levels {
                v = if i % 2 == 0 {
                    Value::Array(vec![json!(i), v])
                } else {
                    let mut m = serde_json::Map::new();
                    m.insert("n".into(), json!(i));
                    m.insert("next".into(), v);
                    Value::Object(m)
                };
            }
            v
        };
        let depth_of = |v: &Value| {
            let (mut d, mut cur) = (0, v);
            loop {
                cur = match cur {
                    Value::Array(items) => &items[1],
                    Value::Object(m) => &m["next"],
                    _ => return (d, cur.clone()),
                };
                d += 1;
            }
        };
        for (levels, max) in [
            (200, 10),
            (200, RECURSION_CAP),
            (200, 100),
            (60, 100),
            (500, 499),
        ] {
            let mut v = build(levels);
            let cut = limit_depth(&mut v, max);
            let (d, leaf) = depth_of(&v);
            if levels > max {
                assert_eq!((cut, d, leaf), (1, max, json!(TRUNCATED)), "{levels} {max}");
            } else {
                assert_eq!((cut, d, leaf), (0, levels, json!("leaf")), "{levels} {max}");
            }
        }
    }
}
