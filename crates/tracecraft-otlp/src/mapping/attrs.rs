//! [`Attrs`]: a span's attribute list under construction.

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};

use super::any_value as json_any_value;

/// Attributes in insertion order. Keys the mapping derives are unique by construction and
/// appended without a search; free-form attributes replace a derived key of the same name in
/// place (a step that knows it is an `embeddings` call says so).
#[derive(Default)]
pub(crate) struct Attrs {
    pub(crate) list: Vec<KeyValue>,
}

pub(crate) fn string_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

impl Attrs {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Attrs {
            list: Vec::with_capacity(n),
        }
    }
    pub(crate) fn put(&mut self, key: &str, value: AnyValue) {
        self.list.push(KeyValue {
            key: key.to_owned(),
            value: Some(value),
            ..Default::default()
        });
    }
    pub(crate) fn put_owned(&mut self, key: String, value: AnyValue) {
        self.list.push(KeyValue {
            key,
            value: Some(value),
            ..Default::default()
        });
    }
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.put(key, string_value(value));
    }
    pub(crate) fn int(&mut self, key: &str, value: u64) {
        self.put(key, int_value(value));
    }
    pub(crate) fn double(&mut self, key: &str, value: f64) {
        self.put(
            key,
            AnyValue {
                value: Some(any_value::Value::DoubleValue(value)),
            },
        );
    }
    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        self.put(
            key,
            AnyValue {
                value: Some(any_value::Value::BoolValue(value)),
            },
        );
    }
    pub(crate) fn strings<'a>(&mut self, key: &str, values: impl IntoIterator<Item = &'a str>) {
        self.put(
            key,
            AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: values.into_iter().map(string_value).collect(),
                })),
            },
        );
    }
    /// Free-form attributes: replace a derived key of the same name, else append. Keys the
    /// mapping owns (`owned`) are skipped: a run cannot forge them.
    pub(crate) fn user(&mut self, attributes: &tracecraft_core::JsonMap, owned: &[&str]) {
        for (k, v) in attributes {
            if owned.contains(&k.as_str()) {
                continue;
            }
            let value = json_any_value(v);
            match self.list.iter_mut().find(|kv| kv.key == *k) {
                Some(kv) => kv.value = Some(value),
                None => self.put(k, value),
            }
        }
    }
}

pub(crate) fn int_value(value: u64) -> AnyValue {
    let v = match i64::try_from(value) {
        Ok(i) => any_value::Value::IntValue(i),
        Err(_) => any_value::Value::DoubleValue(value as f64),
    };
    AnyValue { value: Some(v) }
}
