//! The redacting writer and field formatter, under a real `tracing_subscriber::fmt` layer.
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};

use tracecraft::RuntimeOptions;
use tracecraft::fmt::{RedactingFields, RedactingWriter};
use tracecraft::layer::TraceCraftLayer;
use tracecraft::redact::RedactionConfig;
use tracing_subscriber::layer::SubscriberExt;

mod common;

/// Everything written, shared with the test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const KEY: &str = "sk-proj-Abc123Def456Ghi789Jkl012Mno345";

fn log_secrets() {
    let span = tracing::info_span!("chat", user = "jane.doe@example.com", api_key = KEY);
    let _g = span.enter();
    tracing::info!(
        password = "hunter2",
        "calling with key {KEY} for jane.doe@example.com"
    );
    tracing::warn!(phone = "+1 415-555-0132", attempt = 2u64, "retrying");
}

fn assert_clean(out: &str) {
    for secret in [KEY, "jane.doe@example.com", "hunter2", "415-555-0132"] {
        assert!(!out.contains(secret), "{secret} printed in:\n{out}");
    }
}

#[test]
fn the_writer_redacts_every_line_a_fmt_layer_prints() {
    let buf = Buffer::default();
    let out = buf.clone();
    let writer = RedactingWriter::new(move || buf.clone(), &RedactionConfig::default()).unwrap();
    let sub = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer),
    );
    tracing::subscriber::with_default(sub, log_secrets);
    let text = out.text();
    assert_clean(&text);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("retrying") && text.contains("attempt=2"),
        "{text}"
    );
    assert!(text.contains("[REDACTED"), "{text}");
}

#[test]
fn the_field_formatter_redacts_fields_by_name_and_value_beside_the_tracecraft_layer() {
    let (rt, sink) = common::memory_runtime(RuntimeOptions::default());
    let buf = Buffer::default();
    let out = buf.clone();
    let sub = tracing_subscriber::registry()
        .with(TraceCraftLayer::new(rt))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .fmt_fields(RedactingFields::new(&RedactionConfig::default()).unwrap())
                .with_writer(move || buf.clone()),
        );
    tracing::subscriber::with_default(sub, log_secrets);
    let text = out.text();
    assert_clean(&text);
    assert!(
        text.contains("retrying") && text.contains("attempt=2"),
        "{text}"
    );
    assert!(
        text.contains("password="),
        "the field is printed, its value masked: {text}"
    );
    // The TraceCraft layer still records the run (its own pipeline redacts it).
    assert_eq!(sink.runs()[0].name, "chat");
}

/// One write of more than the writer's eager-flush threshold, the way a formatter writes a
/// large event: lines are written out before the writer is flushed, but never the body of a
/// private key block or the password cells of a table without the context above them.
#[test]
fn the_writer_keeps_blocks_and_tables_redacted_across_its_eager_writes() {
    use std::io::Write;
    let buf = Buffer::default();
    let out = buf.clone();
    let writer = RedactingWriter::new(move || buf.clone(), &RedactionConfig::default()).unwrap();
    let mut text = String::from("dump:\n-----BEGIN RSA PRIVATE KEY-----\n");
    for i in 0..2_000 {
        text.push_str(&format!(
            "MIIEowIBAAKCAQEAu1SU1LfVLPHC{i:06}zMxH2Mo4lgOEePzNm0tRgeLezV6f\n"
        ));
    }
    text.push_str("-----END RSA PRIVATE KEY-----\nid,password\n");
    for i in 0..4_000 {
        text.push_str(&format!("{i},Pw{i:08}xq\n"));
    }
    {
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&writer);
        // Several writes past the threshold, each cut anywhere.
        for piece in text.as_bytes().chunks(70_001) {
            w.write_all(piece).unwrap();
        }
    }
    let printed = out.text();
    assert!(!printed.contains("MIIE"), "a key line was printed");
    assert!(!printed.contains(",Pw"), "a password cell was printed");
    let engine = tracecraft::redact::Redactor::new(&RedactionConfig::default()).unwrap();
    let whole = engine.redact_str(&text, &mut tracecraft::redact::Report::default());
    assert_eq!(
        printed, whole,
        "the writer prints what redacting the whole text gives"
    );
}

/// Many small writes, as a formatter writing field by field does, over a long line, a private
/// key block and a table: the writer looks at each buffered byte once (it used to search the
/// whole buffer for line ends and feed its tracker from the start on every write past the
/// threshold: quadratic on a long line), and prints what redacting the whole text gives.
#[test]
fn the_writer_prints_the_whole_text_redaction_over_many_small_writes() {
    use std::io::Write;
    let buf = Buffer::default();
    let out = buf.clone();
    let writer = RedactingWriter::new(move || buf.clone(), &RedactionConfig::default()).unwrap();
    let mut text = String::from("start ");
    while text.len() < 300_000 {
        text.push_str("a long line of words mailing bob@example.com now and then, ");
    }
    text.push_str("\n-----BEGIN RSA PRIVATE KEY-----\n");
    for i in 0..1_500 {
        text.push_str(&format!(
            "MIIEowIBAAKCAQEAu1SU1LfVLPHC{i:06}zMxH2Mo4lgOEePzNm0tRgeLezV6f\n"
        ));
    }
    text.push_str("-----END RSA PRIVATE KEY-----\nid\tpassword\n");
    for i in 0..3_000 {
        text.push_str(&format!("{i}\tPw{i:08}xq\n"));
    }
    text.push_str("last line sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678\n");
    {
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&writer);
        for piece in text.as_bytes().chunks(997) {
            w.write_all(piece).unwrap();
        }
    }
    let printed = out.text();
    let engine = tracecraft::redact::Redactor::new(&RedactionConfig::default()).unwrap();
    let whole = engine.redact_str(&text, &mut tracecraft::redact::Report::default());
    assert!(
        printed == whole,
        "the writer prints what redacting the whole text gives"
    );
    assert!(!printed.contains("bob@example.com") && !printed.contains("MIIE"));
}
