//! Content of LLM, retrieval and tool steps, read from a step's free-form inputs and outputs
//! the way instrumentation records them (`messages`, `prompt`, `documents`, ...), and written
//! in the GenAI and OpenInference shapes.

use serde_json::Value;
use tracecraft_core::JsonMap;

use super::{field, json_text};

/// Input keys that hold a prompt, first match wins (after `messages`).
const PROMPT_KEYS: &[&str] = &["prompt", "input", "query", "question", "text", "message"];
/// Input keys that hold system instructions.
const SYSTEM_KEYS: &[&str] = &["system", "system_prompt", "instructions"];
/// Output keys that hold the reply, first match wins (after `messages` / `choices`).
const REPLY_KEYS: &[&str] = &[
    "text",
    "content",
    "response",
    "completion",
    "output",
    "result",
    "answer",
    "message",
];
/// Output keys that hold retrieved documents.
const DOCUMENT_KEYS: &[&str] = &["documents", "docs", "results", "chunks"];
/// Attributes that are model invocation parameters, with their GenAI request key.
pub(crate) const INVOCATION_PARAMETERS: &[(&str, &str)] = &[
    ("temperature", "gen_ai.request.temperature"),
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("stop", "gen_ai.request.stop_sequences"),
    ("seed", "gen_ai.request.seed"),
];

/// One chat message: a role and its content (text, or JSON shown as text).
pub(crate) struct Message<'a> {
    pub(crate) role: &'a str,
    pub(crate) content: &'a Value,
}

#[cfg(test)]
impl Message<'_> {
    pub(crate) fn text(&self) -> String {
        text_of(self.content)
    }
}

/// A value as text: strings as they are, anything else as compact JSON.
#[cfg(test)]
pub(crate) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => json_text(other),
    }
}

fn message_of<'a>(item: &'a Value, default_role: &'a str) -> Option<Message<'a>> {
    match item {
        Value::Object(m) => {
            let inner = field(m, "message").and_then(Value::as_object).unwrap_or(m);
            let role = field(inner, "role")
                .and_then(Value::as_str)
                .unwrap_or(default_role);
            let content = field(inner, "content").or_else(|| field(inner, "text"))?;
            Some(Message { role, content })
        }
        Value::Null => None,
        other => Some(Message {
            role: default_role,
            content: other,
        }),
    }
}

/// The chat messages sent to the model.
pub(crate) fn input_messages(inputs: &JsonMap) -> Vec<Message<'_>> {
    if let Some(Value::Array(items)) = field(inputs, "messages") {
        return items.iter().filter_map(|i| message_of(i, "user")).collect();
    }
    match PROMPT_KEYS.iter().find_map(|k| field(inputs, k)) {
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|content| Message {
                role: "user",
                content,
            })
            .collect(),
        Some(v) if !v.is_null() => vec![Message {
            role: "user",
            content: v,
        }],
        _ => Vec::new(),
    }
}

/// System instructions given apart from the messages.
pub(crate) fn system_instructions(inputs: &JsonMap) -> Option<&str> {
    SYSTEM_KEYS
        .iter()
        .find_map(|k| field(inputs, k).and_then(Value::as_str))
}

/// The model's reply messages, and the finish reasons found with them.
pub(crate) fn output_messages(outputs: &JsonMap) -> (Vec<Message<'_>>, Vec<&str>) {
    let mut reasons: Vec<&str> = Vec::new();
    for key in ["messages", "choices"] {
        if let Some(Value::Array(items)) = field(outputs, key) {
            for item in items {
                if let Some(r) = item
                    .as_object()
                    .and_then(|m| field(m, "finish_reason"))
                    .and_then(Value::as_str)
                {
                    reasons.push(r);
                }
            }
            let messages = items
                .iter()
                .filter_map(|i| message_of(i, "assistant"))
                .collect();
            if let Some(r) = field(outputs, "finish_reason").and_then(Value::as_str) {
                reasons.push(r);
            }
            return (messages, reasons);
        }
    }
    if let Some(r) = field(outputs, "finish_reason").and_then(Value::as_str) {
        reasons.push(r);
    }
    let messages = REPLY_KEYS
        .iter()
        .find_map(|k| field(outputs, k))
        .filter(|v| !v.is_null())
        .map(|content| Message {
            role: "assistant",
            content,
        })
        .into_iter()
        .collect();
    (messages, reasons)
}

/// One retrieved document.
pub(crate) struct Document<'a> {
    pub(crate) content: Option<&'a Value>,
    pub(crate) id: Option<&'a Value>,
    pub(crate) score: Option<f64>,
}

/// The documents a retrieval step returned.
pub(crate) fn documents(outputs: &JsonMap) -> Vec<Document<'_>> {
    let Some(Value::Array(items)) = DOCUMENT_KEYS.iter().find_map(|k| field(outputs, k)) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::Object(m) => Document {
                content: ["content", "page_content", "text"]
                    .iter()
                    .find_map(|k| field(m, k)),
                id: field(m, "id"),
                score: field(m, "score").and_then(Value::as_f64),
            },
            other => Document {
                content: Some(other),
                id: None,
                score: None,
            },
        })
        .collect()
}

/// The high bit of each of the 8 bytes of `x` (little-endian: first byte lowest) that needs
/// escaping in a JSON string: a control character, `"` or `\\`. A byte after one that needs
/// it may be marked too, but the lowest mark is always exact.
#[inline]
fn escape_mask(x: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte below 0x20 or `"` is a byte below 0x21 after xor with 0x02 (which swaps 0x20
    // and 0x22 and keeps 0x00-0x1f among themselves); `\` is a zero byte after xor with it.
    // Bytes of 0x80 and above (UTF-8) never count.
    let low = x ^ (ONES * 0x02);
    let backslash = x ^ (ONES * u64::from(b'\\'));
    ((low.wrapping_sub(ONES * 0x21) & !low) | (backslash.wrapping_sub(ONES) & !backslash)) & HIGHS
}

/// The eight bytes of `bytes` from `at` as a little-endian word (`at + 8 <= bytes.len()`).
#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The position of the first byte at or after `i` that needs escaping in a JSON string.
/// Sixteen bytes at a time; the last few of a string of eight bytes or more are checked as
/// the word that ends the string.
#[inline]
fn next_escape(bytes: &[u8], mut i: usize) -> Option<usize> {
    let n = bytes.len();
    let first = |at: usize, mask: u64| at + (mask.trailing_zeros() / 8) as usize;
    while i + 16 <= n {
        let (a, b) = (escape_mask(word(bytes, i)), escape_mask(word(bytes, i + 8)));
        if a != 0 {
            return Some(first(i, a));
        }
        if b != 0 {
            return Some(first(i + 8, b));
        }
        i += 16;
    }
    if n >= 8 {
        if i + 8 <= n {
            let m = escape_mask(word(bytes, i));
            if m != 0 {
                return Some(first(i, m));
            }
            i += 8;
        }
        if i < n {
            // The word's 1 to 7 bytes before `i` shifted out (a mark of theirs could run on
            // into the next bytes), plain letters shifted in after the end.
            const LETTERS: u64 = u64::from_ne_bytes([b'a'; 8]);
            let shift = (i + 8 - n) * 8;
            let w = (word(bytes, n - 8) >> shift) | (LETTERS << (64 - shift));
            let m = escape_mask(w);
            if m != 0 {
                return Some(first(i, m));
            }
        }
        return None;
    }
    if i == 0 && n >= 4 {
        // 4 to 7 bytes (keys such as `role` and `content`): the first four and the last
        // four, overlapping, as one word.
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let m = escape_mask(half(0) | (half(n - 4) << 32));
        if m == 0 {
            return None;
        }
        let k = (m.trailing_zeros() / 8) as usize;
        return Some(if k < 4 { k } else { n + k - 8 });
    }
    bytes
        .get(i..)?
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| i + p)
}

/// Appends `s` as a JSON string literal, byte for byte as `serde_json` writes it. Bytes that
/// need no escaping are found sixteen at a time and copied as they are.
#[inline(always)]
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[start..]` is copied as it is up to the next escape or the end.
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        let b = bytes[i];
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// GenAI messages JSON: `[{"role":"user","parts":[{"type":"text","content":"..."}]}, ...]`,
/// with `finish_reason` on output messages where known.
#[cfg(test)]
pub(crate) fn genai_messages(messages: &[Message<'_>], finish_reasons: &[&str]) -> String {
    let mut out = Vec::with_capacity(64);
    push_genai_messages(&mut out, messages, finish_reasons);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`genai_messages`] JSON to `out`.
pub(crate) fn push_genai_messages(
    out: &mut Vec<u8>,
    messages: &[Message<'_>],
    finish_reasons: &[&str],
) {
    out.push(b'[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"role\":");
        push_json_str(out, m.role);
        out.extend_from_slice(b",\"parts\":[{\"type\":\"text\",\"content\":");
        match m.content {
            Value::String(s) => push_json_str(out, s),
            other => push_json_str(out, &json_text(other)),
        }
        out.extend_from_slice(b"}]");
        if let Some(r) = finish_reasons.get(i).or(finish_reasons.first()) {
            out.extend_from_slice(b",\"finish_reason\":");
            push_json_str(out, r);
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// Appends GenAI system instructions JSON to `out`: `[{"type":"text","content":"..."}]`.
pub(crate) fn push_genai_system(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"[{\"type\":\"text\",\"content\":");
    push_json_str(out, text);
    out.extend_from_slice(b"}]");
}

/// Reads GenAI messages JSON back as `[{"role", "content"}]` values (for spans from other
/// SDKs); `None` when the text is not that shape.
pub(crate) fn parse_genai_messages(text: &str) -> Option<Vec<Value>> {
    let Value::Array(items) = serde_json::from_str::<Value>(text).ok()? else {
        return None;
    };
    Some(
        items
            .into_iter()
            .map(|item| {
                let role = item.get("role").cloned().unwrap_or(Value::Null);
                let content = match item.get("parts") {
                    Some(Value::Array(parts)) => {
                        let texts: Vec<&str> = parts
                            .iter()
                            .filter_map(|p| p.get("content").and_then(Value::as_str))
                            .collect();
                        Value::String(texts.join(""))
                    }
                    _ => item.get("content").cloned().unwrap_or(Value::Null),
                };
                let mut m = serde_json::Map::new();
                m.insert("role".into(), role);
                m.insert("content".into(), content);
                Value::Object(m)
            })
            .collect(),
    )
}

/// `prefix` + `index` + `suffix` (`llm.input_messages.` `0` `.message.role`).
pub(crate) fn indexed_key(prefix: &str, index: usize, suffix: &str) -> String {
    use std::fmt::Write;
    let mut k = String::with_capacity(prefix.len() + suffix.len() + 3);
    k.push_str(prefix);
    let _ = write!(k, "{index}");
    k.push_str(suffix);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_strings_escape_like_serde() {
        for s in [
            "plain",
            "q\"b\\s",
            "line\nbreak\ttab\r",
            "\u{1}ctl\u{8}\u{c}\u{1f}",
            "é✓",
        ] {
            let mut out = Vec::new();
            push_json_str(&mut out, s);
            assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
            assert_eq!(out, serde_json::to_vec(s).unwrap());
        }
    }

    #[test]
    fn escape_masks_mark_exactly_the_first_byte_to_escape() {
        let escapes = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for b in 0..=255u8 {
            for at in 0..8 {
                for filler in [b'a', b' ', b'!', b'#', 0x80, 0xff, b'"'] {
                    let mut bytes = [b'a'; 8];
                    bytes[at + 1..].fill(filler);
                    bytes[at] = b;
                    let m = escape_mask(u64::from_le_bytes(bytes));
                    let first = bytes.iter().position(|&c| escapes(c));
                    let marked = (m != 0).then(|| (m.trailing_zeros() / 8) as usize);
                    assert_eq!(marked, first, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn json_strings_escape_like_serde_at_every_position() {
        // Escapes at every position of strings around the 8- and 16-byte word sizes, one
        // alone and two together (a mark of the first must not spill onto the next bytes).
        for len in 0..40 {
            for at in 0..len {
                for c in ['"', '\\', '\n', '\u{0}', '\u{1f}', 'é'] {
                    for second in [None, Some(at + 1), Some(at + 3), Some(len - 1)] {
                        let mut chars: Vec<char> = (0..len)
                            .map(|i| char::from(b'a' + (i % 26) as u8))
                            .collect();
                        chars[at] = c;
                        if let Some(j) = second.filter(|&j| j < len) {
                            chars[j] = '\u{0}';
                        }
                        let s: String = chars.into_iter().collect();
                        let mut out = Vec::new();
                        push_json_str(&mut out, &s);
                        assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn messages_from_common_shapes() {
        let inputs = json!({"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]});
        let m = input_messages(inputs.as_object().unwrap());
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role, "system");
        let inputs = json!({"prompt": "hello", "system": "sys"});
        let map = inputs.as_object().unwrap();
        assert_eq!(input_messages(map)[0].text(), "hello");
        assert_eq!(system_instructions(map), Some("sys"));
        let outputs = json!({"choices": [{"message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"}]});
        let (m, r) = output_messages(outputs.as_object().unwrap());
        assert_eq!(m[0].text(), "yo");
        assert_eq!(r, ["stop"]);
        let text = genai_messages(&m, &r);
        let back = parse_genai_messages(&text).unwrap();
        assert_eq!(back[0], json!({"role": "assistant", "content": "yo"}));
    }
}
