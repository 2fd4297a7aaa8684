//! The in-memory index: where each trace's lines are and the fields queries need; how it is
//! built from the files, and how a trace is read back through it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracecraft_core::fs::io_err;
use tracecraft_core::{
    AgentRun, OrderBy, ParseErrorKind, StoreError, TraceQuery, Uuid, merge_runs,
};

use crate::JsonlStore;

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
pub(crate) struct Loc {
    pub(crate) file: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) line: u64,
}

/// The fields queries need.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) name: Box<str>,
    pub(crate) name_lower: Box<str>,
    pub(crate) start: DateTime<Utc>,
    pub(crate) duration: Option<f64>,
    pub(crate) cost: f64,
    pub(crate) tokens: u64,
    pub(crate) has_error: bool,
    pub(crate) any_error: bool,
    pub(crate) steps: u32,
    pub(crate) session: Option<Box<str>>,
    pub(crate) user: Option<Box<str>>,
    pub(crate) env: Box<str>,
    pub(crate) tags: Box<[Box<str>]>,
    /// The distinct model names of the run's steps (for the model filter).
    pub(crate) models: Box<[Box<str>]>,
}

impl Meta {
    pub(crate) fn of(run: &AgentRun) -> Meta {
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
            models: {
                let mut models: Vec<Box<str>> = Vec::new();
                for m in run.walk().filter_map(|s| s.model_name.as_deref()) {
                    if !models.iter().any(|have| **have == *m) {
                        models.push(b(m));
                    }
                }
                models.into_boxed_slice()
            },
        }
    }

    /// [`TraceQuery::matches`] on the indexed fields (the contract suite checks they agree).
    pub(crate) fn matches(&self, q: &TraceQuery, name_lower: Option<&str>) -> bool {
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
            && (q.model.is_none() || self.models.iter().any(|m| q.model_matches(m)))
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// Every line holding this trace (superseded ones too, so erasure finds them).
    pub(crate) locs: Vec<Loc>,
    /// `locs[fold_from..]` are merged to read the trace.
    pub(crate) fold_from: usize,
    pub(crate) meta: Meta,
}

#[derive(Debug)]
pub(crate) struct FileMeta {
    pub(crate) path: PathBuf,
    pub(crate) reader: Arc<File>,
    /// Which file `reader` is: a rewrite by any process replaces it (a new inode at `path`).
    pub(crate) ident: FileIdent,
    /// Bytes indexed (the file's length when this process last looked, or wrote).
    pub(crate) len: u64,
    /// Non-blank lines, readable or not.
    pub(crate) lines: u64,
    /// Never appended to again (rotated away, rewritten, or not the newest of its day).
    pub(crate) sealed: bool,
    /// `(base, seq)` parsed from the name.
    pub(crate) base: String,
    pub(crate) seq: u32,
}

impl FileMeta {
    /// Whether `path` is still the file this process indexed (not replaced by a rewrite of
    /// another process, nor removed).
    pub(crate) fn is_current(&self) -> Result<bool, StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(FileIdent::of(&m) == self.ident),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&self.path, e)),
        }
    }
}

/// A file's identity (device and inode on unix): a file replaced by a rename has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdent(u64, u64);

impl FileIdent {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileIdent {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileIdent(meta.dev(), meta.ino())
        }
        #[cfg(not(unix))]
        {
            // Without inode numbers, the creation time tells a rewritten file apart.
            let created = meta
                .created()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64);
            FileIdent(created, 0)
        }
    }
}

/// The error for an index entry that does not match its file (a bug, or a file changed
/// without the directory lock).
pub(crate) fn out_of_step() -> StoreError {
    StoreError::Backend {
        backend: "jsonl",
        message: "the index is out of step with the files (changed without the lock?)".into(),
    }
}

/// Trace ids by the value of one indexed field (session, user).
#[derive(Debug, Default)]
pub(crate) struct Postings(pub(crate) HashMap<Box<str>, HashSet<Uuid>>);

impl Postings {
    pub(crate) fn add(&mut self, key: Option<&str>, id: Uuid) {
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

    pub(crate) fn remove(&mut self, key: Option<&str>, id: Uuid) {
        if let Some(key) = key
            && let Some(ids) = self.0.get_mut(key)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.0.remove(key);
            }
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&HashSet<Uuid>> {
        self.0.get(key)
    }
}

/// The index. Every change to `index` goes through [`State::insert`], [`State::set_meta`]
/// and [`State::remove`], which keep the secondary indexes in step with it.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) index: HashMap<Uuid, Entry>,
    pub(crate) files: Vec<Option<FileMeta>>,
    pub(crate) by_session: Postings,
    pub(crate) by_user: Postings,
    /// The files may not match the index (an erasure or append failed half-way): the next
    /// catch-up reloads everything.
    pub(crate) stale: bool,
    /// The generation of the store (see [`crate::lock::DirLock::generation`]) the index is
    /// in step with.
    pub(crate) generation: u64,
}

impl State {
    pub(crate) fn insert(&mut self, id: Uuid, entry: Entry) {
        self.remove(id);
        self.by_session.add(entry.meta.session.as_deref(), id);
        self.by_user.add(entry.meta.user.as_deref(), id);
        self.index.insert(id, entry);
    }

    /// Replaces the indexed fields of an existing entry (after a merge).
    pub(crate) fn set_meta(&mut self, id: Uuid, meta: Meta) {
        let Some(entry) = self.index.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut entry.meta, meta);
        self.by_session.remove(old.session.as_deref(), id);
        self.by_user.remove(old.user.as_deref(), id);
        self.by_session.add(entry.meta.session.as_deref(), id);
        self.by_user.add(entry.meta.user.as_deref(), id);
    }

    pub(crate) fn remove(&mut self, id: Uuid) -> Option<Entry> {
        let entry = self.index.remove(&id)?;
        self.unpost(id, &entry.meta);
        Some(entry)
    }

    pub(crate) fn unpost(&mut self, id: Uuid, meta: &Meta) {
        self.by_session.remove(meta.session.as_deref(), id);
        self.by_user.remove(meta.user.as_deref(), id);
    }

    /// The entries that may match `q`: those of its session or user when it names one (a
    /// hash lookup), else all. Callers still apply [`Meta::matches`].
    pub(crate) fn candidates<'a>(
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

/// `(base, seq)` of `base.jsonl` / `base.N.jsonl`.
pub(crate) fn split_name(name: &str) -> Option<(String, u32)> {
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

pub(crate) fn file_name(base: &str, seq: u32) -> String {
    if seq == 0 {
        format!("{base}.jsonl")
    } else {
        format!("{base}.{seq}.jsonl")
    }
}

pub(crate) fn corrupt(path: &Path, line: u64, message: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Reads one line at `loc` with a positioned read.
pub(crate) fn read_at(file: &File, path: &Path, loc: Loc) -> Result<AgentRun, StoreError> {
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

pub(crate) fn order_key(
    q: &TraceQuery,
    a: &(Uuid, &Meta),
    b: &(Uuid, &Meta),
) -> std::cmp::Ordering {
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

impl JsonlStore {
    /// Registers `path` as a file of `state` and indexes its lines. Called with the directory
    /// lock held (shared at least), so that no line is being written meanwhile.
    pub(crate) fn load_file(
        &self,
        state: &mut State,
        base: String,
        seq: u32,
        path: PathBuf,
    ) -> Result<(), StoreError> {
        let file = File::open(&path).map_err(|e| io_err(&path, e))?;
        let ident = FileIdent::of(&file.metadata().map_err(|e| io_err(&path, e))?);
        let file_id = u32::try_from(state.files.len()).unwrap_or(u32::MAX);
        // Files are registered first so that duplicate ids can be re-read while loading.
        state.files.push(Some(FileMeta {
            path,
            reader: Arc::new(file),
            ident,
            len: 0,
            lines: 0,
            sealed: false,
            base,
            seq,
        }));
        self.load_lines(state, file_id).map(drop)
    }

    /// Indexes the lines of a registered file past its known length: all of them for a file
    /// just registered, those another process appended since for a known one. Called with the
    /// directory lock held (shared at least). Returns the ids of the lines indexed.
    pub(crate) fn load_lines(
        &self,
        state: &mut State,
        file_id: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let Some(Some(f)) = state.files.get(file_id as usize) else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::new();
        let (path, from, known_lines) = (f.path.clone(), f.len, f.lines);
        let mut src = f.reader.try_clone().map_err(|e| io_err(&path, e))?;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(from))
            .map_err(|e| io_err(&path, e))?;
        let mut rd = BufReader::with_capacity(1 << 20, src);
        let (mut offset, mut line, mut lines) = (from, known_lines, known_lines);
        let mut buf = Vec::new();
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
                    ids.push(run.id);
                    if let Err(e) = Self::index_loaded(state, run, loc) {
                        self.report(&path, line, e.to_string());
                    }
                }
                // Nothing of the line itself: a torn line is a fragment of a payload.
                Err(_) if torn => self.report(
                    &path,
                    line,
                    "torn last line: no newline, incomplete JSON (an interrupted write?)".into(),
                ),
                Err(e) => {
                    let mut msg = e.to_string();
                    if e.kind() == ParseErrorKind::Data && msg.contains("unknown field") {
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
        Ok(ids)
    }

    pub(crate) fn report(&self, path: &Path, line: u64, message: String) {
        tracing::warn!(path = %path.display(), line, reason = %message, "unreadable JSONL line kept in place");
        self.bad.lock().push(BadLine {
            path: path.to_path_buf(),
            line,
            message,
        });
    }

    /// Adds a run read at open time; a repeated id is merged with its earlier lines.
    pub(crate) fn index_loaded(
        state: &mut State,
        run: AgentRun,
        loc: Loc,
    ) -> Result<(), StoreError> {
        let id = run.id;
        if let Some(entry) = state.index.get(&id) {
            let earlier = Self::read_entry(state, id, entry, false)?.ok_or_else(out_of_step)?;
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

    /// Reads trace `id` through its index entry (its lines from `fold_from` on, merged).
    ///
    /// `Ok(None)` when the index is out of step with the files: a line read is not of `id`,
    /// or (with `verify_files`) a file was replaced or removed by another process since it
    /// was indexed (its lines may have moved, or been erased). The caller refreshes the index
    /// and tries again; it never returns the wrong run, nor one erased meanwhile.
    pub(crate) fn read_entry(
        state: &State,
        id: Uuid,
        entry: &Entry,
        verify_files: bool,
    ) -> Result<Option<AgentRun>, StoreError> {
        let mut out: Option<AgentRun> = None;
        for loc in &entry.locs[entry.fold_from..] {
            let Some(Some(f)) = state.files.get(loc.file as usize) else {
                return Ok(None);
            };
            if verify_files && !f.is_current()? {
                return Ok(None);
            }
            let run = read_at(&f.reader, &f.path, *loc)?;
            if run.id != id {
                return Ok(None);
            }
            out = Some(match out {
                Some(prev) => merge_runs(prev, run),
                None => run,
            });
        }
        Ok(out)
    }
}
