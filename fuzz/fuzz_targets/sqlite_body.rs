//! Stored SQLite run bodies (format 2, format 1, anything else): decoding never panics, and a
//! body that decodes is written again by this build, in both formats, and reads back equal.
//!
//! Each input is tried twice: as a body itself, and as edits to a valid body of one of the
//! shared sample runs (first byte: which body; then 3-byte edits: a 16-bit position and the
//! byte to put there; a 1- or 2-byte tail truncates there), so the fuzzer reaches deep into
//! well-formed structure from its first run.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tracecraft_store_sqlite::fuzzing::{decode_body, encode_body, encode_body_v1};

static BODIES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    tracecraft_core::contract::sample_runs()
        .iter()
        .take(6)
        .flat_map(|run| [encode_body(run).unwrap(), encode_body_v1(run).unwrap()])
        .collect()
});

fn check(body: &[u8]) {
    let Ok(run) = decode_body(body) else {
        return;
    };
    let again = encode_body(&run).expect("a decoded run encodes");
    assert_eq!(decode_body(&again).expect("our own body decodes"), run);
    let v1 = encode_body_v1(&run).expect("a decoded run encodes in format 1");
    assert_eq!(
        decode_body(&v1).expect("our own format 1 body decodes"),
        run
    );
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let Some((&pick, edits)) = data.split_first() else {
        return;
    };
    let mut body = BODIES[usize::from(pick) % BODIES.len()].clone();
    for edit in edits.chunks(3) {
        let pos = usize::from(edit[0]) | edit.get(1).map_or(0, |&b| usize::from(b) << 8);
        match edit {
            [_, _, byte] if !body.is_empty() => {
                let len = body.len();
                body[pos % len] = *byte;
            }
            [_, _, _] => {}
            _ => body.truncate(pos % (body.len() + 1)),
        }
    }
    check(&body);
});
