//! Erasure and retention: deciding what to remove from the files' current contents, with the
//! directory lock held exclusively, and rewriting the files that held it atomically.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

use serde::Deserialize;
use tracecraft_core::fs::{self, io_err};
use tracecraft_core::{StoreError, Uuid};

use crate::JsonlStore;
use crate::index::{Entry, FileIdent, out_of_step};
use crate::writer::Writer;

/// The id of a line, read without building the run.
#[derive(Deserialize)]
struct IdOnly {
    id: Uuid,
}

impl JsonlStore {
    /// Erases the traces `select` picks and returns how many: with the writer slot and the
    /// directory lock held exclusively, catches up with the files as other processes left
    /// them, picks from that index, rewrites (or deletes) every file holding a line of a
    /// picked trace, and only then drops them from the index. The count is what the files no
    /// longer hold.
    pub(crate) fn erase(&self, select: impl Fn(&Uuid, &Entry) -> bool) -> Result<u64, StoreError> {
        let mut slot = self.writer.lock();
        let _lock = self.lock.exclusive()?;
        self.catch_up(&mut slot)?;
        let result = self.erase_locked(&select, &mut slot);
        if !matches!(result, Ok(0)) {
            self.changed();
        }
        if result.is_err() {
            // Some files may be rewritten and others not: start again from the files.
            *slot = None;
            self.state.write().stale = true;
        }
        result
    }

    fn erase_locked(
        &self,
        select: &impl Fn(&Uuid, &Entry) -> bool,
        slot: &mut Option<Writer>,
    ) -> Result<u64, StoreError> {
        let mut drops: HashMap<u32, HashMap<u64, Uuid>> = HashMap::new();
        let ids: Vec<Uuid> = {
            let state = self.state.read();
            let ids: Vec<Uuid> = state
                .index
                .iter()
                .filter(|(id, e)| select(id, e))
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                for loc in &state.index[id].locs {
                    drops.entry(loc.file).or_default().insert(loc.offset, *id);
                }
            }
            ids
        };
        if slot.as_ref().is_some_and(|w| drops.contains_key(&w.file)) {
            self.rotate(slot)?;
        }
        let mut files: Vec<_> = drops.into_iter().collect();
        files.sort_by_key(|(f, _)| *f);
        for (file, lines) in files {
            self.rewrite_file(file, &lines)?;
        }
        let mut state = self.state.write();
        for id in &ids {
            state.remove(*id);
        }
        Ok(ids.len() as u64)
    }

    /// Rewrites a file without the lines at the offsets of `drop` (temporary file, fsync,
    /// rename), or deletes it when nothing else is left; then remaps the index. Each dropped
    /// line is checked to be of the trace the index says: a mismatch is an error and leaves
    /// the file as it was.
    pub(crate) fn rewrite_file(
        &self,
        file: u32,
        drop: &HashMap<u64, Uuid>,
    ) -> Result<(), StoreError> {
        let (path, reader, lines) = {
            let state = self.state.read();
            let Some(Some(f)) = state.files.get(file as usize) else {
                return Ok(());
            };
            (f.path.clone(), f.reader.clone(), f.lines)
        };
        if drop.len() as u64 >= lines {
            // Every line goes: check them as a rewrite would, then remove the file.
            self.rewrite_lines(&path, &reader, drop, &mut std::io::sink())?;
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            fs::sync_dir(&self.config.dir)?;
            self.state.write().files[file as usize] = None;
            return Ok(());
        }
        let mut kept = Kept::default();
        fs::replace_atomically(&path, |w| {
            kept = self.rewrite_lines(&path, &reader, drop, w)?;
            Ok(())
        })?;
        let reader = File::open(&path).map_err(|e| io_err(&path, e))?;
        let ident = FileIdent::of(&reader.metadata().map_err(|e| io_err(&path, e))?);
        let mut state = self.state.write();
        for entry in state.index.values_mut() {
            for loc in entry.locs.iter_mut().filter(|l| l.file == file) {
                if let Some(&(off, line)) = kept.remap.get(&loc.offset) {
                    loc.offset = off;
                    loc.line = line;
                }
            }
        }
        if let Some(Some(f)) = state.files.get_mut(file as usize) {
            f.reader = Arc::new(reader);
            f.ident = ident;
            f.len = kept.len;
            f.lines = kept.lines;
            f.sealed = true;
        }
        Ok(())
    }

    /// Copies the lines of `reader` to `w` except those at the offsets of `drop`, each
    /// checked to hold the trace `drop` names.
    fn rewrite_lines(
        &self,
        path: &std::path::Path,
        reader: &File,
        drop: &HashMap<u64, Uuid>,
        w: &mut impl Write,
    ) -> Result<Kept, StoreError> {
        let mut kept = Kept::default();
        let src = reader.try_clone().map_err(|e| io_err(path, e))?;
        let mut rd = BufReader::with_capacity(1 << 20, src);
        std::io::Seek::seek(&mut rd, std::io::SeekFrom::Start(0)).map_err(|e| io_err(path, e))?;
        let mut buf = Vec::new();
        let mut offset = 0u64;
        let mut dropped = 0usize;
        loop {
            buf.clear();
            let n = rd
                .read_until(b'\n', &mut buf)
                .map_err(|e| io_err(path, e))?;
            if n == 0 {
                break;
            }
            let lead = (buf.len() - buf.trim_ascii_start().len()) as u64;
            let start = offset + lead;
            offset += n as u64;
            let text = buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            if let Some(id) = drop.get(&start) {
                match serde_json::from_slice::<IdOnly>(text) {
                    Ok(line) if line.id == *id => {
                        dropped += 1;
                        continue;
                    }
                    _ => return Err(out_of_step()),
                }
            }
            kept.lines += 1;
            kept.remap.insert(start, (kept.len, kept.lines));
            w.write_all(text)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| io_err(path, e))?;
            kept.len += text.len() as u64 + 1;
        }
        if dropped != drop.len() {
            return Err(out_of_step());
        }
        Ok(kept)
    }
}

/// What a rewrite kept: the new offset and line of each kept line by its old offset, and the
/// new file's length and line count.
#[derive(Debug, Default)]
struct Kept {
    remap: HashMap<u64, (u64, u64)>,
    len: u64,
    lines: u64,
}
