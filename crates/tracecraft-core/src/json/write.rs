//! A hand-written AgentRun serializer that writes, byte for byte, what `serde_json` writes for
//! the derived `Serialize` impls of [`AgentRun`] and [`Step`] (keys in declaration order,
//! compact, same string escapes, same number forms). Tests compare the two on the sample
//! corpus and on generated runs (`tests/wire_format.rs`, `tests/properties.rs`).
//!
//! Why: serde_json escapes every key and string one byte at a time through its formatter,
//! and the derived impls format timestamps into a fresh `String`. Here keys are pre-escaped
//! literals, strings are scanned eight bytes at a time, UUIDs and timestamps are formatted on
//! the stack. Numbers still go through serde_json (`itoa`, and its shortest round-trip float
//! formatting), so they are identical by construction.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{AgentRun, JsonMap, Step};

/// Appends `run` as compact JSON to `out`.
pub(crate) fn write_run(out: &mut Vec<u8>, run: &AgentRun) {
    out.extend_from_slice(b"{\"id\":");
    uuid(out, &run.id);
    out.extend_from_slice(b",\"name\":");
    string(out, &run.name);
    out.extend_from_slice(b",\"description\":");
    opt_string(out, run.description.as_deref());
    out.extend_from_slice(b",\"start_time\":");
    time(out, &run.start_time);
    out.extend_from_slice(b",\"end_time\":");
    opt_time(out, run.end_time.as_ref());
    out.extend_from_slice(b",\"duration_ms\":");
    opt_f64(out, run.duration_ms);
    out.extend_from_slice(b",\"session_id\":");
    opt_string(out, run.session_id.as_deref());
    out.extend_from_slice(b",\"user_id\":");
    opt_string(out, run.user_id.as_deref());
    out.extend_from_slice(b",\"environment\":");
    string(out, &run.environment);
    out.extend_from_slice(b",\"tags\":");
    strings(out, &run.tags);
    out.extend_from_slice(b",\"agent_name\":");
    opt_string(out, run.agent_name.as_deref());
    out.extend_from_slice(b",\"agent_id\":");
    opt_string(out, run.agent_id.as_deref());
    out.extend_from_slice(b",\"agent_description\":");
    opt_string(out, run.agent_description.as_deref());
    out.extend_from_slice(b",\"cloud_provider\":");
    opt_string(out, run.cloud_provider.as_deref());
    out.extend_from_slice(b",\"cloud_trace_id\":");
    opt_string(out, run.cloud_trace_id.as_deref());
    out.extend_from_slice(b",\"input\":");
    value(out, &run.input);
    out.extend_from_slice(b",\"output\":");
    value(out, &run.output);
    out.extend_from_slice(b",\"steps\":");
    steps(out, &run.steps);
    out.extend_from_slice(b",\"total_tokens\":");
    number(out, &run.total_tokens);
    out.extend_from_slice(b",\"total_cost_usd\":");
    number(out, &run.total_cost_usd);
    out.extend_from_slice(b",\"error_count\":");
    number(out, &run.error_count);
    out.extend_from_slice(b",\"error\":");
    opt_string(out, run.error.as_deref());
    out.extend_from_slice(b",\"error_type\":");
    opt_string(out, run.error_type.as_deref());
    out.extend_from_slice(b",\"attributes\":");
    map(out, &run.attributes);
    out.extend_from_slice(b",\"should_export\":");
    boolean(out, run.should_export);
    out.extend_from_slice(b",\"sample_reason\":");
    opt_string(out, run.sample_reason.as_deref());
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

// Recursion per tree level, exactly as the derived impl it replaces.
fn step(out: &mut Vec<u8>, s: &Step) {
    out.extend_from_slice(b"{\"id\":");
    uuid(out, &s.id);
    out.extend_from_slice(b",\"parent_id\":");
    match &s.parent_id {
        Some(p) => uuid(out, p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"trace_id\":");
    uuid(out, &s.trace_id);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(s.step_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\"name\":");
    string(out, &s.name);
    out.extend_from_slice(b",\"start_time\":");
    time(out, &s.start_time);
    out.extend_from_slice(b",\"end_time\":");
    opt_time(out, s.end_time.as_ref());
    out.extend_from_slice(b",\"duration_ms\":");
    opt_f64(out, s.duration_ms);
    out.extend_from_slice(b",\"inputs\":");
    map(out, &s.inputs);
    out.extend_from_slice(b",\"outputs\":");
    map(out, &s.outputs);
    out.extend_from_slice(b",\"attributes\":");
    map(out, &s.attributes);
    out.extend_from_slice(b",\"model_name\":");
    opt_string(out, s.model_name.as_deref());
    out.extend_from_slice(b",\"model_provider\":");
    opt_string(out, s.model_provider.as_deref());
    out.extend_from_slice(b",\"input_tokens\":");
    opt_u64(out, s.input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    opt_u64(out, s.output_tokens);
    out.extend_from_slice(b",\"cost_usd\":");
    opt_f64(out, s.cost_usd);
    out.extend_from_slice(b",\"is_streaming\":");
    boolean(out, s.is_streaming);
    out.extend_from_slice(b",\"streaming_chunks\":");
    strings(out, &s.streaming_chunks);
    out.extend_from_slice(b",\"error\":");
    opt_string(out, s.error.as_deref());
    out.extend_from_slice(b",\"error_type\":");
    opt_string(out, s.error_type.as_deref());
    out.extend_from_slice(b",\"children\":");
    steps(out, &s.children);
    out.push(b'}');
}

// Recursion per nesting level, exactly as serde_json's own `Value` serializer.
fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => boolean(out, *b),
        Value::Number(n) => number(out, n),
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item);
            }
            out.push(b']');
        }
        Value::Object(m) => map(out, m),
    }
}

fn map(out: &mut Vec<u8>, m: &JsonMap) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

/// Numbers (integers, floats, `serde_json::Number`) through serde_json itself, so their text
/// is identical (non-finite floats become `null`). Writing to a `Vec` cannot fail.
fn number<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, n: &T) {
    if serde_json::to_writer(&mut *out, n).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => number(out, &v),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => number(out, &v),
        None => out.extend_from_slice(b"null"),
    }
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn strings(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

fn opt_time(out: &mut Vec<u8>, t: Option<&DateTime<Utc>>) {
    match t {
        Some(t) => time(out, t),
        None => out.extend_from_slice(b"null"),
    }
}

/// `crate::time::format`, without allocating, for years 0 to 9999 outside leap seconds (the
/// rest goes through `format` itself).
fn time(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        string(out, &crate::time::format(t));
        return;
    }
    let mut buf = *b"\"0000-00-00T00:00:00.000000000Z\"";
    let digits = |buf: &mut [u8], mut v: u32| {
        for b in buf.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(&mut buf[1..5], year.unsigned_abs());
    digits(&mut buf[6..8], t.month());
    digits(&mut buf[9..11], t.day());
    digits(&mut buf[12..14], t.hour());
    digits(&mut buf[15..17], t.minute());
    digits(&mut buf[18..20], t.second());
    // Python's forms: no fraction when zero, else microseconds, else nanoseconds.
    let end = if nanos == 0 {
        20
    } else if nanos.is_multiple_of(1_000) {
        digits(&mut buf[21..27], nanos / 1_000);
        27
    } else {
        digits(&mut buf[21..30], nanos);
        30
    };
    out.extend_from_slice(&buf[..end]);
    out.extend_from_slice(b"Z\"");
}

/// `b'x'` at index `i`: byte `i` is escaped as `\x`; `b'u'`: as `\u00XX`; 0: written as is.
/// The table serde_json uses.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the 8 bytes of `w` is a control byte, `"` or `\`.
#[inline]
fn needs_escape(w: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    // A byte below 0x20: the classic "has less than" test (exact for "any byte").
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
    control || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// A JSON string with serde_json's escapes: `\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, other
/// control bytes as `\u00xx` (lower-case hex); everything else, DEL and non-ASCII included,
/// as is.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip clean 8-byte words.
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if !needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let esc = ESCAPE[b as usize];
        if esc != 0 {
            out.extend_from_slice(&bytes[start..i]);
            if esc == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.push(b'\\');
                out.push(esc);
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_str(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut all = String::new();
        for c in (0u8..=0x7f).map(char::from) {
            all.push(c);
        }
        all.push_str("é€😀\u{2028}\u{feff}");
        for s in [
            "",
            "plain",
            "exactly8",
            "a\"b\\c\nd",
            "\u{0}\u{1f}\u{7f}",
            "0123456789abcdef\t",
            &all,
            &all[3..],
        ] {
            assert_eq!(ours(s), serde_str(s), "{s:?}");
            for k in 0..s.len() {
                if s.is_char_boundary(k) {
                    assert_eq!(ours(&s[k..]), serde_str(&s[k..]));
                }
            }
        }
    }

    #[test]
    fn times_format_like_time_format() {
        for s in [
            "2026-11-24T09:13:00Z",
            "2026-11-24T09:13:00.123456Z",
            "2026-11-24T09:13:00.000001Z",
            "2026-11-24T09:13:00.123456789Z",
            "2026-11-24T09:13:00.100000000Z",
            "0001-01-01T00:00:00.5Z",
            "9999-12-31T23:59:59.999999999Z",
            "1970-01-01T00:00:00Z",
            "2016-12-31T23:59:60.5Z",
        ] {
            let t = crate::time::parse(s).unwrap();
            let mut out = Vec::new();
            time(&mut out, &t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_str(&crate::time::format(&t)),
                "{s}"
            );
        }
        for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let mut out = Vec::new();
            time(&mut out, &t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_str(&crate::time::format(&t))
            );
        }
    }
}
