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
    let (mut blocks, mut tables) = (
        redactor.block_tracker().unwrap(),
        redactor.table_tracker().unwrap(),
    );
    let (mut open, mut header): (bool, Option<String>) = (false, None);
    let mut out = String::new();
    for piece in pieces {
        let mut report = Report::default();
        out.push_str(&match &header {
            _ if open => redactor.redact_continuing_block(piece, &mut report),
            Some(h) => redactor.redact_rows(h, piece, &mut report),
            None => redactor.redact_str(piece, &mut report).into_owned(),
        });
        tables.feed(piece.as_bytes());
        open = blocks.feed(piece.as_bytes());
        header = tables.header().map(str::to_owned);
    }
    let text = pieces.concat();
    let whole = redactor.redact_str(&text, &mut Report::default());
    assert_eq!(out, whole);
    assert_eq!(
        out,
        "id,password\n1,[REDACTED]\n2,[REDACTED]\n[REDACTED]!\n"
    );
}
