//! Iterative, in-place redaction of `serde_json::Value` trees.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::Report;
use crate::engine::{Engine, normalize_key};

enum Field {
    Path,
    Sensitive,
}

impl Engine {
    fn field_rule(&self, key: &str, path: Option<&str>) -> Option<Field> {
        if self.field_leaf.contains(key) || path.is_some_and(|p| self.field_dotted.contains(p)) {
            return Some(Field::Path);
        }
        if !self.sensitive.is_empty() && self.sensitive.contains(&normalize_key(key)) {
            return Some(Field::Sensitive);
        }
        None
    }

    /// Replaces a whole value under a field-path or sensitive-key rule.
    fn replace_whole(&self, v: &mut Value, why: Field, report: &mut Report) {
        if v.is_null() {
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
    fn redact_keys(&self, map: &mut Map<String, Value>, report: &mut Report) {
        let mut any = false;
        for k in map.keys() {
            let mut hits = Vec::new();
            self.find(k, &mut hits);
            if !hits.is_empty() {
                any = true;
                break;
            }
        }
        if !any {
            return;
        }
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
    }

    pub(crate) fn walk_map(&self, root: &mut Map<String, Value>, report: &mut Report) {
        if !self.enabled {
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
        self.drain(vec![(root, 0, None)], report);
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
        self.redact_keys(map, report);
        let child_depth = depth + 1;
        let track = child_depth <= self.max_dotted_depth;
        let mut children = Vec::new();
        for (k, v) in map.iter_mut() {
            let child_path = if track {
                Some(match path {
                    Some(p) => format!("{p}.{k}"),
                    None => k.clone(),
                })
            } else {
                None
            };
            if let Some(why) = self.field_rule(k, child_path.as_deref()) {
                self.replace_whole(v, why, report);
                continue;
            }
            if matches!(v, Value::String(_) | Value::Array(_) | Value::Object(_)) {
                children.push((v, child_depth, child_path));
            }
        }
        // Reversed so that the first key is processed first (findings in document order).
        stack.extend(children.into_iter().rev());
    }
}
