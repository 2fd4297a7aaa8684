//! The README's "Redacting a long text in pieces" example, as a test.
#![allow(missing_docs)]

use tracecraft_redact::{RedactionConfig, Redactor, Report};

#[test]
fn readme_pieces_example() {
    let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
    let pieces = [
        "id,password\n1,hunter2xyz\n",
        "2,swordfish9\n-----BEGIN PRIVATE KEY-----\nMIIE\n",
        "abcd\ndone!\n",
    ];
    let mut tracker = redactor.stream_tracker();
    let mut out = String::new();
    for piece in pieces {
        // The context is what the pieces before left open.
        let context = tracker.context();
        out.push_str(&redactor.redact_piece(&context, piece, &mut Report::default()));
        assert!(
            tracker.feed(piece.as_bytes()),
            "a cut is allowed after each"
        );
    }
    let text = pieces.concat();
    let whole = redactor.redact_str(&text, &mut Report::default());
    assert_eq!(out, whole);
    assert_eq!(
        out,
        "id,password\n1,[REDACTED]\n2,[REDACTED]\n[REDACTED]!\n"
    );
}

#[test]
fn debug_output_never_shows_the_text() {
    let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
    let mut tracker = redactor.stream_tracker();
    tracker.feed(b"name,password\nbob,hunter2secret\naws_secret_access_key\n");
    let shown = format!("{tracker:?} {:?}", tracker.context());
    for word in ["hunter2secret", "password", "aws_secret"] {
        assert!(!shown.contains(word), "{shown}");
    }
}
