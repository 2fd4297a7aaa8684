//! The advisory lock that every TraceCraft process on one store directory shares (see
//! `docs/adr/0008-jsonl-across-processes.md`).
//!
//! One lock file, `.tracecraft.lock` (0600), in the store directory, locked with std's
//! `File::lock` / `File::lock_shared` (`flock(2)` on Linux, `LockFileEx` on Windows): appends,
//! rotation, erasure and retention hold it exclusively; loading files (open, catching up with
//! other processes) holds it shared, so that no reader sees a line being written. The lock is
//! per open file description: threads of one store are kept apart by the store's own mutex
//! (the writer slot), which every holder of this lock holds first.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use tracecraft_core::StoreError;
use tracecraft_core::fs::{self, io_err};

/// The lock file's name in the store directory (a dot file: never loaded as JSONL).
pub(crate) const LOCK_FILE: &str = ".tracecraft.lock";

/// The store directory's lock file, opened once per store.
#[derive(Debug)]
pub(crate) struct DirLock {
    /// `None` when the directory is read-only for us and has no lock file: no process can
    /// write there, so there is nothing to exclude.
    file: Option<File>,
    path: PathBuf,
}

/// Held lock; unlocks when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub(crate) struct LockGuard<'a>(Option<&'a File>);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            // Closing the file would unlock too; an unlock error leaves nothing to do.
            let _ = f.unlock();
        }
    }
}

impl DirLock {
    /// Opens (creating 0600 when missing) the lock file of `dir`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the lock file exists but cannot be opened, or cannot be created
    /// in a directory we may write to.
    pub(crate) fn open(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let created = fs::open_private(
            &path,
            OpenOptions::new().create(true).read(true).write(true),
        );
        let file = match created {
            Ok(f) => Some(f),
            Err(StoreError::Io { source, .. })
                if matches!(
                    source.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                // A directory we may only read: lock an existing lock file read-only (flock
                // needs no write access), else there is no writer to exclude.
                match File::open(&path) {
                    Ok(f) => Some(f),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        tracing::debug!(path = %path.display(), "read-only store without a lock file: reading unlocked");
                        None
                    }
                    Err(e) => return Err(io_err(&path, e)),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(DirLock { file, path })
    }

    /// Waits for the lock, exclusively (no other holder, shared or not).
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the lock file.
    pub(crate) fn exclusive(&self) -> Result<LockGuard<'_>, StoreError> {
        match &self.file {
            Some(f) => {
                f.lock().map_err(|e| io_err(&self.path, e))?;
                Ok(LockGuard(Some(f)))
            }
            None => Ok(LockGuard(None)),
        }
    }

    /// Waits for the lock, shared with other readers.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the lock file.
    pub(crate) fn shared(&self) -> Result<LockGuard<'_>, StoreError> {
        match &self.file {
            Some(f) => {
                f.lock_shared().map_err(|e| io_err(&self.path, e))?;
                Ok(LockGuard(Some(f)))
            }
            None => Ok(LockGuard(None)),
        }
    }

    /// The store's generation: a counter in the lock file that every change (append batch,
    /// erasure, purge) increments before it releases the exclusive lock. A reader whose index
    /// was built at another generation catches up first, so it sees every change completed
    /// before it began. 0 when unreadable (then the checks of each line read still hold).
    pub(crate) fn generation(&self) -> u64 {
        let Some(f) = &self.file else { return 0 };
        let mut b = [0u8; 8];
        match read_at(f, &mut b) {
            Ok(8) => u64::from_le_bytes(b),
            _ => 0,
        }
    }

    /// Increments the generation; called with the lock held exclusively, after a change.
    /// Returns the new generation.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the lock file.
    pub(crate) fn bump(&self) -> Result<u64, StoreError> {
        let Some(f) = &self.file else { return Ok(0) };
        let next = self.generation().wrapping_add(1);
        write_at(f, &next.to_le_bytes()).map_err(|e| io_err(&self.path, e))?;
        Ok(next)
    }

    /// Whether a lock file is in use (false in a read-only directory without one).
    pub(crate) fn is_real(&self) -> bool {
        self.file.is_some()
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, 0)
}

#[cfg(unix)]
fn write_at(f: &File, buf: &[u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, 0)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, 0)
}

#[cfg(windows)]
fn write_at(f: &File, buf: &[u8]) -> std::io::Result<()> {
    std::os::windows::fs::FileExt::seek_write(f, buf, 0).map(drop)
}

#[cfg(not(any(unix, windows)))]
fn read_at(_: &File, _: &mut [u8]) -> std::io::Result<usize> {
    Ok(0)
}

#[cfg(not(any(unix, windows)))]
fn write_at(_: &File, _: &[u8]) -> std::io::Result<()> {
    Ok(())
}
