//! OTLP requests from anywhere (the gateway reads them from any SDK): decoding then reading
//! them back as runs never panics, the runs it gives map to OTLP again without panicking, and
//! the direct encoder writes exactly what the message-tree path builds for them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tracecraft_core::ProcessedRun;
use tracecraft_otlp::mapping::{self, MappingOptions};
use tracecraft_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecraft_otlp::reverse;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ExportTraceServiceRequest::decode(data) else {
        return;
    };
    let runs = reverse::runs_from_request(&request);
    for run in &runs {
        let _ = mapping::run_spans(run);
    }
    #[allow(clippy::disallowed_methods)] // no pipeline here: the encoders are under test
    let batch: Vec<ProcessedRun> = runs.into_iter().map(ProcessedRun::assume_processed).collect();
    let options = MappingOptions::default();
    let tree = mapping::to_request(&batch, &options);
    let wire = mapping::encode_request(&batch, &options);
    let decoded = ExportTraceServiceRequest::decode(wire.body().clone()).expect("decodes");
    // Debug, not `==`: a NaN attribute is equal to itself here.
    assert_eq!(format!("{decoded:?}"), format!("{tree:?}"));
});
