//! Any bytes as an OTLP/HTTP body (protobuf, JSON, gzip of either): decoding, validation and
//! the reverse mapping never panic, and what is decoded is within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracecraft_gateway::decode::{Format, decode_body, validate};

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
    if let Ok(mut request) = decode_body(body, format, gzip, 1 << 20) {
        let _ = validate(&mut request);
        let _ = tracecraft_otlp::reverse::runs_from_request(&request);
    }
});
