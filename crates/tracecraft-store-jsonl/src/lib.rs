//! # tracecraft-store-jsonl
//!
//! A [`TraceStore`] in a directory of JSONL files, one AgentRun JSON per line, readable by the
//! Python `tracecraft` 0.2.1 package and vice versa. **Guarantee:** appends go through a
//! buffered writer with a configurable `fsync` policy; a line that cannot be read back (a torn
//! last line after a crash, a malformed line, a line from a newer schema) is reported with its
//! file and line and never hides the rest; saving an existing trace id merges instead of
//! overwriting; erasure and retention rewrite files atomically (temporary file, `fsync`,
//! rename) so a crash leaves the old or the new file, never half of one; files are mode 0600
//! in a 0700 directory.
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
//! looks at that session's or user's traces only instead of scanning the index. Memory: about 300 bytes per trace plus the lengths of those strings (so roughly
//! 40 MB per 100,000 traces with typical names and ids); payloads are never held in memory.
//!
//! ## Security
//! - Files are created 0600 and the directory 0700 whatever the umask; existing ones with
//!   looser modes are reported (a `tracing` warning once per open), refused, or tightened on
//!   request, per [`JsonlConfig::permissions`]. With [`JsonlConfig::create`] off, a missing
//!   directory is [`StoreError::NotFound`], never a new empty store.
//! - [`TraceStore::delete`] (GDPR erasure) and [`TraceStore::purge_older_than`] (retention)
//!   rewrite the files that held the trace's lines, all of them, including lines superseded
//!   by a merge. A file being appended to is first rotated, so writers wait only for the
//!   index update, not for the rewrite.
//! - Errors and [`BadLine`]s name files and lines, never payloads.
//!
//! ## Performance
//! `cargo bench -p tracecraft-store-jsonl --bench store`; figures against targets and the
//! Python reference are in this crate's README.
//!
//! ## Crate features
//! None.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tracecraft_core::fs::{self, io_err};
use tracecraft_core::{
    AgentRun, OrderBy, ParseErrorKind, ProcessedRun, StoreError, StoreStats, TraceQuery,
    TraceStore, Uuid, merge_runs,
};

pub use tracecraft_core::fs::PermissionPolicy;

/// When appended lines are `fsync`ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Fsync {
    /// After every run written.
    Always,
    /// Once per `save` / `save_batch` call (the default).
    #[default]
    Batch,
    /// Never (the OS decides); [`TraceStore::flush`] still syncs.
    Never,
}

/// Settings of a [`JsonlStore`]; serde loads it from the `[jsonl]` table of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct JsonlConfig {
    /// The directory of JSONL files (created 0700 if missing, when
    /// [`create`](Self::create) is true).
    pub dir: PathBuf,
    /// Create the directory when it does not exist (default `true`). Commands that only
    /// read or erase set it to `false`, so that a typo in a path is an error
    /// ([`StoreError::NotFound`]) instead of a new, empty store.
    pub create: bool,
    /// `fsync` policy (default [`Fsync::Batch`]).
    pub fsync: Fsync,
    /// Start a new file when the current one reaches this size (default 64 MiB). Erasure
    /// rewrites whole files, so smaller files make it cheaper.
    pub rotate_bytes: Option<u64>,
    /// One file per UTC day, `traces-YYYY-MM-DD.jsonl` (default true).
    pub rotate_daily: bool,
    /// Keep runs this many days: older runs are purged on open and by
    /// [`JsonlStore::apply_retention`]. `None` keeps everything (the default).
    pub retention_days: Option<u32>,
    /// What to do with existing files or the directory when their permissions are looser
    /// than 0600 / 0700 (default: warn once per open and leave them as they are).
    pub permissions: PermissionPolicy,
    /// Write buffer size in bytes (default 1 MiB).
    pub buffer_bytes: usize,
    /// Threads that serialize a large batch (`save_batch`) in parallel: `0` (the default)
    /// uses the available cores, at most 4; `1` serializes on the calling thread only. The
    /// extra threads run a few chunks of 8 runs ahead of the calling thread, which writes
    /// the lines in batch order whatever the setting (and serializes too rather than wait).
    pub encode_threads: usize,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig {
            dir: PathBuf::from(".tracecraft/traces"),
            create: true,
            fsync: Fsync::Batch,
            rotate_bytes: Some(64 << 20),
            rotate_daily: true,
            retention_days: None,
            permissions: PermissionPolicy::Warn,
            buffer_bytes: 1 << 20,
            encode_threads: 0,
        }
    }
}

impl JsonlConfig {
    /// The defaults, with files in `dir`.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JsonlConfig {
            dir: dir.into(),
            ..JsonlConfig::default()
        }
    }
    /// Sets [`JsonlConfig::create`].
    #[must_use]
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// Sets [`JsonlConfig::fsync`].
    #[must_use]
    pub fn fsync(mut self, f: Fsync) -> Self {
        self.fsync = f;
        self
    }
    /// Sets [`JsonlConfig::rotate_bytes`].
    #[must_use]
    pub fn rotate_bytes(mut self, b: Option<u64>) -> Self {
        self.rotate_bytes = b;
        self
    }
    /// Sets [`JsonlConfig::rotate_daily`].
    #[must_use]
    pub fn rotate_daily(mut self, d: bool) -> Self {
        self.rotate_daily = d;
        self
    }
    /// Sets [`JsonlConfig::retention_days`].
    #[must_use]
    pub fn retention_days(mut self, days: Option<u32>) -> Self {
        self.retention_days = days;
        self
    }
    /// Sets [`JsonlConfig::permissions`].
    #[must_use]
    pub fn permissions(mut self, p: PermissionPolicy) -> Self {
        self.permissions = p;
        self
    }
    /// Sets [`JsonlConfig::encode_threads`].
    #[must_use]
    pub fn encode_threads(mut self, n: usize) -> Self {
        self.encode_threads = n;
        self
    }

    /// The number of serializing threads [`JsonlConfig::encode_threads`] stands for.
    fn threads(&self) -> usize {
        match self.encode_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n,
        }
    }
}

/// Output buffers per serializing thread: how many chunks it may get ahead of the writer.
const ENCODE_BUFFERS_PER_THREAD: usize = 3;

/// The largest output buffer an encoding slot keeps between batches (a chunk of 8 corpus
/// runs is ~140 KB).
const ENCODED_KEEP_BYTES: usize = 1 << 20;

/// Runs per unit of work handed to a serializing thread; a batch needs two of them at least
/// to be worth a thread.
const ENCODE_CHUNK: usize = 8;

/// One chunk serialized by a thread: the JSON lines of consecutive runs, and the end offset
/// of each line in `buf` (lines carry no newline).
#[derive(Debug, Default)]
struct Encoded {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Encoded {
    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    fn encode(&mut self, runs: &[&AgentRun]) {
        self.clear();
        for run in runs {
            tracecraft_core::json::write_json(&mut self.buf, run);
            self.ends.push(self.buf.len());
        }
    }

    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.ends.iter().scan(0, |start, &end| {
            Some(&self.buf[std::mem::replace(start, end)..end])
        })
    }
}

/// Serializes `chunks` on `threads - 1` scoped threads and the calling thread, and hands
/// each chunk to `write` in order (`write(k, Some(lines))`, or `write(k, None)` for a chunk
/// the caller must serialize itself: one the calling thread took on when it was the next to
/// write, or one whose thread panicked), while the threads go on with later chunks: writing
/// overlaps serializing.
///
/// Threads claim chunks from a shared counter, so a thread the scheduler leaves idle on a busy
/// machine holds nobody up, and serialize into buffers from a pool of
/// [`ENCODE_BUFFERS_PER_THREAD`] per thread, which bounds how far they run ahead of the
/// writer. The calling thread serializes too when it would otherwise wait. An error of
/// `write` stops the threads (they find the pool closed) and is returned. Buffers end up in
/// `kept` for the next batch.
fn encode_pipelined<E>(
    chunks: &[&[&AgentRun]],
    threads: usize,
    kept: &mut Vec<Encoded>,
    mut write: impl FnMut(usize, Option<&Encoded>) -> Result<(), E>,
) -> Result<(), E> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// Reports a chunk as failed if its thread unwinds before finishing it.
    struct Unfinished<'a> {
        chunk: usize,
        done: &'a mpsc::Sender<(usize, Option<Encoded>)>,
    }
    impl Drop for Unfinished<'_> {
        fn drop(&mut self) {
            let _ = self.done.send((self.chunk, None));
        }
    }

    let n = chunks.len();
    let next = AtomicUsize::new(0);
    let (spare_tx, spare_rx) = mpsc::channel::<Encoded>();
    let spare_rx = Mutex::new(spare_rx);
    for _ in 0..ENCODE_BUFFERS_PER_THREAD * (threads - 1) {
        let _ = spare_tx.send(kept.pop().unwrap_or_default());
    }
    let (done_tx, done_rx) = mpsc::channel::<(usize, Option<Encoded>)>();
    let result = std::thread::scope(|scope| {
        for _ in 1..threads {
            let done = done_tx.clone();
            let (next, spare_rx) = (&next, &spare_rx);
            let _ = std::thread::Builder::new()
                .name("tracecraft-jsonl-encode".into())
                .spawn_scoped(scope, move || {
                    // A buffer first, then a chunk: a claimed chunk is always being
                    // serialized, never waiting for a buffer.
                    loop {
                        // The pool's lock only for taking a buffer, not while serializing.
                        let taken = spare_rx.lock().recv();
                        let Ok(mut e) = taken else { break };
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(k) else {
                            let _ = done.send((usize::MAX, Some(e)));
                            break;
                        };
                        let unfinished = Unfinished {
                            chunk: k,
                            done: &done,
                        };
                        e.encode(chunk);
                        std::mem::forget(unfinished);
                        if done.send((k, Some(e))).is_err() {
                            break;
                        }
                    }
                });
        }
        drop(done_tx);
        let mut ready: HashMap<usize, Option<Encoded>> = HashMap::new();
        let mut own: Vec<Encoded> = Vec::new();
        let mut written = 0;
        let outcome = (|| {
            while written < n {
                while let Ok((k, e)) = done_rx.try_recv() {
                    match k {
                        k if k < n => drop(ready.insert(k, e)),
                        _ => own.extend(e),
                    }
                }
                if let Some(e) = ready.remove(&written) {
                    write(written, e.as_ref())?;
                    written += 1;
                    if let Some(e) = e {
                        // Back to the pool while the threads have chunks left.
                        if let Err(mpsc::SendError(e)) = spare_tx.send(e) {
                            own.push(e);
                        }
                    }
                    continue;
                }
                // The next chunk to write is not ready: serialize one here rather than wait
                // (straight into the writer's buffer when it is that chunk).
                if ready.len() < ENCODE_BUFFERS_PER_THREAD * threads {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k == written {
                        write(k, None)?;
                        written += 1;
                        continue;
                    }
                    if let Some(chunk) = chunks.get(k) {
                        let mut e = own.pop().or_else(|| kept.pop()).unwrap_or_default();
                        e.encode(chunk);
                        ready.insert(k, Some(e));
                        continue;
                    }
                }
                match done_rx.recv() {
                    Ok((k, e)) if k < n => drop(ready.insert(k, e)),
                    Ok((_, e)) => own.extend(e),
                    // Every thread is gone and the chunk never came: serialize it here.
                    Err(_) => {
                        write(written, None)?;
                        written += 1;
                    }
                }
            }
            Ok(())
        })();
        // Closing the pool stops the threads; the scope waits for them.
        drop(spare_tx);
        own.extend(ready.into_values().flatten());
        kept.append(&mut own);
        outcome
    });
    kept.extend(done_rx.try_iter().filter_map(|(_, e)| e));
    kept.extend(spare_rx.lock().try_iter());
    // Keep what corpus-sized chunks need, not what a chunk of huge runs took.
    kept.retain(|e| e.buf.capacity() <= ENCODED_KEEP_BYTES);
    kept.truncate(ENCODE_BUFFERS_PER_THREAD * threads + 1);
    for e in kept.iter_mut() {
        e.clear();
    }
    result
}

/// A line that could not be read when the store was opened. Its bytes stay in the file
/// (nothing is dropped silently); the rest of the file is readable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadLine {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line number (at open time).
    pub line: u64,
    /// What was wrong (no payload).
    pub message: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Where one line of a trace is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    file: u32,
    offset: u64,
    len: u32,
    line: u64,
}

/// The fields queries need.
#[derive(Debug)]
struct Meta {
    name: Box<str>,
    name_lower: Box<str>,
    start: DateTime<Utc>,
    duration: Option<f64>,
    cost: f64,
    tokens: u64,
    has_error: bool,
    any_error: bool,
    steps: u32,
    session: Option<Box<str>>,
    user: Option<Box<str>>,
    env: Box<str>,
    tags: Box<[Box<str>]>,
}

impl Meta {
    fn of(run: &AgentRun) -> Meta {
        let b = |s: &str| Box::<str>::from(s);
        Meta {
            name: b(&run.name),
            name_lower: b(&run.name.to_lowercase()),
            start: run.start_time,
            duration: run.duration_ms,
            cost: run.total_cost_usd,
            tokens: run.total_tokens,
            has_error: run.error_count > 0 || run.has_any_error(),
            any_error: run.has_any_error(),
            steps: u32::try_from(run.step_count()).unwrap_or(u32::MAX),
            session: run.session_id.as_deref().map(b),
            user: run.user_id.as_deref().map(b),
            env: b(&run.environment),
            tags: run.tags.iter().map(|t| b(t)).collect(),
        }
    }

    /// [`TraceQuery::matches`] on the indexed fields (the contract suite checks they agree).
    fn matches(&self, q: &TraceQuery, name_lower: Option<&str>) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        let within = |v: f64, min: Option<f64>, max: Option<f64>| {
            min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
        };
        eq(&q.session_id, self.session.as_deref())
            && eq(&q.name, Some(&self.name))
            && name_lower.is_none_or(|n| self.name_lower.contains(n))
            && q.has_error.is_none_or(|e| self.has_error == e)
            && (q.min_duration_ms.is_none() && q.max_duration_ms.is_none()
                || self
                    .duration
                    .is_some_and(|d| within(d, q.min_duration_ms, q.max_duration_ms)))
            && within(self.cost, q.min_cost_usd, q.max_cost_usd)
            && q.tags.iter().all(|t| self.tags.iter().any(|h| **h == **t))
            && q.start_after.is_none_or(|t| self.start >= t)
            && q.start_before.is_none_or(|t| self.start < t)
            && eq(&q.user_id, self.user.as_deref())
            && eq(&q.environment, Some(&self.env))
    }
}

#[derive(Debug)]
struct Entry {
    /// Every line holding this trace (superseded ones too, so erasure finds them).
    locs: Vec<Loc>,
    /// `locs[fold_from..]` are merged to read the trace.
    fold_from: usize,
    meta: Meta,
}

#[derive(Debug)]
struct FileMeta {
    path: PathBuf,
    reader: Arc<File>,
    len: u64,
    /// Non-blank lines, readable or not.
    lines: u64,
    /// Never appended to again (rotated away, rewritten, or not the newest of its day).
    sealed: bool,
    /// `(base, seq)` parsed from the name.
    base: String,
    seq: u32,
}

/// Trace ids by the value of one indexed field (session, user).
#[derive(Debug, Default)]
struct Postings(HashMap<Box<str>, HashSet<Uuid>>);

impl Postings {
    fn add(&mut self, key: Option<&str>, id: Uuid) {
        if let Some(key) = key {
            match self.0.get_mut(key) {
                Some(ids) => {
                    ids.insert(id);
                }
                None => {
                    self.0.insert(key.into(), HashSet::from([id]));
                }
            }
        }
    }

    fn remove(&mut self, key: Option<&str>, id: Uuid) {
        if let Some(key) = key
            && let Some(ids) = self.0.get_mut(key)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&HashSet<Uuid>> {
        self.0.get(key)
    }
}

/// The index. Every change to `index` goes through [`State::insert`], [`State::set_meta`]
/// and [`State::remove`], which keep the secondary indexes in step with it.
#[derive(Debug, Default)]
struct State {
    index: HashMap<Uuid, Entry>,
    files: Vec<Option<FileMeta>>,
    by_session: Postings,
    by_user: Postings,
}

impl State {
    fn insert(&mut self, id: Uuid, entry: Entry) {
        self.remove(id);
        self.by_session.add(entry.meta.session.as_deref(), id);
        self.by_user.add(entry.meta.user.as_deref(), id);
        self.index.insert(id, entry);
    }

    /// Replaces the indexed fields of an existing entry (after a merge).
    fn set_meta(&mut self, id: Uuid, meta: Meta) {
        let Some(entry) = self.index.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut entry.meta, meta);
        self.by_session.remove(old.session.as_deref(), id);
        self.by_user.remove(old.user.as_deref(), id);
        self.by_session.add(entry.meta.session.as_deref(), id);
        self.by_user.add(entry.meta.user.as_deref(), id);
    }

    fn remove(&mut self, id: Uuid) -> Option<Entry> {
        let entry = self.index.remove(&id)?;
        self.unpost(id, &entry.meta);
        Some(entry)
    }

    fn unpost(&mut self, id: Uuid, meta: &Meta) {
        self.by_session.remove(meta.session.as_deref(), id);
        self.by_user.remove(meta.user.as_deref(), id);
    }

    /// The entries that may match `q`: those of its session or user when it names one (a
    /// hash lookup), else all. Callers still apply [`Meta::matches`].
    fn candidates<'a>(
        &'a self,
        q: &TraceQuery,
    ) -> Box<dyn Iterator<Item = (&'a Uuid, &'a Entry)> + 'a> {
        let posted = match (&q.session_id, &q.user_id) {
            (Some(s), _) => self.by_session.get(s),
            (None, Some(u)) => self.by_user.get(u),
            (None, None) => return Box::new(self.index.iter()),
        };
        Box::new(
            posted
                .into_iter()
                .flatten()
                .filter_map(|id| self.index.get_key_value(id)),
        )
    }
}

#[derive(Debug)]
struct Writer {
    file: u32,
    /// The file, opened for appends; shared with a background `fsync` (see [`Syncer`]).
    out: Arc<File>,
    /// Lines serialized but not yet written to `out` (runs are serialized straight into it).
    buf: Vec<u8>,
    /// Write `buf` to the file when it reaches this size.
    buf_limit: usize,
    /// The file's length, including `buf`.
    len: u64,
    lines: u64,
    day: NaiveDate,
}

impl Writer {
    /// Writes the buffered lines to the file (no `fsync`).
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let result = (&*self.out).write_all(&self.buf);
            self.buf.clear();
            result?;
        }
        Ok(())
    }

    /// Writes the buffered lines and `fsync`s the file's data.
    fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.out.sync_data()
    }
}

/// `fsync`s written chunks of a large batch on another thread while the next chunk is
/// serialized, so that the `fsync` at the end of the batch has only the last chunk left to
/// write out. Durability is unchanged: the batch still returns after a final `fsync` of the
/// whole file.
struct Syncer<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    running: Option<(
        u32,
        std::thread::ScopedJoinHandle<'scope, std::io::Result<()>>,
    )>,
    /// The first failed background `fsync` (Linux reports an `fsync` error once only, so it
    /// must not be lost).
    failed: Option<(u32, std::io::Error)>,
}

impl<'scope> Syncer<'scope, '_> {
    /// Starts an `fsync` of `w`'s file unless one is still running.
    fn start(&mut self, w: &Writer) {
        if self.running.as_ref().is_some_and(|(_, h)| !h.is_finished()) {
            return;
        }
        self.join();
        let file = Arc::clone(&w.out);
        // Without a thread (out of resources) the final fsync does all the work.
        if let Ok(handle) = std::thread::Builder::new()
            .name("tracecraft-jsonl-fsync".into())
            .spawn_scoped(self.scope, move || file.sync_data())
        {
            self.running = Some((w.file, handle));
        }
    }

    fn join(&mut self) {
        if let Some((file, handle)) = self.running.take() {
            let result = handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")));
            if let Err(e) = result
                && self.failed.is_none()
            {
                self.failed = Some((file, e));
            }
        }
    }

    /// Waits for a running `fsync`; the first error of any, with its file.
    fn finish(&mut self) -> Option<(u32, std::io::Error)> {
        self.join();
        self.failed.take()
    }
}

/// A [`TraceStore`] in a directory of JSONL files. See the [crate docs](crate).
pub struct JsonlStore {
    config: JsonlConfig,
    state: RwLock<State>,
    writer: Mutex<Option<Writer>>,
    /// The encoding threads' output buffers, kept from batch to batch (locked after
    /// `writer`, only while it is held): fresh ones grew by doubling and page-faulted in
    /// every batch.
    encoded: Mutex<Vec<Encoded>>,
    /// Serializes file rewrites (delete, purge).
    rewrite: Mutex<()>,
    bad: Mutex<Vec<BadLine>>,
}

impl std::fmt::Debug for JsonlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `(base, seq)` of `base.jsonl` / `base.N.jsonl`.
fn split_name(name: &str) -> Option<(String, u32)> {
    let stem = name.strip_suffix(".jsonl")?;
    if stem.starts_with('.') || stem.is_empty() {
        return None;
    }
    match stem.rsplit_once('.') {
        Some((base, n)) if !base.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            Some((base.to_owned(), n.parse().ok()?))
        }
        _ => Some((stem.to_owned(), 0)),
    }
}

fn file_name(base: &str, seq: u32) -> String {
    if seq == 0 {
        format!("{base}.jsonl")
    } else {
        format!("{base}.{seq}.jsonl")
    }
}

fn corrupt(path: &Path, line: u64, message: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Reads one line at `loc` with a positioned read.
fn read_at(file: &File, path: &Path, loc: Loc) -> Result<AgentRun, StoreError> {
    let mut buf = vec![0u8; loc.len as usize];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| io_err(path, e))?;
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone().map_err(|e| io_err(path, e))?;
        f.seek(SeekFrom::Start(loc.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| io_err(path, e))?;
    }
    tracecraft_core::json::parse_run_slice(&buf).map_err(|e| corrupt(path, loc.line, e.to_string()))
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
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let entry = entry.map_err(|e| io_err(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A rewrite that crashed before its rename: the original is intact.
                let p = entry.path();
                tracing::warn!(path = %p.display(), "removing an unfinished rewrite");
                std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                continue;
            }
            if let Some((base, seq)) = split_name(&name)
                && entry.file_type().map_err(|e| io_err(dir, e))?.is_file()
            {
                names.push((base, seq, entry.path()));
            }
        }
        names.sort();
        let store = JsonlStore {
            state: RwLock::new(State::default()),
            writer: Mutex::new(None),
            encoded: Mutex::new(Vec::new()),
            rewrite: Mutex::new(()),
            bad: Mutex::new(Vec::new()),
            config,
        };
        for (base, seq, path) in names {
            fs::warn_looser(&path, fs::check_private(&path, store.config.permissions)?);
            store.load_file(base, seq, path)?;
        }
        store.apply_retention()?;
        Ok(store)
    }

    fn load_file(&self, base: String, seq: u32, path: PathBuf) -> Result<(), StoreError> {
        let file = File::open(&path).map_err(|e| io_err(&path, e))?;
        let reader = Arc::new(file.try_clone().map_err(|e| io_err(&path, e))?);
        let mut state = self.state.write();
        let file_id = u32::try_from(state.files.len()).unwrap_or(u32::MAX);
        let mut rd = BufReader::with_capacity(1 << 20, file);
        let (mut offset, mut line, mut lines) = (0u64, 0u64, 0u64);
        let mut buf = Vec::new();
        // Files are registered first so that duplicate ids can be re-read while loading.
        state.files.push(Some(FileMeta {
            path: path.clone(),
            reader: reader.clone(),
            len: 0,
            lines: 0,
            sealed: false,
            base,
            seq,
        }));
        loop {
            buf.clear();
            let n = rd
                .read_until(b'\n', &mut buf)
                .map_err(|e| io_err(&path, e))?;
            if n == 0 {
                break;
            }
            line += 1;
            let start = offset;
            offset += n as u64;
            let torn = buf.last() != Some(&b'\n');
            let lead = buf.len() - buf.trim_ascii_start().len();
            let text = buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            lines += 1;
            let loc = Loc {
                file: file_id,
                offset: start + lead as u64,
                len: u32::try_from(text.len()).unwrap_or(u32::MAX),
                line,
            };
            match tracecraft_core::json::parse_run_slice(text) {
                Ok(run) => {
                    if let Err(e) = Self::index_loaded(&mut state, run, loc) {
                        self.report(&path, line, e.to_string());
                    }
                }
                Err(e) => {
                    let mut msg = e.to_string();
                    if torn {
                        msg = format!("torn last line (incomplete write): {msg}");
                    } else if e.kind() == ParseErrorKind::Data && msg.contains("unknown field") {
                        msg = format!("{msg} (written by a newer schema?)");
                    }
                    self.report(&path, line, msg);
                }
            }
        }
        if let Some(Some(meta)) = state.files.get_mut(file_id as usize) {
            meta.len = offset;
            meta.lines = lines;
        }
        Ok(())
    }

    fn report(&self, path: &Path, line: u64, message: String) {
        tracing::warn!(path = %path.display(), line, reason = %message, "unreadable JSONL line kept in place");
        self.bad.lock().push(BadLine {
            path: path.to_path_buf(),
            line,
            message,
        });
    }

    /// Adds a run read at open time; a repeated id is merged with its earlier lines.
    fn index_loaded(state: &mut State, run: AgentRun, loc: Loc) -> Result<(), StoreError> {
        let id = run.id;
        if let Some(entry) = state.index.get(&id) {
            let earlier = Self::read_entry(state, entry)?;
            let merged = merge_runs(earlier, run);
            let entry = state.index.get_mut(&id).expect("present");
            entry.locs.push(loc);
            state.set_meta(id, Meta::of(&merged));
        } else {
            state.insert(
                id,
                Entry {
                    locs: vec![loc],
                    fold_from: 0,
                    meta: Meta::of(&run),
                },
            );
        }
        Ok(())
    }

    fn read_entry(state: &State, entry: &Entry) -> Result<AgentRun, StoreError> {
        let mut out: Option<AgentRun> = None;
        for loc in &entry.locs[entry.fold_from..] {
            let Some(Some(f)) = state.files.get(loc.file as usize) else {
                continue;
            };
            let run = read_at(&f.reader, &f.path, *loc)?;
            out = Some(match out {
                Some(prev) => merge_runs(prev, run),
                None => run,
            });
        }
        out.ok_or_else(|| StoreError::Backend {
            backend: "jsonl",
            message: "index entry without lines".into(),
        })
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

    /// Seals the current file so that the next write starts a new one.
    fn rotate(&self, slot: &mut Option<Writer>) -> Result<(), StoreError> {
        if let Some(mut w) = slot.take() {
            let mut state = self.state.write();
            let path = state.files[w.file as usize]
                .as_ref()
                .map(|f| f.path.clone())
                .unwrap_or_default();
            w.flush().map_err(|e| io_err(&path, e))?;
            if self.config.fsync != Fsync::Never {
                w.out.sync_data().map_err(|e| io_err(&path, e))?;
            }
            if let Some(Some(f)) = state.files.get_mut(w.file as usize) {
                f.len = w.len;
                f.lines = w.lines;
                f.sealed = true;
            }
        }
        Ok(())
    }

    /// The writer for `now`, rotating by day or size and opening a file when needed.
    fn writer<'a>(
        &self,
        slot: &'a mut Option<Writer>,
        now: DateTime<Utc>,
    ) -> Result<&'a mut Writer, StoreError> {
        let today = now.date_naive();
        let stale = slot.as_ref().is_some_and(|w| {
            (self.config.rotate_daily && w.day != today)
                || self.config.rotate_bytes.is_some_and(|max| w.len >= max)
        });
        if stale {
            self.rotate(slot)?;
        }
        if slot.is_none() {
            *slot = Some(self.open_writer(today)?);
        }
        Ok(slot.as_mut().expect("writer just opened"))
    }

    fn open_writer(&self, today: NaiveDate) -> Result<Writer, StoreError> {
        let base = if self.config.rotate_daily {
            format!("traces-{}", today.format("%Y-%m-%d"))
        } else {
            "traces".to_owned()
        };
        let mut state = self.state.write();
        // Append to the newest file of this base if it is open for appends and not full.
        let newest = state
            .files
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
            .filter(|(_, f)| f.base == base)
            .max_by_key(|(_, f)| f.seq);
        let full = |len: u64| self.config.rotate_bytes.is_some_and(|max| len >= max);
        let seq = match newest {
            Some((_, f)) if !full(f.len) && !f.sealed => f.seq,
            Some((_, f)) => f.seq + 1,
            None => 0,
        };
        let path = self.config.dir.join(file_name(&base, seq));
        // A file found at open was checked then; one this store creates is 0600.
        let file = fs::open_private_append(&path)?;
        let mut len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        let existing = state
            .files
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.path == path));
        let (id, lines) = match existing {
            Some(i) => {
                let f = state.files[i].as_mut().expect("present");
                f.sealed = false;
                (i, f.lines)
            }
            None => {
                let reader = Arc::new(File::open(&path).map_err(|e| io_err(&path, e))?);
                state.files.push(Some(FileMeta {
                    path: path.clone(),
                    reader,
                    len,
                    lines: 0,
                    sealed: false,
                    base,
                    seq,
                }));
                if self.config.fsync != Fsync::Never {
                    fs::sync_dir(&self.config.dir)?;
                }
                (state.files.len() - 1, 0)
            }
        };
        let buf_limit = self.config.buffer_bytes.max(4096);
        let mut buf = Vec::with_capacity(buf_limit + (64 << 10));
        if len > 0 && !ends_with_newline(&path, len)? {
            // A torn last line: end it so the next run starts on its own line.
            buf.push(b'\n');
            len += 1;
        }
        Ok(Writer {
            file: u32::try_from(id).unwrap_or(u32::MAX),
            out: Arc::new(file),
            buf,
            buf_limit,
            len,
            lines,
            day: today,
        })
    }

    /// Appends runs (merging with existing ids) and updates the index.
    fn append(&self, runs: &[ProcessedRun]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut slot = self.writer.lock();
        // Runs merged within this call, not yet visible in the index.
        // Borrowed when new (no clone of the payload), owned when merged.
        let mut pending: HashMap<Uuid, (Cow<'_, AgentRun>, Vec<Loc>)> = HashMap::new();
        let mut order: Vec<Uuid> = Vec::new();
        let now = Utc::now();
        std::thread::scope(|scope| {
            let mut syncer = Syncer {
                scope,
                running: None,
                failed: None,
            };
            let written =
                self.append_lines(runs, &mut slot, now, &mut pending, &mut order, &mut syncer);
            // Never leave a background fsync behind, even on error.
            let synced = syncer.finish();
            written?;
            if let Some((file, e)) = synced {
                return Err(io_err(&self.path_of(file), e));
            }
            self.publish(&mut slot, &mut pending, &mut order)
        })
    }

    /// Serializes `runs` (merged with earlier lines of their ids) into the writer's buffer,
    /// writing it out as it fills. Large batches are serialized on several threads
    /// ([`JsonlConfig::encode_threads`]); lines are written in batch order.
    fn append_lines<'r>(
        &self,
        runs: &'r [ProcessedRun],
        slot: &mut Option<Writer>,
        now: DateTime<Utc>,
        pending: &mut HashMap<Uuid, (Cow<'r, AgentRun>, Vec<Loc>)>,
        order: &mut Vec<Uuid>,
        syncer: &mut Syncer<'_, '_>,
    ) -> Result<(), StoreError> {
        // The version of each run to write, in batch order: the run itself, or its merge with
        // the earlier lines of its id (in the store or earlier in this batch).
        let mut versions: Vec<Option<Cow<'r, AgentRun>>> = Vec::with_capacity(runs.len());
        let mut latest: HashMap<Uuid, usize> = HashMap::new();
        for pr in runs {
            let incoming = pr.run();
            let version = match latest.get(&incoming.id) {
                Some(&i) => {
                    let prev = versions[i]
                        .as_deref()
                        .cloned()
                        .unwrap_or_else(|| incoming.clone());
                    Cow::Owned(merge_runs(prev, incoming.clone()))
                }
                None => {
                    let state = self.state.read();
                    match state.index.get(&incoming.id) {
                        Some(entry) => Cow::Owned(merge_runs(
                            Self::read_entry(&state, entry)?,
                            incoming.clone(),
                        )),
                        None => Cow::Borrowed(incoming),
                    }
                }
            };
            if latest.insert(incoming.id, versions.len()).is_none() {
                order.push(incoming.id);
            }
            versions.push(Some(version));
        }
        let all: Vec<&AgentRun> = versions.iter().flatten().map(|c| &**c).collect();
        let chunks: Vec<&[&AgentRun]> = all.chunks(ENCODE_CHUNK).collect();
        let mut locs: HashMap<Uuid, Vec<Loc>> = HashMap::with_capacity(order.len());
        let mut write_chunk = |k: usize, done: Option<&Encoded>| -> Result<(), StoreError> {
            let chunk = chunks[k];
            // Lines serialized by a thread, else serialized here straight into the writer's
            // buffer (small batches, or a chunk no thread finished).
            let done = done.filter(|e| e.ends.len() == chunk.len());
            let mut lines = done.iter().flat_map(|e| e.lines());
            for run in chunk.iter() {
                let w = self.writer(slot, now)?;
                let start = w.buf.len();
                match lines.next() {
                    Some(line) => w.buf.extend_from_slice(line),
                    None => tracecraft_core::json::write_json(&mut w.buf, run),
                }
                let len = w.buf.len() - start;
                w.buf.push(b'\n');
                let loc = Loc {
                    file: w.file,
                    offset: w.len,
                    len: u32::try_from(len).unwrap_or(u32::MAX),
                    line: w.lines + 1,
                };
                w.len += len as u64 + 1;
                w.lines += 1;
                // The path only for an error message: no lock or allocation per run.
                let file = w.file;
                let err = |e| io_err(&self.path_of(file), e);
                match self.config.fsync {
                    Fsync::Always => w.sync().map_err(err)?,
                    _ if w.buf.len() >= w.buf_limit => {
                        w.flush().map_err(err)?;
                        if self.config.fsync == Fsync::Batch {
                            syncer.start(w);
                        }
                    }
                    _ => {}
                }
                locs.entry(run.id).or_default().push(loc);
            }
            Ok(())
        };
        let threads = self.config.threads().min(chunks.len());
        if threads > 1 {
            encode_pipelined(&chunks, threads, &mut self.encoded.lock(), write_chunk)?;
        } else {
            (0..chunks.len()).try_for_each(|k| write_chunk(k, None))?;
        }
        for id in order.iter() {
            let version = latest.get(id).and_then(|&i| versions[i].take());
            if let (Some(version), Some(locs)) = (version, locs.remove(id)) {
                pending.insert(*id, (version, locs));
            }
        }
        Ok(())
    }

    /// Flushes the writer, syncs per policy and makes the pending lines visible in the index.
    fn publish(
        &self,
        slot: &mut Option<Writer>,
        pending: &mut HashMap<Uuid, (Cow<'_, AgentRun>, Vec<Loc>)>,
        order: &mut Vec<Uuid>,
    ) -> Result<(), StoreError> {
        if let Some(w) = slot.as_mut() {
            let result = if self.config.fsync == Fsync::Batch {
                w.sync()
            } else {
                w.flush()
            };
            result.map_err(|e| io_err(&self.path_of(w.file), e))?;
        }
        let mut state = self.state.write();
        if let Some(w) = slot.as_ref()
            && let Some(Some(f)) = state.files.get_mut(w.file as usize)
        {
            f.len = w.len;
            f.lines = w.lines;
        }
        for id in order.drain(..) {
            let Some((run, locs)) = pending.remove(&id) else {
                continue;
            };
            let meta = Meta::of(&run);
            match state.index.get_mut(&id) {
                Some(entry) => {
                    entry.locs.extend(locs);
                    entry.fold_from = entry.locs.len() - 1;
                    state.set_meta(id, meta);
                }
                None => {
                    state.insert(
                        id,
                        Entry {
                            fold_from: locs.len() - 1,
                            locs,
                            meta,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn path_of(&self, file: u32) -> PathBuf {
        self.state
            .read()
            .files
            .get(file as usize)
            .and_then(|f| f.as_ref().map(|f| f.path.clone()))
            .unwrap_or_default()
    }

    /// Removes traces from the index and rewrites (or deletes) the files that held them.
    fn erase(&self, select: impl Fn(&Uuid, &Entry) -> bool) -> Result<u64, StoreError> {
        let _serial = self.rewrite.lock();
        let mut drops: HashMap<u32, HashSet<u64>> = HashMap::new();
        let removed;
        {
            // Hold the writer so that no save merges with a trace being erased.
            let mut slot = self.writer.lock();
            let mut state = self.state.write();
            let ids: Vec<Uuid> = state
                .index
                .iter()
                .filter(|(id, e)| select(id, e))
                .map(|(id, _)| *id)
                .collect();
            removed = ids.len() as u64;
            for id in ids {
                if let Some(entry) = state.remove(id) {
                    for loc in entry.locs {
                        drops.entry(loc.file).or_default().insert(loc.offset);
                    }
                }
            }
            drop(state);
            if slot.as_ref().is_some_and(|w| drops.contains_key(&w.file)) {
                self.rotate(&mut slot)?;
            }
        }
        let mut files: Vec<_> = drops.into_iter().collect();
        files.sort_by_key(|(f, _)| *f);
        for (file, offsets) in files {
            self.rewrite_file(file, &offsets)?;
        }
        Ok(removed)
    }

    /// Rewrites a sealed file without the lines at `offsets` (temporary file, fsync, rename),
    /// or deletes it when nothing else is left; then remaps the index.
    fn rewrite_file(&self, file: u32, offsets: &HashSet<u64>) -> Result<(), StoreError> {
        let (path, reader, lines) = {
            let state = self.state.read();
            let Some(Some(f)) = state.files.get(file as usize) else {
                return Ok(());
            };
            (f.path.clone(), f.reader.clone(), f.lines)
        };
        if offsets.len() as u64 >= lines {
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            fs::sync_dir(&self.config.dir)?;
            self.state.write().files[file as usize] = None;
            return Ok(());
        }
        let mut remap: HashMap<u64, (u64, u64)> = HashMap::new();
        let (mut new_len, mut new_lines) = (0u64, 0u64);
        fs::replace_atomically(&path, |w| {
            let src = reader.try_clone().map_err(|e| io_err(&path, e))?;
            let mut rd = BufReader::with_capacity(1 << 20, src);
            std::io::Seek::seek(&mut rd, std::io::SeekFrom::Start(0))
                .map_err(|e| io_err(&path, e))?;
            let mut buf = Vec::new();
            let mut offset = 0u64;
            loop {
                buf.clear();
                let n = rd
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| io_err(&path, e))?;
                if n == 0 {
                    break;
                }
                let lead = (buf.len() - buf.trim_ascii_start().len()) as u64;
                let start = offset + lead;
                offset += n as u64;
                let text = buf.trim_ascii();
                if text.is_empty() || offsets.contains(&start) {
                    continue;
                }
                new_lines += 1;
                remap.insert(start, (new_len, new_lines));
                w.write_all(text)
                    .and_then(|()| w.write_all(b"\n"))
                    .map_err(|e| io_err(&path, e))?;
                new_len += text.len() as u64 + 1;
            }
            Ok(())
        })?;
        let reader = Arc::new(File::open(&path).map_err(|e| io_err(&path, e))?);
        let mut state = self.state.write();
        for entry in state.index.values_mut() {
            for loc in entry.locs.iter_mut().filter(|l| l.file == file) {
                if let Some(&(off, line)) = remap.get(&loc.offset) {
                    loc.offset = off;
                    loc.line = line;
                }
            }
        }
        if let Some(Some(f)) = state.files.get_mut(file as usize) {
            f.reader = reader;
            f.len = new_len;
            f.lines = new_lines;
            f.sealed = true;
        }
        Ok(())
    }
}

fn ends_with_newline(path: &Path, len: u64) -> Result<bool, StoreError> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut b = [0u8; 1];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut b, len - 1)
            .map_err(|e| io_err(path, e))?;
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = f;
        f.seek(SeekFrom::Start(len - 1))
            .and_then(|_| f.read_exact(&mut b))
            .map_err(|e| io_err(path, e))?;
    }
    Ok(b[0] == b'\n')
}

fn order_key(q: &TraceQuery, a: &(Uuid, &Meta), b: &(Uuid, &Meta)) -> std::cmp::Ordering {
    let ord = match q.order_by {
        OrderBy::Duration => {
            a.1.duration
                .unwrap_or(0.0)
                .total_cmp(&b.1.duration.unwrap_or(0.0))
        }
        OrderBy::Cost => a.1.cost.total_cmp(&b.1.cost),
        OrderBy::Name => a.1.name.cmp(&b.1.name),
        _ => a.1.start.cmp(&b.1.start),
    }
    .then_with(|| a.0.cmp(&b.0));
    if q.descending { ord.reverse() } else { ord }
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

    fn get(&self, trace_id: Uuid) -> Result<Option<AgentRun>, StoreError> {
        let state = self.state.read();
        state
            .index
            .get(&trace_id)
            .map(|e| Self::read_entry(&state, e))
            .transpose()
    }

    fn query(&self, query: &TraceQuery) -> Result<Vec<AgentRun>, StoreError> {
        query.validate()?;
        let lower = query.name_contains.as_ref().map(|n| n.to_lowercase());
        let state = self.state.read();
        let mut hits: Vec<(Uuid, &Meta)> = state
            .candidates(query)
            .filter(|(_, e)| e.meta.matches(query, lower.as_deref()))
            .map(|(id, e)| (*id, &e.meta))
            .collect();
        let end = query
            .offset
            .saturating_add(query.limit.unwrap_or(usize::MAX))
            .min(hits.len());
        if query.offset >= hits.len() || end == query.offset {
            return Ok(Vec::new());
        }
        if end < hits.len() {
            hits.select_nth_unstable_by(end, |a, b| order_key(query, a, b));
            hits.truncate(end);
        }
        hits.sort_unstable_by(|a, b| order_key(query, a, b));
        hits[query.offset..]
            .iter()
            .map(|(id, _)| Self::read_entry(&state, &state.index[id]))
            .collect()
    }

    fn count(&self, query: &TraceQuery) -> Result<u64, StoreError> {
        query.validate()?;
        let lower = query.name_contains.as_ref().map(|n| n.to_lowercase());
        let state = self.state.read();
        Ok(state
            .candidates(query)
            .filter(|(_, e)| e.meta.matches(query, lower.as_deref()))
            .count() as u64)
    }

    fn delete(&self, trace_id: Uuid) -> Result<bool, StoreError> {
        Ok(self.erase(|id, _| *id == trace_id)? > 0)
    }

    fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.erase(|_, e| e.meta.start < cutoff)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
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
            let path = self.path_of(w.file);
            w.sync().map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }
}

impl Drop for JsonlStore {
    fn drop(&mut self) {
        if let Some(w) = self.writer.get_mut().as_mut() {
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]
    use super::*;
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
    fn pipelined_encoding_hands_over_chunks_in_order_and_stops_on_error() {
        let runs = contract::fixture_runs(203);
        let refs: Vec<&AgentRun> = runs.iter().collect();
        let chunks: Vec<&[&AgentRun]> = refs.chunks(ENCODE_CHUNK).collect();
        for threads in [2, 3, 4, 8] {
            let mut kept = Vec::new();
            for round in 0..3 {
                // Every chunk once, in order, with its own lines (from a thread or not).
                let mut seen = Vec::new();
                let mut inline = 0;
                let r: Result<(), ()> = encode_pipelined(&chunks, threads, &mut kept, |k, e| {
                    seen.push(k);
                    // A slow writer: the threads get ahead and fill the pool.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    match e {
                        Some(e) => {
                            let lines: Vec<&[u8]> = e.lines().collect();
                            assert_eq!(lines.len(), chunks[k].len());
                            for (line, run) in lines.iter().zip(chunks[k]) {
                                assert_eq!(*line, tracecraft_core::to_json(run).as_bytes());
                            }
                        }
                        None => inline += 1,
                    }
                    Ok(())
                });
                assert_eq!(r, Ok(()));
                assert_eq!(
                    seen,
                    (0..chunks.len()).collect::<Vec<_>>(),
                    "{threads} {round}"
                );
                // (Which chunks the threads serialize depends on scheduling: not asserted.)
                let _ = inline;
                assert!(kept.len() <= ENCODE_BUFFERS_PER_THREAD * threads + 1);
            }
            // A failing write stops everything and is returned; the threads are joined.
            let mut calls = 0;
            let r = encode_pipelined(&chunks, threads, &mut kept, |k, _| {
                calls += 1;
                if k == 5 { Err(k) } else { Ok(()) }
            });
            assert_eq!((r, calls), (Err(5), 6));
        }
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
        for q in contract::oracle_queries() {
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
}
