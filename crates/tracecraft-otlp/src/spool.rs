//! The durable spool: OTLP requests that could not be delivered, kept on disk until a
//! collector takes them.
//!
//! **Guarantees.** A batch counts as spooled only once its file is written, `fsync`ed and
//! renamed into place (and the directory `fsync`ed): a crash (even `kill -9`) leaves either
//! the whole file or none. Files are 0600 in a 0700 directory. The directory holds at most
//! [`SpoolConfig::max_bytes`]: older files are evicted first, and every evicted batch is
//! counted and logged. Files are re-sent oldest first with the same span ids (the encoded
//! request is stored as it was), so delivery is at-least-once and a collector that
//! deduplicates by span id sees each span once. Several processes may share one directory:
//! a file is sent or evicted only under an exclusive lock on it (`flock`, through the
//! standard library's `File::try_lock`), so no two processes send it at once. A file that
//! cannot be decoded is renamed `*.corrupt`, skipped with a warning naming it, and counted.
//!
//! File format: one MessagePack (rmp-serde) record `{ version, spans, request }` where
//! `request` is the protobuf-encoded `ExportTraceServiceRequest`. Names sort by age:
//! `<unix nanos>-<pid>-<sequence>-<spans>.tcspool`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tracecraft_core::StoreError;
use tracecraft_core::fs::{create_private_dir, io_err, replace_atomically};

/// The spool file extension.
pub const EXTENSION: &str = "tcspool";
/// The extension a corrupt spool file is renamed to.
pub const CORRUPT_EXTENSION: &str = "corrupt";
/// The default largest spool: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The default interval between re-send attempts while the collector is down.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(5);
/// The record format version written.
const VERSION: u32 = 1;
/// Temporary files (of a crashed writer) older than this are removed when a spool opens.
const STALE_TMP: Duration = Duration::from_secs(600);

/// Spool settings. Serde-loadable (`dir` required; `max_bytes`, `resend_interval_ms`
/// optional); build one in code with [`SpoolConfig::builder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SpoolConfig {
    /// The spool directory (created 0700 when the exporter is built).
    pub dir: PathBuf,
    /// The most bytes the spool holds (default 256 MiB); older files are evicted beyond it.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Milliseconds between re-send attempts while the collector is down (default 5,000); a
    /// success of a new batch wakes the re-sender at once.
    #[serde(default = "default_resend_ms")]
    pub resend_interval_ms: u64,
    /// Whether a background thread re-sends the spool (default true). Without it, only
    /// [`OtlpExporter::flush_spool`](crate::OtlpExporter::flush_spool) does (what
    /// `tracecraft spool flush` uses).
    #[serde(default = "default_true")]
    pub background: bool,
}

fn default_true() -> bool {
    true
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
fn default_resend_ms() -> u64 {
    DEFAULT_RESEND_INTERVAL.as_millis() as u64
}

impl SpoolConfig {
    /// A builder for a spool in `dir`, with the defaults.
    pub fn builder(dir: impl Into<PathBuf>) -> SpoolConfigBuilder {
        SpoolConfigBuilder {
            config: SpoolConfig {
                dir: dir.into(),
                max_bytes: DEFAULT_MAX_BYTES,
                resend_interval_ms: default_resend_ms(),
                background: true,
            },
        }
    }

    /// The interval between re-send attempts.
    #[must_use]
    pub fn resend_interval(&self) -> Duration {
        Duration::from_millis(self.resend_interval_ms.max(1))
    }
}

/// Builds a [`SpoolConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SpoolConfigBuilder {
    config: SpoolConfig,
}

impl SpoolConfigBuilder {
    /// See [`SpoolConfig::max_bytes`].
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.config.max_bytes = bytes;
        self
    }
    /// See [`SpoolConfig::resend_interval_ms`].
    pub fn resend_interval(mut self, interval: Duration) -> Self {
        self.config.resend_interval_ms = interval.as_millis().min(u128::from(u64::MAX)) as u64;
        self
    }
    /// See [`SpoolConfig::background`].
    pub fn background(mut self, background: bool) -> Self {
        self.config.background = background;
        self
    }
    /// The settings.
    #[must_use]
    pub fn build(self) -> SpoolConfig {
        self.config
    }
}

/// What the spool holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SpoolStatus {
    /// Spooled requests.
    pub batches: u64,
    /// Spans in them.
    pub spans: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Files set aside as corrupt.
    pub corrupt_files: u64,
    /// When the oldest request was spooled.
    pub oldest: Option<SystemTime>,
}

/// Counters of a spool in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SpoolStats {
    /// Requests written to the spool.
    pub spooled_batches: u64,
    /// Spans in them.
    pub spooled_spans: u64,
    /// Spooled requests a collector accepted.
    pub resent_batches: u64,
    /// Spans in them.
    pub resent_spans: u64,
    /// Spooled requests evicted to stay under the byte bound.
    pub evicted_batches: u64,
    /// Spans in them.
    pub evicted_spans: u64,
    /// Spooled requests the collector rejected for their content (dropped, not retried).
    pub rejected_batches: u64,
    /// Files that could not be decoded (renamed `*.corrupt`).
    pub corrupt_files: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SpoolCounters {
    spooled_batches: AtomicU64,
    spooled_spans: AtomicU64,
    pub(crate) resent_batches: AtomicU64,
    pub(crate) resent_spans: AtomicU64,
    evicted_batches: AtomicU64,
    evicted_spans: AtomicU64,
    pub(crate) rejected_batches: AtomicU64,
    corrupt_files: AtomicU64,
}

impl SpoolCounters {
    pub(crate) fn get(&self) -> SpoolStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SpoolStats {
            spooled_batches: l(&self.spooled_batches),
            spooled_spans: l(&self.spooled_spans),
            resent_batches: l(&self.resent_batches),
            resent_spans: l(&self.resent_spans),
            evicted_batches: l(&self.evicted_batches),
            evicted_spans: l(&self.evicted_spans),
            rejected_batches: l(&self.rejected_batches),
            corrupt_files: l(&self.corrupt_files),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    spans: u64,
    request: RawBytes,
}

/// A [`Record`] to write, borrowing its request.
#[derive(Serialize)]
struct RecordRef<'a> {
    version: u32,
    spans: u64,
    request: BytesRef<'a>,
}

/// Borrowed bytes serialized as one MessagePack `bin`.
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Counts the bytes written to it.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes serialized as one MessagePack `bin` (a `Vec<u8>` would be an array of integers).
struct RawBytes(Vec<u8>);

impl Serialize for RawBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawBytes, E> {
                Ok(RawBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RawBytes, E> {
                Ok(RawBytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// One spooled request on disk (not read yet).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) spans: u64,
    nanos: u128,
}

/// A spooled request, locked by this process until it is removed or dropped.
pub(crate) struct Claimed {
    file: File,
    pub(crate) path: PathBuf,
    pub(crate) spans: u64,
    pub(crate) request: Vec<u8>,
}

impl Claimed {
    /// Deletes the file (the collector took it, or rejected its content).
    pub(crate) fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path.display(), "cannot remove a re-sent spool file: {e}");
        }
        drop(self.file);
    }
}

/// A spool directory. Cheap to share (`&self` everywhere); safe with other processes on the
/// same directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    sequence: AtomicU64,
    pub(crate) counters: SpoolCounters,
}

fn parse_name(name: &str) -> Option<(u128, u64)> {
    let stem = name.strip_suffix(&format!(".{EXTENSION}"))?;
    let mut parts = stem.split('-');
    let nanos = parts.next()?.parse().ok()?;
    let _pid = parts.next()?;
    let _seq = parts.next()?;
    let spans = parts.next()?.strip_suffix('s')?.parse().ok()?;
    Some((nanos, spans))
}

impl Spool {
    /// Opens (creating, 0700) the spool directory; removes temporary files that a crashed
    /// writer left behind long ago.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the directory.
    pub fn open(config: &SpoolConfig) -> Result<Spool, StoreError> {
        create_private_dir(&config.dir)?;
        let spool = Spool {
            dir: config.dir.clone(),
            max_bytes: config.max_bytes,
            sequence: AtomicU64::new(0),
            counters: SpoolCounters::default(),
        };
        spool.remove_stale_tmp();
        Ok(spool)
    }

    /// Opens an existing spool directory without creating anything (for commands that only
    /// read or erase: `tracecraft spool status|drop`); `None` when it does not exist.
    ///
    /// # Errors
    /// [`StoreError::Io`] when it exists but cannot be read.
    pub fn open_existing(dir: &Path) -> Result<Option<Spool>, StoreError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(Some(Spool {
                dir: dir.to_owned(),
                max_bytes: u64::MAX,
                sequence: AtomicU64::new(0),
                counters: SpoolCounters::default(),
            })),
            Ok(_) => Err(io_err(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(dir, e)),
        }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters of this process's use of the spool.
    #[must_use]
    pub fn stats(&self) -> SpoolStats {
        self.counters.get()
    }

    fn remove_stale_tmp(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in read.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TMP);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// The spooled requests, oldest first.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let read = std::fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        for e in read.flatten() {
            let name = e.file_name();
            let Some((nanos, spans)) = parse_name(&name.to_string_lossy()) else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            out.push(Entry {
                path: e.path(),
                bytes: meta.len(),
                spans,
                nanos,
            });
        }
        out.sort_by(|a, b| a.nanos.cmp(&b.nanos).then_with(|| a.path.cmp(&b.path)));
        Ok(out)
    }

    /// What the spool holds.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be read.
    pub fn status(&self) -> Result<SpoolStatus, StoreError> {
        let entries = self.entries()?;
        let corrupt_files = std::fs::read_dir(&self.dir)
            .map_err(|e| io_err(&self.dir, e))?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == CORRUPT_EXTENSION))
            .count() as u64;
        Ok(SpoolStatus {
            batches: entries.len() as u64,
            spans: entries.iter().map(|e| e.spans).sum(),
            bytes: entries.iter().map(|e| e.bytes).sum(),
            corrupt_files,
            oldest: entries.first().map(|e| {
                SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(u64::try_from(e.nanos).unwrap_or(u64::MAX))
            }),
        })
    }

    /// Deletes every spooled request that no process is sending now, and every corrupt file;
    /// returns what was deleted.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be read.
    pub fn drop_all(&self) -> Result<SpoolStatus, StoreError> {
        let mut dropped = SpoolStatus::default();
        for entry in self.entries()? {
            if let Some(claimed) = self.lock_entry(&entry) {
                dropped.batches += 1;
                dropped.spans += entry.spans;
                dropped.bytes += entry.bytes;
                claimed.remove();
            }
        }
        for e in std::fs::read_dir(&self.dir)
            .map_err(|e| io_err(&self.dir, e))?
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == CORRUPT_EXTENSION)
                && std::fs::remove_file(e.path()).is_ok()
            {
                dropped.corrupt_files += 1;
            }
        }
        Ok(dropped)
    }

    /// Encodes `request` and writes it durably (what the exporter does with a request that
    /// failed; also for a gateway that spools what it could not forward).
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the file when it cannot be written.
    pub fn write_request(
        &self,
        request: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    ) -> Result<(), StoreError> {
        use prost::Message;
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        self.write(&request.encode_to_vec(), spans)
    }

    /// Writes a request of the direct encoder durably (what the exporter does with a request
    /// that failed).
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the file when it cannot be written.
    pub fn write_encoded(
        &self,
        request: &crate::mapping::EncodedRequest,
    ) -> Result<(), StoreError> {
        self.write(request.body(), request.spans())
    }

    /// Writes one encoded request durably, evicting the oldest files first if the bound
    /// requires it. A request larger than the whole bound is not written: it counts as
    /// evicted.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the file when it cannot be written.
    pub(crate) fn write(&self, request: &[u8], spans: u64) -> Result<(), StoreError> {
        let record = RecordRef {
            version: VERSION,
            spans,
            request: BytesRef(request),
        };
        // The record is streamed to the file (the request is not copied); its size first.
        let invalid = |e: rmp_serde::encode::Error| StoreError::Invalid {
            what: "spool record",
            message: e.to_string(),
        };
        let mut counter = Counter(0);
        rmp_serde::encode::write_named(&mut counter, &record).map_err(invalid)?;
        let size = counter.0;
        if size > self.max_bytes {
            self.count_evicted(1, spans);
            tracing::warn!(
                spans,
                bytes = size,
                max_bytes = self.max_bytes,
                "OTLP spool: a request larger than the whole spool was dropped"
            );
            return Ok(());
        }
        self.evict_for(size)?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{nanos:020}-{}-{seq:06}-{spans}s.{EXTENSION}",
            std::process::id()
        );
        let path = self.dir.join(name);
        replace_atomically(&path, |w| {
            rmp_serde::encode::write_named(w, &record)
                .map_err(|e| io_err(&path, std::io::Error::other(e.to_string())))
        })?;
        self.counters
            .spooled_batches
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .spooled_spans
            .fetch_add(spans, Ordering::Relaxed);
        Ok(())
    }

    fn count_evicted(&self, batches: u64, spans: u64) {
        self.counters
            .evicted_batches
            .fetch_add(batches, Ordering::Relaxed);
        self.counters
            .evicted_spans
            .fetch_add(spans, Ordering::Relaxed);
    }

    /// Evicts the oldest files (that no process is sending) until `incoming` more bytes fit.
    fn evict_for(&self, incoming: u64) -> Result<(), StoreError> {
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let (mut batches, mut spans) = (0u64, 0u64);
        for entry in &entries {
            if total + incoming <= self.max_bytes {
                break;
            }
            if let Some(claimed) = self.lock_entry(entry) {
                claimed.remove();
                total = total.saturating_sub(entry.bytes);
                batches += 1;
                spans += entry.spans;
            }
        }
        if batches > 0 {
            self.count_evicted(batches, spans);
            tracing::warn!(
                batches,
                spans,
                max_bytes = self.max_bytes,
                "OTLP spool full: evicted the oldest spooled requests"
            );
        }
        Ok(())
    }

    /// Locks `entry` exclusively without reading it; `None` when another process holds it or
    /// it is gone.
    fn lock_entry(&self, entry: &Entry) -> Option<Claimed> {
        let file = File::open(&entry.path).ok()?;
        file.try_lock().ok()?;
        // Sent and removed by another process between our listing and our lock.
        if !entry.path.exists() {
            return None;
        }
        Some(Claimed {
            file,
            path: entry.path.clone(),
            spans: entry.spans,
            request: Vec::new(),
        })
    }

    /// Locks and reads `entry`. `None` when another process holds it, it is gone, or it is
    /// corrupt (then it is renamed `*.corrupt`, counted, and a warning names it).
    pub(crate) fn claim(&self, entry: &Entry) -> Option<Claimed> {
        let mut claimed = self.lock_entry(entry)?;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.bytes).unwrap_or(0));
        let decoded = claimed
            .file
            .read_to_end(&mut bytes)
            .ok()
            .and_then(|_| rmp_serde::from_slice::<Record>(&bytes).ok())
            .filter(|r| r.version == VERSION);
        match decoded {
            Some(record) => {
                claimed.spans = record.spans;
                claimed.request = record.request.0;
                Some(claimed)
            }
            None => {
                let aside = entry.path.with_extension(CORRUPT_EXTENSION);
                let _ = std::fs::rename(&entry.path, &aside);
                self.counters.corrupt_files.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    file = %entry.path.display(),
                    "OTLP spool: skipped a corrupt spool file (renamed to .{CORRUPT_EXTENSION})"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_sort_by_age() {
        assert_eq!(
            parse_name("00000000000000000012-77-000003-42s.tcspool"),
            Some((12, 42))
        );
        assert_eq!(parse_name("x.tcspool"), None);
        assert_eq!(parse_name(".00-1-2-3s.tcspool.1.tmp"), None);
    }

    #[test]
    fn write_claim_remove_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig::builder(dir.path().join("spool"))
            .max_bytes(300)
            .build();
        let spool = Spool::open(&config).unwrap();
        spool.write(&[1; 100], 3).unwrap();
        spool.write(&[2; 100], 4).unwrap();
        // The third does not fit beside both: the oldest goes.
        spool.write(&[3; 100], 5).unwrap();
        let s = spool.stats();
        assert_eq!(
            (s.spooled_batches, s.evicted_batches, s.evicted_spans),
            (3, 1, 3)
        );
        let entries = spool.entries().unwrap();
        assert_eq!(entries.len(), 2);
        let c = spool.claim(&entries[0]).unwrap();
        assert_eq!((c.spans, c.request[0]), (4, 2));
        // Locked: nobody else can claim it meanwhile.
        assert!(spool.claim(&entries[0]).is_none());
        c.remove();
        assert_eq!(spool.status().unwrap().batches, 1);
        // Larger than the whole bound: counted, not written.
        spool.write(&[0; 400], 9).unwrap();
        assert_eq!(spool.stats().evicted_spans, 12);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&config.dir), 0o700);
            assert_eq!(mode(&spool.entries().unwrap()[0].path), 0o600);
        }
    }
}
