//! The AgentRun JSON wire format: parsing with errors that name the field and the line, and
//! JSONL (one run per line) reading.
//!
//! Errors never contain payload text: serde's messages quote offending string values
//! (`invalid type: string "sk-..."`), so quoted values are elided before they reach the error.

use std::io::BufRead;

use crate::model::AgentRun;

/// Why a run could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Not JSON at all (or truncated).
    Syntax,
    /// Valid JSON of the wrong shape: unknown field, wrong type, bad UUID or timestamp.
    Data,
    /// The input ended in the middle of a value (e.g. a torn last line).
    Eof,
    /// Reading the input failed.
    Io,
}

/// A run that could not be parsed: which line, which field, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ParseError {
    kind: ParseErrorKind,
    line: Option<u64>,
    column: usize,
    path: String,
    message: String,
}

impl ParseError {
    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }
    /// The 1-based line of the input (the JSONL line for [`read_jsonl`]), when known.
    #[must_use]
    pub fn line(&self) -> Option<u64> {
        self.line
    }
    /// The column within the JSON text (0 when unknown).
    #[must_use]
    pub fn column(&self) -> usize {
        self.column
    }
    /// The path of the offending field, e.g. `steps[0].children[2].start_time` (empty at top).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }
    /// What was wrong, without any payload text.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Sets the line number (used by JSONL readers that parse one line at a time).
    #[must_use]
    pub fn at_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Some(line) = self.line {
            out.push_str(&format!("line {line}: "));
        }
        if !self.path.is_empty() && self.path != "." {
            out.push_str(&format!("field `{}`: ", self.path));
        }
        out.push_str(&self.message);
        out
    }

    fn io(err: &std::io::Error, line: u64) -> Self {
        ParseError {
            kind: ParseErrorKind::Io,
            line: Some(line),
            column: 0,
            path: String::new(),
            message: format!("read error: {}", err.kind()),
        }
    }
}

/// Makes a serde (JSON, TOML, MessagePack) error message safe to show: the one place that
/// formats parse and configuration errors (DESIGN invariant 8).
///
/// Before the message's `, expected ...` tail (which lists the schema's own names):
/// double-quoted segments are input values and are elided to `"…"`; backticked segments are
/// unknown keys, unknown variants or values (`invalid value: integer \`123456789\``) and are
/// kept only when they look like a field name (an identifier of at most 32 characters with at
/// most 4 digits: `rat`, `sampling_rate`), otherwise elided to `` `…` ``. So a typo stays
/// visible and `unknown field \`leaky.person@example.com\`` never reaches a terminal.
#[must_use]
pub fn elide_values(msg: &str) -> String {
    let (head, tail) = match msg.find(", expected") {
        Some(i) => msg.split_at(i),
        None => (msg, ""),
    };
    let mut out = String::with_capacity(msg.len());
    let mut rest = head;
    while let Some(i) = rest.find(['"', '`']) {
        out.push_str(&rest[..i]);
        let quote = rest.as_bytes()[i] as char;
        let after = &rest[i + 1..];
        let (inner, next) = match after.find(quote) {
            Some(j) => (&after[..j], &after[j + 1..]),
            None => (after, ""),
        };
        out.push(quote);
        if quote == '`' && looks_like_a_name(inner) {
            out.push_str(inner);
        } else {
            out.push('…');
        }
        out.push(quote);
        rest = next;
    }
    out.push_str(rest);
    out.push_str(tail);
    out
}

/// An identifier-like key (`max_queue_size`, `otlp.timeout_ms`, `X-Api-Key`) short enough and
/// with few enough digits that it is a name, not a value.
fn looks_like_a_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && s.bytes().filter(u8::is_ascii_digit).count() <= 4
}

/// Strips serde_json's trailing " at line L column C" (we report position separately).
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    }
}

fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> ParseError {
    let path = err.path().to_string();
    from_json_error(err.inner(), path)
}

fn from_json_error(inner: &serde_json::Error, path: String) -> ParseError {
    let kind = match inner.classify() {
        serde_json::error::Category::Io => ParseErrorKind::Io,
        serde_json::error::Category::Syntax => ParseErrorKind::Syntax,
        serde_json::error::Category::Data => ParseErrorKind::Data,
        serde_json::error::Category::Eof => ParseErrorKind::Eof,
    };
    let raw = inner.to_string();
    ParseError {
        kind,
        line: (inner.line() > 0).then_some(inner.line() as u64),
        column: inner.column(),
        path,
        message: elide_values(strip_position(&raw)),
    }
}

/// Parses one AgentRun from JSON text.
///
/// # Errors
/// [`ParseError`] naming the field path, line and column; unknown fields are rejected (the
/// Python package forbids extra fields too). Nesting deeper than 128 levels is an error, not a
/// stack overflow.
pub fn parse_run(text: &str) -> Result<AgentRun, ParseError> {
    // Fast path without path tracking; only a failing input is parsed again to find the
    // path of the offending field.
    match serde_json::from_str(text) {
        Ok(run) => Ok(run),
        Err(_) => Err(parse_run_with_path(text)),
    }
}

fn parse_run_with_path(text: &str) -> ParseError {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, AgentRun>(&mut de) {
        Err(e) => from_serde(e),
        Ok(_) => match de.end() {
            Err(e) => from_json_error(&e, String::new()),
            // Unreachable in practice: the fast path failed on the same text.
            Ok(()) => from_json_error(
                &serde_json::from_str::<AgentRun>(text)
                    .err()
                    .unwrap_or_else(|| serde::de::Error::custom("invalid run")),
                String::new(),
            ),
        },
    }
}

/// Parses one AgentRun from JSON bytes (must be UTF-8).
///
/// # Errors
/// As [`parse_run`]; invalid UTF-8 is a syntax error.
pub fn parse_run_slice(bytes: &[u8]) -> Result<AgentRun, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_run(text),
        Err(e) => Err(ParseError {
            kind: ParseErrorKind::Syntax,
            line: None,
            column: e.valid_up_to(),
            path: String::new(),
            message: "input is not valid UTF-8".to_owned(),
        }),
    }
}

/// Serializes a run to compact JSON, keys in the wire order.
#[must_use]
pub fn to_json(run: &AgentRun) -> String {
    let mut out = Vec::with_capacity(4096);
    write_json(&mut out, run);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends the JSON of [`to_json`] to `out` (no newline): for writers that batch many runs
/// into one buffer without an intermediate `String`.
///
/// The bytes are those of `serde_json::to_writer(out, run)` (the derived `Serialize`; tests
/// compare the two on fixtures and random runs), written faster (the private `fast` module).
pub fn write_json(out: &mut Vec<u8>, run: &AgentRun) {
    fast::write_run(out, run);
}

/// Appends `s` as a JSON string, as serde_json writes it. serde_json escapes only `"`, `\`
/// and the control bytes below 0x20: a string with none of them (most strings of a trace) is
/// copied between quotes, found eight bytes at a time; any other is escaped by serde_json
/// itself (serde_json's own loop looks at each byte through a table).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        write_serde(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `b` holds a byte serde_json escapes: `"`, `\`, or one below 0x20.
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // High bit of a lane: the lane is below `n` (for `n <= 0x80`; exact, as a whole).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let escaped =
        |x: u64| below(x, 0x20) | below(x ^ (ONES * 0x22), 1) | below(x ^ (ONES * 0x5C), 1) != 0;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        if escaped(u64::from_le_bytes(a)) {
            return true;
        }
    }
    // The last bytes in one word, padded with a byte that is not escaped.
    let rest = words.remainder();
    let mut a = [b'a'; 8];
    a[..rest.len()].copy_from_slice(rest);
    escaped(u64::from_le_bytes(a))
}

/// Appends `v` as serde_json writes it (compact): the containers walked here, the strings
/// through [`write_str`], numbers through serde_json.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_serde(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_list(out, items, write_value),
        Value::Object(m) => write_map(out, m),
    }
}

/// Appends `items` as a JSON array, each written by `write`.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// Appends `m` as serde_json writes a map (compact).
pub(crate) fn write_map(out: &mut Vec<u8>, m: &serde_json::Map<String, serde_json::Value>) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Appends `v` as serde_json writes it (compact).
fn write_serde<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing into a Vec cannot fail for these types: every map key is a string and
    // non-finite floats become null.
    if v.serialize(&mut serde_json::Serializer::new(&mut *out))
        .is_err()
    {
        out.extend_from_slice(b"null");
    }
}

/// The AgentRun JSON writer behind [`write_json`].
///
/// It writes what the derived `Serialize` impls make serde_json write, byte for byte, but
/// knows the shape of a run: the object keys of `AgentRun` and `Step` (fixed ASCII names) are
/// written as pre-quoted constants, `null`s directly, and UUIDs, timestamps and step types
/// (hex digits, digits and separators, lower-case names: nothing to escape) between quotes
/// as they are formatted. Numbers are formatted by serde_json; strings that need escaping
/// (names, messages, tags, chunks, the strings of the `input`/`output`/`attributes` values)
/// are escaped by serde_json, and the others copied as they are (see [`write_str`]): no
/// escaping is re-implemented here. Through the generic
/// serializer, each of the ~450 fixed keys of a corpus run went through serde_json's
/// byte-at-a-time escape loop and per-entry bookkeeping, and each of its ~60 UUIDs and ~40
/// timestamps was formatted and then scanned again for escapes.
mod fast {
    use chrono::{DateTime, Utc};
    use serde_json::Value;
    use uuid::Uuid;

    use super::write_serde;
    use crate::model::{AgentRun, JsonMap, Step};

    fn raw(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(b);
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        super::write_str(out, s);
    }

    /// `write`s the value, or `null` for `None`.
    fn opt<T>(out: &mut Vec<u8>, v: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
        match v {
            Some(v) => write(out, v),
            None => raw(out, b"null"),
        }
    }

    fn strings(out: &mut Vec<u8>, v: &[String]) {
        super::write_list(out, v, |out, s| string(out, s));
    }

    fn f64_value(out: &mut Vec<u8>, f: f64) {
        // serde_json's float formatting (and `null` for NaN and infinities).
        write_serde(out, &f);
    }

    fn u64_value(out: &mut Vec<u8>, n: u64) {
        write_serde(out, &n);
    }

    fn bool_value(out: &mut Vec<u8>, b: bool) {
        raw(out, if b { b"true" } else { b"false" });
    }

    fn value(out: &mut Vec<u8>, v: &Value) {
        super::write_value(out, v);
    }

    fn map(out: &mut Vec<u8>, m: &JsonMap) {
        super::write_map(out, m);
    }

    /// A UUID as `uuid` serializes it (hyphenated, lower-case), quoted.
    fn uuid(out: &mut Vec<u8>, id: &Uuid) {
        /// The two lower-case hex digits of each byte.
        const HEX2: [[u8; 2]; 256] = {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut t = [[0u8; 2]; 256];
            let mut i = 0;
            while i < 256 {
                t[i] = [HEX[i >> 4], HEX[i & 0xf]];
                i += 1;
            }
            t
        };
        /// Where each byte's digits go in `"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"`.
        const AT: [usize; 16] = [1, 3, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 29, 31, 33, 35];
        let mut s = *b"\"00000000-0000-0000-0000-000000000000\"";
        for (&byte, &at) in id.as_bytes().iter().zip(&AT) {
            s[at..at + 2].copy_from_slice(&HEX2[usize::from(byte)]);
        }
        raw(out, &s);
    }

    fn time(out: &mut Vec<u8>, t: &DateTime<Utc>) {
        crate::time::write_json_string(out, t);
    }

    /// Reads one byte of every string and every value of `v`, with little work in between:
    /// the loads are independent, so the CPU has many cache misses in flight at once instead
    /// of one per pointer as the writer meets them.
    fn touch_value(v: &Value) -> usize {
        match v {
            Value::String(s) => touch_str(s),
            Value::Array(items) => items.iter().map(touch_value).sum(),
            Value::Object(m) => touch_map(m),
            _ => 0,
        }
    }

    fn touch_str(s: &str) -> usize {
        s.as_bytes().first().map_or(0, |&b| usize::from(b))
    }

    fn touch_map(m: &JsonMap) -> usize {
        m.iter().map(|(k, v)| touch_str(k) + touch_value(v)).sum()
    }

    fn touch_step(s: &Step) -> usize {
        touch_str(&s.name)
            + touch_map(&s.inputs)
            + touch_map(&s.outputs)
            + touch_map(&s.attributes)
            + s.children.iter().map(touch_step).sum::<usize>()
    }

    pub(super) fn write_run(out: &mut Vec<u8>, r: &AgentRun) {
        std::hint::black_box(
            touch_value(&r.input)
                + touch_value(&r.output)
                + touch_map(&r.attributes)
                + r.steps.iter().map(touch_step).sum::<usize>(),
        );
        raw(out, br#"{"id":"#);
        uuid(out, &r.id);
        raw(out, br#","name":"#);
        string(out, &r.name);
        raw(out, br#","description":"#);
        opt(out, r.description.as_deref(), string);
        raw(out, br#","start_time":"#);
        time(out, &r.start_time);
        raw(out, br#","end_time":"#);
        opt(out, r.end_time.as_ref(), time);
        raw(out, br#","duration_ms":"#);
        opt(out, r.duration_ms, f64_value);
        raw(out, br#","session_id":"#);
        opt(out, r.session_id.as_deref(), string);
        raw(out, br#","user_id":"#);
        opt(out, r.user_id.as_deref(), string);
        raw(out, br#","environment":"#);
        string(out, &r.environment);
        raw(out, br#","tags":"#);
        strings(out, &r.tags);
        raw(out, br#","agent_name":"#);
        opt(out, r.agent_name.as_deref(), string);
        raw(out, br#","agent_id":"#);
        opt(out, r.agent_id.as_deref(), string);
        raw(out, br#","agent_description":"#);
        opt(out, r.agent_description.as_deref(), string);
        raw(out, br#","cloud_provider":"#);
        opt(out, r.cloud_provider.as_deref(), string);
        raw(out, br#","cloud_trace_id":"#);
        opt(out, r.cloud_trace_id.as_deref(), string);
        raw(out, br#","input":"#);
        value(out, &r.input);
        raw(out, br#","output":"#);
        value(out, &r.output);
        raw(out, br#","steps":"#);
        steps(out, &r.steps);
        raw(out, br#","total_tokens":"#);
        u64_value(out, r.total_tokens);
        raw(out, br#","total_cost_usd":"#);
        f64_value(out, r.total_cost_usd);
        raw(out, br#","error_count":"#);
        u64_value(out, r.error_count);
        raw(out, br#","error":"#);
        opt(out, r.error.as_deref(), string);
        raw(out, br#","error_type":"#);
        opt(out, r.error_type.as_deref(), string);
        raw(out, br#","attributes":"#);
        map(out, &r.attributes);
        raw(out, br#","should_export":"#);
        bool_value(out, r.should_export);
        raw(out, br#","sample_reason":"#);
        opt(out, r.sample_reason.as_deref(), string);
        out.push(b'}');
    }

    fn steps(out: &mut Vec<u8>, steps: &[Step]) {
        out.push(b'[');
        for (i, s) in steps.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            step(out, s);
        }
        out.push(b']');
    }

    fn step(out: &mut Vec<u8>, s: &Step) {
        raw(out, br#"{"id":"#);
        uuid(out, &s.id);
        raw(out, br#","parent_id":"#);
        opt(out, s.parent_id.as_ref(), uuid);
        raw(out, br#","trace_id":"#);
        uuid(out, &s.trace_id);
        raw(out, br#","type":""#);
        // Lower-case ASCII names: nothing to escape.
        raw(out, s.step_type.as_str().as_bytes());
        raw(out, br#"","name":"#);
        string(out, &s.name);
        raw(out, br#","start_time":"#);
        time(out, &s.start_time);
        raw(out, br#","end_time":"#);
        opt(out, s.end_time.as_ref(), time);
        raw(out, br#","duration_ms":"#);
        opt(out, s.duration_ms, f64_value);
        raw(out, br#","inputs":"#);
        map(out, &s.inputs);
        raw(out, br#","outputs":"#);
        map(out, &s.outputs);
        raw(out, br#","attributes":"#);
        map(out, &s.attributes);
        raw(out, br#","model_name":"#);
        opt(out, s.model_name.as_deref(), string);
        raw(out, br#","model_provider":"#);
        opt(out, s.model_provider.as_deref(), string);
        raw(out, br#","input_tokens":"#);
        opt(out, s.input_tokens, u64_value);
        raw(out, br#","output_tokens":"#);
        opt(out, s.output_tokens, u64_value);
        raw(out, br#","cost_usd":"#);
        opt(out, s.cost_usd, f64_value);
        raw(out, br#","is_streaming":"#);
        bool_value(out, s.is_streaming);
        raw(out, br#","streaming_chunks":"#);
        strings(out, &s.streaming_chunks);
        raw(out, br#","error":"#);
        opt(out, s.error.as_deref(), string);
        raw(out, br#","error_type":"#);
        opt(out, s.error_type.as_deref(), string);
        raw(out, br#","children":"#);
        steps(out, &s.children);
        out.push(b'}');
    }
}

/// Deserialization of the run's JSON values (`input`, `output`, the `inputs`/`outputs`/
/// `attributes` maps) for the model's `deserialize_with`: the same values serde_json's own
/// `Deserialize` impls build (a test compares them), but arrays and objects are allocated at
/// their final size when the format says how long they are (MessagePack, the SQLite store's
/// body format, does; JSON does not), instead of growing and rehashing as they fill.
pub(crate) mod de {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use crate::model::JsonMap;

    /// A bound on capacities taken from the input (a corrupt length must not reserve
    /// gigabytes): longer containers grow as usual past it.
    const MAX_PRESIZE: usize = 4096;

    fn capacity(hint: Option<usize>) -> usize {
        hint.unwrap_or(0).min(MAX_PRESIZE)
    }

    /// `Deserialize` of `serde_json::Value`, with sized containers.
    pub(crate) fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }

    /// `Deserialize` of `serde_json::Map<String, Value>`, with sized containers.
    pub(crate) fn map<'de, D: Deserializer<'de>>(d: D) -> Result<JsonMap, D::Error> {
        d.deserialize_map(MapVisitor)
    }

    struct ValueSeed;

    impl<'de> DeserializeSeed<'de> for ValueSeed {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            value(d)
        }
    }

    fn entries<'de, A: MapAccess<'de>>(mut access: A) -> Result<JsonMap, A::Error> {
        let mut m = Map::with_capacity(capacity(access.size_hint()));
        while let Some(k) = access.next_key::<String>()? {
            let v = access.next_value_seed(ValueSeed)?;
            m.insert(k, v);
        }
        Ok(m)
    }

    struct MapVisitor;

    impl<'de> Visitor<'de> for MapVisitor {
        type Value = JsonMap;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // serde_json's wording for its map.
            f.write_str("a map")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<JsonMap, E> {
            // serde_json's `Map` accepts `null` as an empty map.
            Ok(Map::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<JsonMap, A::Error> {
            entries(access)
        }
    }

    /// serde_json's `ValueVisitor` (serde_json 1.x, without `arbitrary_precision` or
    /// `raw_value`), with sized containers.
    struct ValueVisitor;

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any valid JSON value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
            serde::Deserialize::deserialize(serde::de::value::I128Deserializer::<E>::new(v))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
            serde::Deserialize::deserialize(serde::de::value::U128Deserializer::<E>::new(v))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }

        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }

        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }

        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            value(d)
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
            let mut items = Vec::with_capacity(capacity(access.size_hint()));
            while let Some(v) = access.next_element_seed(ValueSeed)? {
                items.push(v);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
            entries(access).map(Value::Object)
        }
    }
}

/// Reads AgentRun JSONL: one run per line; blank lines are skipped.
///
/// Each item is the 1-based line number and the parsed run or its error; a bad line does not
/// stop the reader, so callers can report it and go on ("loses no other data").
pub fn read_jsonl<R: BufRead>(reader: R) -> JsonlReader<R> {
    JsonlReader {
        reader,
        line: 0,
        done: false,
    }
}

/// Iterator returned by [`read_jsonl`].
#[derive(Debug)]
pub struct JsonlReader<R> {
    reader: R,
    line: u64,
    done: bool,
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = (u64, Result<AgentRun, ParseError>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.line += 1;
            let mut bytes = Vec::new();
            match self.reader.read_until(b'\n', &mut bytes) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some((self.line, Err(ParseError::io(&e, self.line))));
                }
            }
            let mut trimmed = bytes.trim_ascii();
            if self.line == 1 {
                // A UTF-8 byte order mark (editors on Windows write one) is not part of the run.
                trimmed = trimmed
                    .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                    .unwrap_or(trimmed)
                    .trim_ascii();
            }
            if trimmed.is_empty() {
                continue;
            }
            let result = parse_run_slice(trimmed).map_err(|e| e.at_line(self.line));
            return Some((self.line, result));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_on_the_first_line_is_accepted() {
        let run = AgentRun::new("bom");
        let text = format!("\u{feff}{}\n{}\n", to_json(&run), to_json(&run));
        let parsed: Vec<_> = read_jsonl(text.as_bytes()).collect();
        assert_eq!(parsed.len(), 2);
        for (_, r) in parsed {
            assert_eq!(r.unwrap().name, "bom");
        }
    }

    #[test]
    fn elides_values_keeps_field_names() {
        assert_eq!(
            elide_values("invalid type: string \"sk-secret\", expected u64"),
            "invalid type: string \"…\", expected u64"
        );
        assert_eq!(
            elide_values("unknown field `foo`, expected `id`"),
            "unknown field `foo`, expected `id`"
        );
        assert_eq!(
            elide_values("unknown field `leaky.person@example.com`, expected one of `id`, `name`"),
            "unknown field `…`, expected one of `id`, `name`"
        );
        assert_eq!(
            elide_values(
                "unknown variant `secret-type-sk-proj-abcdefghijklmnop1234`, expected one of `agent`, `llm`"
            ),
            "unknown variant `…`, expected one of `agent`, `llm`"
        );
        assert_eq!(
            elide_values("invalid value: integer `123456789`, expected u32"),
            "invalid value: integer `…`, expected u32"
        );
        assert_eq!(elide_values("unterminated \"abc"), "unterminated \"…\"");
        assert_eq!(elide_values("unterminated `ab c"), "unterminated `…`");
    }

    #[test]
    fn fast_writer_matches_the_derived_serialize_on_fixtures() {
        let fixtures = [
            include_str!("../testdata/runs_sample.jsonl"),
            include_str!("../testdata/python_model_dump.jsonl"),
        ];
        let parsed = fixtures
            .iter()
            .flat_map(|t| t.lines())
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_run(l).unwrap());
        let mut n = 0;
        for run in parsed {
            assert_eq!(to_json(&run), serde_json::to_string(&run).unwrap());
            n += 1;
        }
        assert!(n > 10, "{n}");
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<f32>().prop_map(|f| Value::from(f64::from(f))),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 12, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..12).prop_map(Value::from),
                prop::collection::vec((".{0,6}", inner), 0..12)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn values_are_written_as_serde_json_writes_them(v in json_value()) {
            let mut ours = Vec::new();
            write_value(&mut ours, &v);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&v).unwrap());
        }

        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in "(?s).{0,40}", pad in 0usize..9) {
            // Every escaped byte at every place of a word (the padding shifts it).
            let s = format!("{}{s}", "a".repeat(pad));
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&s).unwrap());
        }

        #[test]
        fn sized_values_are_serde_jsons_values(v in json_value()) {
            // JSON: no lengths known.
            let text = serde_json::to_string(&v).unwrap();
            let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
            let ours = de::value(&mut serde_json::Deserializer::from_str(&text)).unwrap();
            proptest::prop_assert_eq!(&ours, &reference);
            // MessagePack (the SQLite body format): lengths known, containers presized.
            let bytes = rmp_serde::to_vec(&v).unwrap();
            let reference: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
            let ours = de::value(&mut rmp_serde::Deserializer::from_read_ref(&bytes)).unwrap();
            proptest::prop_assert_eq!(&ours, &reference);
            if let serde_json::Value::Object(m) = &v {
                let reference: crate::model::JsonMap = rmp_serde::from_slice(&bytes).unwrap();
                let ours = de::map(&mut rmp_serde::Deserializer::from_read_ref(&bytes)).unwrap();
                proptest::prop_assert_eq!(&ours, &reference);
                proptest::prop_assert_eq!(&ours, m);
                let ours = de::map(&mut serde_json::Deserializer::from_str(&text)).unwrap();
                proptest::prop_assert_eq!(&ours, m);
            }
        }
    }

    #[test]
    fn every_byte_serde_json_escapes_is_found_in_every_lane() {
        for c in 0u8..0x80 {
            for pos in 0..17 {
                let mut b = vec![b'a'; 17];
                b[pos] = c;
                let s = std::str::from_utf8(&b).unwrap();
                let mut ours = Vec::new();
                write_str(&mut ours, s);
                assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{c:#x} at {pos}");
                assert_eq!(needs_escape(&b), c < 0x20 || c == b'"' || c == b'\\');
            }
        }
        let mut ours = Vec::new();
        write_str(&mut ours, "é✓\u{7f}");
        assert_eq!(ours, serde_json::to_vec("é✓\u{7f}").unwrap());
    }

    #[test]
    fn sized_values_fail_like_serde_json() {
        for text in ["[1,", "{\"a\":}", "nul", "{1:2}", "\"\\ud800\""] {
            let reference = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
            let ours = de::value(&mut serde_json::Deserializer::from_str(text)).unwrap_err();
            assert_eq!(ours.to_string(), reference.to_string(), "{text}");
        }
        // Not a map where a map is expected; a huge declared length is not reserved.
        let reference = serde_json::from_str::<crate::model::JsonMap>("[1]").unwrap_err();
        let ours = de::map(&mut serde_json::Deserializer::from_str("[1]")).unwrap_err();
        assert_eq!(ours.to_string(), reference.to_string());
        let huge = [0xdf, 0xff, 0xff, 0xff, 0xff]; // map32 of 2^32-1 entries, then nothing
        assert!(de::value(&mut rmp_serde::Deserializer::from_read_ref(&huge[..])).is_err());
    }

    #[test]
    fn strips_serde_position() {
        assert_eq!(
            strip_position("expected value at line 1 column 5"),
            "expected value"
        );
        assert_eq!(strip_position("no position"), "no position");
    }
}
