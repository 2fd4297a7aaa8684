//! [`JsonlConfig`]: the store's settings, serde-loadable (`[storage.jsonl]` in the facade's
//! configuration file), and the [`Fsync`] policy.

use std::path::PathBuf;

use crate::PermissionPolicy;
use serde::{Deserialize, Serialize};

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
    /// Never (the OS decides); [`TraceStore::flush`](tracecraft_core::TraceStore::flush) still syncs.
    Never,
}

/// Settings of a [`JsonlStore`](crate::JsonlStore); serde loads it from the `[storage.jsonl]`
/// table of the configuration file (unknown keys are refused, missing ones take the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct JsonlConfig {
    /// The directory of JSONL files (created 0700 if missing, when
    /// [`create`](Self::create) is true).
    pub dir: PathBuf,
    /// Create the directory when it does not exist (default `true`). Commands that only
    /// read or erase set it to `false`, so that a typo in a path is an error
    /// ([`StoreError::NotFound`](tracecraft_core::StoreError::NotFound)) instead of a new, empty store.
    pub create: bool,
    /// `fsync` policy (default [`Fsync::Batch`]).
    pub fsync: Fsync,
    /// Start a new file when the current one reaches this size (default 64 MiB). Erasure
    /// rewrites whole files, so smaller files make it cheaper.
    pub rotate_bytes: Option<u64>,
    /// One file per UTC day, `traces-YYYY-MM-DD.jsonl` (default true).
    pub rotate_daily: bool,
    /// Keep runs this many days: older runs are purged on open and by
    /// [`JsonlStore::apply_retention`](crate::JsonlStore::apply_retention). `None` keeps everything (the default).
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
    pub(crate) fn threads(&self) -> usize {
        match self.encode_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the facade embeds it: a `[storage.jsonl]` table, every key optional, none unknown.
    #[derive(Debug, Deserialize)]
    struct Storage {
        jsonl: JsonlConfig,
    }
    #[derive(Debug, Deserialize)]
    struct File {
        storage: Storage,
    }

    #[test]
    fn loads_from_a_storage_jsonl_table_with_defaults_and_refuses_unknown_keys() {
        // The README's table.
        let file: File = toml::from_str(
            r#"
            [storage.jsonl]
            dir = "/var/traces"
            fsync = "never"
            rotate_bytes = 1048576
            rotate_daily = false
            retention_days = 30
            permissions = "tighten"
            "#,
        )
        .unwrap();
        let want = JsonlConfig::new("/var/traces")
            .fsync(Fsync::Never)
            .rotate_bytes(Some(1 << 20))
            .rotate_daily(false)
            .retention_days(Some(30))
            .permissions(PermissionPolicy::Tighten);
        assert_eq!(file.storage.jsonl, want);
        let empty: File = toml::from_str("[storage.jsonl]\n").unwrap();
        assert_eq!(empty.storage.jsonl, JsonlConfig::default());
        for bad in ["fsink = \"never\"", "fsync = \"sometimes\""] {
            let text = format!("[storage.jsonl]\n{bad}\n");
            assert!(toml::from_str::<File>(&text).is_err(), "{bad} accepted");
        }
        // And back: what serializes loads again.
        let text = toml::to_string(&want).unwrap();
        assert_eq!(toml::from_str::<JsonlConfig>(&text).unwrap(), want);
    }
}
