//! Redacting a long text in pieces cut at line breaks (stdin streamed by `tracecraft redact`,
//! a file read by `tracecraft scan`), with the same result as redacting it whole.
//!
//! Three detections span lines: a token wrapped across line breaks (`decode.rs`), a private key
//! block (`pem.rs`) and a CSV/TSV table whose header names a sensitive column (`tables.rs`).
//! [`StreamTracker`] reads the pieces in order and says after each where a cut is allowed and
//! what the next piece continues ([`PieceContext`]); [`Redactor::redact_piece`] redacts the
//! next piece in that context.

use crate::decode::wrap_open_after;
use crate::pem::BlockTracker;
use crate::tables::TableTracker;
use crate::{Finding, Redactor, Report};

/// What a piece continues from the text before it: an open private key block, or the rows of
/// a table (its header line). From [`StreamTracker::context`].
#[derive(Clone, Default)]
pub struct PieceContext {
    block: bool,
    table_header: Option<String>,
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
#[derive(Debug, Clone)]
pub struct StreamTracker {
    blocks: Option<BlockTracker>,
    tables: Option<TableTracker>,
    block_open: bool,
    wrapping: bool,
}

impl StreamTracker {
    pub(crate) fn new(redactor: &Redactor) -> StreamTracker {
        StreamTracker {
            blocks: redactor.block_tracker(),
            tables: redactor.table_tracker(),
            block_open: false,
            wrapping: false,
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
    pub fn redact_piece(&self, context: &PieceContext, piece: &str, report: &mut Report) -> String {
        match &context.table_header {
            _ if context.block => self.redact_continuing_block(piece, report),
            Some(header) => self.redact_rows(header, piece, report),
            None => self.redact_str(piece, report).into_owned(),
        }
    }

    /// [`explain`](Self::explain) for a piece in its context (see
    /// [`redact_piece`](Self::redact_piece)): offsets in `piece`; the rest of a continued
    /// block is a `private_key` finding at its start.
    pub fn explain_piece(&self, context: &PieceContext, piece: &str) -> Vec<Finding> {
        match &context.table_header {
            _ if context.block => self.explain_continuing_block(piece),
            Some(header) => self.explain_rows(header, piece),
            None => self.explain(piece),
        }
    }
}
