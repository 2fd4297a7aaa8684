//! Appends: the buffered writer, rotation by day and size, the background `fsync` of large
//! batches, and publishing appended lines in the index.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use tracecraft_core::fs::{self, io_err};
use tracecraft_core::{AgentRun, ProcessedRun, StoreError, Uuid, merge_runs};

use crate::JsonlStore;
use crate::config::Fsync;
use crate::encoder::{ENCODE_CHUNK, Encoded, encode_pipelined};
use crate::index::{Entry, FileIdent, FileMeta, Loc, Meta, file_name, out_of_step};

#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) file: u32,
    /// The file, opened for appends; shared with a background `fsync` (see [`Syncer`]).
    pub(crate) out: Arc<File>,
    /// Lines serialized but not yet written to `out` (runs are serialized straight into it).
    pub(crate) buf: Vec<u8>,
    /// Write `buf` to the file when it reaches this size.
    pub(crate) buf_limit: usize,
    /// The file's length, including `buf`.
    pub(crate) len: u64,
    pub(crate) lines: u64,
    pub(crate) day: NaiveDate,
}

impl Writer {
    /// Writes the buffered lines to the file (no `fsync`).
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let result = write_out(&self.out, &self.buf);
            self.buf.clear();
            result?;
        }
        Ok(())
    }

    /// Writes the buffered lines and `fsync`s the file's data.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.out.sync_data()
    }
}

/// `fsync`s written chunks of a large batch on another thread while the next chunk is
/// serialized, so that the `fsync` at the end of the batch has only the last chunk left to
/// write out. Durability is unchanged: the batch still returns after a final `fsync` of the
/// whole file.
pub(crate) struct Syncer<'scope, 'env> {
    pub(crate) scope: &'scope std::thread::Scope<'scope, 'env>,
    pub(crate) running: Option<(
        u32,
        std::thread::ScopedJoinHandle<'scope, std::io::Result<()>>,
    )>,
    /// The first failed background `fsync` (Linux reports an `fsync` error once only, so it
    /// must not be lost).
    pub(crate) failed: Option<(u32, std::io::Error)>,
}

impl<'scope> Syncer<'scope, '_> {
    /// Starts an `fsync` of `w`'s file unless one is still running.
    pub(crate) fn start(&mut self, w: &Writer) {
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

    pub(crate) fn join(&mut self) {
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
    pub(crate) fn finish(&mut self) -> Option<(u32, std::io::Error)> {
        self.join();
        self.failed.take()
    }
}

/// `write_all` of `bytes` to `out`. Under `cfg(test)` a write budget (see [`fault`]) makes
/// it write part of `bytes` and then fail, as a full disk does.
fn write_out(out: &File, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(room) = fault::take(bytes.len()) {
        let mut out = out;
        out.write_all(&bytes[..room])?;
        return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
    }
    let mut out = out;
    out.write_all(bytes)
}

pub(crate) fn ends_with_newline(path: &Path, len: u64) -> Result<bool, StoreError> {
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

impl JsonlStore {
    /// Seals the current file so that the next write starts a new one.
    pub(crate) fn rotate(&self, slot: &mut Option<Writer>) -> Result<(), StoreError> {
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
    pub(crate) fn writer<'a>(
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

    pub(crate) fn open_writer(&self, today: NaiveDate) -> Result<Writer, StoreError> {
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
                let reader = File::open(&path).map_err(|e| io_err(&path, e))?;
                let ident = FileIdent::of(&reader.metadata().map_err(|e| io_err(&path, e))?);
                let reader = Arc::new(reader);
                state.files.push(Some(FileMeta {
                    ident,
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
    pub(crate) fn append(&self, runs: &[ProcessedRun]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut slot = self.writer.lock();
        // Exclusively for the whole batch: whole lines, at the end of the file that is at the
        // path now, with the index in step with every other process's appends and rewrites.
        let _lock = self.lock.exclusive()?;
        self.catch_up(&mut slot)?;
        let mut starts = Vec::new();
        let result = self.append_locked(runs, &mut slot, &mut starts);
        if result.is_err() {
            // Nothing of a failed batch stays: every file it wrote to is cut back to its
            // length before the batch (still under the lock, so no other process appended
            // meanwhile), so that the runs reported as not stored are exactly the ones
            // missing, and no half-written line remains. Then start again from the files.
            *slot = None;
            self.truncate_back(&starts);
            self.state.write().stale = true;
        }
        self.changed();
        result
    }

    /// Cuts each `(file, length)` of `starts` back to that length. A file that cannot be cut
    /// is a warning naming it (its bytes are then read back as a torn or extra line).
    fn truncate_back(&self, starts: &[(u32, u64)]) {
        for &(file, len) in starts {
            let path = self.path_of(file);
            let cut = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    if f.metadata()?.len() > len {
                        f.set_len(len)?;
                        if self.config.fsync != Fsync::Never {
                            f.sync_data()?;
                        }
                    }
                    Ok(())
                });
            if let Err(e) = cut {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "could not remove the lines of a failed batch; they may be read back"
                );
            }
        }
    }

    /// [`JsonlStore::append`] with the writer slot and the directory lock held.
    ///
    /// `starts` receives each file the batch writes to, with its length before the batch.
    fn append_locked(
        &self,
        runs: &[ProcessedRun],
        slot: &mut Option<Writer>,
        starts: &mut Vec<(u32, u64)>,
    ) -> Result<(), StoreError> {
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
            let written = self.append_lines(
                runs,
                slot,
                now,
                &mut pending,
                &mut order,
                &mut syncer,
                starts,
            );
            // Never leave a background fsync behind, even on error.
            let synced = syncer.finish();
            let merges = written?;
            if let Some((file, e)) = synced {
                return Err(io_err(&self.path_of(file), e));
            }
            self.publish(slot, &mut pending, &mut order)?;
            self.merged.fetch_add(merges, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Serializes `runs` (merged with earlier lines of their ids) into the writer's buffer,
    /// writing it out as it fills. Large batches are serialized on several threads
    /// ([`JsonlConfig::encode_threads`](crate::JsonlConfig::encode_threads)); lines are written in batch order.
    /// `starts` receives each file written to, with its length before the first line. Returns
    /// how many runs were merged with an earlier version (stored, or earlier in `runs`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append_lines<'r>(
        &self,
        runs: &'r [ProcessedRun],
        slot: &mut Option<Writer>,
        now: DateTime<Utc>,
        pending: &mut HashMap<Uuid, (Cow<'r, AgentRun>, Vec<Loc>)>,
        order: &mut Vec<Uuid>,
        syncer: &mut Syncer<'_, '_>,
        starts: &mut Vec<(u32, u64)>,
    ) -> Result<u64, StoreError> {
        let mut merges = 0u64;
        // The version of each run to write, in batch order: the run itself, or its merge with
        // the earlier lines of its id (in the store or earlier in this batch).
        let mut versions: Vec<Option<Cow<'r, AgentRun>>> = Vec::with_capacity(runs.len());
        let mut latest: HashMap<Uuid, usize> = HashMap::new();
        for pr in runs {
            let incoming = pr.run();
            let version = match latest.get(&incoming.id) {
                Some(&i) => {
                    merges += 1;
                    let prev = versions[i]
                        .as_deref()
                        .cloned()
                        .unwrap_or_else(|| incoming.clone());
                    Cow::Owned(merge_runs(prev, incoming.clone()))
                }
                None => {
                    let state = self.state.read();
                    match state.index.get(&incoming.id) {
                        Some(entry) => {
                            merges += 1;
                            Cow::Owned(merge_runs(
                                Self::read_entry(&state, incoming.id, entry, false)?
                                    .ok_or_else(out_of_step)?,
                                incoming.clone(),
                            ))
                        }
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
                if !starts.iter().any(|&(f, _)| f == w.file) {
                    // `len` counts the buffer too; nothing of this batch is in it yet.
                    starts.push((w.file, w.len - w.buf.len() as u64));
                }
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
        Ok(merges)
    }

    /// Flushes the writer, syncs per policy and makes the pending lines visible in the index.
    pub(crate) fn publish(
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

    pub(crate) fn path_of(&self, file: u32) -> PathBuf {
        self.state
            .read()
            .files
            .get(file as usize)
            .and_then(|f| f.as_ref().map(|f| f.path.clone()))
            .unwrap_or_default()
    }
}

/// A write budget for the tests of failing batches: after `set(n)`, the writes of this thread
/// put `n` more bytes in files and then fail with "No space left on device".
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;

    thread_local! {
        static BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Lets the writes of this thread put `bytes` more bytes in files (`None`: no limit).
    pub(crate) fn set(bytes: Option<usize>) {
        BUDGET.with(|b| b.set(bytes));
    }

    /// For a write of `len` bytes: `Some(room)` when only `room` of them fit (the write then
    /// fails), `None` when all do.
    pub(super) fn take(len: usize) -> Option<usize> {
        BUDGET.with(|b| {
            let left = b.get()?;
            if len <= left {
                b.set(Some(left - len));
                None
            } else {
                b.set(Some(0));
                Some(left)
            }
        })
    }
}
