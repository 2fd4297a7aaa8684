//! Private key blocks across the pieces of a long text redacted in parts.
//!
//! The `private_key` rule matches a whole PEM block: its header, then body characters up to
//! the first footer, or, without a footer, up to the first character that cannot be in a
//! body. It is the one rule whose match spans lines without bound: a block that never ends
//! runs to the end of the text. A caller that cuts a long text at line breaks (the CLI, which
//! streams stdin in pieces of about 1 MiB) must not let such a block's tail escape into a
//! piece where no header precedes it: that tail would be printed as it is.
//!
//! [`BlockTracker`] reads the pieces in order, as they are cut, and says whether a block is
//! open at the end of what it has read; [`continuation`] finds, in the next piece, where
//! the open block ends. Both use the rule's own pattern pieces (`pem_header!`, `pem_body!`,
//! `pem_footer!` in `lib.rs`), so they end a block exactly where the rule's match ends:
//! at the end of the first footer when one follows through body characters only, otherwise
//! just before the first character that cannot be in a body.

use std::sync::LazyLock;

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

/// The rule's header.
static HEADER: LazyLock<Regex> = LazyLock::new(|| build(pem_header!()));
/// Body characters, then a footer.
static TO_FOOTER: LazyLock<Regex> =
    LazyLock::new(|| build(concat!(pem_body!(), "*?", pem_footer!())));
/// Body characters (greedy).
static BODY: LazyLock<Regex> = LazyLock::new(|| build(concat!(pem_body!(), "*")));

/// Compiles one of the constant patterns above (`patterns_compile` compiles each).
fn build(pattern: &str) -> Regex {
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("the private_key pattern pieces compile (tested)")
}

/// Whether the block continuing at the start of `text` ends in it, and where: `(len, true)`
/// when it ends after `len` bytes, `(text.len(), false)` when it runs on past the end.
pub(crate) fn continuation(text: &[u8]) -> (usize, bool) {
    let input = Input::new(text).anchored(Anchored::Yes);
    if let Some(m) = TO_FOOTER.search(&input) {
        return (m.end(), true);
    }
    // BODY matches the empty string, so it always matches.
    let end = BODY.search(&input).map_or(0, |m| m.end());
    (end, end < text.len())
}

/// Follows private key blocks through a text read in pieces, in order (each byte once):
/// after each piece, whether a block begun in it (or earlier) is still open, i.e. whether
/// the `private_key` rule's match would run on into the text that follows.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockTracker {
    open: bool,
}

impl BlockTracker {
    /// A tracker at the start of a text (no block open).
    #[must_use]
    pub(crate) fn new() -> BlockTracker {
        BlockTracker::default()
    }

    /// Reads the next piece of the text; returns whether a block is open at its end.
    pub(crate) fn feed(&mut self, piece: &[u8]) -> bool {
        let mut at = 0;
        loop {
            if self.open {
                let (len, ended) = continuation(&piece[at..]);
                if !ended {
                    return true;
                }
                self.open = false;
                at += len;
            }
            // Most pieces hold no header: a literal search first.
            let Some(dashes) = memchr::memmem::find(&piece[at..], b"-----BEGIN") else {
                return false;
            };
            let input = Input::new(piece).range(at + dashes..);
            let Some(m) = HEADER.search(&input) else {
                return false;
            };
            self.open = true;
            at = m.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        for re in [&*HEADER, &*TO_FOOTER, &*BODY] {
            assert_eq!(re.pattern_len(), 1);
        }
    }

    #[test]
    fn a_block_ends_at_its_footer_or_at_the_first_character_no_body_has() {
        assert_eq!(
            continuation(b"abc\n-----END RSA PRIVATE KEY-----\nafter\n"),
            (33, true)
        );
        assert_eq!(continuation(b"abc/+=\nxyz\n"), (11, false));
        assert_eq!(continuation(b"abc\nit's over\n"), (6, true));
        // The first footer ends it, even with more body after it.
        assert_eq!(
            continuation(b"a\n-----END PRIVATE KEY-----\nb\n-----END PRIVATE KEY-----\n"),
            (27, true)
        );
        // A footer past a character no body has does not count.
        assert_eq!(continuation(b"a!\n-----END PRIVATE KEY-----\n"), (1, true));
        assert_eq!(continuation(b""), (0, false));
    }

    #[test]
    fn the_tracker_opens_at_a_private_key_header_only() {
        let mut t = BlockTracker::new();
        assert!(!t.feed(b"-----BEGIN CERTIFICATE-----\nMIIB\n"));
        assert!(t.feed(b"x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"));
        assert!(t.feed(b"bnNz\naC1r\n"));
        assert!(!t.feed(b"ZXk=\n-----END OPENSSH PRIVATE KEY-----\nplain\n"));
        // Closed by a character no body has, then a second block opens in the same piece.
        assert!(t.feed(b"-----BEGIN PRIVATE KEY-----\nab\n(x)\n-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(!t.feed(b"cd\"\n"));
    }
}
