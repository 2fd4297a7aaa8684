//! The direct encoder: runs -> OTLP protobuf bytes, written straight into the request buffer
//! by [`WireSink`] (no `opentelemetry-proto` message tree, no per-attribute allocation, no
//! repeated `encoded_len` walks). Its output decodes to exactly the request that
//! [`to_request`](super::to_request) builds (property test in `tests/wire.rs`).
//!
//! Layout: every length is known before its bytes are written (strings) or computed by a
//! sizing pass (JSON values), except a span's, which is reserved as two bytes (spans of 128 B
//! to 16 KiB) and moved only when it needs another size; a resource group is written after a
//! headroom its headers are then written into, right-aligned, so that the request of one
//! resource (the usual case) is never copied.

use bytes::Bytes;
use prost::Message;
use serde_json::Value;
use tracecraft_core::{AgentRun, JsonMap, ProcessedRun};

use super::keys as k;
use super::sink::{Head, SpanSink, Tail, Text, Texts};
use super::{MAX_VALUE_DEPTH, MappingOptions, ResourceKey, resource_key, resource_with, scope};

/// One encoded `ExportTraceServiceRequest`: the protobuf bytes and how many spans it holds.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    body: Bytes,
    spans: u64,
    /// Whether the body's buffer goes back to [`SPARE`] when the request is dropped (a
    /// [`RequestEncoder`]'s requests).
    recycle: bool,
}

impl Drop for EncodedRequest {
    /// A [`RequestEncoder`]'s request gives its buffer to the next requests' groups when
    /// nothing else holds its body (cleared first: made a `Vec` again, it is not copied).
    fn drop(&mut self) {
        if !self.recycle {
            return;
        }
        if let Ok(mut buf) = std::mem::take(&mut self.body).try_into_mut() {
            buf.clear();
            give_spare(Vec::from(buf));
        }
    }
}

impl EncodedRequest {
    /// The protobuf-encoded `ExportTraceServiceRequest`.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The number of spans in it.
    #[must_use]
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// The body, owned.
    #[must_use]
    pub fn into_body(mut self) -> Bytes {
        std::mem::take(&mut self.body)
    }
}

// Wire types.
const LEN: u8 = 2;
const I64: u8 = 1;
const VARINT: u8 = 0;

const fn tag(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

/// Bytes of `v` as a varint.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Up to 32 bytes of tags and varints, gathered on the stack and appended to a buffer with
/// one fixed-size copy (a push per byte checks the buffer's capacity every time).
struct Header {
    bytes: [u8; 32],
    len: usize,
}

impl Header {
    #[inline]
    fn new() -> Self {
        Header {
            bytes: [0; 32],
            len: 0,
        }
    }

    /// Appends a byte. Callers write at most 32 (a tag and a varint are at most 11).
    #[inline]
    fn byte(&mut self, b: u8) {
        self.bytes[self.len & 31] = b;
        self.len += 1;
    }

    #[inline]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    /// Appends the bytes gathered to `buf`.
    #[inline]
    fn put(&self, buf: &mut Vec<u8>) {
        let at = buf.len();
        buf.extend_from_slice(&self.bytes);
        buf.truncate(at + self.len.min(32));
    }
}

/// Appends the first `len` (at most 8) bytes of `word`, little-endian, with one store.
#[inline]
fn put_cut(buf: &mut Vec<u8>, word: u64, len: usize) {
    let at = buf.len();
    buf.extend_from_slice(&word.to_le_bytes());
    buf.truncate(at + len);
}

/// Bytes of a length-delimited field holding `len` bytes (tag of one byte).
#[inline]
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A key written as parts (`llm.input_messages.` `3` `.message.role`).
#[derive(Clone, Copy)]
struct Key<'a> {
    parts: [&'a str; 3],
}

impl<'a> Key<'a> {
    fn plain(key: &'a str) -> Self {
        Key {
            parts: [key, "", ""],
        }
    }
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
    #[inline]
    fn write(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.parts[0].as_bytes());
        if !self.parts[1].is_empty() || !self.parts[2].is_empty() {
            buf.extend_from_slice(self.parts[1].as_bytes());
            buf.extend_from_slice(self.parts[2].as_bytes());
        }
    }
}

/// Decimal digits of `i` in a stack buffer.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn new(mut i: usize) -> Self {
        let mut buf = [0u8; 20];
        let mut start = 20;
        loop {
            start -= 1;
            buf[start] = b'0' + (i % 10) as u8;
            i /= 10;
            if i == 0 {
                break;
            }
        }
        Digits { buf, start }
    }
    fn as_str(&self) -> &str {
        // ASCII digits only.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// The body of an `AnyValue` holding a string.
fn str_any_len(s: &str) -> usize {
    field_len(s.len())
}

/// Length of the `AnyValue` body of a JSON value (as [`super::any_value`] maps it).
fn json_any_len(v: &Value, depth: usize) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 2,
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => 1 + varint_len(i as u64),
            (None, Some(_)) => 9,
            (None, None) => str_any_len(&n.to_string()),
        },
        Value::String(s) => str_any_len(s),
        Value::Array(_) | Value::Object(_) if depth > MAX_VALUE_DEPTH => {
            str_any_len(tracecraft_core::value::TRUNCATED)
        }
        Value::Array(items) => field_len(array_body_len(items, depth)),
        Value::Object(map) => field_len(kvlist_body_len(map, depth)),
    }
}

fn array_body_len(items: &[Value], depth: usize) -> usize {
    items
        .iter()
        .map(|i| field_len(json_any_len(i, depth + 1)))
        .sum()
}

fn kvlist_body_len(map: &JsonMap, depth: usize) -> usize {
    map.iter()
        .map(|(k, v)| field_len(field_len(k.len()) + field_len(json_any_len(v, depth + 1))))
        .sum()
}

fn put_str_field(buf: &mut Vec<u8>, t: u8, s: &[u8]) {
    let mut h = Header::new();
    h.byte(t);
    h.varint(s.len() as u64);
    h.put(buf);
    buf.extend_from_slice(s);
}

/// Writes the `AnyValue` body of a JSON value.
fn put_json_any(buf: &mut Vec<u8>, v: &Value, depth: usize) {
    match v {
        Value::Null => {}
        Value::Bool(b) => buf.extend_from_slice(&[tag(2, VARINT), u8::from(*b)]),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => {
                buf.push(tag(3, VARINT));
                put_varint(buf, i as u64);
            }
            (None, Some(f)) => {
                buf.push(tag(4, I64));
                buf.extend_from_slice(&f.to_le_bytes());
            }
            (None, None) => put_str_field(buf, tag(1, LEN), n.to_string().as_bytes()),
        },
        Value::String(s) => put_str_field(buf, tag(1, LEN), s.as_bytes()),
        Value::Array(_) | Value::Object(_) if depth > MAX_VALUE_DEPTH => put_str_field(
            buf,
            tag(1, LEN),
            tracecraft_core::value::TRUNCATED.as_bytes(),
        ),
        Value::Array(items) => {
            buf.push(tag(5, LEN));
            put_varint(buf, array_body_len(items, depth) as u64);
            for item in items {
                buf.push(tag(1, LEN));
                put_varint(buf, json_any_len(item, depth + 1) as u64);
                put_json_any(buf, item, depth + 1);
            }
        }
        Value::Object(map) => {
            buf.push(tag(6, LEN));
            put_varint(buf, kvlist_body_len(map, depth) as u64);
            for (key, value) in map {
                let vlen = json_any_len(value, depth + 1);
                buf.push(tag(1, LEN));
                put_varint(buf, (field_len(key.len()) + field_len(vlen)) as u64);
                put_str_field(buf, tag(1, LEN), key.as_bytes());
                buf.push(tag(2, LEN));
                put_varint(buf, vlen as u64);
                put_json_any(buf, value, depth + 1);
            }
        }
    }
}

// Field tags of the messages written here.
const SCOPE_SPANS_SPANS: u8 = tag(2, LEN);
const SPAN_TRACE_ID: u8 = tag(1, LEN);
const SPAN_SPAN_ID: u8 = tag(2, LEN);
const SPAN_PARENT: u8 = tag(4, LEN);
const SPAN_NAME: u8 = tag(5, LEN);
const SPAN_KIND: u8 = tag(6, VARINT);
const SPAN_START: u8 = tag(7, I64);
const SPAN_END: u8 = tag(8, I64);
const SPAN_ATTRIBUTES: u8 = tag(9, LEN);
const SPAN_EVENTS: u8 = tag(11, LEN);
const SPAN_LINKS: u8 = tag(13, LEN);
const SPAN_STATUS: u8 = tag(15, LEN);
const LINK_TRACE_ID: u8 = tag(1, LEN);
const LINK_SPAN_ID: u8 = tag(2, LEN);
const LINK_TRACE_STATE: u8 = tag(3, LEN);
const LINK_ATTRIBUTES: u8 = tag(4, LEN);
const EVENT_TIME: u8 = tag(1, I64);
const EVENT_NAME: u8 = tag(2, LEN);
const EVENT_ATTRIBUTES: u8 = tag(3, LEN);
const STATUS_MESSAGE: u8 = tag(2, LEN);
const STATUS_CODE: u8 = tag(3, VARINT);
const KV_KEY: u8 = tag(1, LEN);
const KV_VALUE: u8 = tag(2, LEN);
/// Bytes reserved for a span's length: spans of 128 B to 16 KiB are never moved.
const SPAN_LEN_GUESS: usize = 2;

/// Writes spans as protobuf (`ScopeSpans.spans` fields) into [`WireSink::buf`].
pub(crate) struct WireSink<'r> {
    pub(crate) buf: Vec<u8>,
    /// Where each span written since the last `clear` starts (its tag).
    pub(crate) starts: Vec<usize>,
    body_start: usize,
    /// The current span's free-form attributes until [`SpanSink::user`] wrote them.
    user: Option<&'r JsonMap>,
    /// Bit `len % 64` is set for the length of each key in `user`: most derived keys are
    /// ruled out without a map look-up.
    user_lens: u64,
    /// Derived keys a free-form attribute replaced (written in their place).
    replaced: Vec<String>,
    /// The current span's texts.
    texts: Texts,
}

impl<'r> WireSink<'r> {
    pub(crate) fn new(buf: Vec<u8>) -> Self {
        WireSink {
            buf,
            starts: Vec::new(),
            body_start: 0,
            user: None,
            user_lens: 0,
            replaced: Vec::new(),
            texts: Texts::default(),
        }
    }

    /// The free-form value that replaces derived key `key`, if any (recorded). Most keys
    /// are ruled out here by their length, without a call.
    #[inline]
    fn replacement(&mut self, key: Key<'_>) -> Option<&'r Value> {
        if self.user_lens & (1 << (key.len() % 64)) == 0 {
            return None;
        }
        self.replacement_lookup(key)
    }

    #[inline(never)]
    fn replacement_lookup(&mut self, key: Key<'_>) -> Option<&'r Value> {
        let user = self.user?;
        let v = if key.parts[1].is_empty() && key.parts[2].is_empty() {
            super::field(user, key.parts[0])?
        } else {
            if !user.keys().any(|u| u.starts_with(key.parts[0])) {
                return None;
            }
            let mut s = String::with_capacity(key.len());
            for p in key.parts {
                s.push_str(p);
            }
            let v = super::field(user, &s)?;
            if k::OWNED.contains(&s.as_str()) {
                return None;
            }
            self.replaced.push(s);
            return Some(v);
        };
        if k::OWNED.contains(&key.parts[0]) {
            return None;
        }
        self.replaced.push(key.parts[0].to_owned());
        Some(v)
    }

    /// A `KeyValue` field (`field_tag`) whose `AnyValue` body is `any_len` bytes; the caller
    /// writes the body.
    fn kv_header(&mut self, field_tag: u8, key: Key<'_>, any_len: usize) {
        self.kv_header_then(field_tag, key, any_len, None);
    }

    /// [`Self::kv_header`], then the tag and length of a string `AnyValue` of `str_len`
    /// bytes when given (the caller writes the string).
    #[inline(always)]
    fn kv_header_then(
        &mut self,
        field_tag: u8,
        key: Key<'_>,
        any_len: usize,
        str_len: Option<usize>,
    ) {
        let klen = key.len();
        if klen < 128 && any_len < 128 {
            // The usual attribute: every length but the key-value's fits in one byte, and
            // that one in two; each header is one fixed-size store, then cut to its length.
            let kv_len = 4 + klen + any_len;
            let (head, head_len) = if kv_len < 128 {
                (
                    u64::from_le_bytes([field_tag, kv_len as u8, KV_KEY, klen as u8, 0, 0, 0, 0]),
                    4,
                )
            } else {
                let (lo, hi) = ((kv_len as u8) | 0x80, (kv_len >> 7) as u8);
                (
                    u64::from_le_bytes([field_tag, lo, hi, KV_KEY, klen as u8, 0, 0, 0]),
                    5,
                )
            };
            put_cut(&mut self.buf, head, head_len);
            key.write(&mut self.buf);
            let (value, value_len) = match str_len {
                Some(len) => (
                    u64::from_le_bytes([
                        KV_VALUE,
                        any_len as u8,
                        tag(1, LEN),
                        len as u8,
                        0,
                        0,
                        0,
                        0,
                    ]),
                    4,
                ),
                None => (
                    u64::from_le_bytes([KV_VALUE, any_len as u8, 0, 0, 0, 0, 0, 0]),
                    2,
                ),
            };
            put_cut(&mut self.buf, value, value_len);
            return;
        }
        let mut h = Header::new();
        h.byte(field_tag);
        h.varint((field_len(klen) + field_len(any_len)) as u64);
        h.byte(KV_KEY);
        h.varint(klen as u64);
        h.put(&mut self.buf);
        key.write(&mut self.buf);
        let mut h = Header::new();
        h.byte(KV_VALUE);
        h.varint(any_len as u64);
        if let Some(len) = str_len {
            h.byte(tag(1, LEN));
            h.varint(len as u64);
        }
        h.put(&mut self.buf);
    }

    fn kv_str(&mut self, key: Key<'_>, value: &str) {
        if let Some(v) = self.replacement(key) {
            return self.kv_json(key, v);
        }
        self.kv_header_then(SPAN_ATTRIBUTES, key, str_any_len(value), Some(value.len()));
        self.buf.extend_from_slice(value.as_bytes());
    }

    fn kv_text(&mut self, key: Key<'_>, text: Text) {
        if let Some(v) = self.replacement(key) {
            return self.kv_json(key, v);
        }
        let len = self.texts.get(text).len();
        self.kv_header_then(SPAN_ATTRIBUTES, key, field_len(len), Some(len));
        self.buf.extend_from_slice(self.texts.get(text));
    }

    fn kv_json(&mut self, key: Key<'_>, value: &Value) {
        self.kv_header(SPAN_ATTRIBUTES, key, json_any_len(value, 1));
        put_json_any(&mut self.buf, value, 1);
    }

    fn kv_double(&mut self, key: Key<'_>, value: f64) {
        if let Some(v) = self.replacement(key) {
            return self.kv_json(key, v);
        }
        self.kv_header(SPAN_ATTRIBUTES, key, 9);
        self.buf.push(tag(4, I64));
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Moves the body of the length-delimited field whose body starts at `body_start`
    /// (after `reserved` bytes kept for its length) so that its length fits, and writes it.
    fn close(&mut self, body_start: usize, reserved: usize) {
        let len = self.buf.len() - body_start;
        let need = varint_len(len as u64);
        let len_at = body_start - reserved;
        if need != reserved {
            let end = self.buf.len();
            if need > reserved {
                self.buf.resize(end + need - reserved, 0);
                self.buf
                    .copy_within(body_start..end, body_start + need - reserved);
            } else {
                self.buf.copy_within(body_start..end, len_at + need);
                self.buf.truncate(end - (reserved - need));
            }
        }
        let mut v = len as u64;
        for b in &mut self.buf[len_at..len_at + need] {
            *b = (v as u8 & 0x7f) | 0x80;
            v >>= 7;
        }
        self.buf[len_at + need - 1] &= 0x7f;
    }
}

impl<'r> SpanSink<'r> for WireSink<'r> {
    fn begin(&mut self, head: &Head<'_>, user: &'r JsonMap) {
        self.starts.push(self.buf.len());
        let buf = &mut self.buf;
        buf.push(SCOPE_SPANS_SPANS);
        buf.extend_from_slice(&[0; SPAN_LEN_GUESS]);
        self.body_start = buf.len();
        buf.push(SPAN_TRACE_ID);
        buf.push(16);
        buf.extend_from_slice(&head.trace_id);
        buf.push(SPAN_SPAN_ID);
        buf.push(8);
        buf.extend_from_slice(&head.span_id);
        if let Some(p) = head.parent {
            buf.push(SPAN_PARENT);
            buf.push(8);
            buf.extend_from_slice(&p);
        }
        let (a, b) = head.name;
        let name_len = a.len() + b.map_or(0, |b| 1 + b.len());
        if name_len > 0 {
            buf.push(SPAN_NAME);
            put_varint(buf, name_len as u64);
            buf.extend_from_slice(a.as_bytes());
            if let Some(b) = b {
                buf.push(b' ');
                buf.extend_from_slice(b.as_bytes());
            }
        }
        buf.push(SPAN_KIND);
        put_varint(buf, head.kind as i32 as u64);
        buf.push(SPAN_START);
        buf.extend_from_slice(&head.start.to_le_bytes());
        buf.push(SPAN_END);
        buf.extend_from_slice(&head.end.to_le_bytes());
        self.user = (!user.is_empty()).then_some(user);
        self.user_lens = user.keys().fold(0, |m, k| m | (1 << (k.len() % 64)));
        self.replaced.clear();
        self.texts.clear();
    }

    fn str(&mut self, key: &str, value: &str) {
        self.kv_str(Key::plain(key), value);
    }

    fn int(&mut self, key: &str, value: u64) {
        let key = Key::plain(key);
        if let Some(v) = self.replacement(key) {
            return self.kv_json(key, v);
        }
        match i64::try_from(value) {
            Ok(i) => {
                self.kv_header(SPAN_ATTRIBUTES, key, 1 + varint_len(i as u64));
                self.buf.push(tag(3, VARINT));
                put_varint(&mut self.buf, i as u64);
            }
            Err(_) => self.kv_double(key, value as f64),
        }
    }

    fn double(&mut self, key: &str, value: f64) {
        self.kv_double(Key::plain(key), value);
    }

    fn bool(&mut self, key: &str, value: bool) {
        let key = Key::plain(key);
        if let Some(v) = self.replacement(key) {
            return self.kv_json(key, v);
        }
        self.kv_header(SPAN_ATTRIBUTES, key, 2);
        self.buf
            .extend_from_slice(&[tag(2, VARINT), u8::from(value)]);
    }

    fn strings<'s, I>(&mut self, key: &str, values: I)
    where
        I: Iterator<Item = &'s str> + Clone,
    {
        let key = Key::plain(key);
        if let Some(v) = self.replacement(key) {
            return self.kv_json(key, v);
        }
        let body: usize = values.clone().map(|s| field_len(str_any_len(s))).sum();
        self.kv_header(SPAN_ATTRIBUTES, key, field_len(body));
        let buf = &mut self.buf;
        buf.push(tag(5, LEN));
        put_varint(buf, body as u64);
        for s in values {
            buf.push(tag(1, LEN));
            put_varint(buf, str_any_len(s) as u64);
            put_str_field(buf, tag(1, LEN), s.as_bytes());
        }
    }

    fn json(&mut self, key: &str, value: &Value) {
        let key = Key::plain(key);
        if let Some(v) = self.replacement(key) {
            return self.kv_json(key, v);
        }
        self.kv_json(key, value);
    }

    fn text(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Text {
        self.texts.push(write)
    }

    fn str_text(&mut self, key: &str, text: Text) {
        self.kv_text(Key::plain(key), text);
    }

    fn indexed_str(&mut self, prefix: &str, index: usize, suffix: &str, value: &str) {
        let digits = Digits::new(index);
        self.kv_str(
            Key {
                parts: [prefix, digits.as_str(), suffix],
            },
            value,
        );
    }

    fn indexed_double(&mut self, prefix: &str, index: usize, suffix: &str, value: f64) {
        let digits = Digits::new(index);
        self.kv_double(
            Key {
                parts: [prefix, digits.as_str(), suffix],
            },
            value,
        );
    }

    fn user(&mut self, attributes: &JsonMap, owned: &[&str]) {
        self.user = None;
        self.user_lens = 0;
        for (key, value) in attributes {
            if owned.contains(&key.as_str()) || self.replaced.iter().any(|r| r == key) {
                continue;
            }
            self.kv_json(Key::plain(key), value);
        }
        self.replaced.clear();
    }

    fn end(&mut self, tail: &Tail<'_>) {
        self.user = None;
        self.user_lens = 0;
        let failed = tail.failed();
        let buf = &mut self.buf;
        if failed {
            let attrs: usize = tail
                .exception_attributes()
                .map(|(k, v)| field_len(field_len(k.len()) + field_len(str_any_len(v))))
                .sum();
            let event_len = 9 + field_len("exception".len()) + attrs;
            buf.push(SPAN_EVENTS);
            put_varint(buf, event_len as u64);
            buf.push(EVENT_TIME);
            buf.extend_from_slice(&tail.end.to_le_bytes());
            put_str_field(buf, EVENT_NAME, b"exception");
            for (k, v) in tail.exception_attributes() {
                self.kv_header(EVENT_ATTRIBUTES, Key::plain(k), str_any_len(v));
                put_str_field(&mut self.buf, tag(1, LEN), v.as_bytes());
            }
        }
        for link in tail.links {
            let opt = |len: usize| if len == 0 { 0 } else { field_len(len) };
            let attrs: usize = link.attributes.map_or(0, |m| {
                m.iter()
                    .map(|(k, v)| field_len(field_len(k.len()) + field_len(json_any_len(v, 1))))
                    .sum()
            });
            let len = opt(link.trace_id.len())
                + opt(link.span_id.len())
                + opt(link.trace_state.len())
                + attrs;
            let buf = &mut self.buf;
            buf.push(SPAN_LINKS);
            put_varint(buf, len as u64);
            for (t, b) in [
                (LINK_TRACE_ID, link.trace_id.as_slice()),
                (LINK_SPAN_ID, link.span_id.as_slice()),
                (LINK_TRACE_STATE, link.trace_state.as_bytes()),
            ] {
                if !b.is_empty() {
                    put_str_field(buf, t, b);
                }
            }
            for (k, v) in link.attributes.into_iter().flatten() {
                self.kv_header(LINK_ATTRIBUTES, Key::plain(k), json_any_len(v, 1));
                put_json_any(&mut self.buf, v, 1);
            }
        }
        let buf = &mut self.buf;
        let (message, code) = if failed {
            (tail.message(), 2u8)
        } else {
            ("", 1u8)
        };
        let status_len = if message.is_empty() {
            0
        } else {
            field_len(message.len())
        } + 2;
        buf.push(SPAN_STATUS);
        put_varint(buf, status_len as u64);
        if !message.is_empty() {
            put_str_field(buf, STATUS_MESSAGE, message.as_bytes());
        }
        buf.extend_from_slice(&[STATUS_CODE, code]);
        self.close(self.body_start, SPAN_LEN_GUESS);
    }
}

/// The spans of one resource in one request, written after a headroom that the
/// `ResourceSpans` headers (resource, scope) are written into at the end.
struct Group {
    key: ResourceKey,
    /// The encoded `ResourceSpans.resource` field (tag + length + message).
    resource: Vec<u8>,
    /// The encoded `ScopeSpans.scope` field.
    scope: Vec<u8>,
    buf: Vec<u8>,
    headroom: usize,
    spans: u64,
}

fn message_field(field: u8, m: &impl Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.encoded_len() + 6);
    out.push(tag(field, LEN));
    put_varint(&mut out, m.encoded_len() as u64);
    m.encode_raw(&mut out);
    out
}

impl Group {
    fn new(key: ResourceKey, options: &MappingOptions, capacity: usize) -> Group {
        Group::in_buf(key, options, Vec::new(), capacity)
    }

    /// A group written into `buf` (a spare buffer of an earlier request, or empty), which
    /// is used as it is when it has room for `capacity` bytes of spans.
    fn in_buf(
        key: ResourceKey,
        options: &MappingOptions,
        mut buf: Vec<u8>,
        capacity: usize,
    ) -> Group {
        let resource = message_field(1, &resource_with(&key.0, &key.1, key.2.as_ref(), options));
        let scope = message_field(1, &scope());
        // Request field tag + length, resource, scope_spans tag + length, scope.
        let headroom = 1 + 10 + resource.len() + 1 + 10 + scope.len();
        buf.clear();
        if buf.capacity() < headroom + capacity {
            // A new allocation rather than `reserve`: growing would copy the old one.
            buf = Vec::with_capacity(headroom + capacity);
        }
        buf.resize(headroom, 0);
        Group {
            key,
            resource,
            scope,
            buf,
            headroom,
            spans: 0,
        }
    }

    /// Encoded size of this group as a `resource_spans` field of the request, with `extra`
    /// more bytes of spans.
    fn encoded_len_with(&self, extra: usize) -> usize {
        let spans = self.buf.len() - self.headroom + extra;
        field_len(self.resource.len() + field_len(self.scope.len() + spans))
    }

    fn encoded_len(&self) -> usize {
        self.encoded_len_with(0)
    }

    /// Writes the headers into the headroom; returns the buffer and where the group starts.
    fn finish(mut self) -> (Vec<u8>, usize) {
        let scope_spans = self.scope.len() + self.buf.len() - self.headroom;
        let resource_spans = self.resource.len() + field_len(scope_spans);
        let mut head = Vec::with_capacity(self.headroom);
        head.push(tag(1, LEN));
        put_varint(&mut head, resource_spans as u64);
        head.extend_from_slice(&self.resource);
        head.push(tag(2, LEN));
        put_varint(&mut head, scope_spans as u64);
        head.extend_from_slice(&self.scope);
        let start = self.headroom - head.len();
        self.buf[start..self.headroom].copy_from_slice(&head);
        (self.buf, start)
    }
}

/// Joins finished groups into one request body. A single group's buffer becomes the body;
/// several are copied into one buffer. With `reuse` (the room of a group of the encoder),
/// that buffer is the first group's when the others fit after it, else a spare one of that
/// room if there is one; the other groups' buffers go back to [`SPARE`], and so does the
/// body's when the request is dropped.
fn join(groups: Vec<Group>, reuse: Option<usize>) -> EncodedRequest {
    let spans = groups.iter().map(|g| g.spans).sum();
    let mut parts: Vec<(Vec<u8>, usize)> = groups.into_iter().map(Group::finish).collect();
    let body = if parts.len() <= 1 {
        match parts.pop() {
            None => Bytes::new(),
            Some((buf, start)) => Bytes::from(buf).slice(start..),
        }
    } else if reuse.is_some()
        && parts[1..]
            .iter()
            .map(|(buf, start)| buf.len() - start)
            .sum::<usize>()
            <= parts[0].0.capacity() - parts[0].0.len()
    {
        // The others after the first group, in its buffer (a group has the room of a whole
        // request); that buffer comes back with the body.
        let mut parts = parts.into_iter();
        let Some((mut out, first_start)) = parts.next() else {
            return EncodedRequest {
                body: Bytes::new(),
                spans,
                recycle: false,
            };
        };
        for (buf, start) in parts {
            out.extend_from_slice(&buf[start..]);
            give_spare(buf);
        }
        Bytes::from(out).slice(first_start..)
    } else {
        let len = parts.iter().map(|(buf, start)| buf.len() - start).sum();
        let mut out = match reuse {
            Some(room) => {
                let spare = take_spare();
                if spare.capacity() >= len {
                    spare
                } else {
                    Vec::with_capacity(len.max(room))
                }
            }
            None => Vec::with_capacity(len),
        };
        out.clear();
        for (buf, start) in parts {
            out.extend_from_slice(&buf[start..]);
            if reuse.is_some() {
                give_spare(buf);
            }
        }
        Bytes::from(out)
    };
    EncodedRequest {
        body,
        spans,
        recycle: reuse.is_some(),
    }
}

/// Buffers of requests already joined (their groups') or dropped (their bodies'), for the
/// groups and bodies of the next requests of any [`RequestEncoder`] of the process (an
/// exporter encodes each batch on a thread of its own): requests reuse them instead of
/// allocating and faulting in new ones. At most [`MAX_SPARE`] are kept.
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Room a body of several groups gets beyond a group's spans, so that it can serve as a
/// group buffer later (a group's headroom is its resource and scope, usually ~100 bytes).
const GROUP_HEADROOM: usize = 1024;

/// Spare group buffers kept: enough for the requests of a few resources.
const MAX_SPARE: usize = 4;

/// The largest spare buffer kept (a group of a request of the default size has 4.5 MiB):
/// at most 32 MiB stay allocated for requests to come.
const MAX_SPARE_CAPACITY: usize = 2 * crate::DEFAULT_MAX_REQUEST_BYTES;

/// A spare group buffer, or an empty one.
fn take_spare() -> Vec<u8> {
    SPARE
        .lock()
        .map(|mut spare| spare.pop().unwrap_or_default())
        .unwrap_or_default()
}

/// Keeps `buf` for a later group (or frees it when enough are kept).
fn give_spare(buf: Vec<u8>) {
    if buf.capacity() > MAX_SPARE_CAPACITY {
        return;
    }
    if let Ok(mut spare) = SPARE.lock()
        && spare.len() < MAX_SPARE
    {
        spare.push(buf);
    }
}

fn spans_of(run: &AgentRun) -> usize {
    1 + run.step_count()
}

/// Writes the spans of `run` at the end of `group` (through `sink`).
fn write_run<'r>(
    sink: &mut WireSink<'r>,
    group: &mut Group,
    run: &'r AgentRun,
    options: &MappingOptions,
) {
    std::mem::swap(&mut sink.buf, &mut group.buf);
    sink.starts.clear();
    super::push_run_spans(run, options, sink);
    std::mem::swap(&mut sink.buf, &mut group.buf);
    group.spans += sink.starts.len() as u64;
}

/// One protobuf-encoded request holding every span of `batch`: the bytes of
/// `to_request(batch, options).encode_to_vec()` up to field order, written directly.
#[must_use]
pub fn encode_request(batch: &[ProcessedRun], options: &MappingOptions) -> EncodedRequest {
    let total: usize = batch.iter().map(|r| spans_of(r.run())).sum();
    let mut groups: Vec<Group> = Vec::new();
    let mut sink = WireSink::new(Vec::new());
    for (n, run) in batch.iter().enumerate() {
        let run = run.run();
        if let Some(next) = batch.get(n + 1) {
            super::touch_run(next.run());
        }
        let key = resource_key(run, options);
        let i = match groups.iter().position(|g| g.key == key) {
            Some(i) => i,
            None => {
                // Room for the usual span size, so that the (usually single) group grows
                // rarely.
                let capacity = if groups.is_empty() { total * 2048 } else { 0 };
                groups.push(Group::new(key, options, capacity));
                groups.len() - 1
            }
        };
        write_run(&mut sink, &mut groups[i], run, options);
    }
    join(groups, None)
}

/// Like [`encode_request`], split into requests whose encoded size stays at or under
/// `max_bytes` where possible: spans are packed greedily in order; a single span larger than
/// `max_bytes` goes alone in its own request. Spans of one run may land in different
/// requests (the trace id ties them together). The requests of [`RequestEncoder`], collected.
#[must_use]
pub fn encode_requests(
    batch: &[ProcessedRun],
    options: &MappingOptions,
    max_bytes: usize,
) -> Vec<EncodedRequest> {
    RequestEncoder::new(batch, options, max_bytes).collect()
}

/// The requests of [`encode_requests`], encoded one at a time as they are asked for: the
/// exporter sends one while the next is encoded, and holds at most a few in memory.
pub struct RequestEncoder<'r> {
    runs: std::slice::Iter<'r, ProcessedRun>,
    options: &'r MappingOptions,
    max_bytes: usize,
    /// Room for a full request of the usual span size: buffers rarely grow.
    capacity: usize,
    /// The groups of the request being filled.
    current: Vec<Group>,
    sink: WireSink<'r>,
    /// Requests closed and not yet returned (a run over the limit can close several).
    ready: std::collections::VecDeque<EncodedRequest>,
}

impl std::fmt::Debug for RequestEncoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestEncoder")
            .field("runs_left", &self.runs.len())
            .field("max_bytes", &self.max_bytes)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl<'r> RequestEncoder<'r> {
    /// The requests of `batch`, split under `max_bytes` as [`encode_requests`] does.
    #[must_use]
    pub fn new(batch: &'r [ProcessedRun], options: &'r MappingOptions, max_bytes: usize) -> Self {
        // Spans at the usual size (2 KiB), counted until they fill a request.
        let mut spans = 0usize;
        for run in batch {
            if spans.saturating_mul(2048) >= max_bytes {
                break;
            }
            spans += spans_of(run.run());
        }
        RequestEncoder {
            runs: batch.iter(),
            options,
            max_bytes,
            // (with room for the run that crosses the limit, whose spans are then moved to
            // the next request: growing the buffer for it would copy the whole request)
            capacity: match spans.saturating_mul(2048) {
                fits if fits < max_bytes => fits,
                _ => max_bytes.saturating_add(max_bytes / 8),
            },
            current: Vec::new(),
            sink: WireSink::new(Vec::new()),
            ready: std::collections::VecDeque::new(),
        }
    }

    /// Whether every request has been returned.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.ready.is_empty() && self.runs.len() == 0 && self.current.iter().all(|g| g.spans == 0)
    }

    fn size(groups: &[Group]) -> usize {
        groups.iter().map(Group::encoded_len).sum::<usize>()
    }

    /// Closes the request being filled (if it holds spans).
    fn close(&mut self) {
        self.current.retain(|g| g.spans > 0);
        if !self.current.is_empty() {
            self.ready.push_back(join(
                std::mem::take(&mut self.current),
                Some(self.capacity + GROUP_HEADROOM),
            ));
        }
    }

    /// Writes the spans of `run`, closing requests as they fill.
    fn add(&mut self, run: &'r AgentRun) {
        let options = self.options;
        let max_bytes = self.max_bytes;
        let key = resource_key(run, options);
        let i = match self.current.iter().position(|g| g.key == key) {
            Some(i) => i,
            None => {
                // Every group has room for a whole request: a buffer grown step by step
                // copies its bytes again at every step (only touched pages cost memory).
                let buf = take_spare();
                self.current
                    .push(Group::in_buf(key.clone(), options, buf, self.capacity));
                self.current.len() - 1
            }
        };
        if let Some(next) = self.runs.as_slice().first() {
            super::touch_run(next.run());
        }
        let run_start = self.current[i].buf.len();
        write_run(&mut self.sink, &mut self.current[i], run, options);
        if Self::size(&self.current) <= max_bytes {
            return;
        }
        // Over the limit: take this run's spans out, close the request, and place them
        // one by one.
        let g = &mut self.current[i];
        let bytes = g.buf.split_off(run_start);
        let run_spans = self.sink.starts.len() as u64;
        g.spans -= run_spans;
        let mut bounds: Vec<usize> = self.sink.starts.iter().map(|s| s - run_start).collect();
        bounds.push(bytes.len());
        self.close();
        for w in bounds.windows(2) {
            let span = &bytes[w[0]..w[1]];
            let fits = |groups: &[Group]| {
                // The span in its group (present or new) keeps the request under the limit.
                let extra = match groups.iter().find(|g| g.key == key) {
                    Some(g) => g.encoded_len_with(span.len()) - g.encoded_len(),
                    None => Group::new(key.clone(), options, 0).encoded_len_with(span.len()),
                };
                Self::size(groups) + extra <= max_bytes
            };
            if !self.current.is_empty() && !fits(&self.current) {
                self.close();
            }
            if self.current.is_empty() {
                let buf = take_spare();
                self.current
                    .push(Group::in_buf(key.clone(), options, buf, self.capacity));
            }
            let g = &mut self.current[0];
            g.buf.extend_from_slice(span);
            g.spans += 1;
        }
    }
}

impl Iterator for RequestEncoder<'_> {
    type Item = EncodedRequest;

    fn next(&mut self) -> Option<EncodedRequest> {
        loop {
            if let Some(request) = self.ready.pop_front() {
                return Some(request);
            }
            match self.runs.next() {
                Some(run) => self.add(run.run()),
                None => {
                    self.close();
                    return self.ready.pop_front();
                }
            }
        }
    }
}
