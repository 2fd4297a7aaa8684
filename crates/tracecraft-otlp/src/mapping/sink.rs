//! [`SpanSink`]: where the mapping writes a span. The mapping ([`super::spans`]) is written
//! once against this trait; [`TreeSink`] builds the `opentelemetry-proto` message tree (for
//! code that inspects spans, and OTLP/JSON), [`super::wire::WireSink`] writes protobuf bytes
//! straight into the request buffer (what the exporter sends and spools). A property test
//! checks that the two decode to the same request.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde_json::Value;
use tracecraft_core::JsonMap;

use super::attrs::{Attrs, string_value};
use super::content::indexed_key;

/// A text made by [`SpanSink::text`]: a range of the span's scratch space.
#[derive(Clone, Copy)]
pub(crate) struct Text {
    start: usize,
    end: usize,
}

/// Where a span's texts (JSON of inputs, outputs, messages) are written before they become
/// attributes: one buffer reused for every span, so that a text costs no allocation and a
/// text used under several keys is written once.
#[derive(Default)]
pub(crate) struct Texts {
    buf: Vec<u8>,
}

impl Texts {
    /// Forgets the texts of the previous span.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Appends what `write` writes (valid UTF-8).
    pub(crate) fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Text {
        let start = self.buf.len();
        write(&mut self.buf);
        Text {
            start,
            end: self.buf.len(),
        }
    }

    /// The bytes of `text`.
    pub(crate) fn get(&self, text: Text) -> &[u8] {
        self.buf.get(text.start..text.end).unwrap_or_default()
    }
}

/// The fixed fields of a span.
pub(crate) struct Head<'a> {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// `None` for a root span.
    pub(crate) parent: Option<[u8; 8]>,
    /// The name: the first part, then `" "` and the second part when there is one.
    pub(crate) name: (&'a str, Option<&'a str>),
    pub(crate) kind: SpanKind,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// How a span ended: its status and `exception` event; its links.
pub(crate) struct Tail<'a> {
    pub(crate) error: Option<&'a str>,
    pub(crate) error_type: Option<&'a str>,
    /// The `exception` event's time.
    pub(crate) end: u64,
    pub(crate) links: &'a [LinkRef<'a>],
}

/// A span link read from a run's or step's [`LINKS`](super::keys::LINKS) attribute.
pub(crate) struct LinkRef<'a> {
    pub(crate) trace_id: Vec<u8>,
    pub(crate) span_id: Vec<u8>,
    pub(crate) trace_state: &'a str,
    pub(crate) attributes: Option<&'a JsonMap>,
}

/// The links in a [`LINKS`](super::keys::LINKS) attribute; entries that are not objects with
/// hex `trace_id` and `span_id` are skipped (a redacted id, a hand-written value).
pub(crate) fn links_of(attributes: &JsonMap) -> Vec<LinkRef<'_>> {
    let Some(Value::Array(items)) = super::field(attributes, super::keys::LINKS) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let m = item.as_object()?;
            let hex_of = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .and_then(|s| hex::decode(s).ok())
            };
            Some(LinkRef {
                trace_id: hex_of("trace_id")?,
                span_id: hex_of("span_id")?,
                trace_state: m.get("trace_state").and_then(Value::as_str).unwrap_or(""),
                attributes: m.get("attributes").and_then(Value::as_object),
            })
        })
        .collect()
}

impl Tail<'_> {
    pub(crate) fn failed(&self) -> bool {
        self.error.is_some() || self.error_type.is_some()
    }

    /// The status message of a failed span: the error, else its type.
    pub(crate) fn message(&self) -> &str {
        match (self.error, self.error_type) {
            (Some(m), _) if !m.is_empty() => m,
            (_, Some(t)) => t,
            _ => "",
        }
    }

    /// The `exception` event's attributes, in order.
    pub(crate) fn exception_attributes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("exception.type", self.error_type),
            ("exception.message", self.error),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

/// A span under construction. Attribute keys derived by the mapping are unique; a
/// free-form attribute (see [`SpanSink::user`]) with the key of one written before it
/// replaces that one's value in place.
pub(crate) trait SpanSink<'r> {
    /// Starts a span; `user` is the run's or step's free-form attributes, given to
    /// [`SpanSink::user`] later.
    fn begin(&mut self, head: &Head<'_>, user: &'r JsonMap);
    /// A string attribute.
    fn str(&mut self, key: &str, value: &str);
    /// An integer attribute (above `i64::MAX`: a double).
    fn int(&mut self, key: &str, value: u64);
    /// A double attribute.
    fn double(&mut self, key: &str, value: f64);
    /// A boolean attribute.
    fn bool(&mut self, key: &str, value: bool);
    /// A string-array attribute.
    fn strings<'s, I>(&mut self, key: &str, values: I)
    where
        I: Iterator<Item = &'s str> + Clone;
    /// A JSON value as an `AnyValue` ([`super::any_value`]).
    fn json(&mut self, key: &str, value: &Value);
    /// A text that `write` appends (valid UTF-8: JSON written by this module), for
    /// [`SpanSink::str_text`] until the span ends.
    fn text(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Text;
    /// A string attribute holding `text`.
    fn str_text(&mut self, key: &str, text: Text);
    /// A string attribute keyed `prefix` + `index` + `suffix`.
    fn indexed_str(&mut self, prefix: &str, index: usize, suffix: &str, value: &str);
    /// A double attribute keyed `prefix` + `index` + `suffix`.
    fn indexed_double(&mut self, prefix: &str, index: usize, suffix: &str, value: f64);
    /// The free-form attributes given to `begin`: each replaces a derived key of the same
    /// name, else is appended; keys in `owned` are skipped (a run cannot forge them). Keys
    /// written after this call are all in `owned`.
    fn user(&mut self, attributes: &JsonMap, owned: &[&str]);
    /// Ends the span: the `exception` event of a failed span, and the status.
    fn end(&mut self, tail: &Tail<'_>);
}

/// Builds [`Span`]s of the `opentelemetry-proto` types.
#[derive(Default)]
pub(crate) struct TreeSink {
    pub(crate) spans: Vec<Span>,
    span: Span,
    attrs: Attrs,
    texts: Texts,
}

impl TreeSink {
    pub(crate) fn new(spans: Vec<Span>) -> Self {
        TreeSink {
            spans,
            ..Default::default()
        }
    }
}

impl<'r> SpanSink<'r> for TreeSink {
    fn begin(&mut self, head: &Head<'_>, user: &'r JsonMap) {
        let name = match head.name {
            (a, None) => a.to_owned(),
            (a, Some(b)) => {
                let mut s = String::with_capacity(a.len() + 1 + b.len());
                s.push_str(a);
                s.push(' ');
                s.push_str(b);
                s
            }
        };
        self.span = Span {
            trace_id: head.trace_id.to_vec(),
            span_id: head.span_id.to_vec(),
            parent_span_id: head.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name,
            kind: head.kind as i32,
            start_time_unix_nano: head.start,
            end_time_unix_nano: head.end,
            ..Default::default()
        };
        self.attrs = Attrs::with_capacity(40 + user.len());
        self.texts.clear();
    }
    fn str(&mut self, key: &str, value: &str) {
        self.attrs.str(key, value);
    }
    fn int(&mut self, key: &str, value: u64) {
        self.attrs.int(key, value);
    }
    fn double(&mut self, key: &str, value: f64) {
        self.attrs.double(key, value);
    }
    fn bool(&mut self, key: &str, value: bool) {
        self.attrs.bool(key, value);
    }
    fn strings<'s, I>(&mut self, key: &str, values: I)
    where
        I: Iterator<Item = &'s str> + Clone,
    {
        self.attrs.strings(key, values);
    }
    fn json(&mut self, key: &str, value: &Value) {
        self.attrs.put(key, super::any_value(value));
    }
    fn text(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Text {
        self.texts.push(write)
    }
    fn str_text(&mut self, key: &str, text: Text) {
        self.attrs
            .str(key, &String::from_utf8_lossy(self.texts.get(text)));
    }
    fn indexed_str(&mut self, prefix: &str, index: usize, suffix: &str, value: &str) {
        self.attrs
            .put_owned(indexed_key(prefix, index, suffix), string_value(value));
    }
    fn indexed_double(&mut self, prefix: &str, index: usize, suffix: &str, value: f64) {
        self.attrs.put_owned(
            indexed_key(prefix, index, suffix),
            AnyValue {
                value: Some(any_value::Value::DoubleValue(value)),
            },
        );
    }
    fn user(&mut self, attributes: &JsonMap, owned: &[&str]) {
        self.attrs.user(attributes, owned);
    }
    fn end(&mut self, tail: &Tail<'_>) {
        let mut span = std::mem::take(&mut self.span);
        span.attributes = std::mem::take(&mut self.attrs.list);
        span.links = tail
            .links
            .iter()
            .map(|l| Link {
                trace_id: l.trace_id.clone(),
                span_id: l.span_id.clone(),
                trace_state: l.trace_state.to_owned(),
                attributes: l
                    .attributes
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| KeyValue {
                                key: k.clone(),
                                value: Some(super::any_value(v)),
                                ..Default::default()
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        if tail.failed() {
            span.events = vec![Event {
                time_unix_nano: tail.end,
                name: "exception".to_owned(),
                attributes: tail
                    .exception_attributes()
                    .map(|(k, v)| KeyValue {
                        key: k.to_owned(),
                        value: Some(string_value(v)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }];
            span.status = Some(Status {
                message: tail.message().to_owned(),
                code: StatusCode::Error as i32,
            });
        } else {
            span.status = Some(Status {
                message: String::new(),
                code: StatusCode::Ok as i32,
            });
        }
        self.spans.push(span);
    }
}
