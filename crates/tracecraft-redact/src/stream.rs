//! Redacting a long text in pieces cut at line breaks (stdin streamed by `tracecraft redact`,
//! a file read by `tracecraft scan`), with the same result as redacting it whole.
//!
//! Three detections span lines: a token wrapped across line breaks (`decode.rs`), a private key
//! block (`pem.rs`) and a CSV/TSV table whose header names a sensitive column (`tables.rs`).
//! [`StreamTracker`] reads the pieces in order and says after each where a cut is allowed and
//! what the next piece continues ([`PieceContext`]); [`Redactor::redact_piece`] redacts the
//! next piece in that context.

use std::borrow::Cow;

use crate::decode::wrap_open_after;
use crate::engine::{Engine, Hit};
use crate::pem::{BlockTracker, continuation};
use crate::tables::TableTracker;
use crate::{Finding, Redactor, Report};

/// Bytes of the text before a cut that the next piece is searched with: its last line, up to
/// this many bytes. A rule's context reaches across one line break at most (`aws_secret_key`:
/// the keyword at the end of a line, the secret beginning the next, ~200 bytes apart).
const TAIL: usize = 512;

/// What a piece continues from the text before it: an open private key block, or the rows of
/// a table (its header line). From [`StreamTracker::context`].
#[derive(Clone, Default)]
pub struct PieceContext {
    block: bool,
    table_header: Option<String>,
    /// The last line before the cut (at most [`TAIL`] bytes).
    tail: String,
}

impl std::fmt::Debug for PieceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceContext")
            .field("block", &self.block)
            .field("table", &self.table_header.is_some())
            .finish()
    }
}

impl PieceContext {
    /// Whether the piece continues a private key block.
    #[must_use]
    pub fn continues_block(&self) -> bool {
        self.block
    }

    /// Whether the piece may continue the rows of a table.
    #[must_use]
    pub fn continues_table(&self) -> bool {
        self.table_header.is_some()
    }

    /// Whether the piece follows text at all (it is not the first).
    #[must_use]
    pub fn follows_text(&self) -> bool {
        !self.tail.is_empty()
    }

    /// The text the piece is searched after: the header of an open table, then the last
    /// line before the cut.
    fn prefix(&self) -> String {
        let mut prefix = String::new();
        if let Some(h) = &self.table_header {
            prefix.push_str(h);
            prefix.push('\n');
        }
        prefix.push_str(&self.tail);
        prefix
    }
}

/// Follows a text read in pieces of whole lines, in order (each byte once): after each piece,
/// whether the text may be cut there, and what the text after it continues.
///
/// ```
/// use tracecraft_redact::{RedactionConfig, Redactor, Report};
///
/// let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
/// let pieces = [
///     "id,password\n1,hunter2xyz\n",
///     "2,swordfish9\n-----BEGIN PRIVATE KEY-----\nMIIE\n",
///     "abcd\ndone!\n",
/// ];
/// let mut tracker = redactor.stream_tracker();
/// let mut out = String::new();
/// for piece in pieces {
///     // The context is what the pieces before left open.
///     let context = tracker.context();
///     out.push_str(&redactor.redact_piece(&context, piece, &mut Report::default()));
///     assert!(tracker.feed(piece.as_bytes()), "a cut is allowed after each of these");
/// }
/// assert_eq!(out, "id,password\n1,[REDACTED]\n2,[REDACTED]\n[REDACTED]!\n");
/// assert_eq!(out, redactor.redact_str(&pieces.concat(), &mut Report::default()));
/// ```
#[derive(Clone)]
pub struct StreamTracker {
    blocks: Option<BlockTracker>,
    tables: Option<TableTracker>,
    block_open: bool,
    wrapping: bool,
    tail: Vec<u8>,
}

impl std::fmt::Debug for StreamTracker {
    /// Never the text: the state only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTracker")
            .field("block_open", &self.block_open)
            .field(
                "table_open",
                &self.tables.as_ref().is_some_and(|t| t.header().is_some()),
            )
            .field("wrapping", &self.wrapping)
            .finish_non_exhaustive()
    }
}

impl StreamTracker {
    pub(crate) fn new(redactor: &Redactor) -> StreamTracker {
        StreamTracker {
            blocks: redactor.block_tracker(),
            tables: redactor.table_tracker(),
            block_open: false,
            wrapping: false,
            tail: Vec::new(),
        }
    }

    /// Reads the next lines of the text; returns whether it may be cut right after them:
    /// inside a private key block (the next piece continues it), or where no wrapped token
    /// may run on past them.
    pub fn feed(&mut self, lines: &[u8]) -> bool {
        if let Some(t) = self.tables.as_mut() {
            t.feed(lines);
        }
        self.block_open = self.blocks.as_mut().is_some_and(|b| b.feed(lines));
        self.wrapping = wrap_open_after(lines, self.wrapping);
        // The last line (with its line break), at most TAIL bytes of it.
        let body = lines.strip_suffix(b"\n").unwrap_or(lines);
        let start = memchr::memrchr(b'\n', body).map_or(0, |i| i + 1);
        let last = &lines[start.max(lines.len().saturating_sub(TAIL))..];
        if start == 0 && last.len() < TAIL && !lines.is_empty() && self.tail.last() != Some(&b'\n')
        {
            // A piece without a line break continues the line before it.
            self.tail.extend_from_slice(last);
            let over = self.tail.len().saturating_sub(TAIL);
            self.tail.drain(..over);
        } else {
            self.tail.clear();
            self.tail.extend_from_slice(last);
        }
        // Inside an open block a wrapped token's pieces are redacted with the block.
        self.block_open || !self.wrapping
    }

    /// What the text after what was read continues.
    #[must_use]
    pub fn context(&self) -> PieceContext {
        PieceContext {
            block: self.block_open,
            table_header: self
                .tables
                .as_ref()
                .and_then(|t| t.header().map(str::to_owned)),
            tail: String::from_utf8_lossy(&self.tail).into_owned(),
        }
    }
}

impl Redactor {
    /// A tracker for redacting a long text in pieces cut at line breaks (see
    /// [`StreamTracker`]).
    #[must_use]
    pub fn stream_tracker(&self) -> StreamTracker {
        StreamTracker::new(self)
    }

    /// Redacts `piece`, which follows a cut allowed by a [`StreamTracker`] in the context the
    /// tracker gave there: a private key block left open is continued (the piece before wrote
    /// its replacement, which stands for all of it), the rows of an open table are redacted
    /// under its header. The outputs of the pieces, put together, are what redacting the whole
    /// text gives in MASK and REMOVE modes; in HASH mode a block cut in pieces has the
    /// pseudonym of its first part.
    pub fn redact_piece<'a>(
        &self,
        context: &PieceContext,
        piece: &'a str,
        report: &mut Report,
    ) -> Cow<'a, str> {
        if !self.engine.enabled {
            return Cow::Borrowed(piece);
        }
        if !context.block
            && context.table_header.is_none()
            && !self.engine.tail_reaches(&context.tail, piece)
        {
            return self.engine.redact(piece, report, false);
        }
        self.engine
            .redact_after(&context.prefix(), piece, context.block, report)
    }

    /// [`explain`](Self::explain) for a piece in its context (see
    /// [`redact_piece`](Self::redact_piece)): offsets in `piece`; the rest of a continued
    /// block is a `private_key` finding at its start.
    pub fn explain_piece(&self, context: &PieceContext, piece: &str) -> Vec<Finding> {
        if !self.engine.enabled {
            return Vec::new();
        }
        let prefix = context.prefix();
        let (_, mut hits) = self.engine.hits_after(&prefix, piece, context.block);
        let mut found = self.engine.findings(&mut hits);
        for f in &mut found {
            f.start -= prefix.len();
            f.end -= prefix.len();
        }
        found
    }
}

/// Bytes at the start of a piece within which a match that the line before the cut begins
/// or gives context to must lie (a keyword, a separator that may be a line break, the value).
const HEAD: usize = 1024;

impl Engine {
    /// Whether the line before the cut (`tail`) changes what is found at the start of `piece`
    /// (its first [`HEAD`] bytes): when it does not, the piece is redacted on its own, as
    /// fast as any text (searching it after the tail costs a second pass over it).
    fn tail_reaches(&self, tail: &str, piece: &str) -> bool {
        if tail.is_empty() || self.surely_clean(tail) {
            return false;
        }
        let mut end = piece.len().min(HEAD);
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        let head = &piece[..end];
        let (_, mut after) = self.hits_after(tail, head, false);
        for h in &mut after {
            h.start -= tail.len();
            h.end -= tail.len();
        }
        let mut alone = Vec::new();
        self.find(head, &mut alone);
        let key = |h: &Hit| (h.start, h.end, h.rule);
        after.sort_unstable_by_key(key);
        alone.sort_unstable_by_key(key);
        after != alone
    }

    /// The hits in `prefix + piece` that reach into `piece` (those that begin in `prefix` cut
    /// to begin with `piece`: the piece before wrote its part), and, when `block`, the rest of
    /// the private key block `piece` continues as one more hit at its start. Returns the text.
    fn hits_after(&self, prefix: &str, piece: &str, block: bool) -> (String, Vec<Hit>) {
        let mut text = String::with_capacity(prefix.len() + piece.len());
        text.push_str(prefix);
        text.push_str(piece);
        let p = prefix.len();
        let mut hits = Vec::new();
        self.find(&text, &mut hits);
        hits.retain_mut(|h| {
            h.start = h.start.max(p);
            h.end > p
        });
        if block
            && let Some(rule) = self
                .rules
                .iter()
                .position(|r| &*r.name == "private_key")
                .and_then(|i| u16::try_from(i).ok())
        {
            let (end, _) = continuation(piece.as_bytes());
            hits.push(Hit {
                start: p,
                end: p + end,
                rule,
            });
        }
        (text, hits)
    }

    /// Redacts `piece` as it is redacted within `prefix + piece` (see [`hits_after`]); when
    /// `block`, the replacement of the continued block (merged with what overlaps or touches
    /// it) is left out: the piece before wrote the block's. Then the extra passes, as
    /// [`redact`](Self::redact) runs them.
    fn redact_after<'a>(
        &self,
        prefix: &str,
        piece: &'a str,
        block: bool,
        report: &mut Report,
    ) -> Cow<'a, str> {
        let (text, mut hits) = self.hits_after(prefix, piece, block);
        if hits.is_empty() {
            return Cow::Borrowed(piece);
        }
        let p = prefix.len();
        let mut spans = Vec::new();
        let out = self.apply(&text, &mut hits, report, Some(&mut spans));
        // Nothing before `p` was replaced: the output begins with the prefix.
        let cut = if block {
            spans.iter().find(|s| s.start == p).map_or(p, |s| s.out_end)
        } else {
            p
        };
        let rest = out.get(cut..).unwrap_or_default();
        // The extra passes, as `redact` runs them on a changed text.
        Cow::Owned(
            self.redact(rest, &mut Report::default(), false)
                .into_owned(),
        )
    }
}
