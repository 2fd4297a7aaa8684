//! Compact recording of steps on the traced thread.
//!
//! A step under way is a small fixed-size [`StepRecord`] plus one byte buffer holding its name
//! and, as JSON text, every input, output and attribute it was given, plus its model, error and
//! streamed chunks. Buffers come from a per-thread pool, and a finished step's bytes are copied
//! into its run's arena: in the steady state recording a step allocates nothing, and nothing
//! allocated on the traced thread is freed by another thread (which makes glibc's allocator
//! take its arena lock and consolidate).
//!
//! The [`Step`]s of the data model are built from the records when the run ends
//! ([`materialize`]); capture controls (`capture_inputs`, `capture_outputs`, `exclude_inputs`)
//! in force at the step's end are applied then, at any depth of the values. Names listed in
//! `exclude_inputs` when an input is given are never serialized.

use std::cell::RefCell;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tracecraft_core::{Step, StepType, Uuid};

use crate::capture::{self, Capture, EXCLUDED};

/// What a field record in a step's buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    /// An input: key, JSON value.
    Input = 1,
    /// An output: key, JSON value.
    Output = 2,
    /// An attribute: key, JSON value.
    Attribute = 3,
    /// The model name: text (the last one wins).
    Model = 4,
    /// The model provider: text (the last one wins).
    Provider = 5,
    /// The error message: text (the last one wins).
    Error = 6,
    /// The error type: text (the last one wins).
    ErrorType = 7,
    /// A streamed chunk: text (in order).
    Chunk = 8,
    /// Input tokens: 8 bytes, little-endian (the last one wins).
    InputTokens = 9,
    /// Output tokens: 8 bytes, little-endian (the last one wins).
    OutputTokens = 10,
    /// Cost in US dollars: an `f64`'s 8 bytes, little-endian (the last one wins).
    Cost = 11,
}

impl Tag {
    fn from_u8(b: u8) -> Option<Tag> {
        Some(match b {
            1 => Tag::Input,
            2 => Tag::Output,
            3 => Tag::Attribute,
            4 => Tag::Model,
            5 => Tag::Provider,
            6 => Tag::Error,
            7 => Tag::ErrorType,
            8 => Tag::Chunk,
            9 => Tag::InputTokens,
            10 => Tag::OutputTokens,
            11 => Tag::Cost,
            _ => return None,
        })
    }
}

/// The fixed-size part of a step being recorded (kept small: guards move it by value);
/// everything else is in its buffer.
pub(crate) struct StepRecord {
    pub(crate) id: Uuid,
    pub(crate) parent_id: Option<Uuid>,
    pub(crate) step_type: StepType,
    pub(crate) start: Instant,
    /// Start order within the run.
    pub(crate) seq: u64,
    /// Length of the name at the start of the buffer.
    pub(crate) name_len: u32,
    pub(crate) is_streaming: bool,
    /// Whether an error was recorded (the buffer holds it).
    pub(crate) has_error: bool,
    /// The step's own capture settings when they differ from the run's (rare: boxed).
    pub(crate) capture: Option<Box<Capture>>,
}

impl StepRecord {
    /// A record whose buffer `buf` (empty) now starts with `name`.
    pub(crate) fn new(
        id: Uuid,
        step_type: StepType,
        name: &str,
        start: Instant,
        buf: &mut Vec<u8>,
    ) -> StepRecord {
        // A name longer than 4 GiB is cut at a char boundary (never split a character).
        let mut len = name.len().min(u32::MAX as usize);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        buf.extend_from_slice(&name.as_bytes()[..len]);
        StepRecord {
            id,
            parent_id: None,
            step_type,
            start,
            seq: 0,
            name_len: u32::try_from(len).unwrap_or(u32::MAX),
            is_streaming: false,
            has_error: false,
            capture: None,
        }
    }
}

/// Appends a record with a JSON value: `tag`, the key, then `value` serialized. A value that
/// fails to serialize is recorded as `"[unserializable: REASON]"` (see [`capture::to_json`]).
pub(crate) fn put_value<T: Serialize + ?Sized>(buf: &mut Vec<u8>, tag: Tag, key: &str, value: &T) {
    put_head(buf, tag, key);
    let len_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let start = buf.len();
    if let Err(e) = serde_json::to_writer(&mut *buf, value) {
        buf.truncate(start);
        let text = capture::unserializable(&e);
        // A JSON string of known-safe text: cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &text);
    }
    patch_len(buf, len_at, start);
}

/// Appends a record with an already-known JSON text (e.g. `"[EXCLUDED]"`).
pub(crate) fn put_excluded(buf: &mut Vec<u8>, tag: Tag, key: &str) {
    put_head(buf, tag, key);
    let len_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let start = buf.len();
    buf.push(b'"');
    buf.extend_from_slice(EXCLUDED.as_bytes());
    buf.push(b'"');
    patch_len(buf, len_at, start);
}

/// Appends a text record (model, provider, error, chunk).
pub(crate) fn put_text(buf: &mut Vec<u8>, tag: Tag, text: &str) {
    put_head(buf, tag, text);
}

/// Appends an 8-byte record (token counts, cost).
pub(crate) fn put_u64(buf: &mut Vec<u8>, tag: Tag, n: u64) {
    buf.push(tag as u8);
    buf.extend_from_slice(&n.to_le_bytes());
}

fn put_head(buf: &mut Vec<u8>, tag: Tag, key: &str) {
    let mut len = key.len().min(u32::MAX as usize);
    while !key.is_char_boundary(len) {
        len -= 1;
    }
    buf.push(tag as u8);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(&key.as_bytes()[..len]);
}

fn patch_len(buf: &mut [u8], len_at: usize, start: usize) {
    // Values larger than 4 GiB cannot be captured in memory anyway; saturate.
    let n = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    buf[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
}

/// One decoded record: tag, key or text, and the JSON value's bytes (empty for text records;
/// the 8 bytes of numeric records, whose key is empty).
struct Field<'a> {
    tag: Tag,
    key: &'a str,
    value: &'a [u8],
}

impl Field<'_> {
    fn u64(&self) -> u64 {
        self.value
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap_or_default()
    }
}

/// Decodes the records after the name. Stops at the first malformed record (none are: only
/// this module writes buffers).
fn fields(mut b: &[u8]) -> impl Iterator<Item = Field<'_>> {
    std::iter::from_fn(move || {
        let (&t, rest) = b.split_first()?;
        let tag = Tag::from_u8(t)?;
        if matches!(tag, Tag::InputTokens | Tag::OutputTokens | Tag::Cost) {
            let value = rest.get(..8)?;
            b = &rest[8..];
            return Some(Field {
                tag,
                key: "",
                value,
            });
        }
        let (key, rest) = take(rest)?;
        let key = std::str::from_utf8(key).ok()?;
        let (value, rest) = match tag {
            Tag::Input | Tag::Output | Tag::Attribute => take(rest)?,
            _ => (&[][..], rest),
        };
        b = rest;
        Some(Field { tag, key, value })
    })
}

fn take(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let rest = &b[4..];
    Some((rest.get(..n)?, &rest[n..]))
}

fn parse(value: &[u8]) -> Value {
    serde_json::from_slice(value).unwrap_or_else(|_| {
        // Only possible for a value cut at 4 GiB.
        Value::String("[unserializable: value too large]".to_owned())
    })
}

/// Builds the data-model step of a finished record whose bytes are `bytes`; `capture` is the
/// run's capture (the record's own one wins). The trace id, start and end times are set by the
/// caller's `times`.
pub(crate) fn materialize(
    rec: StepRecord,
    end: Instant,
    bytes: &[u8],
    run_capture: &Capture,
    trace_id: Uuid,
    wall: impl Fn(Instant) -> tracecraft_core::DateTime<tracecraft_core::Utc>,
) -> Step {
    let capture = rec.capture.as_deref().unwrap_or(run_capture);
    let name_len = (rec.name_len as usize).min(bytes.len());
    let name = String::from_utf8_lossy(&bytes[..name_len]).into_owned();
    let mut step = Step::with_id(rec.id, trace_id, rec.step_type, name, wall(rec.start));
    step.parent_id = rec.parent_id;
    step.is_streaming = rec.is_streaming;
    for f in fields(&bytes[name_len..]) {
        match f.tag {
            Tag::Input if capture.inputs => {
                let v = if capture.is_excluded(f.key) {
                    Value::String(EXCLUDED.to_owned())
                } else {
                    let mut v = parse(f.value);
                    capture.exclude_nested(&mut v);
                    v
                };
                step.inputs.insert(f.key.to_owned(), v);
            }
            Tag::Output if capture.outputs => {
                step.outputs.insert(f.key.to_owned(), parse(f.value));
            }
            Tag::Attribute => {
                step.attributes.insert(f.key.to_owned(), parse(f.value));
            }
            Tag::Model => step.model_name = Some(f.key.to_owned()),
            Tag::Provider => step.model_provider = Some(f.key.to_owned()),
            Tag::Error => step.error = Some(f.key.to_owned()),
            Tag::ErrorType => step.error_type = Some(f.key.to_owned()),
            Tag::Chunk if capture.outputs => step.streaming_chunks.push(f.key.to_owned()),
            Tag::InputTokens => step.input_tokens = Some(f.u64()),
            Tag::OutputTokens => step.output_tokens = Some(f.u64()),
            Tag::Cost => step.cost_usd = Some(f64::from_bits(f.u64())),
            Tag::Input | Tag::Output | Tag::Chunk => {}
        }
    }
    step.finish_at(wall(end));
    step
}

/// Buffers kept per thread for reuse (one per step open at once on the thread; deeper nesting
/// allocates). With the capacity limit below, a thread keeps at most 128 KiB.
const POOL_MAX: usize = 8;
/// Buffers that grew beyond this are not kept.
const POOL_MAX_CAPACITY: usize = 16 * 1024;
/// Capacity of a new buffer: a name and a few small fields.
const NEW_CAPACITY: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer from this thread's pool (or a new one).
pub(crate) fn take_buf() -> Vec<u8> {
    POOL.try_with(|p| p.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(NEW_CAPACITY))
}

/// Returns a buffer to this thread's pool (cleared; dropped if the pool is full or the
/// buffer grew large). Buffers are cleared before reuse, so no field of one step is seen in
/// another.
pub(crate) fn give_buf(mut buf: Vec<u8>) {
    if buf.capacity() > POOL_MAX_CAPACITY {
        return;
    }
    buf.clear();
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cap(inputs: bool, outputs: bool, exclude: &[&str]) -> Capture {
        Capture {
            inputs,
            outputs,
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn build(f: impl FnOnce(&mut Vec<u8>), capture: &Capture) -> Step {
        let mut buf = Vec::new();
        let t = Instant::now();
        let rec = StepRecord::new(Uuid::from_u128(5), StepType::Llm, "chat ✓", t, &mut buf);
        f(&mut buf);
        let wall0 = tracecraft_core::time::now();
        materialize(
            rec,
            Instant::now(),
            &buf,
            capture,
            Uuid::from_u128(9),
            |at| wall0 + chrono::TimeDelta::microseconds(at.duration_since(t).as_micros() as i64),
        )
    }

    #[test]
    fn values_round_trip_like_to_value() {
        #[derive(Serialize)]
        struct Args {
            q: &'static str,
            n: u32,
            x: f64,
            nested: Vec<Option<bool>>,
        }
        let args = Args {
            q: "héllo \"quoted\"\n",
            n: 7,
            x: 0.1 + 0.2,
            nested: vec![Some(true), None],
        };
        let values: Vec<Value> = vec![
            json!(null),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!(f64::MIN_POSITIVE),
            json!("\u{0}\u{1f}\u{7f}é😀"),
            json!({"b": 1, "a": [1, "2", {"c": null}]}),
            capture::to_json(&args),
        ];
        let step = build(
            |b| {
                for (i, v) in values.iter().enumerate() {
                    put_value(b, Tag::Input, &format!("k{i}"), v);
                }
                put_value(b, Tag::Input, "args", &args);
                put_value(b, Tag::Input, "nan", &f64::NAN);
            },
            &cap(true, true, &[]),
        );
        for (i, v) in values.iter().enumerate() {
            assert_eq!(&step.inputs[&format!("k{i}")], v);
        }
        assert_eq!(step.inputs["args"], capture::to_json(&args));
        assert_eq!(step.inputs["nan"], capture::to_json(&f64::NAN));
        assert_eq!(step.name, "chat ✓");
    }

    #[test]
    fn later_fields_win_in_first_position_and_text_fields_keep_the_last() {
        let step = build(
            |b| {
                put_value(b, Tag::Input, "a", &1);
                put_value(b, Tag::Input, "b", &2);
                put_value(b, Tag::Input, "a", &3);
                put_text(b, Tag::Model, "gpt-4");
                put_text(b, Tag::Model, "gpt-4o");
                put_text(b, Tag::Provider, "openai");
                put_text(b, Tag::Error, "");
                put_text(b, Tag::ErrorType, "Timeout");
                put_text(b, Tag::Chunk, "he");
                put_u64(b, Tag::InputTokens, 1);
                put_u64(b, Tag::InputTokens, u64::MAX);
                put_u64(b, Tag::Cost, 0.25f64.to_bits());
                put_text(b, Tag::Chunk, "llo");
                put_value(b, Tag::Output, "result", "ok");
                put_value(b, Tag::Attribute, "k", &json!({"x": 1}));
            },
            &cap(true, true, &[]),
        );
        assert_eq!(step.inputs.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(step.inputs["a"], json!(3));
        assert_eq!(step.model_name.as_deref(), Some("gpt-4o"));
        assert_eq!(step.model_provider.as_deref(), Some("openai"));
        assert_eq!(step.error.as_deref(), Some(""));
        assert_eq!(step.error_type.as_deref(), Some("Timeout"));
        assert_eq!(step.streaming_chunks, ["he", "llo"]);
        assert_eq!(step.input_tokens, Some(u64::MAX));
        assert_eq!(step.output_tokens, None);
        assert_eq!(step.cost_usd, Some(0.25));
        assert_eq!(step.outputs["result"], json!("ok"));
        assert_eq!(step.attributes["k"], json!({"x": 1}));
        assert_eq!(step.trace_id, Uuid::from_u128(9));
        assert!(step.duration_ms.is_some() && step.end_time.is_some());
    }

    #[test]
    fn capture_controls_apply_at_the_end() {
        let fill = |b: &mut Vec<u8>| {
            put_value(b, Tag::Input, "q", "hi");
            put_value(
                b,
                Tag::Input,
                "opts",
                &json!({"API_KEY": "sk-1", "l": [{"api_key": 2}]}),
            );
            put_excluded(b, Tag::Input, "api_key");
            put_value(b, Tag::Output, "result", "ok");
            put_text(b, Tag::Chunk, "c");
        };
        let s = build(fill, &cap(true, true, &["api_key"]));
        assert_eq!(s.inputs["q"], json!("hi"));
        assert_eq!(
            s.inputs["opts"],
            json!({"API_KEY": EXCLUDED, "l": [{"api_key": EXCLUDED}]})
        );
        assert_eq!(s.inputs["api_key"], json!(EXCLUDED));
        let s = build(fill, &cap(true, true, &["Q"]));
        assert_eq!(s.inputs["q"], json!(EXCLUDED));
        let s = build(fill, &cap(false, false, &[]));
        assert!(s.inputs.is_empty() && s.outputs.is_empty() && s.streaming_chunks.is_empty());
    }

    #[test]
    fn unserializable_values_are_recorded_for_that_field_only() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                // Fails halfway: the partial output must not survive.
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("a", "sk-live-secret")?;
                Err(serde::ser::Error::custom("secret sk-live-123"))
            }
        }
        let step = build(
            |b| {
                put_value(b, Tag::Input, "before", &1);
                put_value(b, Tag::Input, "bad", &Bad);
                put_value(b, Tag::Input, "after", &2);
            },
            &cap(true, true, &[]),
        );
        assert_eq!(
            step.inputs["bad"],
            json!("[unserializable: custom serialization error]")
        );
        assert_eq!(step.inputs["before"], json!(1));
        assert_eq!(step.inputs["after"], json!(2));
    }

    #[test]
    fn pooled_buffers_come_back_empty() {
        let mut b = take_buf();
        b.extend_from_slice(b"secret");
        give_buf(b);
        let again = take_buf();
        assert!(again.is_empty());
        give_buf(again);
        give_buf(Vec::with_capacity(POOL_MAX_CAPACITY + 1));
        for _ in 0..POOL_MAX + 3 {
            give_buf(Vec::with_capacity(8));
        }
        POOL.with(|p| {
            let p = p.borrow();
            assert!(p.len() <= POOL_MAX);
            assert!(
                p.iter()
                    .all(|b| b.is_empty() && b.capacity() <= POOL_MAX_CAPACITY)
            );
        });
    }
}
