//! Any bytes as an OTLP/HTTP body (protobuf, JSON, gzip of either): decoding, validation and
//! the reverse mapping never panic, and what is decoded is within the size limit. Protobuf
//! bodies go through the gateway's direct decoder, which must give exactly what prost's
//! message-tree decoder gives: the same tree, or prost's own error (the one documented
//! exception: a value nested past prost's limit that a later field replaced).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tracecraft_gateway::decode::{DecodeError, Format, decode_body, gunzip, validate};
use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        Format::Protobuf
    } else {
        Format::Json
    };
    let gzip = selector & 2 != 0;
    let decoded = decode_body(body, format, gzip, LIMIT);
    if format == Format::Protobuf && body.len() <= LIMIT {
        let plain = if gzip {
            gunzip(body, LIMIT).ok()
        } else {
            Some(body.to_vec())
        };
        if let Some(plain) = plain.filter(|p| p.len() <= LIMIT) {
            let tree = ExportTraceServiceRequest::decode(plain.as_slice());
            match (&decoded, &tree) {
                // Debug, not `==`: a NaN attribute is equal to itself here.
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
                (Err(DecodeError::Protobuf(a)), Err(b)) => {
                    let mut b = b.to_string();
                    b.truncate(200);
                    assert_eq!(a, &b);
                }
                (Ok(_), Err(b)) => assert!(b.to_string().contains("recursion limit"), "{b}"),
                (a, b) => panic!("direct {a:?} vs prost {b:?}"),
            }
        }
    }
    if let Ok(mut request) = decoded {
        let _ = validate(&mut request);
        let _ = tracecraft_otlp::reverse::runs_from_request(&request);
    }
});
