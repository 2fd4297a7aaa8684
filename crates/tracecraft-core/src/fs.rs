//! Private files and directories: created mode 0600 / 0700 whatever the process umask, and
//! existing ones checked per a [`PermissionPolicy`]: reported (the default), refused, or
//! tightened only when the user asked for it. TraceCraft never changes the mode of a file or
//! directory it did not create unless told to (DESIGN invariant 12).
//!
//! Used by the stores (and the OTLP spool) so that DESIGN invariant 7 holds in one place.
//! Every function reports failures as [`StoreError`] naming the path, never file contents.
//!
//! On non-unix platforms the permission parts are documented no-ops: files and directories
//! are created with the platform defaults and checks always pass.
//!
//! ```
//! use tracecraft_core::fs::{self, PermissionPolicy};
//! let dir = std::env::temp_dir().join(format!("tc-fs-doc-{}", std::process::id()));
//! fs::create_private_dir(&dir)?;
//! let file = fs::open_private_append(&dir.join("a.jsonl"))?;
//! drop(file);
//! assert_eq!(fs::check_private(&dir.join("a.jsonl"), PermissionPolicy::Error)?, None);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), tracecraft_core::StoreError>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// The mode of files TraceCraft creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of directories TraceCraft creates.
pub const DIR_MODE: u32 = 0o700;

/// What to do with an existing file or directory whose permissions are looser than
/// TraceCraft's (0600 files, 0700 directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PermissionPolicy {
    /// Leave the mode as it is and report it (the caller logs a warning once per open). The
    /// default: a file or directory TraceCraft did not create is not TraceCraft's to change.
    #[default]
    Warn,
    /// Refuse with [`StoreError::Permissions`].
    Error,
    /// Change the mode to 0600 / 0700 (the caller logs that it did). Only when the user asks
    /// for it (`permissions = "tighten"`).
    Tighten,
}

/// What [`check_private`] found about an existing file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Looser {
    /// Its mode was looser and was left as it is ([`PermissionPolicy::Warn`]).
    Kept {
        /// The mode found.
        mode: u32,
    },
    /// Its mode was looser and was tightened ([`PermissionPolicy::Tighten`]).
    Tightened {
        /// The mode found.
        mode: u32,
    },
}

/// Logs what [`check_private`] found, naming the path and the mode (never contents): one
/// warning per call, so callers call it once per open.
pub fn warn_looser(path: &Path, found: Option<Looser>) {
    match found {
        Some(Looser::Kept { mode }) => tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "permissions are looser than TraceCraft's 0600 files / 0700 directories; left unchanged (set storage.permissions = \"tighten\" to change them, or \"error\" to refuse)"
        ),
        Some(Looser::Tightened { mode }) => tracing::warn!(
            path = %path.display(),
            old_mode = format!("{mode:o}"),
            "tightened permissions"
        ),
        None => {}
    }
}

/// Maps an I/O error to [`StoreError::Io`] naming `path`.
pub fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and any missing parents with mode 0700 (the umask cannot loosen or tighten
/// it: the mode is set explicitly afterwards). An existing directory is left as it is; check
/// it with [`check_private`].
///
/// # Errors
/// [`StoreError::Io`] naming the directory.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    // Create parents one by one so that each directory we create gets 0700.
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(DIR_MODE);
        }
        match builder.create(p) {
            Ok(()) => set_mode(p, DIR_MODE)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(io_err(p, e)),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(path, e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), StoreError> {
    Ok(())
}

/// Opens `path` with `opts`, creating it mode 0600 if missing. The mode of a file it creates
/// is set explicitly (whatever the umask); an existing file's mode is not changed (see
/// [`check_private`]).
///
/// # Errors
/// [`StoreError::Io`] naming the file.
pub fn open_private(path: &Path, opts: &mut OpenOptions) -> Result<File, StoreError> {
    let existed = path.exists();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE);
    }
    let file = opts.open(path).map_err(|e| io_err(path, e))?;
    if !existed {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| io_err(path, e))?;
        }
    }
    Ok(file)
}

/// Opens (creating 0600 if missing) `path` for appending.
///
/// # Errors
/// [`StoreError::Io`] naming the file.
pub fn open_private_append(path: &Path) -> Result<File, StoreError> {
    open_private(path, OpenOptions::new().create(true).append(true))
}

/// Creates (or truncates) `path` mode 0600 for writing.
///
/// # Errors
/// [`StoreError::Io`] naming the file.
pub fn create_private_file(path: &Path) -> Result<File, StoreError> {
    open_private(
        path,
        OpenOptions::new().create(true).write(true).truncate(true),
    )
}

/// Checks that `path` (a file or directory) is no looser than 0600 / 0700.
///
/// Returns `Ok(None)` when it is fine (or does not exist), `Ok(Some(Looser::Kept))` under
/// [`PermissionPolicy::Warn`], `Ok(Some(Looser::Tightened))` when it was tightened under
/// [`PermissionPolicy::Tighten`] (pass either to [`warn_looser`]), and
/// [`StoreError::Permissions`] under [`PermissionPolicy::Error`].
///
/// # Errors
/// [`StoreError::Permissions`], or [`StoreError::Io`] when the mode could not be read or set.
pub fn check_private(path: &Path, policy: PermissionPolicy) -> Result<Option<Looser>, StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, e)),
        };
        let expected = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & !expected == 0 {
            return Ok(None);
        }
        match policy {
            PermissionPolicy::Warn => Ok(Some(Looser::Kept { mode })),
            PermissionPolicy::Tighten => {
                set_mode(path, mode & expected)?;
                Ok(Some(Looser::Tightened { mode }))
            }
            PermissionPolicy::Error => Err(StoreError::Permissions {
                path: path.to_path_buf(),
                mode,
                expected,
            }),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, policy);
        Ok(None)
    }
}

/// Atomically replaces `path`: `write` fills a 0600 temporary file in the same directory,
/// which is flushed, `fsync`ed and renamed over `path`; the directory is then `fsync`ed.
/// On failure the temporary file is removed and `path` is untouched.
///
/// # Errors
/// [`StoreError::Io`] naming the file, or the error `write` returned.
pub fn replace_atomically(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<File>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "tracecraft".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = create_private_file(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 16, file);
        write(&mut w)?;
        w.flush().map_err(|e| io_err(&tmp, e))?;
        let file = w.into_inner().map_err(|e| io_err(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `fsync`s a directory so that renames and creations in it are durable (no-op off unix).
///
/// # Errors
/// [`StoreError::Io`] naming the directory.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tc-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn creates_private_dirs_and_files() {
        let root = scratch("create");
        let dir = root.join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("x");
        drop(open_private_append(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
        replace_atomically(&f, |w| w.write_all(b"hi").map_err(|e| io_err(&f, e))).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"hi");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn loose_modes_are_reported_refused_or_tightened_on_request() {
        let root = scratch("check");
        create_private_dir(&root).unwrap();
        let f = root.join("x");
        std::fs::write(&f, b"").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            check_private(&f, PermissionPolicy::default()).unwrap(),
            Some(Looser::Kept { mode: 0o644 })
        );
        assert_eq!(mode(&f), 0o644, "the default never changes a mode");
        assert!(matches!(
            check_private(&f, PermissionPolicy::Error),
            Err(StoreError::Permissions { mode: 0o644, .. })
        ));
        assert_eq!(
            check_private(&f, PermissionPolicy::Tighten).unwrap(),
            Some(Looser::Tightened { mode: 0o644 })
        );
        assert_eq!(mode(&f), 0o600);
        assert_eq!(check_private(&f, PermissionPolicy::Warn).unwrap(), None);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            check_private(&root, PermissionPolicy::Tighten).unwrap(),
            Some(Looser::Tightened { mode: 0o755 })
        );
        assert_eq!(mode(&root), 0o700);
        assert_eq!(
            check_private(&root.join("missing"), PermissionPolicy::Error).unwrap(),
            None
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// Runs the file-creating checks in a child process whose umask is 000 (which would make
/// files 0666 and directories 0777 if the modes were left to the umask).
#[cfg(all(test, unix))]
mod umask_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ENV: &str = "TRACECRAFT_FS_UMASK_CHILD";

    #[test]
    fn modes_hold_under_umask_000() {
        if let Some(dir) = std::env::var_os(ENV) {
            let dir = PathBuf::from(dir).join("nested/dir");
            create_private_dir(&dir).unwrap();
            drop(open_private_append(&dir.join("f")).unwrap());
            return;
        }
        let root = std::env::temp_dir().join(format!("tc-fs-umask-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(exe)
            .args([
                "--exact",
                "fs::umask_tests::modes_hold_under_umask_000",
                "--quiet",
            ])
            .env(ENV, &root)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("nested/dir")), 0o700);
        assert_eq!(mode(&root.join("nested/dir/f")), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
