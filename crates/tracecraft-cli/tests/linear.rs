//! `tracecraft redact` grows linearly on every adversarial family of issue 19, whole-process.
//!
//! No absolute times: for each family the binary runs on inputs of `n` and `8n` bytes in the
//! same test, and the time of the larger (minus the time of an empty input: process
//! start-up) must be at most 16x that of the smaller (linear is 8x; the slack absorbs a loaded
//! machine; quadratic would be 64x). `n` starts at 32 KB and doubles until the run takes
//! 60 ms of work, then `8n` runs once; every pair of this ladder 8x apart is checked, so a
//! cliff past some size shows in the pair that straddles it. Each time is the fastest of a
//! few runs (load only ever adds time); a pair over the bound is re-measured. The smaller
//! run's work is never taken below its whole time (up to 60 ms): a difference of two
//! start-up-sized times would be timer noise. Each input is a prefix of the larger ones (same
//! text). The tests take one lock, so they never time each other.
//!
//! A debug build (`cargo test`) is slow, so `n` stays at most 512 KB (a 4 MB larger input);
//! `cargo test --release -p tracecraft-cli --test linear` reaches the multi-MB sizes where the
//! lazy DFA's cliffs show (`n` up to 4 MB, 32 MB larger input).
//!
//! Each test prints its sizes, times and ratio (`-- --nocapture`).
#![allow(missing_docs)]
// The measured figures go to the test's output: inputs are generated, never secrets.
#![allow(clippy::print_stderr, clippy::disallowed_macros)]

mod adversarial;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use adversarial::FAMILIES;

/// Serializes the tests: two of them at once on a 2-core machine would time each other.
static SERIAL: Mutex<()> = Mutex::new(());

const START: usize = 32 << 10;
const MAX_SMALL: usize = if cfg!(debug_assertions) {
    512 << 10
} else {
    4 << 20
};
const GROWTH: usize = 8;
const LIMIT: f64 = 16.0;
const ENOUGH_WORK: Duration = Duration::from_millis(60);

/// Wall time of `tracecraft redact < input > /dev/null`.
fn time(input: &Path) -> f64 {
    let stdin = std::fs::File::open(input).unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .arg("redact")
        .env_remove("TRACECRAFT_REDACTION_HASH_KEY")
        .env_remove("TRACECRAFT_REDACTION_MODE")
        .env_remove("TRACECRAFT_CONFIG")
        .current_dir(input.parent().unwrap())
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn fastest(input: &Path, runs: usize) -> f64 {
    (0..runs).map(|_| time(input)).fold(f64::INFINITY, f64::min)
}

fn grows_linearly(name: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let family = FAMILIES.iter().find(|f| f.name == name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |n: usize| {
        let p = dir.path().join(n.to_string());
        std::fs::write(&p, family.generate(n)).unwrap();
        p
    };
    let empty = write(0);
    let mut startup = fastest(&empty, 3);
    // The ladder: n doubles until the run takes enough work, then 8n once.
    let mut ladder = Vec::new();
    let mut n = START;
    loop {
        let p = write(n);
        let t = fastest(&p, 3);
        ladder.push((n, p, t));
        if t - startup >= ENOUGH_WORK.as_secs_f64() || n >= MAX_SMALL {
            break;
        }
        n *= 2;
    }
    let big = write(n * GROWTH);
    let t_big = time(&big);
    ladder.push((n * GROWTH, big, t_big));
    // Every pair of the ladder 8x apart (a cliff past some size shows in the pair that
    // straddles it), each re-measured while over the bound.
    let mut worst = (0.0, String::new());
    for i in 0..ladder.len() {
        let Some(j) = ladder.iter().position(|l| l.0 == ladder[i].0 * GROWTH) else {
            continue;
        };
        let mut ratio = f64::INFINITY;
        for attempt in 0..4 {
            if attempt > 0 {
                ladder[j].2 = ladder[j].2.min(time(&ladder[j].1));
                ladder[i].2 = ladder[i].2.min(time(&ladder[i].1));
                startup = startup.min(time(&empty));
            }
            let (t_small, t_big) = (ladder[i].2, ladder[j].2);
            // The smaller run's work, never less than its whole time up to ENOUGH_WORK: a
            // difference of two start-up-sized times would be timer noise.
            let work_small = (t_small - startup).max(t_small.min(ENOUGH_WORK.as_secs_f64()));
            ratio = (t_big - startup) / work_small;
            if ratio <= LIMIT {
                break;
            }
        }
        let figures = format!(
            "{name}: {} bytes took {:.1} ms, {} bytes took {:.1} ms (start-up {:.1} ms): \
             {ratio:.1}x the time for {GROWTH}x the input (at most {LIMIT}x)",
            ladder[i].0,
            ladder[i].2 * 1e3,
            ladder[j].0,
            ladder[j].2 * 1e3,
            startup * 1e3,
        );
        if ratio > worst.0 {
            worst = (ratio, figures);
        }
    }
    eprintln!("worst pair: {}", worst.1);
    assert!(worst.0 <= LIMIT, "{}", worst.1);
}

#[test]
fn base64_random() {
    grows_linearly("base64_random");
}

#[test]
fn password_repeat() {
    grows_linearly("password=_repeat");
}

#[test]
fn sk_repeat() {
    grows_linearly("sk-_repeat");
}

#[test]
fn at_repeat() {
    grows_linearly("at_repeat");
}

#[test]
fn digits_and_spaces() {
    grows_linearly("digits_and_spaces");
}

#[test]
fn alnum_run() {
    grows_linearly("alnum_run");
}

#[test]
fn hex_run() {
    grows_linearly("hex_run");
}

#[test]
fn bearer_repeat() {
    grows_linearly("bearer_repeat");
}

#[test]
fn keyword_dense() {
    grows_linearly("keyword_dense");
}

#[test]
fn pem_no_footer() {
    grows_linearly("pem_no_footer");
}

#[test]
fn pem_no_footer_lines() {
    grows_linearly("pem_no_footer_lines");
}

/// Every family has its test above (a new family without one fails here).
#[test]
fn every_family_is_tested() {
    let src = include_str!("linear.rs");
    for f in FAMILIES {
        assert!(
            src.contains(&format!("grows_linearly(\"{}\")", f.name)),
            "{} has no test",
            f.name
        );
    }
}

/// The growth ratios compare the same text: each input has exactly the size asked for and is
/// a prefix of the larger inputs of its family.
#[test]
fn inputs_are_exact_and_nested() {
    for f in FAMILIES {
        let big = f.generate(100_000);
        assert_eq!(big.len(), 100_000, "{}", f.name);
        for n in [0, 1, 63, 65, 4096, 12_345] {
            assert_eq!(f.generate(n), big[..n], "{} at {n} bytes", f.name);
        }
    }
}
