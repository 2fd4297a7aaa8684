//! End-to-end tests of `tracecraft redact`.
#![allow(missing_docs)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .arg("redact")
        .args(args)
        .env_remove("TRACECRAFT_REDACTION_HASH_KEY")
        .env_remove("TRACECRAFT_REDACTION_MODE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written on a thread while the output is read: the binary reads a bounded amount ahead
    // of what it has written out. It may exit (bad config) before reading stdin: a broken
    // pipe is fine here.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn redacts_text() {
    let o = run(&[], "mail bob@example.com\npassword=hunter22\n");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), "mail [REDACTED]\npassword=[REDACTED]\n");
    assert!(o.stderr.is_empty());
}

#[test]
fn jsonl_keeps_order_and_count() {
    let input = "{\"a\":\"bob@example.com\"}\n[1,\"415-555-0132\"]\n\"plain\"\n{\"password\":5}\n";
    let o = run(&["--jsonl"], input);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "{\"a\":\"[REDACTED]\"}\n[1,\"[REDACTED]\"]\n\"plain\"\n{\"password\":\"[REDACTED]\"}\n"
    );
}

#[test]
fn explain_goes_to_stderr_without_values() {
    let o = run(&["--explain"], "x bob@example.com");
    assert_eq!(text(&o.stdout), "x [REDACTED]");
    let err = text(&o.stderr);
    assert_eq!(err, "email 2..17\n");
    assert!(!err.contains("bob"));
}

#[test]
fn hash_mode_needs_a_key() {
    let o = run(&["--mode", "hash"], "bob@example.com");
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("hash mode needs a key"));
}

#[test]
fn config_file_and_modes() {
    let dir = std::env::temp_dir().join(format!("tc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tracecraft.toml");
    std::fs::write(
        &cfg,
        "[redaction]\nhash_key = \"k\"\ndisable = [\"phone\"]\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let o = run(
        &["--config", c, "--mode", "hash"],
        "bob@example.com 415-555-0132",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.starts_with("[HASH:") && out.ends_with(" 415-555-0132"),
        "{out}"
    );
    let o = run(&["--config", c, "--mode", "remove"], "a bob@example.com b");
    assert_eq!(text(&o.stdout), "a  b");

    // The whole file is read as every command reads it: an unknown table is refused, not
    // skipped (a setting the user wrote is applied or refused).
    std::fs::write(&cfg, "[redaction]\nhash_key = \"k\"\n[other]\nx = 1\n").unwrap();
    let o = run(&["--config", c], "x");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("other") && text(&o.stderr).contains(":3:"),
        "{}",
        text(&o.stderr)
    );

    std::fs::write(&cfg, "[redaction]\ndisable = [\"nope\"]\n").unwrap();
    let o = run(&["--config", c], "x");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("nope"));

    std::fs::write(
        &cfg,
        "[redaction]\ncustom_rules = [{ name = \"bad\", pattern = \"(?<=x)y\" }]\n",
    )
    .unwrap();
    let o = run(&["--config", c], "x");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("`bad`"));

    // A custom rule that would crawl on hostile input is refused, naming the rule, the
    // reason and the opt-out; with the opt-out it runs.
    let slow = "(?:[a-z]{1,100}){1,100}[0-9]{1,1000}";
    std::fs::write(
        &cfg,
        format!("[redaction]\ncustom_rules = [{{ name = \"crawl\", pattern = \"{slow}\" }}]\n"),
    )
    .unwrap();
    let o = run(&["--config", c], "x");
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("`crawl`") && err.contains("automaton states") && err.contains("allow_slow"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        format!(
            "[redaction]\ncustom_rules = [{{ name = \"crawl\", pattern = \"{slow}\", allow_slow = true }}]\n"
        ),
    )
    .unwrap();
    let o = run(&["--config", c], "plain words");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "plain words");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_jsonl_lines_are_reported_by_number_and_the_rest_is_redacted() {
    let o = run(
        &["--jsonl"],
        "{\"a\":1}\n{not json secret=abc}\n{\"b\":\"bob@example.com\"}\n\u{1}\n",
    );
    assert_eq!(o.status.code(), Some(1), "partial: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "{\"a\":1}\n{\"b\":\"[REDACTED]\"}\n");
    let err = text(&o.stderr);
    assert!(
        err.contains("line=2") && err.contains("line=4") && !err.contains("secret=abc"),
        "{err}"
    );
    assert!(err.contains("2 line(s) not JSON (first: line 2)"), "{err}");
}

#[test]
fn a_bom_and_invalid_utf8_never_pass_raw_bytes() {
    let o = run(&["--jsonl"], "\u{feff}{\"a\":\"bob@example.com\"}\n");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "{\"a\":\"[REDACTED]\"}\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracecraft"))
        .arg("redact")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"mail bob@example.com \xff\xfe end\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), "mail [REDACTED] \u{fffd}\u{fffd} end\n");
    assert!(
        text(&o.stderr).contains("not valid UTF-8"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn chunked_parallel_output_equals_the_engine_on_the_whole_text() {
    // Several MiB, so the input is split into chunks processed on every core; PEM blocks are
    // placed across the chunk size so a chunk must grow to keep them whole.
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Qx3k2pZ\nq9Xb1cV8fT0yR4eW2uI6oP3a\n-----END RSA PRIVATE KEY-----\n";
    let mut text = String::new();
    let mut i = 0u64;
    while text.len() < 5 << 20 {
        i += 1;
        match i % 5 {
            0 => text.push_str(&format!("user{i}@example.com wrote about order {i}\n")),
            1 => text.push_str(&format!("key sk-proj-Abc{i:08}Def456Ghi789Jkl012Mno345\n")),
            2 => text.push_str(pem),
            3 => text.push_str("plain words with nothing secret in them at all, just text\n"),
            _ => text.push_str(&format!("call +1 415-555-{:04} today\n", i % 10_000)),
        }
    }
    let o = run(&[], &text);
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o.stderr));
    assert_whole_text_output(&text, &o.stdout);
    assert!(!text_of(&o.stdout).contains("MIIEowIBAAKCAQEA7Qx3k2pZ"));
}

#[test]
fn a_line_of_megabytes_is_redacted_as_its_pieces_say() {
    // One line of ~3 MB (no line break: one unit of work, searched in blocks, with a second
    // thread for part of the search on a machine with two cores), secrets at every offset
    // relative to the blocks; the expected output is built piece by piece, independently
    // of the engine.
    let (mut text, mut expected) = (String::new(), String::new());
    let mut i = 0u64;
    while text.len() < 3 << 20 {
        i += 1;
        let (piece, redacted) = match i % 4 {
            0 => (
                format!("mail user{i}@example.com ok; "),
                "mail [REDACTED] ok; ".to_owned(),
            ),
            1 => (
                format!("call +1 415-555-{:04} now; ", i % 10_000),
                "call [REDACTED] now; ".to_owned(),
            ),
            2 => (
                format!("password=hunter{i}x; "),
                "password=[REDACTED]; ".to_owned(),
            ),
            _ => {
                let words = format!(
                    "plain words {} and nothing else; ",
                    "ab ".repeat((i % 7) as usize)
                );
                (words.clone(), words)
            }
        };
        text.push_str(&piece);
        expected.push_str(&redacted);
    }
    let o = run(&[], &text);
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o.stderr));
    let out = text_of(&o.stdout);
    assert_eq!(out.len(), expected.len());
    assert!(
        out == expected,
        "the long line's output differs from its pieces'"
    );
}

/// `out` (chunked, on every core) is what the engine gives on the whole of `text` at once.
fn assert_whole_text_output(text: &str, out: &[u8]) {
    let engine =
        tracecraft_redact::Redactor::new(&tracecraft_redact::RedactionConfig::default()).unwrap();
    let whole = engine.redact_str(text, &mut tracecraft_redact::Report::default());
    assert!(
        out == whole.as_bytes(),
        "chunked output differs from the whole-text engine"
    );
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A private key block of `lines` body lines of 64 base64 characters (no header or footer).
fn key_body(lines: usize, seed: u64) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut body = String::with_capacity(lines * 65);
    for _ in 0..lines {
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(char::from(B64[(x % 64) as usize]));
        }
        body.push('\n');
    }
    body
}

#[test]
fn private_key_blocks_longer_than_a_chunk_are_redacted_whole() {
    // Blocks of 1.25 MiB (chunks are ~1 MiB and may now end inside a private key block, the
    // next chunk leaving the rest of the block out): with a footer, without one (it ends at
    // the first character no body has, `'`), and a certificate block (not redacted, cut
    // anywhere), between lines with other findings.
    let big = 5 << 18;
    let lines = big / 65;
    let mut text = String::from("mail bob@example.com first\n");
    text.push_str("-----BEGIN RSA PRIVATE KEY-----\n");
    text.push_str(&key_body(lines, 1));
    text.push_str("-----END RSA PRIVATE KEY-----\nafter the key: carol@example.com (done)\n");
    text.push_str("-----BEGIN CERTIFICATE-----\n");
    text.push_str(&key_body(lines, 2));
    text.push_str("-----END CERTIFICATE-----\n");
    text.push_str("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    text.push_str(&key_body(lines, 3));
    text.push_str("it's over, call +1 415-555-0132\n");
    let o = run(&[], &text);
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o.stderr));
    assert_whole_text_output(&text, &o.stdout);
    let masked = text_of(&o.stdout);
    // REMOVE: the same findings, replaced by nothing (the continued blocks too).
    let o = run(&["--mode", "remove"], &text);
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o.stderr));
    let removed = text_of(&o.stdout);
    assert_eq!(removed, masked.replace("[REDACTED]", ""));
    for out in [&masked, &removed] {
        // No line of either key survives; every line of the certificate does.
        let out_lines: std::collections::HashSet<&str> = out.lines().collect();
        for (seed, kept) in [(1, false), (2, true), (3, false)] {
            let body = key_body(lines, seed);
            let survivors = body.lines().filter(|l| out_lines.contains(l)).count();
            let expected = if kept { lines } else { 0 };
            assert_eq!(survivors, expected, "block {seed}");
        }
        assert!(out.contains("'s over, call "));
        assert!(!out.contains("carol@") && !out.contains("415-555-0132"));
    }
}

#[test]
fn with_the_private_key_rule_off_nothing_of_a_long_block_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tracecraft.toml");
    std::fs::write(&cfg, "[redaction]\ndisable = [\"private_key\"]\n").unwrap();
    let mut text = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
    text.push_str(&key_body((5 << 18) / 65, 4));
    text.push_str("mail bob@example.com\n");
    let o = run(&["--config", cfg.to_str().unwrap()], &text);
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o.stderr));
    let expected = text.replace("bob@example.com", "[REDACTED]");
    assert!(
        o.stdout == expected.as_bytes(),
        "the block is not redacted, and no part of it is dropped"
    );
}

#[test]
fn tables_longer_than_a_chunk_keep_their_sensitive_columns_redacted() {
    // A CSV table of ~2.5 MB whose header names a password column, then prose, then a TSV
    // table: chunks end among the rows, and the rows of the next chunk are redacted under the
    // header the chunk before read.
    let mut text = String::from("id,password,city\n");
    let mut i = 0u64;
    while text.len() < 5 << 19 {
        i += 1;
        text.push_str(&format!("{i},Pw{i:08}xq,Paris\n"));
    }
    text.push_str("that was the table.\nuser\tapi_key\n");
    for j in 0..20_000u64 {
        text.push_str(&format!("u{j}\tKey{j:08}zz\n"));
    }
    let o = run(&[], &text);
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o.stderr));
    let out = text_of(&o.stdout);
    assert!(
        !out.contains(",Pw") && !out.contains("\tKey"),
        "a sensitive cell leaked"
    );
    assert_eq!(out.matches("[REDACTED]").count() as u64, i + 20_000);
    assert_whole_text_output(&text, &o.stdout);
}
