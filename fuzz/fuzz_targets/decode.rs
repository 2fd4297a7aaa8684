//! The decoders (percent-encoding, base64/base64url, JSON escapes, wrapped lines): any UTF-8
//! input, also wrapped in each encoding, is redacted without panic, idempotently, the fast
//! path agrees with the naive oracle, and the output is never longer than the input plus one
//! replacement per input byte (no blow-up from nested decoding).
//!
//! Linear time is not asserted here (a wall-clock or size-doubling check is flaky under
//! libFuzzer); it is bounded by construction: each call decodes at most `4 * len + 64 KiB`
//! bytes in all (`decode::Budget`, unit-tested by `budget_stops`), to at most 3 levels, and
//! each level is the linear fast path.
//!
//! Crashes saved in `fuzz/regressions/decode/` are replayed with these checks by
//! `tracecraft-redact`'s `fuzz_regressions` test; `decoders_fuzz_property` runs the same
//! property over inputs built from its test corpus on every `cargo test`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tracecraft_redact::{RedactionConfig, Redactor, Report};

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| Redactor::new(&RedactionConfig::default()).expect("defaults build"))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..=c.len() {
            out.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

fn check(text: &str) {
    let r = redactor();
    let once = r.redact_str(text, &mut Report::default()).into_owned();
    let twice = r.redact_str(&once, &mut Report::default());
    assert_eq!(once, twice, "not idempotent");
    let naive = r.redact_str_naive(text, &mut Report::default());
    assert_eq!(once, naive, "fast path and oracle disagree");
    assert!(once.len() <= 16 * text.len() + 16, "output blow-up");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    check(&format!("blob {} end", base64(data)));
    let percent: String = data.iter().map(|b| format!("%{b:02X}")).collect();
    check(&format!("q={percent}&x=1"));
    let escaped: String = text.chars().map(|c| format!("\\u{:04x}", u32::from(c) & 0xFFFF)).collect();
    check(&escaped);
    check(&text.replace('\n', "\\n"));
});
