//! The text-search index (schema v5): an FTS5 table over each run's searchable text, the
//! words [`tracecraft_core::search`] defines (names and stored, redacted content).
//!
//! - `traces_fts` is **contentless** (`content=''`): it holds the index only, not a copy of
//!   the text (the text lives once, in the run body). Its rowid is the trace's `pk`.
//! - Kept in step with `traces`: a saved run's text is indexed in the same transaction as its
//!   row (a merge takes the old text out and puts the new in). A contentless FTS5 table
//!   cannot find a row's words by itself: they are given back to it (FTS5's `'delete'`
//!   command) from the run body, through the SQL function `tracecraft_search_text(run)` that
//!   the writer connection registers ([`register`]).
//! - Erasure (schema v6): a trigger moves the body of every deleted `traces` row to
//!   `traces_fts_erased`, so erasure, retention and any later way of deleting rows cannot
//!   leave words behind unnoticed; [`drain_erased`] takes those runs' words out of the index
//!   and deletes the moved bodies. The writer drains before every other write transaction
//!   (a new row can never reuse the `pk` of a run whose words are still indexed), in
//!   [`flush`](tracecraft_core::TraceStore::flush), on open and when the store is dropped:
//!   a `delete` costs what the row deletion costs (~0.2 ms) instead of the index rewrite
//!   (7-8 ms for a corpus run), and the erased words leave the file by the same point at
//!   which the erased rows' old page images leave the WAL: `flush`. Queries join on
//!   `traces`, so an erased run is found by no search from the moment it is deleted.
//! - `secure-delete` is on: the words given back are removed from the index at once instead
//!   of being shadowed by delete markers until a merge, so erased words do not stay in the
//!   file (with `PRAGMA secure_delete`, freed pages are zeroed). A test checks the file.
//!   Many erased runs at once (a purge, a person's runs) are taken out by one merge of the
//!   whole index instead ([`bulk_erasure`]).
//! - The text given to the index is already cut into the words of
//!   [`tracecraft_core::search::words`] (lower-cased, one space between them: [`document`]),
//!   and so is a search ([`match_expr`]): the index only has to split at spaces. It uses
//!   FTS5's `ascii` tokenizer (every non-ASCII character and every ASCII letter or digit is
//!   part of a word), which gives back exactly those words, and keeps no positions
//!   (`detail=none`: no search needs them, as every search word is one token). Databases
//!   indexed before (schemas v6 to v8 written by earlier builds) keep the `unicode61`
//!   tokenizer, which cuts and folds the same words but for letters followed by a combining
//!   mark, and their positions; both answer the same searches. A search is each word as a
//!   prefix query, all required.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Transaction, params};
use tracecraft_core::AgentRun;

/// The SQL of migration v5 (the index is filled by migration v6, which rebuilds it).
pub(crate) const MIGRATION: &str = r"
CREATE VIRTUAL TABLE traces_fts USING fts5(
    text, content = '', tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO traces_fts (traces_fts, rank) VALUES ('secure-delete', 1);
CREATE TRIGGER traces_fts_erase AFTER DELETE ON traces BEGIN
    INSERT INTO traces_fts (traces_fts, rowid, text)
        SELECT 'delete', old.pk, t FROM (SELECT tracecraft_search_text(old.run) AS t)
        WHERE t IS NOT NULL;
END;
";

/// The SQL of migration v6: erased runs' words are taken out of the index by
/// [`drain_erased`], not by the deleting statement.
/// The index is rebuilt without its per-row size table (`columnsize=0`: one B-tree insert
/// less per saved run and one delete less per erased run; only ranking, which search does
/// not use, needs it) and filled again by [`index_existing`] in the same transaction.
/// Since schema v8's builds, the new table has the `ascii` tokenizer and no positions (see
/// the module docs): a database that passes through this migration from now on gets them,
/// one migrated before keeps `unicode61` and its positions. Indexing a run costs the writing
/// thread a third less (tokenizing the document, hashing its positions, flushing them).
pub(crate) const MIGRATION_V6: &str = r"
DROP TRIGGER traces_fts_erase;
DROP TABLE traces_fts;
CREATE VIRTUAL TABLE traces_fts USING fts5(
    text, content = '', columnsize = 0, detail = none, tokenize = 'ascii'
);
INSERT INTO traces_fts (traces_fts, rank) VALUES ('secure-delete', 1);
CREATE TABLE traces_fts_erased (pk INTEGER PRIMARY KEY, run BLOB);
CREATE TRIGGER traces_fts_erase AFTER DELETE ON traces BEGIN
    INSERT INTO traces_fts_erased (pk, run) VALUES (old.pk, old.run);
END;
";

/// The SQL of migration v7: FTS5 merges the index's segments 16 at a time instead of its
/// default 4 (`automerge`). Every write transaction adds a segment (its runs' words); FTS5
/// merges segments of a level into one of the next level once `automerge` of them are there,
/// so each indexed word is rewritten once per level it goes through: with 16 per merge
/// instead of 4, half as many levels (log16 against log4 of the transactions), and half the
/// merge work, which was most of an import's commit time (an import of 2,000 runs in 8
/// transactions into a new database: 196 M instructions of merges, a fifth of its writer
/// thread, `docs/perf/sqlite.md`). A search reads each segment of each level for each of its
/// words: up to 15 per level instead of 3, a few more B-tree probes per word. FTS5 still
/// merges at once, whatever `automerge`, a level that reaches `crisismerge` (16) segments.
pub(crate) const MIGRATION_V7: &str =
    "INSERT INTO traces_fts (traces_fts, rank) VALUES ('automerge', 16);";

/// The SQL of migration v8 (none): documents hold at most [`MAX_DOCUMENT_BYTES`]; the runs
/// indexed past that are indexed again by [`cap_existing`] in the same transaction.
pub(crate) const MIGRATION_V8: &str = "-- search documents of at most MAX_DOCUMENT_BYTES";

/// Registers `tracecraft_search_text(run)` on `conn`: the searchable text of a stored run
/// body, NULL when the body cannot be decoded (such a run was never indexed).
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "tracecraft_search_text",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(crate::body::decode(ctx.get_raw(0)).ok().map(|run| {
                let mut text = String::new();
                document(&run, &mut text);
                text
            }))
        },
    )
}

/// The most a run's [`document`] holds, in bytes: a word that would take the document past
/// it is left out (and the document goes on with the words that still fit), so text search
/// does not find the run by it. Corpus runs have documents of ~3-5 KB, and a run carrying a
/// few hundred KB of retrieved prose stays well under the limit; what it bounds is what FTS5
/// holds in memory for one run (its pending terms, before a flush) and the time to index it:
/// a run with 32 MB of random base64 (~1.5 M distinct words) took 6.6 s to index and peaked
/// at 494 MB, and a single 32 MB word made FTS5 hold and sort a 32 MB term.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// What is indexed for `run`, in `out` (cleared first): each distinct word of its searchable
/// text once (lower-cased, in order of first appearance, space-separated), within
/// [`MAX_DOCUMENT_BYTES`].
///
/// A search asks only whether each of its words begins some word of the run (no phrases, no
/// ranking), so repeated words add nothing but index work: corpus runs have ~750 words of
/// which ~420 distinct. And the words are the ones [`tracecraft_core::search::words`] cuts,
/// so the index holds the reference's words. Deterministic: the deletion trigger computes
/// the same text from the stored body to take a run's words back out.
///
/// Cost: about one table probe per word (see [`Seen`]); ASCII texts (nearly all) are cut and
/// lower-cased byte by byte, without decoding characters.
pub(crate) fn document(run: &AgentRun, out: &mut String) {
    document_within(run, out, MAX_DOCUMENT_BYTES);
}

/// [`document`] of at most `limit` bytes (`usize::MAX`: what schemas v5 to v7 indexed).
fn document_within(run: &AgentRun, out: &mut String, limit: usize) {
    out.clear();
    let mut seen = Seen::new(limit);
    tracecraft_core::search::for_each_text(run, &mut |s| {
        if s.is_ascii() {
            // The same words as below, cut byte by byte (no char decoding, no Unicode
            // table: an ASCII character is alphanumeric exactly when it is an ASCII one).
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() {
                while i < b.len() && !ALNUM[usize::from(b[i])] {
                    i += 1;
                }
                let start = i;
                while i < b.len() && ALNUM[usize::from(b[i])] {
                    i += 1;
                }
                if i > start {
                    seen.add_ascii(s, start, i, out);
                }
            }
            return;
        }
        for word in s.split(|c: char| !c.is_alphanumeric()) {
            if word.is_ascii() {
                // Its letters lower-case as ASCII letters: the same bytes, by the fast path.
                if !word.is_empty() {
                    seen.add_ascii(word, 0, word.len(), out);
                }
            } else {
                seen.add_chars(word, out);
            }
        }
    });
}

/// `ALNUM[b]`: whether byte `b` is an ASCII letter or digit (one load per byte of the cut).
const ALNUM: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    t
};

/// The distinct words written to a [`document`] so far: an open-addressing table of where
/// each went in the document (`start`, `len`), keyed by the lower-cased word itself when it
/// fits in 8 bytes (its bytes, little-endian, zero-padded: exact, as no word holds a zero
/// byte) and by a hash of it otherwise (then confirmed against the document's bytes). A word
/// is looked up once and written only if new; the table never holds two equal words.
struct Seen {
    /// The document's limit: a new word that would take it past this is left out.
    limit: usize,
    slots: Vec<Slot>,
    /// 64 minus log2 of the table's size (see [`Seen::slot_of`]).
    shift: u32,
    /// Words in the table.
    len: usize,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    start: u32,
    /// 0 for an empty slot (words are never empty).
    len: u32,
}

/// ASCII lower-casing of the letters of 8 alphanumeric bytes at once: `b | 0x20` turns `A-Z`
/// into `a-z` and leaves `a-z` and `0-9` as they are (their bit 0x20 is set).
const LOWER: u64 = 0x2020_2020_2020_2020;

impl Seen {
    /// Room for ~500 distinct words (corpus runs have ~420) before the table grows.
    fn new(limit: usize) -> Self {
        Seen {
            limit,
            slots: vec![Slot::default(); 1024],
            shift: 64 - 10,
            len: 0,
        }
    }

    /// Adds the ASCII alphanumeric word `s[start..end]`.
    fn add_ascii(&mut self, s: &str, start: usize, end: usize, out: &mut String) {
        let b = s.as_bytes();
        let n = end - start;
        let key = if n <= 8 {
            // The word's bytes and what follows, masked to the word.
            let chunk = match b.get(start..start + 8) {
                Some(c) => u64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
                None => {
                    let mut tail = [0u8; 8];
                    tail[..n].copy_from_slice(&b[start..end]);
                    u64::from_le_bytes(tail)
                }
            };
            (chunk | LOWER) & (u64::MAX >> (64 - 8 * n))
        } else {
            hash_long(&b[start..end], true)
        };
        let word = &b[start..end];
        let found = self.find(key, n, |stored| stored.eq_ignore_ascii_case(word), out);
        if let Err(slot) = found {
            let sep = usize::from(!out.is_empty());
            if out.len() + sep + n > self.limit {
                // Does not fit: left out.
                return;
            }
            out.push_str(&" "[..sep]);
            let at = out.len();
            // ASCII bytes of a `str`: a `str` again.
            out.push_str(&s[start..end]);
            out[at..].make_ascii_lowercase();
            self.insert(slot, key, at, n);
        }
    }

    /// Adds `word` (any alphanumeric characters), lower-cased by characters.
    fn add_chars(&mut self, word: &str, out: &mut String) {
        let sep = usize::from(!out.is_empty());
        out.push_str(&" "[..sep]);
        let at = out.len();
        out.extend(word.chars().flat_map(char::to_lowercase));
        if out.len() > self.limit {
            // Does not fit: left out.
            out.truncate(at - sep);
            return;
        }
        let lower = &out.as_bytes()[at..];
        let n = lower.len();
        let key = if n <= 8 {
            let mut k = [0u8; 8];
            k[..n].copy_from_slice(lower);
            u64::from_le_bytes(k)
        } else {
            hash_long(lower, false)
        };
        // Compared with the copy just written (not part of the table yet).
        let found = {
            let written = &out.as_bytes()[at..];
            self.find(key, n, |stored| stored == written, out)
        };
        match found {
            Ok(()) => out.truncate(at - sep),
            Err(slot) => self.insert(slot, key, at, n),
        }
    }

    /// `Ok` when the word of `key` and byte length `n` is in the table (`same` confirms a
    /// hashed key against the stored word's bytes); else `Err` with the free slot for it.
    fn find(
        &self,
        key: u64,
        n: usize,
        same: impl Fn(&[u8]) -> bool,
        out: &str,
    ) -> Result<(), usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.slot_of(key);
        loop {
            let s = self.slots[i];
            if s.len == 0 {
                return Err(i);
            }
            if s.key == key && s.len as usize == n {
                let stored = &out.as_bytes()[s.start as usize..s.start as usize + n];
                if n <= 8 || same(stored) {
                    return Ok(());
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The table slot where the search for `key` starts (Fibonacci hashing: the key's high
    /// bits after a multiplication, so packed words that differ in any byte spread).
    fn slot_of(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    fn insert(&mut self, slot: usize, key: u64, start: usize, n: usize) {
        // Documents past 4 GiB are cut short of this table: their later words are
        // written again (harmless for the index), never skipped.
        let (Ok(start), Ok(len)) = (u32::try_from(start), u32::try_from(n)) else {
            return;
        };
        self.slots[slot] = Slot { key, start, len };
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            let grown = vec![Slot::default(); self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, grown);
            self.shift -= 1;
            let mask = self.slots.len() - 1;
            for s in old.into_iter().filter(|s| s.len != 0) {
                let mut i = self.slot_of(s.key);
                while self.slots[i].len != 0 {
                    i = (i + 1) & mask;
                }
                self.slots[i] = s;
            }
        }
    }
}

/// A 64-bit hash of a word longer than 8 bytes, 8 bytes at a time; `lower` lower-cases
/// ASCII alphanumeric bytes on the way (as [`LOWER`]).
fn hash_long(bytes: &[u8], lower: bool) -> u64 {
    let fold = if lower { LOWER } else { 0 };
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) | fold;
        h = (h.rotate_left(23) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        let v = u64::from_le_bytes(tail) | (fold & (u64::MAX >> (64 - 8 * rest.len())));
        h = (h.rotate_left(23) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h ^ (h >> 29)
}

/// Whether erasing `n` of `all` runs at once is a bulk erasure: one that takes the words out
/// of the index by rewriting it whole ([`drain_erased`]) rather than run by run.
///
/// `secure-delete` rewrites the index leaf of each of a run's distinct words (~420 for a
/// 13.5 KB corpus run: 7-8 ms per run on a loaded 2-core machine, `docs/perf/sqlite.md`);
/// merging rewrites the whole index once. The 1% threshold is a rule of thumb, not a
/// measured break-even.
pub(crate) fn bulk_erasure(n: i64, all: i64) -> bool {
    n > 16 && n.saturating_mul(100) > all
}

/// Takes the words of the erased runs (moved to `traces_fts_erased` by the deletion trigger)
/// out of the index and deletes their moved bodies (zeroed by `PRAGMA secure_delete`), in
/// `conn`'s current transaction. Run by run with `secure-delete`, or, for a bulk erasure
/// ([`bulk_erasure`]), with delete markers and one merge of the whole index (`optimize`),
/// which drops the deleted entries and their markers. Returns the number of runs drained.
pub(crate) fn drain_erased(conn: &Connection) -> rusqlite::Result<i64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM traces_fts_erased")?
        .query_row([], |r| r.get(0))?;
    if n == 0 {
        return Ok(0);
    }
    let left: i64 = conn
        .prepare_cached("SELECT count(*) FROM traces")?
        .query_row([], |r| r.get(0))?;
    let bulk = bulk_erasure(n, left.saturating_add(n));
    if bulk {
        conn.execute_batch(
            "INSERT INTO traces_fts (traces_fts, rank) VALUES ('secure-delete', 0);",
        )?;
    }
    conn.execute_batch(
        "INSERT INTO traces_fts (traces_fts, rowid, text)
             SELECT 'delete', pk, t
             FROM (SELECT pk, tracecraft_search_text(run) AS t FROM traces_fts_erased)
             WHERE t IS NOT NULL;
         DELETE FROM traces_fts_erased;",
    )?;
    if bulk {
        conn.execute_batch(
            "INSERT INTO traces_fts (traces_fts) VALUES ('optimize');
             INSERT INTO traces_fts (traces_fts, rank) VALUES ('secure-delete', 1);",
        )?;
    }
    Ok(n)
}

/// Indexes `run` as trace `pk` (whose earlier entries, if any, were removed); `doc` is its
/// [`document`] when the caller built it already (on the encoding thread).
pub(crate) fn insert(
    tx: &Transaction<'_>,
    pk: i64,
    run: &AgentRun,
    doc: Option<&str>,
) -> rusqlite::Result<()> {
    let mut text = String::new();
    let doc = doc.unwrap_or_else(|| {
        document(run, &mut text);
        &text
    });
    tx.prepare_cached("INSERT INTO traces_fts (rowid, text) VALUES (?1, ?2)")?
        .execute(params![pk, doc])?;
    Ok(())
}

/// Takes the words of `old`, indexed as trace `pk`, out of the index (before the merged
/// run's text is indexed).
pub(crate) fn remove(tx: &Transaction<'_>, pk: i64, old: &AgentRun) -> rusqlite::Result<()> {
    let mut text = String::new();
    document(old, &mut text);
    tx.prepare_cached(
        "INSERT INTO traces_fts (traces_fts, rowid, text) VALUES ('delete', ?1, ?2)",
    )?
    .execute(params![pk, text])?;
    Ok(())
}

/// The FTS5 query for a search: each word (letters and digits only, so quoting is safe) as a
/// prefix, all required; `None` for a search without words (it matches every run).
pub(crate) fn match_expr(text: &str) -> Option<String> {
    let words = tracecraft_core::search::words(text);
    (!words.is_empty()).then(|| {
        words
            .iter()
            .map(|w| format!("\"{w}\"*"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Migration v8 (in its transaction): documents hold at most [`MAX_DOCUMENT_BYTES`] from now
/// on, so the runs an earlier schema indexed past that are indexed again (their old words
/// given back, the shorter document put in), and so are the erased runs still waiting in
/// `traces_fts_erased` (their old words given back): a later deletion computes the shorter
/// document, which would leave the rest of a run's words behind. Only bodies large enough to
/// hold such a document are read (a document is at most 1.5 times the text it comes from:
/// lower-casing grows a few characters from two bytes to three), none in most databases.
pub(crate) fn cap_existing(conn: &Connection) -> rusqlite::Result<()> {
    let mut give_back =
        conn.prepare("INSERT INTO traces_fts (traces_fts, rowid, text) VALUES ('delete', ?1, ?2)")?;
    let large = format!("length(run) > {}", MAX_DOCUMENT_BYTES * 2 / 3);
    let mut erased = conn.prepare(&format!(
        "SELECT pk, run FROM traces_fts_erased WHERE {large}"
    ))?;
    let mut rows = erased.query([])?;
    let mut old = String::new();
    let mut new = String::new();
    while let Some(row) = rows.next()? {
        let pk: i64 = row.get(0)?;
        if let Ok(run) = crate::body::decode(row.get_ref(1)?) {
            document_within(&run, &mut old, usize::MAX);
            give_back.execute(params![pk, old])?;
        }
    }
    drop(rows);
    conn.execute_batch(&format!("DELETE FROM traces_fts_erased WHERE {large}"))?;
    let mut put = conn.prepare("INSERT INTO traces_fts (rowid, text) VALUES (?1, ?2)")?;
    let mut live = conn.prepare(&format!("SELECT pk, run FROM traces WHERE {large}"))?;
    let mut rows = live.query([])?;
    let mut recut = 0u64;
    while let Some(row) = rows.next()? {
        let pk: i64 = row.get(0)?;
        // An unreadable body was never indexed (`index_existing`, `save`).
        let Ok(run) = crate::body::decode(row.get_ref(1)?) else {
            continue;
        };
        document_within(&run, &mut old, usize::MAX);
        document_within(&run, &mut new, MAX_DOCUMENT_BYTES);
        if old != new {
            give_back.execute(params![pk, old])?;
            put.execute(params![pk, new])?;
            recut += 1;
        }
    }
    if recut > 0 {
        tracing::info!(
            runs = recut,
            "search index: long runs indexed again within the limits"
        );
    }
    Ok(())
}

/// Indexes every stored run (migration v6, in its transaction). A body that cannot be
/// decoded is left out of the index with a warning naming its row (`get` reports it as
/// corrupt either way); it becomes searchable when its run is saved again.
pub(crate) fn index_existing(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare("SELECT pk, run FROM traces")?;
    let mut write = conn.prepare("INSERT INTO traces_fts (rowid, text) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    let mut text = String::new();
    let mut skipped = 0u64;
    while let Some(row) = rows.next()? {
        let pk: i64 = row.get(0)?;
        let body: ValueRef<'_> = row.get_ref(1)?;
        match crate::body::decode(body) {
            Ok(run) => {
                document(&run, &mut text);
                write.execute(params![pk, text])?;
            }
            Err(_) => {
                skipped += 1;
                tracing::warn!(
                    row = pk,
                    "run body unreadable: left out of the search index"
                );
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(skipped, "runs left out of the search index");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MAX_DOCUMENT_BYTES, document, document_within, match_expr};
    use tracecraft_core::AgentRun;

    #[test]
    fn a_document_is_each_distinct_word_once() {
        let mut run = AgentRun::builder("Refund agent").tag("refund").build();
        run.output = serde_json::json!(["refund ÉCOLE école", "agent-7 the THE"]);
        let mut doc = String::new();
        document(&run, &mut doc);
        assert_eq!(doc, "refund agent école 7 the");
        let mut again = String::new();
        document(&run, &mut again);
        assert_eq!(doc, again);
    }

    /// The document of a run named `r` whose output is `texts`, cut the naive way: words split
    /// at every character that is not alphanumeric, lower-cased, each distinct word once.
    fn naive_document(texts: &[String]) -> String {
        let mut words: Vec<String> = Vec::new();
        for t in ["r"].into_iter().chain(texts.iter().map(String::as_str)) {
            for w in t
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                let w = w.to_lowercase();
                if !words.contains(&w) {
                    words.push(w);
                }
            }
        }
        words.join(" ")
    }

    proptest::proptest! {
        /// The byte-wise cut of ASCII texts gives the words the `char` cut gives: a database
        /// indexed before takes its runs' words back out with the same document.
        #[test]
        fn ascii_texts_are_cut_as_by_chars(texts in proptest::collection::vec("[ -~\t\n]{0,40}|[ -~é]{0,20}|[a-cA-CéÉ0 ]{0,60}", 1..6)) {
            let mut run = AgentRun::builder("r").build();
            run.output = serde_json::Value::from(texts.clone());
            let mut doc = String::new();
            document(&run, &mut doc);
            proptest::prop_assert_eq!(doc, naive_document(&texts));
        }
    }

    /// The naive document within `limit` bytes: each distinct word in turn, kept when it still
    /// fits.
    fn naive_within(texts: &[String], limit: usize) -> String {
        let mut doc = String::new();
        for w in naive_document(texts).split(' ').filter(|w| !w.is_empty()) {
            let sep = usize::from(!doc.is_empty());
            if doc.len() + sep + w.len() <= limit {
                doc.push_str(&" "[..sep]);
                doc.push_str(w);
            }
        }
        doc
    }

    proptest::proptest! {
        /// A document within a limit holds the words that fit, in order, each once, and never
        /// passes the limit; a word that does not fit does not stop the words after it.
        #[test]
        fn a_document_keeps_the_words_that_fit_its_limit(
            texts in proptest::collection::vec("[a-c0 .]{0,40}|[a-cé İ]{0,20}", 1..6),
            limit in 0usize..120,
        ) {
            let mut run = AgentRun::builder("r").build();
            run.output = serde_json::Value::from(texts.clone());
            let mut doc = String::new();
            document_within(&run, &mut doc, limit);
            proptest::prop_assert!(doc.len() <= limit);
            proptest::prop_assert_eq!(doc, naive_within(&texts, limit));
        }
    }

    /// A run with a 3 MB word and 300,000 distinct short ones: the document stays within
    /// [`MAX_DOCUMENT_BYTES`], without the long word, with the short words up to the limit.
    #[test]
    fn a_huge_run_is_indexed_up_to_the_limit() {
        let mut run = AgentRun::builder("r").build();
        let words: String = (0..300_000).map(|i| format!("w{i} ")).collect();
        run.output = serde_json::json!(["x".repeat(3 << 20), words]);
        let mut doc = String::new();
        document(&run, &mut doc);
        assert!(doc.len() <= MAX_DOCUMENT_BYTES);
        assert!(doc.len() > MAX_DOCUMENT_BYTES - 16);
        assert!(doc.starts_with("r w0 w1 w2 "));
        assert!(!doc.contains("xxxx"));
        assert!(!doc.contains("w299999"));
    }

    /// Words around the 8 bytes that are keyed by their bytes (longer ones by a hash), in
    /// both cases, ASCII and not, many enough to grow the table: each distinct word once.
    #[test]
    fn long_short_and_many_words_are_each_written_once() {
        let mut texts = vec![
            "abcdefgh ABCDEFGH abcdefghi ABCDEFGHI abcdefgh1 abcdefghij0123456789 ABCDEFGHIJ0123456789".to_owned(),
            "ÉcoleÉcole écoleécole Ωmega ωmega Kelvin k K k".to_owned(),
        ];
        texts.push((0..3000).map(|i| format!("w{i} W{i} ")).collect());
        let mut run = AgentRun::builder("r").build();
        run.output = serde_json::Value::from(texts.clone());
        let mut doc = String::new();
        document(&run, &mut doc);
        assert_eq!(doc, naive_document(&texts));
    }

    #[test]
    fn a_search_is_its_words_as_required_prefixes() {
        assert_eq!(
            match_expr("Refund \"order\" OR NEAR(x)").as_deref(),
            Some("\"refund\"* \"order\"* \"or\"* \"near\"* \"x\"*")
        );
        assert_eq!(match_expr(" -*\"() "), None);
    }
}
