//! # tracecraft-store-jsonl
//!
//! A [`TraceStore`] in a directory of JSONL files, one AgentRun JSON per line, readable by the
//! Python `tracecraft` 0.2.1 package and vice versa. **Guarantee:** appends go through a
//! buffered writer with a configurable `fsync` policy; a line that cannot be read back (a torn
//! last line after a crash, a malformed line, a line from a newer schema) is reported with its
//! file and line and never hides the rest; saving an existing trace id merges instead of
//! overwriting; erasure and retention rewrite files atomically (temporary file, `fsync`,
//! rename) so a crash leaves the old or the new file, never half of one; files are mode 0600
//! in a 0700 directory; any number of TraceCraft processes may share the directory: nothing
//! appended is lost and every erasure reported is done ([Several processes](#several-processes)).
//!
//! ```
//! use tracecraft_core::{AgentRun, ProcessedRun, TraceQuery, TraceStore};
//! use tracecraft_store_jsonl::{JsonlConfig, JsonlStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = JsonlStore::open(JsonlConfig::new(dir.path()))?;
//! # #[allow(clippy::disallowed_methods)]
//! let run = ProcessedRun::assume_processed(AgentRun::builder("support_agent").session_id("s-1").build());
//! store.save(&run)?;
//! assert_eq!(store.query(&TraceQuery::new().session_id("s-1"))?.len(), 1);
//! assert!(store.delete(run.run().id)?); // GDPR erasure: the line is gone from the file
//! assert!(store.bad_lines().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layout
//! Files are named `traces-YYYY-MM-DD.jsonl` (UTC day of writing) with `rotate_daily`, else
//! `traces.jsonl`; when a file reaches `rotate_bytes` the next is `traces-YYYY-MM-DD.1.jsonl`,
//! `.2.jsonl`, ... Every `*.jsonl` file in the directory is loaded on open (so a Python
//! `tracecraft.jsonl` can be dropped in), in name and sequence order. A merged save appends
//! the merged run; the earlier line stays until the trace is deleted or purged (readers,
//! including the Python package, take the last line of an id, which holds the merge).
//!
//! ## In-memory index
//! Opening reads every file once and keeps, per trace, where its lines are (file, offset,
//! length) and the fields queries need (name, lower-cased name, start time, duration, cost,
//! tokens, error flags, step count, session, user, environment, tags). `get` reads one line
//! with a positioned read; `query` filters and sorts the index and reads only the page it
//! returns. Trace ids are also indexed by session and by user, so a query naming either
//! looks at that session's or user's traces only instead of scanning the index. Memory: about
//! 300 bytes per trace plus the lengths of those strings (so roughly 40 MB per 100,000 traces
//! with typical names and ids); payloads are never held in memory.
//!
//! ## Security
//! - Files are created 0600 and the directory 0700 whatever the umask; existing ones with
//!   looser modes are reported (a `tracing` warning once per open), refused, or tightened on
//!   request, per [`JsonlConfig::permissions`]. With [`JsonlConfig::create`] off, a missing
//!   directory is [`StoreError::NotFound`], never a new empty store.
//! - [`TraceStore::delete`] (GDPR erasure) and [`TraceStore::purge_older_than`] (retention)
//!   rewrite the files that held the trace's lines, all of them, including lines superseded
//!   by a merge, as the files are when the erasure runs (not as this process last saw them),
//!   and return what the files no longer hold.
//! - Errors and [`BadLine`]s name files and lines, never payloads; a torn last line (a crash
//!   mid-write) is a `tracing` warning naming the file and line, and its bytes stay in place.
//!
//! ## Several processes
//! Any number of TraceCraft processes may use one directory at once (an application, `import`,
//! `traces rm`, retention): nothing appended is lost, and every erasure reported is done. They
//! share an advisory lock file, `.tracecraft.lock` (0600, created by the first open of an
//! existing directory too, unless it is read-only): appends, rotation, erasure and
//! retention hold it exclusively, first bring the index in step with what the others did to
//! the files, and then move a generation counter in the lock file on. Reads take no lock: one
//! 8-byte read of the counter tells whether another process changed the store since this index
//! was built (then it catches up first), so a read sees every change completed before it
//! began; and each line read is checked to be in the indexed file and of the trace asked for,
//! so a read never returns a wrong or an erased run.
//! Processes writing the files without TraceCraft are not covered. The design and its costs are
//! in `docs/adr/0008-jsonl-across-processes.md`.
//!
//! ## Performance
//! `cargo bench -p tracecraft-store-jsonl --bench store`; figures against targets and the
//! Python reference are in `docs/perf/jsonl.md`.
//!
//! ## Crate features
//! None.

mod config;
mod encoder;
mod index;
mod lock;
mod refresh;
mod rewrite;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use tracecraft_core::fs::{self, io_err};
use tracecraft_core::{
    AgentRun, ProcessedRun, StoreError, StoreStats, TraceQuery, TraceStore, Uuid,
};

pub use config::{Fsync, JsonlConfig};
pub use index::BadLine;
pub use tracecraft_core::fs::PermissionPolicy;

use encoder::Encoded;
use index::{Meta, State, order_key};
use lock::DirLock;
use writer::Writer;

/// A [`TraceStore`] in a directory of JSONL files. See the [crate docs](crate).
pub struct JsonlStore {
    config: JsonlConfig,
    state: RwLock<State>,
    writer: Mutex<Option<Writer>>,
    /// The encoding threads' output buffers, kept from batch to batch (locked after
    /// `writer`, only while it is held): fresh ones grew by doubling and page-faulted in
    /// every batch.
    encoded: Mutex<Vec<Encoded>>,
    /// The directory's lock file, shared with every process using the store; taken while
    /// `writer` is held.
    lock: DirLock,
    bad: Mutex<Vec<BadLine>>,
    /// Runs saved by this object that merged with an earlier version ([`TraceStore::merged`]).
    merged: AtomicU64,
}

impl std::fmt::Debug for JsonlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JsonlStore {
    /// Opens the store in `config.dir` (creating the directory 0700 when missing and
    /// [`JsonlConfig::create`] is true): checks permissions, reads every `*.jsonl` file into
    /// the index (bad lines are kept, logged and listed by [`JsonlStore::bad_lines`]), and
    /// purges runs past `retention_days`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the directory is missing and `create` is false;
    /// [`StoreError::Permissions`] under [`PermissionPolicy::Error`] when a file or the
    /// directory is too open; [`StoreError::Io`] when the directory or a file cannot be read.
    pub fn open(config: JsonlConfig) -> Result<JsonlStore, StoreError> {
        let dir = &config.dir;
        if !dir.is_dir() {
            if !config.create {
                return Err(StoreError::NotFound { path: dir.clone() });
            }
            fs::create_private_dir(dir)?;
        }
        fs::warn_looser(dir, fs::check_private(dir, config.permissions)?);
        let lock = DirLock::open(dir)?;
        if lock.is_real() {
            // Exclusively: a temporary file is unfinished only if nobody is rewriting now.
            let _lock = lock.exclusive()?;
            for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
                let entry = entry.map_err(|e| io_err(dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    // A rewrite that crashed before its rename: the original is intact.
                    let p = entry.path();
                    tracing::warn!(path = %p.display(), "removing an unfinished rewrite");
                    std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                }
            }
        }
        let store = JsonlStore {
            state: RwLock::new(State::default()),
            writer: Mutex::new(None),
            encoded: Mutex::new(Vec::new()),
            lock,
            bad: Mutex::new(Vec::new()),
            merged: AtomicU64::new(0),
            config,
        };
        {
            let mut slot = store.writer.lock();
            let _lock = store.lock.shared()?;
            store.catch_up(&mut slot)?;
        }
        for path in store.files() {
            fs::warn_looser(&path, fs::check_private(&path, store.config.permissions)?);
        }
        store.apply_retention()?;
        Ok(store)
    }

    /// The configuration the store was opened with.
    #[must_use]
    pub fn config(&self) -> &JsonlConfig {
        &self.config
    }

    /// Lines that could not be read when the store was opened (file, line, reason).
    #[must_use]
    pub fn bad_lines(&self) -> Vec<BadLine> {
        self.bad.lock().clone()
    }

    /// The JSONL files currently in use, in load order.
    #[must_use]
    pub fn files(&self) -> Vec<PathBuf> {
        self.state
            .read()
            .files
            .iter()
            .flatten()
            .map(|f| f.path.clone())
            .collect()
    }

    /// Purges runs older than `retention_days` (a no-op without it); returns how many.
    ///
    /// # Errors
    /// As [`TraceStore::purge_older_than`].
    pub fn apply_retention(&self) -> Result<u64, StoreError> {
        match self.config.retention_days {
            Some(days) => {
                self.purge_older_than(Utc::now() - chrono::Duration::days(i64::from(days)))
            }
            None => Ok(0),
        }
    }
}

/// How many times a read catches up with other processes before giving up.
const READ_ATTEMPTS: usize = 8;

impl JsonlStore {
    /// Runs `read` on the index; `Ok(None)` from it means the index was out of step with
    /// the files (another process rewrote one): catch up and read again.
    /// The traces that pass `query`'s filters (order, offset and limit aside). Text search
    /// reads each candidate's run from the files (this store has no text index: a search
    /// costs a `get` per trace that passes the other filters); `None` when the files
    /// changed under the read.
    fn hits<'s>(
        state: &'s State,
        query: &TraceQuery,
        name_lower: Option<&str>,
    ) -> Result<Option<Vec<(Uuid, &'s Meta)>>, StoreError> {
        let words = query
            .text
            .as_deref()
            .map(tracecraft_core::search::words)
            .filter(|w| !w.is_empty());
        let mut out = Vec::new();
        for (id, e) in state.candidates(query) {
            if !(query.id_matches(id) && e.meta.matches(query, name_lower)) {
                continue;
            }
            if let Some(words) = &words {
                match Self::read_entry(state, *id, e, true)? {
                    Some(run) if tracecraft_core::search::run_matches(&run, words) => {}
                    Some(_) => continue,
                    None => return Ok(None),
                }
            }
            out.push((*id, &e.meta));
        }
        Ok(Some(out))
    }

    fn consistent_read<T>(
        &self,
        read: impl Fn(&State) -> Result<Option<T>, StoreError>,
    ) -> Result<T, StoreError> {
        self.refresh_if_changed()?;
        for _ in 0..READ_ATTEMPTS {
            if let Some(found) = read(&self.state.read())? {
                return Ok(found);
            }
            self.refresh()?;
        }
        Err(StoreError::Backend {
            backend: "jsonl",
            message: format!(
                "{}: files kept changing under a read ({READ_ATTEMPTS} attempts)",
                self.config.dir.display()
            ),
        })
    }
}

impl TraceStore for JsonlStore {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn save(&self, run: &ProcessedRun) -> Result<(), StoreError> {
        self.append(std::slice::from_ref(run))
    }

    fn save_batch(&self, runs: &[ProcessedRun]) -> Result<(), StoreError> {
        self.append(runs)
    }

    fn merged(&self) -> u64 {
        self.merged.load(Ordering::Relaxed)
    }

    fn get(&self, trace_id: Uuid) -> Result<Option<AgentRun>, StoreError> {
        self.consistent_read(|state| match state.index.get(&trace_id) {
            Some(e) => Ok(Self::read_entry(state, trace_id, e, true)?.map(Some)),
            None => Ok(Some(None)),
        })
    }

    fn query(&self, query: &TraceQuery) -> Result<Vec<AgentRun>, StoreError> {
        query.validate()?;
        let lower = query.name_contains.as_ref().map(|n| n.to_lowercase());
        self.consistent_read(|state| {
            let Some(mut hits) = Self::hits(state, query, lower.as_deref())? else {
                return Ok(None);
            };
            let end = query
                .offset
                .saturating_add(query.limit.unwrap_or(usize::MAX))
                .min(hits.len());
            if query.offset >= hits.len() || end == query.offset {
                return Ok(Some(Vec::new()));
            }
            if end < hits.len() {
                hits.select_nth_unstable_by(end, |a, b| order_key(query, a, b));
                hits.truncate(end);
            }
            hits.sort_unstable_by(|a, b| order_key(query, a, b));
            hits[query.offset..]
                .iter()
                .map(|(id, _)| Self::read_entry(state, *id, &state.index[id], true))
                .collect()
        })
    }

    fn count(&self, query: &TraceQuery) -> Result<u64, StoreError> {
        query.validate()?;
        let lower = query.name_contains.as_ref().map(|n| n.to_lowercase());
        self.consistent_read(|state| {
            Ok(Self::hits(state, query, lower.as_deref())?.map(|h| h.len() as u64))
        })
    }

    /// From the index alone (no run is read unless `query` searches text).
    fn groups(
        &self,
        query: &TraceQuery,
        by: tracecraft_core::GroupKey,
        limit: usize,
    ) -> Result<Vec<tracecraft_core::RunGroup>, StoreError> {
        query.validate()?;
        let lower = query.name_contains.as_ref().map(|n| n.to_lowercase());
        self.consistent_read(|state| {
            let Some(hits) = Self::hits(state, query, lower.as_deref())? else {
                return Ok(None);
            };
            let mut groups = tracecraft_core::GroupsBuilder::new(by);
            for (id, m) in hits {
                groups.add(tracecraft_core::GroupRow {
                    id,
                    name: &m.name,
                    session_id: m.session.as_deref(),
                    user_id: m.user.as_deref(),
                    start: m.start,
                    has_error: m.has_error,
                    tokens: m.tokens,
                    cost_usd: m.cost,
                });
            }
            Ok(Some(groups.finish(limit)))
        })
    }

    fn delete(&self, trace_id: Uuid) -> Result<bool, StoreError> {
        Ok(self.erase(|id, _| *id == trace_id)? > 0)
    }

    fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.erase(|_, e| e.meta.start < cutoff)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.refresh_if_changed()?;
        let state = self.state.read();
        let (mut steps, mut errors, mut tokens, mut cost) = (0u64, 0u64, 0u64, 0.0);
        for e in state.index.values() {
            steps += u64::from(e.meta.steps);
            errors += u64::from(e.meta.any_error);
            tokens = tokens.saturating_add(e.meta.tokens);
            cost += e.meta.cost;
        }
        let bytes = state.files.iter().flatten().map(|f| f.len).sum();
        Ok(StoreStats::new(
            state.index.len() as u64,
            steps,
            errors,
            tokens,
            cost,
            bytes,
        ))
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut slot = self.writer.lock();
        if let Some(w) = slot.as_mut() {
            let _lock = self.lock.exclusive()?;
            let path = self.path_of(w.file);
            w.sync().map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }
}

impl Drop for JsonlStore {
    fn drop(&mut self) {
        if let Some(w) = self.writer.get_mut().as_mut()
            && !w.buf.is_empty()
        {
            let _lock = self.lock.exclusive();
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]
    use super::*;
    use crate::index::Postings;
    use tracecraft_core::contract;

    /// The secondary indexes equal what a rebuild from the primary index gives.
    fn assert_postings_consistent(store: &JsonlStore) {
        let state = store.state.read();
        let mut session = Postings::default();
        let mut user = Postings::default();
        for (id, e) in &state.index {
            session.add(e.meta.session.as_deref(), *id);
            user.add(e.meta.user.as_deref(), *id);
        }
        assert_eq!(state.by_session.0, session.0, "session postings drifted");
        assert_eq!(state.by_user.0, user.0, "user postings drifted");
    }

    #[test]
    fn secondary_indexes_follow_merge_delete_purge_rotation_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = JsonlConfig::new(dir.path()).rotate_bytes(Some(4096));
        let runs = contract::fixture_runs(60);
        {
            let store = JsonlStore::open(config.clone()).unwrap();
            store.save_batch(&contract::processed(&runs)).unwrap();
            assert_postings_consistent(&store);
            // A merge that moves a run to another session and user, inside a batch and not.
            let mut moved = runs[5].clone();
            moved.session_id = Some("sess-moved".into());
            moved.user_id = None;
            let mut again = runs[6].clone();
            again.user_id = Some("user-moved".into());
            store
                .save_batch(&contract::processed(&[moved.clone(), again.clone(), moved]))
                .unwrap();
            assert_postings_consistent(&store);
            assert_eq!(
                store
                    .count(&TraceQuery::new().session_id("sess-moved"))
                    .unwrap(),
                1
            );
            assert_eq!(
                store
                    .count(&TraceQuery::new().user_id("user-moved"))
                    .unwrap(),
                1
            );
            assert!(store.delete(runs[5].id).unwrap());
            assert!(store.delete(runs[9].id).unwrap());
            assert_postings_consistent(&store);
            assert_eq!(
                store
                    .count(&TraceQuery::new().session_id("sess-moved"))
                    .unwrap(),
                0
            );
            let cutoff =
                runs.iter().map(|r| r.start_time).min().unwrap() + chrono::Duration::seconds(1);
            store.purge_older_than(cutoff).unwrap();
            assert_postings_consistent(&store);
        }
        let store = JsonlStore::open(config).unwrap();
        assert_postings_consistent(&store);
        // Text search reads the runs: it is not an index filter.
        for q in contract::oracle_queries()
            .into_iter()
            .filter(|q| q.text.is_none())
        {
            let scanned = store
                .state
                .read()
                .index
                .values()
                .filter(|e| {
                    e.meta.matches(
                        &q,
                        q.name_contains
                            .as_ref()
                            .map(|n| n.to_lowercase())
                            .as_deref(),
                    )
                })
                .count() as u64;
            assert_eq!(store.count(&q).unwrap(), scanned, "{q:?}");
        }
    }

    /// The bytes of every `*.jsonl` file in `dir`, by name.
    fn contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
            })
            .collect();
        files.sort();
        files
    }

    /// A batch whose write fails part-way (a full disk after `budget` more bytes) leaves the
    /// files as they were before it: no half-written line, none of its runs stored, so the
    /// batch's "not stored" count is exact; the store then goes on appending normally. With
    /// and without rotation in the middle of the batch.
    #[test]
    fn a_batch_that_fails_mid_write_leaves_nothing_behind() {
        let runs = contract::fixture_runs(90);
        let (first, rest) = runs.split_at(20);
        let (failing, after) = rest.split_at(40);
        for rotate in [None, Some(4096)] {
            for budget in [0, 1, 100, 4095, 4096, 5000, 9000, 20_000] {
                let dir = tempfile::tempdir().unwrap();
                let config = JsonlConfig::new(dir.path())
                    .rotate_bytes(rotate)
                    .encode_threads(1);
                let store = JsonlStore::open(config.clone()).unwrap();
                store.save_batch(&contract::processed(first)).unwrap();
                let before = contents(dir.path());

                crate::writer::fault::set(Some(budget));
                let err = store.save_batch(&contract::processed(failing));
                crate::writer::fault::set(None);
                let err = err.expect_err("the write budget is smaller than the batch");
                assert!(err.to_string().contains("No space left on device"), "{err}");
                // Files the batch created are left empty; the others are as they were.
                let now: Vec<_> = contents(dir.path())
                    .into_iter()
                    .filter(|(name, bytes)| {
                        !bytes.is_empty() || before.iter().any(|(n, _)| n == name)
                    })
                    .collect();
                assert_eq!(now, before, "rotate {rotate:?}, budget {budget}");
                assert_eq!(store.count(&TraceQuery::new()).unwrap(), 20);
                for r in failing {
                    assert!(store.get(r.id).unwrap().is_none());
                }

                store.save_batch(&contract::processed(after)).unwrap();
                drop(store);
                let store = JsonlStore::open(config).unwrap();
                assert!(store.bad_lines().is_empty(), "{:?}", store.bad_lines());
                assert_eq!(store.count(&TraceQuery::new()).unwrap(), 50);
                for r in first.iter().chain(after) {
                    assert_eq!(store.get(r.id).unwrap().as_ref(), Some(r));
                }
            }
        }
    }
}
