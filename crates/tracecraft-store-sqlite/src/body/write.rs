//! The body encoder of [`MSGPACK_SPLIT_V2`](super::MSGPACK_SPLIT_V2): the run's
//! MessagePack as `rmp-serde` would write it (structs as arrays in field order, UUIDs as 16-byte `bin`, times as
//! wire-format strings, step types as their names, `None` as `nil`, integers in their
//! shortest form, floats as `float 64`), except that each string's bytes go to the text
//! section instead of following their marker.
//!
//! The run is walked once: string bytes go to the body, markers and lengths to a per-thread
//! structure buffer that is put in front of them at the end (the text moved up by the
//! structure's length, in place: a run of 32 MB is not held twice more, once as its text and
//! once as its body; the structure is a small part of a run). (Walking the run twice, once
//! per section, cost more than the copy: the second walk misses the cache again on every
//! string and map of a run that is not in cache; on the corpus, one walk encodes a run in
//! ~17 µs, two walks in ~24 µs, `rmp-serde` in ~22 µs.)

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracecraft_core::{AgentRun, JsonMap, Step, Uuid};

use super::read::MAX_DEPTH;

/// The run is nested deeper than [`MAX_DEPTH`] (or holds a string, array or map of 2^32
/// elements or more, which MessagePack cannot hold): it is written in format 1 instead
/// (which refuses the too long ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NotV2;

type Res = Result<(), NotV2>;

/// Appends the structure section, then the text section, of `run` to `out`, with the
/// structure's length in front (4 bytes, little-endian). On `Err`, `out` holds a partial
/// body: the caller starts again.
pub(super) fn write_v2(run: &AgentRun, out: &mut Vec<u8>) -> Res {
    thread_local! {
        /// The structure section while the text is written (kept for the next run).
        static STRUCTURE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    // Called from another thread-local's destructor at thread exit, after `STRUCTURE` is
    // gone: a buffer of its own instead of a panic.
    STRUCTURE
        .try_with(|structure| write_v2_with(run, out, &mut structure.borrow_mut()))
        .unwrap_or_else(|_| write_v2_with(run, out, &mut Vec::new()))
}

fn write_v2_with(run: &AgentRun, out: &mut Vec<u8>, structure: &mut Vec<u8>) -> Res {
    structure.clear();
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let text_at = out.len();
    let mut w = Writer {
        structure: &mut *structure,
        text: &mut *out,
        depth: MAX_DEPTH,
        too_long: false,
    };
    w.run(run)?;
    if w.too_long {
        return Err(NotV2);
    }
    let len = u32::try_from(structure.len()).map_err(|_| NotV2)?;
    out[len_at..text_at].copy_from_slice(&len.to_le_bytes());
    out.splice(text_at..text_at, structure.iter().copied());
    // Do not hold on to the structure of an exceptionally large run.
    if structure.capacity() > 1 << 20 {
        *structure = Vec::new();
    }
    Ok(())
}

/// Writes one run: markers, lengths and numbers to the structure, string bytes to the text.
struct Writer<'a> {
    structure: &'a mut Vec<u8>,
    text: &'a mut Vec<u8>,
    /// Nesting levels left (counted as the reader counts them).
    depth: u32,
    /// A length of 2^32 or more was met (and written wrong): the body must not be used.
    too_long: bool,
}

impl Writer<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.structure.extend_from_slice(bytes);
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Res) -> Res {
        self.depth = self.depth.checked_sub(1).ok_or(NotV2)?;
        f(self)?;
        self.depth += 1;
        Ok(())
    }

    /// A marker followed by a big-endian length of `N` bytes (`N` = 1, 2 or 4).
    fn marker_len<const N: usize>(&mut self, marker: u8, n: usize) {
        let mut b = [0u8; 5];
        b[0] = marker;
        let n = u32::try_from(n).unwrap_or_else(|_| {
            self.too_long = true;
            u32::MAX
        });
        let bytes = n.to_be_bytes();
        b[1..=N].copy_from_slice(&bytes[4 - N..]);
        self.raw(&b[..=N]);
    }

    /// A length prefix in the shortest of a fix form (`fix` holding up to `fix_max`), 16 and
    /// 32 bits.
    fn len(&mut self, n: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
        if n <= fix_max {
            self.raw(&[fix | n as u8]);
        } else if n <= usize::from(u16::MAX) {
            self.marker_len::<2>(m16, n);
        } else {
            self.marker_len::<4>(m32, n);
        }
    }

    fn array_len(&mut self, n: usize) {
        self.len(n, 0x90, 15, 0xdc, 0xdd);
    }

    fn map_len(&mut self, n: usize) {
        self.len(n, 0x80, 15, 0xde, 0xdf);
    }

    fn str(&mut self, s: &str) {
        let n = s.len();
        if n <= 31 {
            self.raw(&[0xa0 | n as u8]);
        } else if n <= usize::from(u8::MAX) {
            self.marker_len::<1>(0xd9, n);
        } else if n <= usize::from(u16::MAX) {
            self.marker_len::<2>(0xda, n);
        } else {
            self.marker_len::<4>(0xdb, n);
        }
        self.text.extend_from_slice(s.as_bytes());
    }

    fn nil(&mut self) {
        self.raw(&[0xc0]);
    }

    /// `nil` for `None`, else the value as `write` writes it (`Option` as `rmp-serde` writes it).
    fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => write(self, v),
            None => self.nil(),
        }
    }

    /// A marker followed by `N` big-endian bytes.
    fn tagged<const N: usize>(&mut self, marker: u8, be: [u8; N]) {
        let mut b = [marker; 9];
        b[1..=N].copy_from_slice(&be);
        self.raw(&b[..=N]);
    }

    fn strings(&mut self, v: &[String]) -> Res {
        self.array_len(v.len());
        self.nested(|w| {
            for s in v {
                w.str(s);
            }
            Ok(())
        })
    }

    fn uuid(&mut self, id: &Uuid) {
        let mut b = [0u8; 18];
        b[0] = 0xc4;
        b[1] = 16;
        b[2..].copy_from_slice(id.as_bytes());
        self.raw(&b);
    }

    fn time(&mut self, t: &DateTime<Utc>) {
        tracecraft_core::time::with_formatted(t, |s| self.str(s));
    }

    fn bool(&mut self, b: bool) {
        self.raw(&[if b { 0xc3 } else { 0xc2 }]);
    }

    /// Shortest form, as `rmp::encode::write_uint`.
    fn u64(&mut self, v: u64) {
        if v < 128 {
            self.raw(&[v as u8]);
        } else if let Ok(v) = u8::try_from(v) {
            self.tagged(0xcc, [v]);
        } else if let Ok(v) = u16::try_from(v) {
            self.tagged(0xcd, v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(v) {
            self.tagged(0xce, v.to_be_bytes());
        } else {
            self.tagged(0xcf, v.to_be_bytes());
        }
    }

    /// A negative integer in its shortest form, as `rmp::encode::write_sint`.
    fn negative(&mut self, v: i64) {
        if v >= -32 {
            self.raw(&[v as u8]);
        } else if let Ok(v) = i8::try_from(v) {
            self.tagged(0xd0, v.to_be_bytes());
        } else if let Ok(v) = i16::try_from(v) {
            self.tagged(0xd1, v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.tagged(0xd2, v.to_be_bytes());
        } else {
            self.tagged(0xd3, v.to_be_bytes());
        }
    }

    fn f64(&mut self, v: f64) {
        self.tagged(0xcb, v.to_be_bytes());
    }

    /// A JSON value, as `serde_json::Value`'s `Serialize` makes `rmp-serde` write it.
    fn value(&mut self, v: &Value) -> Res {
        match v {
            Value::Null => self.nil(),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    self.u64(u);
                } else if let Some(i) = n.as_i64() {
                    self.negative(i);
                } else {
                    // serde_json numbers without arbitrary precision: a float.
                    self.f64(n.as_f64().unwrap_or(f64::NAN));
                }
            }
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.array_len(items.len());
                self.nested(|w| items.iter().try_for_each(|v| w.value(v)))?;
            }
            Value::Object(m) => self.map(m)?,
        }
        Ok(())
    }

    fn map(&mut self, m: &JsonMap) -> Res {
        self.map_len(m.len());
        self.nested(|w| {
            for (k, v) in m {
                w.str(k);
                w.value(v)?;
            }
            Ok(())
        })
    }

    fn steps(&mut self, steps: &[Step]) -> Res {
        self.array_len(steps.len());
        self.nested(|w| steps.iter().try_for_each(|s| w.step(s)))
    }

    /// A `Step`: its 21 fields in declaration order.
    fn step(&mut self, s: &Step) -> Res {
        self.array_len(21);
        self.nested(|w| {
            w.uuid(&s.id);
            w.opt(s.parent_id.as_ref(), Self::uuid);
            w.uuid(&s.trace_id);
            w.str(s.step_type.as_str());
            w.str(&s.name);
            w.time(&s.start_time);
            w.opt(s.end_time.as_ref(), Self::time);
            w.opt(s.duration_ms, Self::f64);
            w.map(&s.inputs)?;
            w.map(&s.outputs)?;
            w.map(&s.attributes)?;
            w.opt(s.model_name.as_deref(), Self::str);
            w.opt(s.model_provider.as_deref(), Self::str);
            w.opt(s.input_tokens, Self::u64);
            w.opt(s.output_tokens, Self::u64);
            w.opt(s.cost_usd, Self::f64);
            w.bool(s.is_streaming);
            w.strings(&s.streaming_chunks)?;
            w.opt(s.error.as_deref(), Self::str);
            w.opt(s.error_type.as_deref(), Self::str);
            w.steps(&s.children)
        })
    }

    /// An `AgentRun`: its 26 fields in declaration order.
    fn run(&mut self, r: &AgentRun) -> Res {
        self.array_len(26);
        self.nested(|w| {
            w.uuid(&r.id);
            w.str(&r.name);
            w.opt(r.description.as_deref(), Self::str);
            w.time(&r.start_time);
            w.opt(r.end_time.as_ref(), Self::time);
            w.opt(r.duration_ms, Self::f64);
            w.opt(r.session_id.as_deref(), Self::str);
            w.opt(r.user_id.as_deref(), Self::str);
            w.str(&r.environment);
            w.strings(&r.tags)?;
            w.opt(r.agent_name.as_deref(), Self::str);
            w.opt(r.agent_id.as_deref(), Self::str);
            w.opt(r.agent_description.as_deref(), Self::str);
            w.opt(r.cloud_provider.as_deref(), Self::str);
            w.opt(r.cloud_trace_id.as_deref(), Self::str);
            w.value(&r.input)?;
            w.value(&r.output)?;
            w.steps(&r.steps)?;
            w.u64(r.total_tokens);
            w.f64(r.total_cost_usd);
            w.u64(r.error_count);
            w.opt(r.error.as_deref(), Self::str);
            w.opt(r.error_type.as_deref(), Self::str);
            w.map(&r.attributes)?;
            w.bool(r.should_export);
            w.opt(r.sample_reason.as_deref(), Self::str);
            Ok(())
        })
    }
}
