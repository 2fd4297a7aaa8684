//! Keeping this process's index in step with what other processes did to the files.
//!
//! Every append, erasure and purge first catches up, with the directory lock held: lines
//! other processes appended to known files are indexed, files they created are loaded, and a
//! file that was replaced (a rewrite by an erasure or purge), removed or truncated is indexed
//! again from its current contents (the traces it held or holds folded again from all their
//! lines); after a failed change of this process, the whole index is rebuilt. Offsets in the
//! index are then those of the files' current contents, and stay so while the lock is held.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use tracecraft_core::fs::io_err;
use tracecraft_core::{StoreError, Uuid};

use crate::JsonlStore;
use crate::index::{FileIdent, Meta, State, out_of_step, split_name};
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
        let generation = self.lock.generation();
        let disk = self.list_files()?;
        let mut state = self.state.write();
        state.generation = generation;
        let by_path: HashMap<&PathBuf, &OnDisk> = disk.iter().map(|d| (&d.path, d)).collect();
        let (mut replaced, mut grown) = (Vec::new(), Vec::new());
        for (i, f) in state.files.iter().enumerate() {
            let Some(f) = f else { continue };
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match by_path.get(&f.path) {
                Some(d) if d.ident == f.ident && d.len >= f.len => {
                    if d.len > f.len {
                        grown.push(i);
                    }
                }
                // Replaced by a rewrite, removed, or truncated: its offsets moved.
                _ => replaced.push(i),
            }
        }
        if state.stale {
            // The writer's buffer is empty between batches (a failed batch's rest is dropped:
            // that batch reported its error).
            *slot = None;
            *state = State {
                generation,
                ..State::default()
            };
            self.bad.lock().clear();
            for d in disk {
                self.load_file(&mut state, d.base, d.seq, d.path)?;
            }
            return Ok(());
        }
        if slot.as_ref().is_some_and(|w| replaced.contains(&w.file)) {
            // Its descriptor is the replaced file: the next append opens the one at the path.
            *slot = None;
        }
        for file in replaced {
            let now = by_path.get(&state.files[file as usize].as_ref().expect("known").path);
            self.reload_file(&mut state, file, now.is_some())?;
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

    /// Re-indexes one file another process rewrote (`exists`) or removed: its lines leave the
    /// index, its current lines are indexed, and every trace that had or has a line in it is
    /// folded again from all its lines in file order (as opening the store would).
    fn reload_file(&self, state: &mut State, file: u32, exists: bool) -> Result<(), StoreError> {
        let path = match state.files.get(file as usize) {
            Some(Some(f)) => f.path.clone(),
            _ => return Ok(()),
        };
        self.bad.lock().retain(|b| b.path != path);
        let mut touched: HashSet<Uuid> = HashSet::new();
        for (id, e) in &mut state.index {
            let before = e.locs.len();
            e.locs.retain(|l| l.file != file);
            if e.locs.len() != before {
                touched.insert(*id);
                e.fold_from = 0;
            }
        }
        for id in &touched {
            if state.index.get(id).is_some_and(|e| e.locs.is_empty()) {
                state.remove(*id);
            }
        }
        if exists {
            let reader = File::open(&path).map_err(|e| io_err(&path, e))?;
            let ident = FileIdent::of(&reader.metadata().map_err(|e| io_err(&path, e))?);
            if let Some(Some(f)) = state.files.get_mut(file as usize) {
                f.reader = Arc::new(reader);
                f.ident = ident;
                f.len = 0;
                f.lines = 0;
                f.sealed = false;
            }
            touched.extend(self.load_lines(state, file)?);
        } else {
            state.files[file as usize] = None;
        }
        for id in touched {
            let Some(entry) = state.index.get_mut(&id) else {
                continue;
            };
            entry.locs.sort_by_key(|l| (l.file, l.offset));
            entry.fold_from = 0;
            let run =
                Self::read_entry(state, id, &state.index[&id], false)?.ok_or_else(out_of_step)?;
            state.set_meta(id, Meta::of(&run));
        }
        Ok(())
    }

    /// Records a change of this process (the lock held exclusively): the generation moves
    /// on, so other processes catch up before their next read; this index already has it.
    pub(crate) fn changed(&self) {
        match self.lock.bump() {
            Ok(g) => self.state.write().generation = g,
            // Others then learn of it on their next change or stale read only.
            Err(e) => tracing::warn!(error = %e, "could not record a change in the lock file"),
        }
    }

    /// Catches up when another process changed the store since this index was.
    pub(crate) fn refresh_if_changed(&self) -> Result<(), StoreError> {
        if self.lock.generation() != self.state.read().generation {
            self.refresh()?;
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
