//! Secrets named by structure rather than by a keyword next to them: the cells of a CSV or
//! TSV column whose header is a sensitive key (`password`, `api_key`, `aws_secret_access_key`,
//! `clientSecret`, ... as for JSON keys, see `walk.rs`).
//!
//! A header is a line of at most [`MAX_HEADER`] bytes with a tab (TSV) or comma (CSV) and at
//! least two cells that look like column names (letters, digits and `_ .-`, quoted or not, no
//! inner spaces); the rows are the lines that follow with as many cells (quoted cells may hold the
//! delimiter), up to the first line that has not. Cells that are empty, placeholders or
//! already redacted (`[...`) are kept. Work is linear: every line is split at most once.
//! A header line must hold a keyword of `password_field` or `generic_api_key_param` (`pass`,
//! `pwd`, `pin`, `secret`, `token`, `api_key`, `access_key`, ...): the prefilter's anchor
//! occurrences point at the only lines worth checking, so text without them costs nothing
//! (columns named only `authorization` or `cookie` are not found in tables).
//! Findings are reported under the `password_field` rule (off when it is disabled or the
//! sensitive keys are turned off).

use std::sync::Arc;

use crate::engine::{Engine, Hit};
use crate::rules::placeholder;

/// Longest header line considered, in bytes.
pub(crate) const MAX_HEADER: usize = 2048;
/// Longest column name, in bytes.
const MAX_NAME: usize = 64;

impl Engine {
    /// Whether the anchor `id` is a keyword of `password_field` or `generic_api_key_param`
    /// (a table keyword: `pass`, `pwd`, `pin`, `secret`, `token`, `api_key`, ...).
    pub(crate) fn table_keyword(&self, id: usize) -> bool {
        self.table_keywords.get(id).copied().unwrap_or(false)
    }

    /// Adds a hit for every sensitive cell of every table in `text`. A header line holds a
    /// table keyword; `keywords` are the starts of the table keywords of `text` in any order
    /// (from the prefilter), or `None` to look for them line by line (the naive oracle).
    pub(crate) fn find_tables(&self, text: &str, keywords: Option<&[usize]>, hits: &mut Vec<Hit>) {
        let Some(rule) = self.table_rule else {
            return;
        };
        if self.sensitive.is_empty() {
            return;
        }
        let b = text.as_bytes();
        // Candidate header lines: their starts, ascending.
        let mut starts: Vec<usize> = Vec::new();
        match keywords {
            Some(kw) => {
                if kw.is_empty() {
                    return;
                }
                // Each keyword's line start, looking back only to the keyword before it (in
                // ascending order): one pass over the text however long its lines are.
                let mut kw = kw.to_vec();
                kw.sort_unstable();
                let (mut prev, mut line) = (0, 0);
                for k in kw {
                    if let Some(i) = memchr::memrchr(b'\n', &b[prev..k]) {
                        line = prev + i + 1;
                    }
                    prev = k;
                    if k - line <= MAX_HEADER && starts.last() != Some(&line) {
                        starts.push(line);
                    }
                }
            }
            None => {
                let mut pos = 0;
                while pos < b.len() {
                    let end = line_end(b, pos);
                    let mut any = false;
                    if let Some(a) = &self.anchors {
                        a.find_ids(&b[pos..end], |id, _, _| any |= self.table_keyword(id));
                    }
                    if any {
                        starts.push(pos);
                    }
                    pos = end + 1;
                }
            }
        }
        let mut cells = Vec::new();
        let mut done = 0;
        for pos in starts {
            if pos < done {
                continue; // a row of the table before
            }
            // A header is at most MAX_HEADER bytes: look no further for its end.
            let near = (pos + MAX_HEADER + 1).min(b.len());
            let end = match memchr::memchr(b'\n', &b[pos..near]) {
                Some(i) => pos + i,
                None if near == b.len() => near,
                None => continue,
            };
            let Some((delim, columns, n)) = self.header(&b[pos..end], &mut cells) else {
                continue;
            };
            let mut p = end + 1;
            while p < b.len() {
                let e = line_end(b, p);
                split(b, p, e, delim, &mut cells);
                if cells.len() != n {
                    break;
                }
                for (i, &(a, z)) in cells.iter().enumerate() {
                    if (columns >> i) & 1 == 1 && a < z && b[a] != b'[' && !placeholder(&b[a..z]) {
                        hits.push(Hit {
                            start: a,
                            end: z,
                            rule,
                        });
                    }
                }
                p = e + 1;
            }
            done = p;
        }
    }

    /// A header line: its delimiter, the mask of its sensitive columns (not 0) and its
    /// number of cells. One pass over the line that stops at the first byte a header cannot
    /// hold (prose stops at its second word: names hold no inner spaces).
    fn header(&self, line: &[u8], cells: &mut Vec<(usize, usize)>) -> Option<(u8, u64, usize)> {
        let (mut tab, mut comma) = (false, false);
        let mut prev = b',';
        for &c in line.iter().take(MAX_HEADER + 1) {
            match c {
                b'\t' => tab = true,
                b',' => comma = true,
                b'"' | b'\'' | b'\r' => {}
                b' ' => {
                    // Spaces only next to a delimiter or another space.
                    if !matches!(prev, b',' | b'\t' | b' ' | b'"' | b'\'') {
                        // Maybe a space before the delimiter: allowed only if one follows.
                        prev = b'#';
                        continue;
                    }
                }
                c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-') => {
                    if prev == b'#' {
                        return None;
                    }
                }
                _ => return None,
            }
            prev = c;
        }
        if line.len() > MAX_HEADER || !(tab || comma) {
            return None;
        }
        let delim = if tab { b'\t' } else { b',' };
        split(line, 0, line.len(), delim, cells);
        if cells.len() < 2 || cells.len() > 64 {
            return None;
        }
        let mut columns = 0u64;
        for (i, &(a, z)) in cells.iter().enumerate() {
            let cell = std::str::from_utf8(&line[a..z]).ok()?;
            if cell.is_empty() || cell.len() > MAX_NAME {
                return None;
            }
            if self.is_sensitive(cell) {
                columns |= 1 << i;
            }
        }
        (columns != 0).then_some((delim, columns, cells.len()))
    }
}

impl Engine {
    /// Whether `line` (without its line break) is a table header: it holds a table keyword
    /// (as the prefilter finds them for [`find_tables`](Self::find_tables)) and
    /// [`header`](Self::header) takes it. Its delimiter and number of cells.
    fn header_line(&self, line: &[u8], cells: &mut Vec<(usize, usize)>) -> Option<(u8, usize)> {
        if self.table_rule.is_none() || self.sensitive.is_empty() || line.len() > MAX_HEADER {
            return None;
        }
        // The header's shape first: it rejects prose at its second word, far cheaper than
        // the keyword search over the line.
        let (delim, _, n) = self.header(line, cells)?;
        let mut keyword = false;
        if let Some(a) = &self.anchors {
            a.find_ids(line, |id, _, _| keyword |= self.table_keyword(id));
        }
        keyword.then_some((delim, n))
    }
}

/// Follows CSV/TSV tables through a text read in pieces, in order (each byte once, whole
/// lines): after each piece, the header of the table whose rows may go on in the text that
/// follows. Redacting that text after this header (`StreamTracker`, `Redactor::redact_piece`)
/// redacts its rows as they would be in the whole text: the header names the
/// sensitive columns (see the `tables` module of the engine).
#[derive(Clone)]
pub(crate) struct TableTracker {
    engine: Arc<Engine>,
    /// The open table: its header line, delimiter and number of cells.
    open: Option<(String, u8, usize)>,
    cells: Vec<(usize, usize)>,
}

impl std::fmt::Debug for TableTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableTracker")
            .field("open", &self.open.is_some())
            .finish_non_exhaustive()
    }
}

impl TableTracker {
    pub(crate) fn new(engine: Arc<Engine>) -> TableTracker {
        TableTracker {
            engine,
            open: None,
            cells: Vec::new(),
        }
    }

    /// Reads the next piece of the text (whole lines; a last line without its line break is
    /// read as a line).
    pub(crate) fn feed(&mut self, piece: &[u8]) {
        let piece = piece.strip_suffix(b"\n").unwrap_or(piece);
        if piece.is_empty() && self.open.is_none() {
            return;
        }
        let mut at = 0;
        while at <= piece.len() {
            if self.open.is_none() {
                // Only a line with a delimiter can open a table: straight to the next one.
                let Some(d) = memchr::memchr2(b',', b'\t', &piece[at..]) else {
                    return;
                };
                at = memchr::memrchr(b'\n', &piece[at..at + d]).map_or(at, |i| at + i + 1);
            }
            let end = memchr::memchr(b'\n', &piece[at..]).map_or(piece.len(), |i| at + i);
            let line = &piece[at..end];
            at = end + 1;
            if let Some((_, delim, n)) = &self.open {
                split(line, 0, line.len(), *delim, &mut self.cells);
                if self.cells.len() == *n {
                    continue;
                }
                self.open = None;
            }
            // A header holds a delimiter within its first MAX_HEADER bytes: most lines are
            // ruled out by one vectorized search.
            if line.len() > MAX_HEADER || memchr::memchr2(b',', b'\t', line).is_none() {
                continue;
            }
            if let Some((delim, n)) = self.engine.header_line(line, &mut self.cells)
                && let Ok(header) = std::str::from_utf8(line)
            {
                self.open = Some((header.to_owned(), delim, n));
            }
        }
    }

    /// The header line (without its line break) of the table open at the end of what was
    /// read, if one is.
    #[must_use]
    pub(crate) fn header(&self) -> Option<&str> {
        self.open.as_ref().map(|(h, _, _)| h.as_str())
    }
}

/// The end of the line that begins at `p` (its `\n`, or the end of the text).
fn line_end(b: &[u8], p: usize) -> usize {
    memchr::memchr(b'\n', &b[p..]).map_or(b.len(), |i| p + i)
}

/// The cells of `b[p..e]` split at `delim`, into `cells` (cleared first), each trimmed of
/// spaces, a trailing `\r` and its quotes. A quoted cell runs to its closing quote (`""`
/// inside is a quote), so it may hold the delimiter.
fn split(b: &[u8], p: usize, e: usize, delim: u8, cells: &mut Vec<(usize, usize)>) {
    cells.clear();
    let mut i = p;
    loop {
        let mut a = i;
        while a < e && b[a] == b' ' {
            a += 1;
        }
        let (mut cs, mut ce, next);
        if a < e && b[a] == b'"' {
            // A quoted cell.
            let mut j = a + 1;
            loop {
                match memchr::memchr(b'"', &b[j..e]) {
                    Some(k) if b.get(j + k + 1) == Some(&b'"') && j + k + 1 < e => j += k + 2,
                    Some(k) => {
                        j += k;
                        break;
                    }
                    None => {
                        j = e;
                        break;
                    }
                }
            }
            (cs, ce) = (a + 1, j);
            next = memchr::memchr(delim, &b[j.min(e)..e]).map(|k| j + k);
        } else {
            next = memchr::memchr(delim, &b[a..e]).map(|k| a + k);
            (cs, ce) = (a, next.unwrap_or(e));
        }
        while ce > cs && matches!(b[ce - 1], b' ' | b'\r') {
            ce -= 1;
        }
        if ce > cs && b[cs] == b'\'' && b[ce - 1] == b'\'' && ce - cs >= 2 {
            cs += 1;
            ce -= 1;
        }
        cells.push((cs, ce));
        match next {
            Some(d) => i = d + 1,
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    fn cells(line: &str, delim: u8) -> Vec<&str> {
        let mut v = Vec::new();
        split(line.as_bytes(), 0, line.len(), delim, &mut v);
        v.iter().map(|&(a, z)| &line[a..z]).collect()
    }

    #[test]
    fn splits_quoted_and_trimmed_cells() {
        assert_eq!(cells("a, b ,c\r", b','), ["a", "b", "c"]);
        assert_eq!(
            cells("\"x,y\",\"he said \"\"hi\"\"\",", b','),
            ["x,y", "he said \"\"hi\"\"", ""]
        );
        assert_eq!(cells("a\t'b'\t", b'\t'), ["a", "b", ""]);
        assert_eq!(cells("\"open", b','), ["open"]);
    }
}
