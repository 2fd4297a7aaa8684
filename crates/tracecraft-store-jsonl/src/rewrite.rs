//! Erasure and retention: removing traces from the index and rewriting the files that held
//! them atomically.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

use tracecraft_core::fs::{self, io_err};
use tracecraft_core::{StoreError, Uuid};

use crate::JsonlStore;
use crate::index::Entry;

impl JsonlStore {
    /// Removes traces from the index and rewrites (or deletes) the files that held them.
    pub(crate) fn erase(&self, select: impl Fn(&Uuid, &Entry) -> bool) -> Result<u64, StoreError> {
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
    pub(crate) fn rewrite_file(&self, file: u32, offsets: &HashSet<u64>) -> Result<(), StoreError> {
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
