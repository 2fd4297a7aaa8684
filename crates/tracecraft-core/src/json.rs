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

/// Removes the contents of double-quoted segments of a serde message: they are input values.
/// Field names (in backticks) stay. Config loaders use it for their own parse errors.
#[must_use]
pub fn elide_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for c in msg.chars() {
        match (c, in_quote) {
            ('"', false) => {
                in_quote = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quote = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    if in_quote {
        out.push('"');
    }
    out
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
        message: elide_quoted(strip_position(&raw)),
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
pub fn write_json(out: &mut Vec<u8>, run: &AgentRun) {
    // Writing these types into a Vec cannot fail: every map key is a string and non-finite
    // floats become null.
    if serde_json::to_writer(&mut *out, run).is_err() {
        out.extend_from_slice(b"null");
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
            let trimmed = bytes.trim_ascii();
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
    fn elides_values_keeps_field_names() {
        assert_eq!(
            elide_quoted("invalid type: string \"sk-secret\", expected u64"),
            "invalid type: string \"…\", expected u64"
        );
        assert_eq!(
            elide_quoted("unknown field `foo`, expected `id`"),
            "unknown field `foo`, expected `id`"
        );
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
