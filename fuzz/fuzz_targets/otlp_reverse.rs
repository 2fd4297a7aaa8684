//! OTLP requests from anywhere (the gateway reads them from any SDK): decoding then reading
//! them back as runs never panics, and the runs it gives map to OTLP again without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecraft_otlp::{mapping, reverse};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ExportTraceServiceRequest::decode(data) else {
        return;
    };
    for run in reverse::runs_from_request(&request) {
        let _ = mapping::run_spans(&run);
    }
});
