//! Any UTF-8 input: redaction never panics, its output is valid UTF-8, redacting the output
//! again changes nothing, the fast path agrees with the naive per-rule oracle, and redacting
//! it in two pieces cut at a line break where a streaming caller may cut (with the block and
//! table trackers) gives the same output.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tracecraft_redact::{RedactionConfig, Redactor, Report};

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| Redactor::new(&RedactionConfig::default()).expect("defaults build"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let r = redactor();
    let once = r.redact_str(text, &mut Report::default()).into_owned();
    assert!(std::str::from_utf8(once.as_bytes()).is_ok());
    let twice = r.redact_str(&once, &mut Report::default());
    assert_eq!(once, twice, "not idempotent");
    let naive = r.redact_str_naive(text, &mut Report::default());
    assert_eq!(once, naive, "fast path and oracle disagree");
    if let Some(pieces) = r.redact_in_two_pieces(text) {
        assert_eq!(once, pieces, "pieces differ from the whole text");
    }
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) {
        r.redact_value(&mut v, &mut Report::default());
    }
});
