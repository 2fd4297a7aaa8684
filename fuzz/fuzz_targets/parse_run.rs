//! Any bytes: parsing never panics, and whatever parses re-serializes and re-parses equal.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(run) = tracecraft_core::json::parse_run_slice(data) {
        let text = tracecraft_core::json::to_json(&run);
        let again = tracecraft_core::json::parse_run(&text).expect("our own output parses");
        assert_eq!(again, run);
    }
    for (_, r) in tracecraft_core::read_jsonl(data) {
        let _ = r;
    }
});
