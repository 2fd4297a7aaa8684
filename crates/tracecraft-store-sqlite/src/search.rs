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
//! - Tokenizer `unicode61` without diacritic removal, the same words as
//!   [`tracecraft_core::search::words`]; a search is each word as a prefix query, all
//!   required.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

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
pub(crate) const MIGRATION_V6: &str = r"
DROP TRIGGER traces_fts_erase;
DROP TABLE traces_fts;
CREATE VIRTUAL TABLE traces_fts USING fts5(
    text, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO traces_fts (traces_fts, rank) VALUES ('secure-delete', 1);
CREATE TABLE traces_fts_erased (pk INTEGER PRIMARY KEY, run BLOB);
CREATE TRIGGER traces_fts_erase AFTER DELETE ON traces BEGIN
    INSERT INTO traces_fts_erased (pk, run) VALUES (old.pk, old.run);
END;
";

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

/// What is indexed for `run`, in `out` (cleared first): each distinct word of its searchable
/// text once (lower-cased, in order of first appearance, space-separated).
///
/// A search asks only whether each of its words begins some word of the run (no phrases, no
/// ranking), so repeated words add nothing but index work: corpus runs have ~1,300 words of
/// which ~420 distinct. And the words are the ones [`tracecraft_core::search::words`] cuts,
/// so the index holds the reference's words. Deterministic: the deletion trigger computes
/// the same text from the stored body to take a run's words back out.
pub(crate) fn document(run: &AgentRun, out: &mut String) {
    out.clear();
    // Word hash -> where the word first went in `out`. A hash shared by two different words
    // only makes the second one written twice (harmless), never skipped.
    // Sized for a run of ~500 distinct words (corpus runs have ~420): no growth on the way.
    let mut seen: HashMap<u64, (usize, usize), BuildHasherDefault<Identity>> =
        HashMap::with_capacity_and_hasher(1024, BuildHasherDefault::default());
    let mut add = |word: &str| {
        let sep = usize::from(!out.is_empty());
        if word.is_ascii() {
            // Hashed as it will be written (lower case), and written only if new.
            let hash = fnv1a(word.bytes().map(|c| c.to_ascii_lowercase()));
            match seen.entry(hash) {
                Entry::Occupied(o) => {
                    let (a, b) = *o.get();
                    if out.as_bytes()[a..b].eq_ignore_ascii_case(word.as_bytes()) {
                        return;
                    }
                    out.push_str(&" "[..sep]);
                    out.push_str(word);
                    let start = out.len() - word.len();
                    out[start..].make_ascii_lowercase();
                }
                Entry::Vacant(v) => {
                    out.push_str(&" "[..sep]);
                    let start = out.len();
                    out.push_str(word);
                    out[start..].make_ascii_lowercase();
                    v.insert((start, out.len()));
                }
            }
            return;
        }
        out.push_str(&" "[..sep]);
        let start = out.len();
        out.extend(word.chars().flat_map(char::to_lowercase));
        let hash = fnv1a(out.as_bytes()[start..].iter().copied());
        match seen.entry(hash) {
            Entry::Occupied(o) => {
                let (a, b) = *o.get();
                if out.as_bytes()[a..b] == out.as_bytes()[start..] {
                    // Seen: take it (and its separator) back out.
                    out.truncate(start - sep);
                }
            }
            Entry::Vacant(v) => {
                v.insert((start, out.len()));
            }
        }
    };
    tracecraft_core::search::for_each_text(run, &mut |s| {
        if s.is_ascii() {
            // The same words as below, cut byte by byte (no char decoding, no Unicode
            // table: an ASCII character is alphanumeric exactly when it is an ASCII one).
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() {
                while i < b.len() && !b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                let start = i;
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                if i > start {
                    add(&s[start..i]);
                }
            }
            return;
        }
        for word in s.split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() {
                add(word);
            }
        }
    });
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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
    use super::{document, match_expr};
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

    proptest::proptest! {
        /// The byte-wise cut of ASCII texts gives the words the `char` cut gives: a database
        /// indexed before takes its runs' words back out with the same document.
        #[test]
        fn ascii_texts_are_cut_as_by_chars(texts in proptest::collection::vec("[ -~\t\n]{0,40}|[ -~é]{0,20}", 1..6)) {
            let mut run = AgentRun::builder("r").build();
            run.output = serde_json::Value::from(texts.clone());
            let mut doc = String::new();
            document(&run, &mut doc);
            let mut words: Vec<String> = Vec::new();
            for t in ["r"].into_iter().chain(texts.iter().map(String::as_str)) {
                for w in t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                    let w = w.to_lowercase();
                    if !words.contains(&w) {
                        words.push(w);
                    }
                }
            }
            proptest::prop_assert_eq!(doc, words.join(" "));
        }
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
