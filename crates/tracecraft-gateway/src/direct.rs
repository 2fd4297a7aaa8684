//! The direct OTLP protobuf decoder of the receive path: `ExportTraceServiceRequest` bytes ->
//! the same message tree prost builds, with every repeated field sized once.
//!
//! The request, resource-spans and scope-spans levels are read here with prost's low-level
//! helpers (`decode_key`, `decode_varint`); before a level's repeated field is filled, its
//! occurrences are counted in that level's bytes (a scan of keys and lengths, no copy), so
//! the vectors of resource spans, scope spans and spans are allocated once at their final
//! size instead of doubling. Spans, resources and scopes themselves are merged by prost's
//! generated code. (Counting each span's attributes, events and links too made decoding
//! slower, not faster.)
//!
//! **Guarantee:** for every input, the result equals `ExportTraceServiceRequest::decode`'s,
//! with one exception at the nesting limit: prost refuses messages nested more than 100 deep
//! counted from the request; here a span, resource or scope is decoded on its own, so the
//! depth of the decoded tree is checked afterwards, and a value nested past the limit that a
//! later field of the same `AnyValue` replaced (so that it is not in the tree) is accepted
//! (and is harmless: it was decoded within prost's own limit counted from the span). Whatever
//! this decoder does not handle (groups, a malformed field, a wrong wire type, invalid
//! UTF-8, the depth check) is handed to prost's decoder for the whole body, so errors are
//! prost's (field paths, never bytes).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint};

/// Nesting prost allows, counted in messages below the request.
const RECURSION_LIMIT: usize = 100;

/// Something this decoder leaves to prost.
struct Fallback;

impl From<prost::DecodeError> for Fallback {
    fn from(_: prost::DecodeError) -> Self {
        Fallback
    }
}

/// Decodes an `ExportTraceServiceRequest`; see the module docs.
///
/// # Errors
/// prost's error for a body that is not a valid request.
pub(crate) fn decode(body: &[u8]) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
    match request(body) {
        Ok(r) => Ok(r),
        Err(Fallback) => ExportTraceServiceRequest::decode(body),
    }
}

/// The next field's key, or `None` at the end of `buf`.
fn key(buf: &mut &[u8]) -> Result<Option<(u32, WireType)>, Fallback> {
    if buf.is_empty() {
        return Ok(None);
    }
    Ok(Some(decode_key(buf)?))
}

/// The bytes of a length-delimited field (its key already read).
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Fallback> {
    let len = usize::try_from(decode_varint(buf)?).map_err(|_| Fallback)?;
    if len > buf.len() {
        return Err(Fallback);
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

/// Skips a field of another tag (groups are left to prost).
fn skip(wire_type: WireType, buf: &mut &[u8]) -> Result<(), Fallback> {
    let n = match wire_type {
        WireType::Varint => {
            decode_varint(buf)?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => {
            delimited(buf)?;
            0
        }
        WireType::StartGroup | WireType::EndGroup => return Err(Fallback),
    };
    if n > buf.len() {
        return Err(Fallback);
    }
    *buf = &buf[n..];
    Ok(())
}

/// How many length-delimited fields of each of `tags` a message's bytes hold.
fn count<const N: usize>(mut buf: &[u8], tags: [u32; N]) -> Result<[usize; N], Fallback> {
    let mut counts = [0; N];
    while let Some((tag, wire_type)) = key(&mut buf)? {
        if wire_type == WireType::LengthDelimited
            && let Some(i) = tags.iter().position(|&t| t == tag)
        {
            counts[i] += 1;
        }
        skip(wire_type, &mut buf)?;
    }
    Ok(counts)
}

fn string(bytes: &[u8]) -> Result<String, Fallback> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| Fallback)
}

fn request(mut buf: &[u8]) -> Result<ExportTraceServiceRequest, Fallback> {
    let [n] = count(buf, [1])?;
    let mut out = ExportTraceServiceRequest {
        resource_spans: Vec::with_capacity(n),
    };
    while let Some((tag, wire_type)) = key(&mut buf)? {
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                out.resource_spans
                    .push(resource_spans(delimited(&mut buf)?)?);
            }
            (1, _) => return Err(Fallback),
            _ => skip(wire_type, &mut buf)?,
        }
    }
    Ok(out)
}

fn resource_spans(mut buf: &[u8]) -> Result<ResourceSpans, Fallback> {
    let [n] = count(buf, [2])?;
    let mut out = ResourceSpans {
        scope_spans: Vec::with_capacity(n),
        ..ResourceSpans::default()
    };
    while let Some((tag, wire_type)) = key(&mut buf)? {
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                let resource = out.resource.get_or_insert_with(Default::default);
                resource.merge(delimited(&mut buf)?)?;
                // The resource is at depth 2 below the request.
                if 2 + max_depth(&resource.attributes, 1) > RECURSION_LIMIT {
                    return Err(Fallback);
                }
            }
            (2, WireType::LengthDelimited) => {
                out.scope_spans.push(scope_spans(delimited(&mut buf)?)?);
            }
            (3, WireType::LengthDelimited) => out.schema_url = string(delimited(&mut buf)?)?,
            (1..=3, _) => return Err(Fallback),
            _ => skip(wire_type, &mut buf)?,
        }
    }
    Ok(out)
}

fn scope_spans(mut buf: &[u8]) -> Result<ScopeSpans, Fallback> {
    let [n] = count(buf, [2])?;
    let mut out = ScopeSpans {
        spans: Vec::with_capacity(n),
        ..ScopeSpans::default()
    };
    while let Some((tag, wire_type)) = key(&mut buf)? {
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                let scope = out.scope.get_or_insert_with(Default::default);
                scope.merge(delimited(&mut buf)?)?;
                if 3 + max_depth(&scope.attributes, 1) > RECURSION_LIMIT {
                    return Err(Fallback);
                }
            }
            (2, WireType::LengthDelimited) => out.spans.push(span(delimited(&mut buf)?)?),
            (3, WireType::LengthDelimited) => out.schema_url = string(delimited(&mut buf)?)?,
            (1..=3, _) => return Err(Fallback),
            _ => skip(wire_type, &mut buf)?,
        }
    }
    Ok(out)
}

fn span(buf: &[u8]) -> Result<Span, Fallback> {
    let mut span = Span::default();
    span.merge(buf)?;
    // A span is at depth 3 below the request; its attributes at 4.
    let depth = max_depth(&span.attributes, 1)
        .max(
            span.events
                .iter()
                .map(|e| max_depth(&e.attributes, 2))
                .max()
                .unwrap_or(0),
        )
        .max(
            span.links
                .iter()
                .map(|l| max_depth(&l.attributes, 2))
                .max()
                .unwrap_or(0),
        );
    if 3 + depth > RECURSION_LIMIT {
        return Err(Fallback);
    }
    Ok(span)
}

/// The deepest message level below these key-values, the key-values being at `level`.
fn max_depth(attrs: &[KeyValue], level: usize) -> usize {
    attrs
        .iter()
        .map(|kv| kv.value.as_ref().map_or(level, |v| any_depth(v, level + 1)))
        .max()
        .unwrap_or(0)
}

fn any_depth(value: &AnyValue, level: usize) -> usize {
    match &value.value {
        // AnyValue -> ArrayValue -> AnyValue
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| any_depth(v, level + 2))
            .max()
            .unwrap_or(level + 1),
        // AnyValue -> KeyValueList -> KeyValue
        Some(any_value::Value::KvlistValue(l)) => max_depth(&l.values, level + 2).max(level + 1),
        _ => level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{Status, span};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = AnyValue> {
        use any_value::Value as V;
        let leaf = prop_oneof![
            ".{0,12}".prop_map(V::StringValue),
            any::<bool>().prop_map(V::BoolValue),
            any::<i64>().prop_map(V::IntValue),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
                .prop_map(V::DoubleValue),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(V::BytesValue),
        ]
        .prop_map(|v| AnyValue { value: Some(v) });
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                    value: Some(V::ArrayValue(ArrayValue { values }))
                }),
                proptest::collection::vec(("[a-z.]{0,6}", inner), 0..4).prop_map(|kvs| {
                    AnyValue {
                        value: Some(V::KvlistValue(KeyValueList {
                            values: kvs
                                .into_iter()
                                .map(|(key, v)| KeyValue {
                                    key,
                                    value: Some(v),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                    }
                }),
                Just(AnyValue { value: None }),
            ]
        })
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(("[a-z_.]{0,10}", proptest::option::of(value())), 0..5).prop_map(
            |kvs| {
                kvs.into_iter()
                    .map(|(key, value)| KeyValue {
                        key,
                        value,
                        ..Default::default()
                    })
                    .collect()
            },
        )
    }

    fn id(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..=max)
    }

    fn a_span() -> impl Strategy<Value = Span> {
        (
            (id(16), id(8), id(8), ".{0,8}", any::<u32>(), 0..6i32),
            (any::<u64>(), any::<u64>(), attributes(), any::<u32>()),
            proptest::collection::vec((".{0,8}", any::<u64>(), attributes()), 0..3),
            proptest::collection::vec((id(16), id(8), ".{0,4}", attributes()), 0..3),
            proptest::option::of((0..3i32, ".{0,8}")),
        )
            .prop_map(
                |(
                    (trace_id, span_id, parent_span_id, name, flags, kind),
                    (start, end, attributes, dropped),
                    events,
                    links,
                    status,
                )| Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    name,
                    flags,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    dropped_attributes_count: dropped,
                    events: events
                        .into_iter()
                        .map(|(name, time_unix_nano, attributes)| span::Event {
                            name,
                            time_unix_nano,
                            attributes,
                            ..Default::default()
                        })
                        .collect(),
                    links: links
                        .into_iter()
                        .map(|(trace_id, span_id, trace_state, attributes)| span::Link {
                            trace_id,
                            span_id,
                            trace_state,
                            attributes,
                            ..Default::default()
                        })
                        .collect(),
                    status: status.map(|(code, message)| Status { code, message }),
                    ..Default::default()
                },
            )
    }

    fn a_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope = (
            proptest::option::of((".{0,6}", attributes())),
            proptest::collection::vec(a_span(), 0..6),
            ".{0,6}",
        )
            .prop_map(|(scope, spans, schema_url)| ScopeSpans {
                scope: scope.map(|(name, attributes)| InstrumentationScope {
                    name,
                    attributes,
                    ..Default::default()
                }),
                spans,
                schema_url,
            });
        let resource = (
            proptest::option::of(attributes()),
            proptest::collection::vec(scope, 0..3),
            ".{0,6}",
        )
            .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
                resource: resource.map(|attributes| Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans,
                schema_url,
            });
        proptest::collection::vec(resource, 0..3)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    }

    /// The direct decoder and prost agree: equal trees, or both refuse (the direct decoder
    /// then returns prost's own error).
    fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        let direct = decode(bytes);
        let tree = ExportTraceServiceRequest::decode(bytes);
        match (&direct, &tree) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            _ => prop_assert!(false, "direct {direct:?} vs prost {tree:?}"),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn yields_what_prost_yields(request in a_request()) {
            let bytes = request.encode_to_vec();
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, &request);
            agree(&bytes)?;
        }

        #[test]
        fn damaged_requests_give_what_prost_gives(
            request in a_request(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = request.encode_to_vec();
            if !bytes.is_empty() {
                let i = flip.index(bytes.len());
                bytes[i] = byte;
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            agree(&bytes)?;
        }

        #[test]
        fn random_bytes_give_what_prost_gives(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            agree(&bytes)?;
        }
    }

    #[test]
    fn unknown_fields_and_repeated_singular_fields_merge_as_prost_does() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "s".into(),
            ..Default::default()
        };
        let one = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "a".into(),
                        value: None,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    schema_url: "x".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        // The same message twice (prost merges singular messages, appends repeated ones),
        // then an unknown varint, fixed64, fixed32 and length-delimited field at the top.
        let mut bytes = [one.as_slice(), one.as_slice()].concat();
        bytes.extend_from_slice(&[0x10, 0x05, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4]);
        bytes.extend_from_slice(&[0x2a, 0x02, b'h', b'i']);
        agree(&bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap().resource_spans.len(), 2);
    }

    #[test]
    fn nesting_is_refused_where_prost_refuses_it() {
        // An attribute value nested `n` arrays deep inside a span: prost refuses it from some
        // depth on; the direct decoder must switch at the same depth.
        for n in 40..52 {
            let mut v = AnyValue::default();
            for _ in 0..n {
                v = AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
                };
            }
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            attributes: vec![KeyValue {
                                key: "deep".into(),
                                value: Some(v.clone()),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "deep".into(),
                            value: Some(v),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            };
            agree(&request.encode_to_vec()).unwrap();
        }
    }
}
