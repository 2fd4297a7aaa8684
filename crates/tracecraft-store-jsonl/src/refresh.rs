//! Keeping this process's index in step with what other processes did to the files.
//!
//! Every append, erasure and purge first catches up, with the directory lock held: lines
//! other processes appended to known files are indexed, files they created are loaded, and
//! when a file was replaced (a rewrite by an erasure or purge), removed or truncated, the
//! whole index is rebuilt from the files as they are now. Offsets in the index are then those
//! of the files' current contents, and stay so while the lock is held.

use std::collections::HashMap;
use std::path::PathBuf;

use tracecraft_core::StoreError;
use tracecraft_core::fs::io_err;

use crate::JsonlStore;
use crate::index::{FileIdent, State, split_name};
use crate::writer::Writer;

/// A `*.jsonl` file found in the directory.
struct OnDisk {
    base: String,
    seq: u32,
    path: PathBuf,
    ident: FileIdent,
    len: u64,
}

impl JsonlStore {
    /// The `*.jsonl` files of the directory, in load order (name, then sequence).
    fn list_files(&self) -> Result<Vec<OnDisk>, StoreError> {
        let dir = &self.config.dir;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let entry = entry.map_err(|e| io_err(dir, e))?;
            let name = entry.file_name();
            let Some((base, seq)) = split_name(&name.to_string_lossy()) else {
                continue;
            };
            let path = entry.path();
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // Removed between the listing and now (only without the lock).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, e)),
            };
            if meta.is_file() {
                found.push(OnDisk {
                    base,
                    seq,
                    path,
                    ident: FileIdent::of(&meta),
                    len: meta.len(),
                });
            }
        }
        found.sort_by(|a, b| (&a.base, a.seq, &a.path).cmp(&(&b.base, b.seq, &b.path)));
        Ok(found)
    }

    /// Brings the index in step with the files. Called with the writer slot locked and the
    /// directory lock held (exclusively, or shared when `slot` has nothing buffered).
    pub(crate) fn catch_up(&self, slot: &mut Option<Writer>) -> Result<(), StoreError> {
        let disk = self.list_files()?;
        let mut state = self.state.write();
        let by_path: HashMap<&PathBuf, &OnDisk> = disk.iter().map(|d| (&d.path, d)).collect();
        let mut rebuild = state.stale;
        let mut grown = Vec::new();
        for (i, f) in state.files.iter().enumerate() {
            let Some(f) = f else { continue };
            match by_path.get(&f.path) {
                Some(d) if d.ident == f.ident && d.len >= f.len => {
                    if d.len > f.len {
                        grown.push(u32::try_from(i).unwrap_or(u32::MAX));
                    }
                }
                // Replaced by a rewrite, removed, or truncated: offsets moved.
                _ => rebuild = true,
            }
        }
        if rebuild {
            // The writer's buffer is empty between batches (a failed batch's rest is dropped:
            // that batch reported its error).
            *slot = None;
            *state = State::default();
            self.bad.lock().clear();
            for d in disk {
                self.load_file(&mut state, d.base, d.seq, d.path)?;
            }
            return Ok(());
        }
        for file in grown {
            self.load_lines(&mut state, file)?;
        }
        let known: std::collections::HashSet<PathBuf> = state
            .files
            .iter()
            .flatten()
            .map(|f| f.path.clone())
            .collect();
        for d in disk {
            if !known.contains(&d.path) {
                self.load_file(&mut state, d.base, d.seq, d.path)?;
            }
        }
        // The writer appends after what others wrote.
        if let Some(w) = slot.as_mut()
            && w.buf.is_empty()
            && let Some(Some(f)) = state.files.get(w.file as usize)
        {
            w.len = f.len;
            w.lines = f.lines;
        }
        Ok(())
    }

    /// Catches up outside of a write (a read found the index out of step): takes the writer
    /// slot and the directory lock, shared.
    pub(crate) fn refresh(&self) -> Result<(), StoreError> {
        let mut slot = self.writer.lock();
        let _lock = self.lock.shared()?;
        self.catch_up(&mut slot)
    }
}
