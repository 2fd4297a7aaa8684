//! Request bodies -> `ExportTraceServiceRequest`, and span validation. Never panics; error
//! messages name the problem, never a value from the input.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;

/// The body format of an OTLP/HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON: hex ids, enums as integers).
    Json,
}

impl Format {
    /// The format a `Content-Type` names, ignoring parameters.
    #[must_use]
    pub fn from_content_type(ct: &[u8]) -> Option<Format> {
        let base = ct.split(|&b| b == b';').next().unwrap_or(ct).trim_ascii();
        if base.eq_ignore_ascii_case(b"application/x-protobuf")
            || base.eq_ignore_ascii_case(b"application/protobuf")
        {
            Some(Format::Protobuf)
        } else if base.eq_ignore_ascii_case(b"application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    /// Its content type.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than the limit (compressed or decompressed).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not valid gzip.
    #[error("malformed gzip body")]
    Gzip,
    /// Not a valid OTLP protobuf message (the decoder's description: field names only).
    #[error("malformed OTLP protobuf: {0}")]
    Protobuf(String),
    /// Not valid OTLP/JSON (position only).
    #[error("malformed OTLP/JSON at line {line} column {column}: {category}")]
    Json {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// `syntax`, `data` (a value of the wrong kind, a bad hex id...), `eof`.
        category: &'static str,
    },
}

/// Decompresses a gzip body into at most `limit` bytes.
///
/// # Errors
/// [`DecodeError::TooLarge`] past the limit, [`DecodeError::Gzip`] for bad data.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Gzip)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

/// Decodes an OTLP trace export body.
///
/// # Errors
/// [`DecodeError::Protobuf`] or [`DecodeError::Json`].
pub fn decode(body: &[u8], format: Format) -> Result<ExportTraceServiceRequest, DecodeError> {
    match format {
        Format::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            // prost's description names message and field paths, never the bytes.
            let mut s = e.to_string();
            s.truncate(200);
            DecodeError::Protobuf(s)
        }),
        Format::Json => serde_json::from_slice(body).map_err(|e| DecodeError::Json {
            line: e.line(),
            column: e.column(),
            category: match e.classify() {
                serde_json::error::Category::Io => "io",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Eof => "eof",
            },
        }),
    }
}

/// An OTLP/HTTP body as the gateway reads it: gunzipped when `gzip` (bounded by `limit`),
/// then decoded as `format`; the invalid spans are removed and counted, as the gateway does
/// before anything is queued. Returns the request, the number of spans removed and a
/// message naming their problems. The one decoding path of the gateway (and its fuzz target).
///
/// # Errors
/// As [`gunzip`] and [`decode`].
pub fn decode_body(
    body: &[u8],
    format: Format,
    gzip: bool,
    limit: usize,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    if body.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    if gzip {
        decode(&gunzip(body, limit)?, format)
    } else {
        decode(body, format)
    }
}

/// Removes the spans the gateway refuses (ids of the wrong length or all zero, a zero
/// start, times after the end or more than a day ahead), and scopes and resources left
/// empty. Returns how many were removed and a message naming each problem (no values).
pub fn validate(request: &mut ExportTraceServiceRequest) -> (u64, String) {
    retain_valid(&mut request.resource_spans)
}

/// The number of spans in a request.
#[must_use]
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// Why a span is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SpanProblem {
    TraceId,
    SpanId,
    ParentId,
    Time,
}

impl SpanProblem {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            SpanProblem::TraceId => "trace_id is not 16 bytes or is all zero",
            SpanProblem::SpanId => "span_id is not 8 bytes or is all zero",
            SpanProblem::ParentId => "parent_span_id is neither empty nor 8 bytes",
            SpanProblem::Time => "start time is zero, after the end, or more than a day ahead",
        }
    }
}

const DAY_NS: u64 = 86_400_000_000_000;

fn problem(span: &Span, now_ns: u64) -> Option<SpanProblem> {
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|&b| b == 0) {
        return Some(SpanProblem::TraceId);
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|&b| b == 0) {
        return Some(SpanProblem::SpanId);
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Some(SpanProblem::ParentId);
    }
    let ahead = now_ns.saturating_add(DAY_NS);
    if span.start_time_unix_nano == 0
        || span.start_time_unix_nano > ahead
        || span.end_time_unix_nano > ahead
        || (span.end_time_unix_nano != 0 && span.end_time_unix_nano < span.start_time_unix_nano)
    {
        return Some(SpanProblem::Time);
    }
    None
}

/// Removes invalid spans (and emptied scopes/resources); returns how many were removed and
/// a message naming each problem found (for `partial_success.error_message`).
pub(crate) fn retain_valid(resource_spans: &mut Vec<ResourceSpans>) -> (u64, String) {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut counts = std::collections::BTreeMap::<SpanProblem, u64>::new();
    for rs in resource_spans.iter_mut() {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| match problem(s, now_ns) {
                None => true,
                Some(p) => {
                    *counts.entry(p).or_default() += 1;
                    false
                }
            });
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    let rejected = counts.values().sum();
    let message = counts
        .iter()
        .map(|(p, n)| format!("{n} spans rejected: {}", p.describe()))
        .collect::<Vec<_>>()
        .join("; ");
    (rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;

    /// The example from the OTLP specification (`examples/trace.json`), plus every
    /// AnyValue kind and an unknown field.
    const SPEC_EXAMPLE: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": 1544712661000000000,
            "kind": 2,
            "unknownField": {"ignored": true},
            "attributes": [
              {"key": "my.span.attr", "value": {"stringValue": "some value"}},
              {"key": "b", "value": {"boolValue": true}},
              {"key": "i", "value": {"intValue": "42"}},
              {"key": "i2", "value": {"intValue": 7}},
              {"key": "d", "value": {"doubleValue": 1.5}},
              {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": "1"}]}}},
              {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}}},
              {"key": "bytes", "value": {"bytesValue": "aGVsbG8="}}
            ],
            "events": [{"timeUnixNano": "1544712660500000000", "name": "ev",
                        "attributes": [{"key": "e", "value": {"stringValue": "ev-attr"}}]}],
            "links": [{"traceId": "5b8efff798038103d269b633813fc60d", "spanId": "eee19b7ec3c1b175"}],
            "status": {"code": 2, "message": "boom"}
          }]
        }]
      }]
    }"#;

    #[test]
    fn otlp_json_spec_example_decodes() {
        let r = decode(SPEC_EXAMPLE.as_bytes(), Format::Json).unwrap();
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
        assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.kind, 2);
        let get = |k: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(get("b"), Some(V::BoolValue(true)));
        assert_eq!(get("i"), Some(V::IntValue(42)));
        assert_eq!(get("i2"), Some(V::IntValue(7)));
        assert_eq!(get("d"), Some(V::DoubleValue(1.5)));
        assert_eq!(get("bytes"), Some(V::BytesValue(b"hello".to_vec())));
        assert!(matches!(get("a"), Some(V::ArrayValue(a)) if a.values.len() == 2));
        assert!(matches!(get("kv"), Some(V::KvlistValue(l)) if l.values[0].key == "k"));
        assert_eq!(span.events[0].name, "ev");
        assert_eq!(hex::encode(&span.links[0].span_id), "eee19b7ec3c1b175");
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(
            r.resource_spans[0].scope_spans[0]
                .scope
                .as_ref()
                .unwrap()
                .attributes[0]
                .key,
            "my.scope.attribute"
        );
    }

    #[test]
    fn json_errors_name_the_position_not_the_value() {
        let bad = SPEC_EXAMPLE.replace("5b8efff798038103d269b633813fc60c", "zz-secret-zz");
        let e = decode(bad.as_bytes(), Format::Json).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("line"), "{e}");
    }

    #[test]
    fn deep_values_are_refused_not_overflowed() {
        let mut s = String::new();
        for _ in 0..10_000 {
            s.push_str(r#"{"arrayValue":{"values":["#);
        }
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{s}"#
        );
        assert!(decode(body.as_bytes(), Format::Json).is_err());
        // The same depth in protobuf: nested ArrayValue messages.
        let mut v = opentelemetry_proto::tonic::common::v1::AnyValue::default();
        for _ in 0..150 {
            v = opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(V::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue { values: vec![v] },
                )),
            };
        }
        let bytes = v.encode_to_vec();
        assert!(
            opentelemetry_proto::tonic::common::v1::AnyValue::decode(bytes.as_slice()).is_err()
        );
    }

    #[test]
    fn gzip_bombs_stop_at_the_limit() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 10_000);
        assert_eq!(
            gunzip(&gz, 1000),
            Err(DecodeError::TooLarge { limit: 1000 })
        );
        assert_eq!(gunzip(&gz, 2 << 20).unwrap().len(), 1 << 20);
        assert_eq!(gunzip(b"not gzip", 1000), Err(DecodeError::Gzip));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes, Format::Protobuf);
            let _ = decode(&bytes, Format::Json);
            let _ = gunzip(&bytes, 4096);
            if let Ok(mut r) = decode(&bytes, Format::Protobuf) {
                let _ = retain_valid(&mut r.resource_spans);
            }
        }
    }
}
