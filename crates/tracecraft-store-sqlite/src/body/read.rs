//! The body decoder: reads [`MSGPACK_SPLIT_V2`](super::MSGPACK_SPLIT_V2) bodies, and
//! [`MSGPACK_V1`](super::MSGPACK_V1) bodies as `rmp-serde` writes them, straight into the
//! model.
//!
//! Both formats hold the run's MessagePack (structs as arrays in field order, UUIDs as 16-byte
//! `bin`, times as strings, step types as their names, `Option` as `nil` or the value, JSON
//! values as MessagePack's own types). In format 1 each string's bytes follow its marker and
//! are checked as UTF-8 one string at a time; in format 2 they are all in the text section,
//! checked once, and each string is a slice of it (see [`super`]).
//!
//! Through serde, every field, map key and value of a run went through `rmp-serde`'s generic
//! `deserialize_any` (a marker dispatch, a visitor call and a `Result` of a 40-byte error per
//! step) and the derived visitors' field bookkeeping; here each field is read by the one
//! function its type needs. The values built are the same, allocation for allocation: strings
//! at their exact length, arrays and maps at their final size.
//!
//! In format 1 it accepts a subset of what `rmp-serde` reads: exactly the forms `rmp-serde`
//! writes for the model, plus every MessagePack integer, float and length encoding. Anything
//! else (a struct written as a map, a float where an integer is expected, a `bin` inside a
//! JSON value, a truncated or corrupt body, trailing bytes, nesting deeper than
//! [`MAX_DEPTH`]) is [`Unsupported`], and [`super::decode`] decodes the body again with
//! `rmp-serde`, which decides and words the error. So for format 1 this decoder can only
//! ever be faster: for every body it accepts, `rmp-serde` returns the same run (property
//! tests compare the two on fixture runs, random runs and damaged bodies), and for every other
//! body the result is `rmp-serde`'s, as before. Format 2 has no other reader: what this
//! decoder does not accept is a corrupt body.

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};
use tracecraft_core::{AgentRun, JsonMap, Step, StepType, Uuid};

/// The body is not in the form this decoder reads (see the module docs). Carries nothing:
/// the caller falls back to `rmp-serde` for the verdict and the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unsupported;

type Res<T> = Result<T, Unsupported>;

/// Nesting limit, counted like `rmp-serde` counts (every array and map, the run's and the
/// steps' own arrays included), well below `rmp-serde`'s 1,024: a body nested deeper than
/// this (JSON values deeper than the pipeline's depth cap, step trees ~120 levels deep) is
/// left to `rmp-serde`, as before, so this decoder's recursion stays shallow.
pub(super) const MAX_DEPTH: u32 = 256;

/// At most this many elements are reserved up front from a length read from the body: a
/// corrupt length must not reserve more memory than the body could fill (a `Step` is ~550
/// bytes, a JSON value 80, for one byte of body). Longer containers grow as they fill.
const MAX_PRESIZE: usize = 4096;

/// Fields of `AgentRun`, of `Step`: the lengths of their arrays.
const RUN_FIELDS: u32 = 26;
const STEP_FIELDS: u32 = 21;

/// Decodes a format 1 body (after its format byte) into a run.
pub(super) fn decode_v1(body: &[u8]) -> Res<AgentRun> {
    Reader {
        buf: body,
        pos: 0,
        depth: MAX_DEPTH,
        text: None,
        text_pos: 0,
    }
    .whole_run()
}

/// Why a format 2 body could not be read: where, in a message without payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Malformed(pub(super) String);

/// Decodes a format 2 body (after its format byte) into a run.
pub(super) fn decode_v2(body: &[u8]) -> Result<AgentRun, Malformed> {
    let bad = |what: &str| Malformed(format!("{what} ({} bytes)", body.len()));
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("no structure length"))?;
    let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| bad("structure too long"))?;
    let (structure, text) = rest
        .split_at_checked(len)
        .ok_or_else(|| bad("structure longer than the body"))?;
    // One UTF-8 check for every string of the run.
    let text = std::str::from_utf8(text).map_err(|e| {
        bad(&format!(
            "text section is not UTF-8 at its byte {}",
            e.valid_up_to()
        ))
    })?;
    let mut r = Reader {
        buf: structure,
        pos: 0,
        depth: MAX_DEPTH,
        text: Some(text),
        text_pos: 0,
    };
    match r.whole_run() {
        Ok(run) if r.text_pos == text.len() => Ok(run),
        Ok(_) => Err(bad("text section longer than its strings")),
        Err(Unsupported) => Err(bad(&format!(
            "malformed structure at its byte {} of {}",
            r.pos,
            structure.len()
        ))),
    }
}

struct Reader<'a> {
    /// The MessagePack (format 1: the whole body; format 2: the structure section).
    buf: &'a [u8],
    pos: usize,
    /// Nesting levels left.
    depth: u32,
    /// Format 2: the text section, checked UTF-8; strings are read from it in order.
    text: Option<&'a str>,
    text_pos: usize,
}

impl<'a> Reader<'a> {
    /// The run, and nothing after it.
    fn whole_run(&mut self) -> Res<AgentRun> {
        let run = self.run()?;
        if self.pos == self.buf.len() {
            Ok(run)
        } else {
            Err(Unsupported)
        }
    }

    fn byte(&mut self) -> Res<u8> {
        let b = *self.buf.get(self.pos).ok_or(Unsupported)?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Res<u8> {
        self.buf.get(self.pos).copied().ok_or(Unsupported)
    }

    fn bytes(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Unsupported)?;
        let b = self.buf.get(self.pos..end).ok_or(Unsupported)?;
        self.pos = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let b = self.bytes(N)?;
        b.try_into().map_err(|_| Unsupported)
    }

    fn be_u16(&mut self) -> Res<usize> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn be_u32(&mut self) -> Res<usize> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| Unsupported)
    }

    /// Bytes left: a bound on any length read from the body (every element takes at least
    /// one byte), so a corrupt length reserves nothing it cannot fill.
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Consumes a `nil` if one is next.
    fn nil(&mut self) -> Res<bool> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn enter(&mut self) -> Res<()> {
        self.depth = self.depth.checked_sub(1).ok_or(Unsupported)?;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth += 1;
    }

    /// The length of an array whose marker is `m` (already read), or `None` if `m` is not an
    /// array marker.
    fn array_len(&mut self, m: u8) -> Res<Option<usize>> {
        let n = match m {
            0x90..=0x9f => usize::from(m & 0x0f),
            0xdc => self.be_u16()?,
            0xdd => self.be_u32()?,
            _ => return Ok(None),
        };
        if n > self.left() {
            return Err(Unsupported);
        }
        Ok(Some(n))
    }

    fn map_len(&mut self, m: u8) -> Res<Option<usize>> {
        let n = match m {
            0x80..=0x8f => usize::from(m & 0x0f),
            0xde => self.be_u16()?,
            0xdf => self.be_u32()?,
            _ => return Ok(None),
        };
        if n > self.left() / 2 {
            return Err(Unsupported);
        }
        Ok(Some(n))
    }

    fn expect_array(&mut self) -> Res<usize> {
        let m = self.byte()?;
        self.array_len(m)?.ok_or(Unsupported)
    }

    /// The string whose marker is `m` (already read), or `None` if `m` is not a string
    /// marker. Format 1: the bytes after the length, which must be UTF-8. Format 2: the next
    /// `length` bytes of the text section, which must end on a character boundary.
    fn str_after(&mut self, m: u8) -> Res<Option<&'a str>> {
        let n = match m {
            0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.be_u16()?,
            0xdb => self.be_u32()?,
            _ => return Ok(None),
        };
        match self.text {
            Some(text) => {
                let end = self.text_pos.checked_add(n).ok_or(Unsupported)?;
                let s = text.get(self.text_pos..end).ok_or(Unsupported)?;
                self.text_pos = end;
                Ok(Some(s))
            }
            None => {
                let b = self.bytes(n)?;
                std::str::from_utf8(b).map(Some).map_err(|_| Unsupported)
            }
        }
    }

    fn str(&mut self) -> Res<&'a str> {
        let m = self.byte()?;
        self.str_after(m)?.ok_or(Unsupported)
    }

    /// `None` for `nil`, else the value `read` reads (`Option` as `rmp-serde` writes it).
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Res<T>) -> Res<Option<T>> {
        if self.nil()? {
            return Ok(None);
        }
        read(self).map(Some)
    }

    fn string(&mut self) -> Res<String> {
        self.str().map(str::to_owned)
    }

    fn strings(&mut self) -> Res<Vec<String>> {
        let n = self.expect_array()?;
        self.enter()?;
        let mut v = Vec::with_capacity(n.min(MAX_PRESIZE));
        for _ in 0..n {
            v.push(self.string()?);
        }
        self.leave();
        Ok(v)
    }

    /// A UUID: `bin 8` of 16 bytes, as `uuid` serializes for a binary format.
    fn uuid(&mut self) -> Res<Uuid> {
        if self.byte()? != 0xc4 || self.byte()? != 16 {
            return Err(Unsupported);
        }
        Ok(Uuid::from_bytes(self.array()?))
    }

    fn time(&mut self) -> Res<DateTime<Utc>> {
        tracecraft_core::time::parse(self.str()?).map_err(|_| Unsupported)
    }

    fn bool(&mut self) -> Res<bool> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(Unsupported),
        }
    }

    /// The integer whose marker is `m` (already read): `Ok(None)` if `m` is no integer
    /// marker. Non-negative values are `Ok(Some(Ok(u)))`, negative ones `Ok(Some(Err(i)))`.
    fn int_after(&mut self, m: u8) -> Res<Option<Result<u64, i64>>> {
        let signed = |i: i64| u64::try_from(i).map_err(|_| i);
        Ok(Some(match m {
            0x00..=0x7f => Ok(u64::from(m)),
            0xe0..=0xff => Err(i64::from(m as i8)),
            0xcc => Ok(u64::from(self.byte()?)),
            0xcd => Ok(u64::from(u16::from_be_bytes(self.array()?))),
            0xce => Ok(u64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Ok(u64::from_be_bytes(self.array()?)),
            0xd0 => signed(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => signed(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => signed(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => signed(i64::from_be_bytes(self.array()?)),
            _ => return Ok(None),
        }))
    }

    /// A `u64` field: any non-negative integer (what serde's `u64` accepts from MessagePack,
    /// floats aside).
    fn u64(&mut self) -> Res<u64> {
        let m = self.byte()?;
        match self.int_after(m)? {
            Some(Ok(u)) => Ok(u),
            _ => Err(Unsupported),
        }
    }

    /// An `f64` field: a float (`rmp-serde` writes `f64` fields as `float 64`).
    fn f64(&mut self) -> Res<f64> {
        match self.byte()? {
            0xcb => Ok(f64::from_be_bytes(self.array()?)),
            0xca => Ok(f64::from(f32::from_be_bytes(self.array()?))),
            _ => Err(Unsupported),
        }
    }

    fn step_type(&mut self) -> Res<StepType> {
        // The names `rmp-serde` writes for the unit variants (`serde(rename_all = "lowercase")`).
        Ok(match self.str()? {
            "agent" => StepType::Agent,
            "llm" => StepType::Llm,
            "tool" => StepType::Tool,
            "retrieval" => StepType::Retrieval,
            "memory" => StepType::Memory,
            "guardrail" => StepType::Guardrail,
            "evaluation" => StepType::Evaluation,
            "workflow" => StepType::Workflow,
            "error" => StepType::Error,
            _ => return Err(Unsupported),
        })
    }

    /// Any JSON value, as `serde_json::Value`'s visitor builds it from `rmp-serde`.
    fn value(&mut self) -> Res<Value> {
        let m = self.byte()?;
        match m {
            0xc0 => return Ok(Value::Null),
            0xc2 => return Ok(Value::Bool(false)),
            0xc3 => return Ok(Value::Bool(true)),
            // Non-finite floats are `null`, as serde_json's visitor makes them.
            0xcb => {
                let f = f64::from_be_bytes(self.array()?);
                return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
            }
            0xca => {
                let f = f64::from(f32::from_be_bytes(self.array()?));
                return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
            }
            _ => {}
        }
        if let Some(s) = self.str_after(m)? {
            return Ok(Value::String(s.to_owned()));
        }
        if let Some(i) = self.int_after(m)? {
            return Ok(Value::Number(match i {
                Ok(u) => Number::from(u),
                Err(i) => Number::from(i),
            }));
        }
        if let Some(n) = self.array_len(m)? {
            self.enter()?;
            let mut items = Vec::with_capacity(n.min(MAX_PRESIZE));
            for _ in 0..n {
                items.push(self.value()?);
            }
            self.leave();
            return Ok(Value::Array(items));
        }
        if let Some(n) = self.map_len(m)? {
            return self.entries(n).map(Value::Object);
        }
        // bin, ext, reserved: not a JSON value.
        Err(Unsupported)
    }

    /// `n` map entries with string keys. A repeated key keeps its first position and its
    /// last value, as `Map::insert` (and so serde_json's visitor) does.
    fn entries(&mut self, n: usize) -> Res<JsonMap> {
        self.enter()?;
        let mut map = Map::with_capacity(n.min(MAX_PRESIZE));
        for _ in 0..n {
            let k = self.string()?;
            let v = self.value()?;
            map.insert(k, v);
        }
        self.leave();
        Ok(map)
    }

    /// A JSON object field (`inputs`, `outputs`, `attributes`): a map, or `nil` for an empty
    /// one.
    fn map(&mut self) -> Res<JsonMap> {
        let m = self.byte()?;
        if m == 0xc0 {
            return Ok(Map::new());
        }
        let n = self.map_len(m)?.ok_or(Unsupported)?;
        self.entries(n)
    }

    fn steps(&mut self) -> Res<Vec<Step>> {
        let n = self.expect_array()?;
        self.enter()?;
        let mut steps = Vec::with_capacity(n.min(MAX_PRESIZE));
        for _ in 0..n {
            steps.push(self.step()?);
        }
        self.leave();
        Ok(steps)
    }

    /// A `Step`: its 21 fields in declaration order.
    fn step(&mut self) -> Res<Step> {
        if self.expect_array()? != STEP_FIELDS as usize {
            return Err(Unsupported);
        }
        self.enter()?;
        let step = Step {
            id: self.uuid()?,
            parent_id: self.opt(Self::uuid)?,
            trace_id: self.uuid()?,
            step_type: self.step_type()?,
            name: self.string()?,
            start_time: self.time()?,
            end_time: self.opt(Self::time)?,
            duration_ms: self.opt(Self::f64)?,
            inputs: self.map()?,
            outputs: self.map()?,
            attributes: self.map()?,
            model_name: self.opt(Self::string)?,
            model_provider: self.opt(Self::string)?,
            input_tokens: self.opt(Self::u64)?,
            output_tokens: self.opt(Self::u64)?,
            cost_usd: self.opt(Self::f64)?,
            is_streaming: self.bool()?,
            streaming_chunks: self.strings()?,
            error: self.opt(Self::string)?,
            error_type: self.opt(Self::string)?,
            children: self.steps()?,
        };
        self.leave();
        Ok(step)
    }

    /// An `AgentRun`: its 26 fields in declaration order.
    fn run(&mut self) -> Res<AgentRun> {
        if self.expect_array()? != RUN_FIELDS as usize {
            return Err(Unsupported);
        }
        self.enter()?;
        let run = AgentRun {
            id: self.uuid()?,
            name: self.string()?,
            description: self.opt(Self::string)?,
            start_time: self.time()?,
            end_time: self.opt(Self::time)?,
            duration_ms: self.opt(Self::f64)?,
            session_id: self.opt(Self::string)?,
            user_id: self.opt(Self::string)?,
            environment: self.string()?,
            tags: self.strings()?,
            agent_name: self.opt(Self::string)?,
            agent_id: self.opt(Self::string)?,
            agent_description: self.opt(Self::string)?,
            cloud_provider: self.opt(Self::string)?,
            cloud_trace_id: self.opt(Self::string)?,
            input: self.value()?,
            output: self.value()?,
            steps: self.steps()?,
            total_tokens: self.u64()?,
            total_cost_usd: self.f64()?,
            error_count: self.u64()?,
            error: self.opt(Self::string)?,
            error_type: self.opt(Self::string)?,
            attributes: self.map()?,
            should_export: self.bool()?,
            sample_reason: self.opt(Self::string)?,
        };
        self.leave();
        Ok(run)
    }
}
