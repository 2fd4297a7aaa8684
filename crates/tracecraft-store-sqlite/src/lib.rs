//! # tracecraft-store-sqlite
//!
//! An embedded SQLite [`TraceStore`] (SQLite is bundled: nothing to install). **Guarantee:**
//! every saved run is kept whole (the full AgentRun, as MessagePack) beside indexed columns
//! for queries; saving an existing trace id merges instead of overwriting; erasure removes the
//! trace, its steps and its tags with `secure_delete` on, so erased bytes are overwritten in
//! the file; the database and its WAL files are mode 0600 in a 0700 directory; a database
//! written by a newer schema is refused rather than misread; and the WAL is never deleted to
//! "recover" from an error (the Python reference does, discarding committed data).
//!
//! ```
//! use std::sync::Arc;
//! use tracecraft_core::{AgentRun, Exporter, ProcessedRun, TraceQuery, TraceStore};
//! use tracecraft_store_sqlite::{SqliteConfig, SqliteStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("traces.db")))?);
//!
//! // Runs reach a store through the pipeline, as ProcessedRun; a store is also an Exporter.
//! # #[allow(clippy::disallowed_methods)]
//! let run = ProcessedRun::assume_processed(AgentRun::builder("support_agent").session_id("s-1").build());
//! let mut exporter = store.clone();
//! exporter.export(&[run.clone()])?;
//!
//! let found = store.query(&TraceQuery::new().session_id("s-1"))?;
//! assert_eq!(found.len(), 1);
//! assert!(store.delete(run.run().id)?); // GDPR erasure
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Design
//! One **writer connection behind a mutex** and a small set of **reader connections** (WAL
//! lets readers run while the writer commits). SQLite allows a single writer at a time anyway,
//! so a pool of writers would only contend on the database lock; serializing writers in the
//! process avoids `SQLITE_BUSY` retries, and batching ([`TraceStore::save_batch`], one
//! transaction for many runs) is what makes writes fast. Readers are taken from a pool of at
//! most [`SqliteConfig::readers`] idle connections (more are opened on demand under load and
//! closed when returned). Every write commits before `save` returns, so a thread reads its own
//! writes.
//!
//! Schema (version in `PRAGMA user_version`; migrations run step by step, each in a
//! transaction): `traces` (id, the indexed query fields: name, lower-cased name, start time in
//! ns, duration, cost, tokens, error flags, session, user, environment; and the full run),
//! `tags` and `steps` (foreign keys to `traces`, `ON DELETE CASCADE`). Steps rows hold step
//! metadata only (type, name, model, tokens, cost, error flag), never inputs or outputs:
//! payloads live once, in the run body; and only steps that name a model or failed have one
//! (the rows that queries read; databases written before have a row for every step). Step and parent ids are stored as the UUIDs' 16 bytes
//! (BLOBs, schema v3; `hex(step_id)` reads them). Indexed: id, start time, session, user, name.
//! Text search ([`TraceQuery::text`]) is answered by `traces_fts` (schemas v5 and v6), a
//! contentless FTS5 index of each run's names and stored (redacted) content, written in the
//! transaction that writes the run (its segments merged 16 at a time, schema v7; a run's
//! first 1 MiB of distinct words, schema v8); a trigger
//! moves a deleted row's body to
//! `traces_fts_erased`, and that run's words leave the index before the next write
//! transaction, in [`TraceStore::flush`], on open and on drop (erasure itself stays a row
//! deletion); migrating a v5 or older database indexes its runs once, on open.
//!
//! The run body is MessagePack in a BLOB, behind a format byte (schema v4: format 2, the
//! strings' bytes gathered in one text section; schemas v2 and v3: format 1, plain
//! `rmp-serde` MessagePack); databases of schema v1 (run JSON as TEXT) are migrated on open
//! without rewriting their rows: JSON and format 1 bodies stay readable and are rewritten in
//! the current format when their run is saved again. The
//! JSON wire format is unchanged: `get` and `query` return the same `AgentRun`, which
//! serializes to the same bytes.
//!
//! ## Security
//! - The database file is created 0600 before SQLite opens it, so SQLite creates the `-wal`
//!   and `-shm` files with the same mode; directories it creates are 0700. Existing database
//!   files with looser modes are reported (a `tracing` warning once per open), refused, or
//!   tightened on request, per [`SqliteConfig::permissions`]; the mode of anything the store
//!   did not create is never changed by default. With [`SqliteConfig::create`] off, a missing
//!   database is [`StoreError::NotFound`], never a new empty one.
//! - `PRAGMA secure_delete = ON` (erased rows are zeroed in the file, GDPR), `foreign_keys =
//!   ON` (steps and tags go with their trace), WAL journal, `busy_timeout`.
//! - Erased rows are zeroed in the database file as soon as the change is checkpointed;
//!   until then older page images may remain in the `-wal` file, and the erased run's words
//!   remain in the search index (no query finds the run). Call [`TraceStore::flush`] after
//!   [`TraceStore::delete`] (it takes the words out, then a `TRUNCATE` checkpoint) when the
//!   bytes must be gone at once; otherwise the WAL is checkpointed every ~4 MB (whatever the
//!   page size) by the store's checkpointing thread, and by the writer itself should the WAL
//!   reach ~8 MB (ADR 0011).
//! - [`SqliteStore::vacuum`] rebuilds the file, dropping free pages.
//! - Errors name the database file and row, never payloads; `Debug` shows only the config.
//!
//! ## Performance
//! `cargo bench -p tracecraft-store-sqlite --bench store` (or `cargo xtask bench store`);
//! figures against targets and the Python reference are in this crate's README. Batched
//! writes (`save_batch`) are one transaction; single `save`s are one transaction each
//! (`synchronous = NORMAL` by default: durable against process crashes, and against power
//! loss up to the last checkpoint; choose [`Synchronous::Full`] for per-commit durability).
//! Run bodies are MessagePack (~35% smaller than the JSON), written and read by code made for
//! the run's shape, with all string bytes in one section checked as UTF-8 once (body format
//! 2): `get` spends most of its time on SQLite and on the ~500 allocations of the returned
//! `AgentRun`, not on decoding. New databases
//! use SQLite's 4 KiB pages: with bodies of ~9 KB, larger pages mostly hold one run and its
//! padding, and every page an erasure touches (about 14: the row, each index, tags, steps, the
//! freelist) is written whole to the WAL and again at the checkpoint, so 16 KiB pages cost
//! erasure 2x and batched writes ~10%, for ~5% on `get` (existing databases keep their page
//! size). The writer has a 32 MiB page cache so a batch does not spill to the WAL
//! mid-transaction, and `get` decodes the run straight from SQLite's row buffer. Bodies of
//! 1 MiB or more are written into their row in place (incremental BLOB I/O) rather than
//! bound, which SQLite would copy twice. A batch's
//! run bodies are encoded on a second thread while the writer inserts the earlier ones
//! ([`SqliteConfig::encode_thread`]); the transaction and all SQLite work stay on the
//! calling thread, except WAL checkpoints: a thread of the store runs them (with its own
//! connection) so that a commit never waits for the checkpoint's copy and `fsync`s (ADR
//! 0011; durability is unchanged, it is set by `synchronous` at commit).
//!
//! ## Crate features
//! None. SQLite is compiled in (`rusqlite` with `bundled`).

mod body;
mod checkpoint;
mod overview;
mod search;

/// Entry points for the fuzz targets under `fuzz/` and their regression tests: not part of
/// the API, no stability promise.
#[doc(hidden)]
pub mod fuzzing {
    use rusqlite::types::ValueRef;
    use tracecraft_core::AgentRun;

    /// Decodes `bytes` as a stored run body (a BLOB of the `run` column), as `get` does.
    ///
    /// # Errors
    /// The message `get` would put in its `StoreError::Corrupt`.
    pub fn decode_body(bytes: &[u8]) -> Result<AgentRun, String> {
        super::body::decode(ValueRef::Blob(bytes))
    }

    /// The body this build writes for `run` (format 2, or format 1 for very deep runs).
    ///
    /// # Errors
    /// When the run cannot be encoded.
    pub fn encode_body(run: &AgentRun) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        super::body::encode_current(run, &mut out)?;
        Ok(out)
    }

    /// The format 1 body of `run` (schemas v2 and v3, `rmp-serde`).
    ///
    /// # Errors
    /// When the run cannot be encoded.
    pub fn encode_body_v1(run: &AgentRun) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        super::body::encode(run, &mut out)?;
        Ok(out)
    }
}

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Transaction, params};
use serde::{Deserialize, Serialize};
use tracecraft_core::fs;
use tracecraft_core::{
    AgentRun, OrderBy, Overview, ProcessedRun, StoreError, StoreStats, TraceQuery, TraceStore,
    Uuid, merge_runs,
};

pub use tracecraft_core::fs::PermissionPolicy;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 8;

/// Migrations: `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE traces (
    pk             INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    name           TEXT    NOT NULL,
    name_lower     TEXT    NOT NULL,
    start_ns       INTEGER NOT NULL,
    duration_ms    REAL,
    total_cost_usd REAL    NOT NULL,
    total_tokens   INTEGER NOT NULL,
    error_count    INTEGER NOT NULL,
    has_error      INTEGER NOT NULL,
    any_error      INTEGER NOT NULL,
    session_id     TEXT,
    user_id        TEXT,
    environment    TEXT    NOT NULL,
    step_count     INTEGER NOT NULL,
    run_json       TEXT    NOT NULL
);
CREATE INDEX traces_start    ON traces (start_ns);
CREATE INDEX traces_session  ON traces (session_id, start_ns);
CREATE INDEX traces_user     ON traces (user_id, start_ns);
CREATE INDEX traces_name     ON traces (name);
CREATE INDEX traces_duration ON traces (duration_ms);
CREATE INDEX traces_cost     ON traces (total_cost_usd);
CREATE TABLE tags (
    tag      TEXT    NOT NULL,
    trace_pk INTEGER NOT NULL REFERENCES traces (pk) ON DELETE CASCADE,
    PRIMARY KEY (tag, trace_pk)
) WITHOUT ROWID;
CREATE INDEX tags_trace ON tags (trace_pk);
CREATE TABLE steps (
    trace_pk      INTEGER NOT NULL REFERENCES traces (pk) ON DELETE CASCADE,
    step_id       TEXT    NOT NULL,
    parent_id     TEXT,
    type          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    start_ns      INTEGER NOT NULL,
    duration_ms   REAL,
    model_name    TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_usd      REAL,
    has_error     INTEGER NOT NULL,
    PRIMARY KEY (trace_pk, step_id)
) WITHOUT ROWID;
",
    // v2: the run body is MessagePack (a BLOB, see `body`); v1 rows keep their JSON text and
    // are read as such until they are saved again. Duration and cost lose their indexes
    // (range filters and sorts on them scan; every index costs each write and each erasure
    // a page).
    r"
ALTER TABLE traces RENAME COLUMN run_json TO run;
DROP INDEX IF EXISTS traces_duration;
DROP INDEX IF EXISTS traces_cost;
",
    // v3: step ids (and parent ids) of `steps` are the UUIDs' 16 bytes (BLOB) instead of
    // 36-character text: ~40 bytes less per step row, written to the WAL and again at the
    // checkpoint. The table is rebuilt; a stored id that is not a UUID's text (`unhex` gives
    // NULL or not 16 bytes) fails a NOT NULL constraint and the migration is rolled back.
    r"
CREATE TABLE steps_v3 (
    trace_pk      INTEGER NOT NULL REFERENCES traces (pk) ON DELETE CASCADE,
    step_id       BLOB    NOT NULL,
    parent_id     BLOB,
    type          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    start_ns      INTEGER NOT NULL,
    duration_ms   REAL,
    model_name    TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_usd      REAL,
    has_error     INTEGER NOT NULL,
    PRIMARY KEY (trace_pk, step_id)
) WITHOUT ROWID;
INSERT INTO steps_v3
    SELECT trace_pk, unhex(replace(step_id, '-', '')),
           unhex(replace(parent_id, '-', '')),
           type, name, start_ns, duration_ms, model_name, input_tokens, output_tokens,
           cost_usd, has_error
    FROM steps;
CREATE TEMP TABLE steps_v3_check (ok INTEGER NOT NULL);
INSERT INTO steps_v3_check SELECT CASE WHEN
    NOT EXISTS (SELECT 1 FROM steps_v3 WHERE length(step_id) != 16 OR length(parent_id) != 16)
    AND (SELECT count(*) FROM steps_v3 WHERE parent_id IS NULL)
      = (SELECT count(*) FROM steps WHERE parent_id IS NULL)
    THEN 1 END;
DROP TABLE steps_v3_check;
DROP TABLE steps;
ALTER TABLE steps_v3 RENAME TO steps;
",
    // v4: new run bodies use format 2 (MessagePack with the strings' bytes in one text
    // section, see `body`). No table changes: format 1 bodies stay readable and are rewritten
    // when their run is saved again. The version tells builds that cannot read format 2 to
    // refuse the database instead of failing on its rows one by one.
    "-- bodies in format 2 from now on",
    // v5: the text-search index (FTS5, see `search`), filled by v6.
    search::MIGRATION,
    // v6: a deleted row's body goes to `traces_fts_erased`, whose runs' words leave the index
    // at the next write, flush, open or drop (`search::drain_erased`), not in the erasure; the
    // index is rebuilt with `columnsize=0` and the stored runs are indexed by
    // `search::index_existing` in the same transaction.
    search::MIGRATION_V6,
    // v7: the search index merges its segments 16 at a time instead of 4 (FTS5 `automerge`,
    // see `search::MIGRATION_V7`). No table changes.
    search::MIGRATION_V7,
    // v8: a run's search document holds at most 1 MiB of words (see
    // `search::MAX_DOCUMENT_BYTES`); `search::cap_existing` indexes the runs past that again
    // in the same transaction. No table changes.
    search::MIGRATION_V8,
];

const BACKEND: &str = "sqlite";

/// Page size of new databases (existing ones keep theirs). See "Performance" in the crate
/// docs for why 4 KiB (16 KiB was better for JSON bodies of ~14 KB, not for MessagePack).
const PAGE_SIZE: u32 = 4 * 1024;

/// The WAL size (bytes) past which it is checkpointed (by the checkpointing thread, see
/// [`checkpoint`]): SQLite's default of 1,000 pages of 4 KiB.
const WAL_CHECKPOINT_BYTES: u64 = 4_096_000;

fn page_size(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA page_size", [], |r| r.get(0))
}

/// Batches of at least this many runs have their bodies encoded on a second thread (see
/// [`SqliteConfig::encode_thread`]); for fewer, starting the thread costs more than it saves.
const ENCODE_THREAD_MIN_RUNS: usize = 8;

/// How many encoded bodies (~9 KB each for corpus runs) the encoding thread may hold ahead
/// of the writer.
const ENCODE_AHEAD: usize = 64;

/// The writer connection's page cache, in KiB (readers keep SQLite's default, 2 MB).
const WRITER_CACHE_KIB: u32 = 32 * 1024;

/// `PRAGMA synchronous` in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Synchronous {
    /// `NORMAL`: commits survive a process crash; a power loss may lose the last commits
    /// (never corrupts). The default.
    #[default]
    Normal,
    /// `FULL`: every commit is `fsync`ed.
    Full,
}

/// Settings of a [`SqliteStore`]; serde loads it from the `[sqlite]` table of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file (created if missing, with its directory, when
    /// [`create`](Self::create) is true).
    pub path: PathBuf,
    /// Create the database (and missing parent directories, 0700) when it does not exist
    /// (default `true`). Commands that only read or erase set it to `false`, so that a typo
    /// in a path is an error ([`StoreError::NotFound`]) instead of a new, empty store.
    pub create: bool,
    /// How long to wait for a lock held by another process, in ms (default 5,000).
    pub busy_timeout_ms: u64,
    /// Keep runs this many days: runs that started earlier are purged on open and by
    /// [`SqliteStore::apply_retention`]. `None` keeps everything (the default).
    pub retention_days: Option<u32>,
    /// What to do with existing database files with looser permissions than 0600 (default:
    /// warn once per open and leave them as they are). The directory holding the database is
    /// not the store's: its mode is never checked or changed (directories TraceCraft creates
    /// are 0700).
    pub permissions: PermissionPolicy,
    /// Idle reader connections kept open (default 4).
    pub readers: usize,
    /// Commit durability (default [`Synchronous::Normal`]).
    pub synchronous: Synchronous,
    /// Encode the run bodies of a batch ([`TraceStore::save_batch`] of at least 8 runs) on a
    /// second thread while SQLite writes the previous ones (default `true`). The database
    /// is the same either way; `false` keeps all the work on the calling thread.
    pub encode_thread: bool,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from(".tracecraft/traces.db"),
            create: true,
            busy_timeout_ms: 5_000,
            retention_days: None,
            permissions: PermissionPolicy::Warn,
            readers: 4,
            synchronous: Synchronous::Normal,
            encode_thread: true,
        }
    }
}

impl SqliteConfig {
    /// The defaults, with the database at `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            ..SqliteConfig::default()
        }
    }
    /// Sets [`SqliteConfig::create`].
    #[must_use]
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// Sets [`SqliteConfig::retention_days`].
    #[must_use]
    pub fn retention_days(mut self, days: Option<u32>) -> Self {
        self.retention_days = days;
        self
    }
    /// Sets [`SqliteConfig::permissions`].
    #[must_use]
    pub fn permissions(mut self, policy: PermissionPolicy) -> Self {
        self.permissions = policy;
        self
    }
    /// Sets [`SqliteConfig::busy_timeout_ms`].
    #[must_use]
    pub fn busy_timeout_ms(mut self, ms: u64) -> Self {
        self.busy_timeout_ms = ms;
        self
    }
    /// Sets [`SqliteConfig::synchronous`].
    #[must_use]
    pub fn synchronous(mut self, s: Synchronous) -> Self {
        self.synchronous = s;
        self
    }
    /// Sets [`SqliteConfig::encode_thread`].
    #[must_use]
    pub fn encode_thread(mut self, on: bool) -> Self {
        self.encode_thread = on;
        self
    }
}

/// A [`TraceStore`] in one SQLite database file. See the [crate docs](crate).
pub struct SqliteStore {
    /// `None` when its thread could not be started: the writer then checkpoints itself.
    /// Dropped first (fields drop in order), so that the writer, closed last, checkpoints
    /// the WAL into the database and removes it, as SQLite's last connection does.
    checkpointer: Option<checkpoint::Checkpointer>,
    config: SqliteConfig,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// WAL frames past which it is checkpointed: ~4 MB whatever the page size, so erased
    /// rows' old page images do not linger in the WAL longer than with SQLite's default
    /// 4 KiB pages.
    checkpoint_frames: i64,
    /// Saves merged into a stored id, committed ([`TraceStore::merged`]).
    merged: AtomicU64,
    /// Saves merged in the transaction under way (the writer lock is held), added to
    /// `merged` when it commits.
    merging: AtomicU64,
}

impl Drop for SqliteStore {
    /// Takes the words of runs erased since the last write or flush out of the search index
    /// (otherwise the next process to open the database does).
    fn drop(&mut self) {
        if let Err(e) = self.drain_erased() {
            tracing::warn!(error = %e, "erased runs' words left in the search index until the next open");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn db_err(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: format!("{}: {e}", path.display()),
    }
}

/// Nanoseconds since the epoch, clamped to the `i64` range (years 1677 to 2262).
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The `traces` column values of `run`: parameters ?1 to ?15 of the insert and the update.
struct RowValues<'a> {
    id: &'a str,
    run: &'a AgentRun,
    name_lower: String,
    start_ns: i64,
    total_tokens: i64,
    error_count: i64,
    has_error: bool,
    any_error: bool,
    step_count: i64,
    body: BodyParam<'a>,
}

/// Bodies of at least this many bytes are not bound to the statement that writes their row:
/// it writes a zero-filled BLOB of their length ([`BodyParam::Zeroed`]), which
/// [`write_streamed`] then fills in place with SQLite's incremental BLOB I/O. A bound BLOB
/// is copied by SQLite (the binding) and copied again into the row's record before it
/// reaches the pages: for a run of 32 MB, 64 MB more at the peak.
const STREAM_BODY_BYTES: usize = 1 << 20;

/// The `run` column's parameter: the body, or a zero-filled BLOB of its length.
#[derive(Clone, Copy)]
enum BodyParam<'a> {
    Bytes(&'a [u8]),
    Zeroed(i32),
}

impl<'a> BodyParam<'a> {
    fn of(body: &'a [u8]) -> Self {
        match i32::try_from(body.len()) {
            Ok(n) if body.len() >= STREAM_BODY_BYTES => BodyParam::Zeroed(n),
            _ => BodyParam::Bytes(body),
        }
    }
}

impl rusqlite::ToSql for BodyParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match *self {
            BodyParam::Bytes(b) => {
                rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Blob(b))
            }
            BodyParam::Zeroed(n) => rusqlite::types::ToSqlOutput::ZeroBlob(n),
        })
    }
}

/// Fills the `run` column of row `pk` with `body` when the row was written with a zero-filled
/// BLOB in its place ([`BodyParam::of`]); a no-op for a body that was bound.
fn write_streamed(tx: &Transaction<'_>, pk: i64, body: &[u8]) -> rusqlite::Result<()> {
    if let BodyParam::Zeroed(_) = BodyParam::of(body) {
        tx.blob_open(rusqlite::MAIN_DB, "traces", "run", pk, false)?
            .write_at(body, 0)?;
    }
    Ok(())
}

fn row_values<'a>(id: &'a str, run: &'a AgentRun, body: &'a [u8]) -> RowValues<'a> {
    let any_error = run.has_any_error();
    RowValues {
        id,
        run,
        name_lower: run.name.to_lowercase(),
        start_ns: nanos(run.start_time),
        total_tokens: clamp_i64(run.total_tokens),
        error_count: clamp_i64(run.error_count),
        has_error: run.error_count > 0 || any_error,
        any_error,
        step_count: clamp_i64(run.step_count() as u64),
        body: BodyParam::of(body),
    }
}

impl RowValues<'_> {
    fn to_vec(&self) -> Vec<&dyn rusqlite::ToSql> {
        vec![
            &self.id,
            &self.run.name,
            &self.name_lower,
            &self.start_ns,
            &self.run.duration_ms,
            &self.run.total_cost_usd,
            &self.total_tokens,
            &self.error_count,
            &self.has_error,
            &self.any_error,
            &self.run.session_id,
            &self.run.user_id,
            &self.run.environment,
            &self.step_count,
            &self.body,
        ]
    }
}

impl SqliteStore {
    /// Opens the database at `config.path` (creating it, 0600 in missing 0700 directories,
    /// when [`SqliteConfig::create`] is true): checks permissions, applies pending
    /// migrations, and purges runs past `retention_days`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the database is missing and `create` is false;
    /// [`StoreError::Permissions`] under [`PermissionPolicy::Error`] when a database file is
    /// too open; [`StoreError::UnsupportedSchema`] when the database was written by a newer
    /// version; [`StoreError::Io`] / [`StoreError::Backend`] otherwise.
    pub fn open(config: SqliteConfig) -> Result<SqliteStore, StoreError> {
        let path = config.path.clone();
        if !path.is_file() {
            if !config.create {
                return Err(StoreError::NotFound { path });
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_private_dir(dir)?;
            }
            // Create the file 0600 first: SQLite gives its -wal and -shm files the same mode.
            drop(fs::open_private(
                &path,
                std::fs::OpenOptions::new().create(true).append(true),
            )?);
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let p = PathBuf::from(p);
            fs::warn_looser(&p, fs::check_private(&p, config.permissions)?);
        }
        let writer = Self::connect(&config, false)?;
        migrate(&path, &writer)?;
        let page = page_size(&writer).map_err(|e| db_err(&path, &e))?.max(512);
        let checkpoint_frames = i64::try_from(WAL_CHECKPOINT_BYTES / u64::from(page))
            .unwrap_or(i64::MAX)
            .max(1);
        if checkpoint::take_frames() >= checkpoint_frames {
            // A migration's WAL.
            checkpoint::passive(&writer).map_err(|e| db_err(&path, &e))?;
        }
        let checkpointer = match checkpoint::Checkpointer::start(Self::connect(&config, true)?) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no checkpointing thread: the writer checkpoints the WAL itself");
                None
            }
        };
        let store = SqliteStore {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            checkpoint_frames,
            checkpointer,
            config,
            merged: AtomicU64::new(0),
            merging: AtomicU64::new(0),
        };
        // Runs erased by a process that ended before taking their words out of the index.
        store.drain_erased()?;
        store.apply_retention()?;
        Ok(store)
    }

    fn connect(config: &SqliteConfig, reader: bool) -> Result<Connection, StoreError> {
        let path = &config.path;
        let conn = Connection::open(path).map_err(|e| db_err(path, &e))?;
        conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms))
            .map_err(|e| db_err(path, &e))?;
        let sync = match config.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        let mut pragmas = format!(
            "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA synchronous = {sync};"
        );
        if reader {
            pragmas.push_str("PRAGMA query_only = ON;");
        } else {
            search::register(&conn).map_err(|e| db_err(path, &e))?;
            // Only takes effect on a new, empty database (before WAL is enabled); explicit so
            // that a different compile-time default of the bundled SQLite does not change it.
            conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE};"))
                .map_err(|e| db_err(path, &e))?;
            // A batch of 256 runs dirties ~6 MB of pages: a writer cache that holds it keeps
            // SQLite from spilling pages to the WAL in the middle of the transaction.
            pragmas.push_str(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"));
            // Persistent in the file; set by the writer only.
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(|e| db_err(path, &e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    message: format!("{}: could not enable WAL (mode {mode})", path.display()),
                });
            }
        }
        conn.execute_batch(&pragmas).map_err(|e| db_err(path, &e))?;
        if !reader {
            // No automatic checkpoint in the commit: the writer counts the WAL's frames and
            // hands checkpoints to the checkpointing thread (`checkpoint`).
            checkpoint::install(&conn);
        }
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// The configuration the store was opened with.
    #[must_use]
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    /// Purges runs older than `retention_days` (a no-op without it); returns how many.
    ///
    /// # Errors
    /// As [`TraceStore::purge_older_than`].
    pub fn apply_retention(&self) -> Result<u64, StoreError> {
        match self.config.retention_days {
            Some(days) => {
                self.purge_older_than(Utc::now() - chrono::Duration::days(i64::from(days)))
            }
            None => Ok(0),
        }
    }

    /// Rebuilds the database file (`VACUUM`), returning free pages to the file system.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub fn vacuum(&self) -> Result<(), StoreError> {
        let conn = self.writer.lock();
        let _exclusive = self
            .checkpointer
            .as_ref()
            .map(checkpoint::Checkpointer::exclusive);
        conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.err(&e))
    }

    /// Takes erased runs' words out of the search index ([`search::drain_erased`]) in a write
    /// transaction, if there are any (checked first, without taking the write lock of the
    /// database).
    fn drain_erased(&self) -> Result<(), StoreError> {
        let pending: bool = self
            .writer
            .lock()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM traces_fts_erased)")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(&e))?;
        if pending {
            self.write(|_| Ok(()))?;
        }
        Ok(())
    }

    fn err(&self, e: &rusqlite::Error) -> StoreError {
        db_err(&self.config.path, e)
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.readers.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => Self::connect(&self.config, true)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock();
        if pool.len() < self.config.readers.max(1) {
            pool.push(conn);
        }
        out
    }

    /// Runs `f` in a write transaction, after taking erased runs' words out of the search
    /// index ([`search::drain_erased`]): a row inserted by `f` can never get the `pk` of a run
    /// whose words are still indexed.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_then_drain(false, f)
    }

    /// [`SqliteStore::write`], draining before `f` unless `erasure_only` (then `f` must not
    /// insert `traces` rows: [`TraceStore::delete`] only).
    fn write_then_drain<T>(
        &self,
        erasure_only: bool,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(&e))?;
        if !erasure_only {
            search::drain_erased(&tx).map_err(|e| self.err(&e))?;
        }
        checkpoint::take_frames(); // a count left by an earlier commit of this thread
        self.merging.store(0, Ordering::Relaxed);
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.err(&e))?;
        self.merged
            .fetch_add(self.merging.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        self.after_commit(&conn, checkpoint::take_frames());
        Ok(out)
    }

    /// Past the checkpoint threshold, asks the checkpointing thread for a checkpoint; past
    /// [`checkpoint::FALLBACK_FACTOR`] times it (the thread lags behind or is gone), runs one
    /// here, which has little left to copy when the thread has done its part and lets the
    /// next write transaction start the WAL over. A failed checkpoint is logged (the commit
    /// stands; the next one retries).
    fn after_commit(&self, conn: &Connection, frames: i64) {
        if frames < self.checkpoint_frames {
            return;
        }
        match &self.checkpointer {
            Some(c)
                if frames
                    < self
                        .checkpoint_frames
                        .saturating_mul(checkpoint::FALLBACK_FACTOR) =>
            {
                c.request();
            }
            _ => {
                if let Err(e) = checkpoint::passive(conn) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        }
    }

    /// Decodes column 1 (the body) of a `SELECT pk, run, id` row, straight from SQLite's
    /// buffer (see [`body`]). A body that cannot be read is [`StoreError::Corrupt`] naming
    /// the file, the row and the trace id (never payload).
    fn decode_pk_run(&self, row: &rusqlite::Row<'_>) -> Result<(i64, AgentRun), StoreError> {
        let pk: i64 = row.get(0).map_err(|e| self.err(&e))?;
        let run = row.get_ref(1).map_err(|e| self.err(&e))?;
        match body::decode(run) {
            Ok(run) => Ok((pk, run)),
            Err(e) => {
                let id = row.get::<_, String>(2).unwrap_or_default();
                Err(StoreError::Corrupt {
                    path: self.config.path.clone(),
                    line: u64::try_from(pk).unwrap_or(0),
                    message: format!("traces row {pk} (trace {id}): {e}"),
                })
            }
        }
    }

    /// [`TraceStore::save_batch`] with the bodies encoded (and the search index's document of
    /// each run built, [`search::document`]) on a scoped thread, in batch order,
    /// at most [`ENCODE_AHEAD`] runs ahead of the writer (one producer and one consumer of a
    /// FIFO channel: body `i` is the body of `runs[i]`). The transaction, merges and
    /// everything SQLite does stay on the calling thread, as in the sequential path. A body
    /// the thread could not deliver (it failed to start, panicked or could not encode) is
    /// encoded by the writer itself, which reports any error; an error of the writer drops
    /// the channel, which stops the thread.
    fn save_batch_encoding_ahead(&self, runs: &[ProcessedRun]) -> Result<(), StoreError> {
        std::thread::scope(|scope| {
            let (bodies_tx, bodies) =
                std::sync::mpsc::sync_channel::<Option<(Vec<u8>, String)>>(ENCODE_AHEAD);
            // Buffers go back to the encoder once written: no allocation per run.
            let (spare_tx, spare) = std::sync::mpsc::channel::<(Vec<u8>, String)>();
            let encoder = std::thread::Builder::new()
                .name("tracecraft-sqlite-encode".into())
                .spawn_scoped(scope, move || {
                    for r in runs {
                        let (mut buf, mut doc) = spare.try_recv().unwrap_or_else(|_| {
                            (Vec::with_capacity(16 << 10), String::with_capacity(4 << 10))
                        });
                        let body = body::encode_current(r.run(), &mut buf).ok().map(|()| {
                            search::document(r.run(), &mut doc);
                            (buf, doc)
                        });
                        if bodies_tx.send(body).is_err() {
                            break;
                        }
                    }
                });
            let bodies = encoder.is_ok().then_some(bodies);
            let mut buf = Vec::with_capacity(16 << 10);
            self.write(|tx| {
                runs.iter().try_for_each(|r| {
                    let body = bodies.as_ref().and_then(|b| b.recv().ok().flatten());
                    let encoded = body.as_ref().map(|(b, d)| (b.as_slice(), d.as_str()));
                    self.save_in(tx, r.run(), &mut buf, encoded)?;
                    if let Some(body) = body {
                        let _ = spare_tx.send(body);
                    }
                    Ok(())
                })
            })
        })
    }

    /// Saves `run` (merged with the stored run of its id, if any). `encoded` is the body and
    /// the search document of `run` itself when the caller has them already (see [`SqliteStore::save_batch_encoding_ahead`]);
    /// it is used unless a merge changes the run. `buf` is scratch space for encoding here.
    fn save_in(
        &self,
        tx: &Transaction<'_>,
        run: &AgentRun,
        buf: &mut Vec<u8>,
        encoded: Option<(&[u8], &str)>,
    ) -> Result<(), StoreError> {
        let mut id_buf = Uuid::encode_buffer();
        let id: &str = run.id.hyphenated().encode_lower(&mut id_buf);
        // A new id (the common case) is inserted at once: the UNIQUE index on `id` is probed
        // once, by the insert, instead of by a SELECT first. An id already stored makes the
        // insert a no-op (`ON CONFLICT DO NOTHING` changes nothing, not even the WAL), and
        // the run is merged with the stored one as before.
        if let Some(pk) = self.insert_new(tx, id, run, buf, encoded.map(|(body, _)| body))? {
            return self.insert_children(tx, pk, run, encoded.map(|(_, doc)| doc));
        }
        let (pk, old): (i64, AgentRun) = {
            let mut st = tx
                .prepare_cached("SELECT pk, run, id FROM traces WHERE id = ?1")
                .map_err(|e| self.err(&e))?;
            let mut rows = st.query([id]).map_err(|e| self.err(&e))?;
            match rows.next().map_err(|e| self.err(&e))? {
                Some(row) => self.decode_pk_run(row)?,
                None => {
                    return Err(StoreError::Backend {
                        backend: BACKEND,
                        message: format!(
                            "{}: trace {id} neither inserted nor found",
                            self.config.path.display()
                        ),
                    });
                }
            }
        };
        search::remove(tx, pk, &old).map_err(|e| self.err(&e))?;
        self.merging.fetch_add(1, Ordering::Relaxed);
        let run = &merge_runs(old, run.clone());
        let body = self.encode_body(run, buf)?;
        let values = row_values(id, run, body);
        tx.prepare_cached(
            "UPDATE traces SET id = ?1, name = ?2, name_lower = ?3, start_ns = ?4,
             duration_ms = ?5, total_cost_usd = ?6, total_tokens = ?7, error_count = ?8,
             has_error = ?9, any_error = ?10, session_id = ?11, user_id = ?12,
             environment = ?13, step_count = ?14, run = ?15 WHERE pk = ?16",
        )
        .and_then(|mut st| {
            let mut all: Vec<&dyn rusqlite::ToSql> = values.to_vec();
            all.push(&pk);
            st.execute(all.as_slice())
        })
        .and_then(|_| write_streamed(tx, pk, body))
        .map_err(|e| self.err(&e))?;
        for table in ["tags", "steps"] {
            tx.prepare_cached(&format!("DELETE FROM {table} WHERE trace_pk = ?1"))
                .and_then(|mut st| st.execute([pk]))
                .map_err(|e| self.err(&e))?;
        }
        self.insert_children(tx, pk, run, None)
    }

    /// Inserts the `traces` row of `run` unless its id is stored already; returns its `pk`,
    /// or `None` when the id exists (nothing written).
    fn insert_new(
        &self,
        tx: &Transaction<'_>,
        id: &str,
        run: &AgentRun,
        buf: &mut Vec<u8>,
        encoded: Option<&[u8]>,
    ) -> Result<Option<i64>, StoreError> {
        let body = match encoded {
            Some(body) => body,
            None => self.encode_body(run, buf)?,
        };
        let n = tx
            .prepare_cached(
                "INSERT INTO traces (id, name, name_lower, start_ns, duration_ms,
                 total_cost_usd, total_tokens, error_count, has_error, any_error, session_id,
                 user_id, environment, step_count, run)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut st| st.execute(row_values(id, run, body).to_vec().as_slice()))
            .map_err(|e| self.err(&e))?;
        if n != 1 {
            return Ok(None);
        }
        let pk = tx.last_insert_rowid();
        write_streamed(tx, pk, body).map_err(|e| self.err(&e))?;
        Ok(Some(pk))
    }

    fn encode_body<'b>(
        &self,
        run: &AgentRun,
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], StoreError> {
        body::encode_current(run, buf).map_err(|message| StoreError::Backend {
            backend: BACKEND,
            message: format!(
                "{}: cannot encode run: {message}",
                self.config.path.display()
            ),
        })?;
        Ok(buf)
    }

    /// Inserts the `tags` and `steps` rows of `run` under `pk`, and indexes its text (`doc`,
    /// its [`search::document`] when the caller has it already).
    fn insert_children(
        &self,
        tx: &Transaction<'_>,
        pk: i64,
        run: &AgentRun,
        doc: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tag_st = tx
            .prepare_cached("INSERT OR IGNORE INTO tags (tag, trace_pk) VALUES (?1, ?2)")
            .map_err(|e| self.err(&e))?;
        for tag in &run.tags {
            tag_st.execute(params![tag, pk]).map_err(|e| self.err(&e))?;
        }
        self.insert_steps(tx, pk, run).map_err(|e| self.err(&e))?;
        search::insert(tx, pk, run, doc).map_err(|e| self.err(&e))
    }

    /// Inserts the `steps` rows of `run` ([`stores_step_row`]): one cached statement,
    /// parameters bound in place (step ids as their 16 bytes). One row per statement on
    /// purpose: a multi-row insert makes SQLite keep a statement journal (the rows can fail
    /// their foreign key halfway), which costs more than it saves.
    fn insert_steps(&self, tx: &Transaction<'_>, pk: i64, run: &AgentRun) -> rusqlite::Result<()> {
        let mut st = tx.prepare_cached(
            "INSERT OR IGNORE INTO steps (trace_pk, step_id, parent_id, type, name, start_ns,
             duration_ms, model_name, input_tokens, output_tokens, cost_usd, has_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for s in run.walk().filter(|s| stores_step_row(s)) {
            st.raw_bind_parameter(1, pk)?;
            st.raw_bind_parameter(2, &s.id.as_bytes()[..])?;
            st.raw_bind_parameter(3, s.parent_id.as_ref().map(|p| &p.as_bytes()[..]))?;
            st.raw_bind_parameter(4, s.step_type.as_str())?;
            st.raw_bind_parameter(5, &s.name)?;
            st.raw_bind_parameter(6, nanos(s.start_time))?;
            st.raw_bind_parameter(7, s.duration_ms)?;
            st.raw_bind_parameter(8, &s.model_name)?;
            st.raw_bind_parameter(9, s.input_tokens.map(clamp_i64))?;
            st.raw_bind_parameter(10, s.output_tokens.map(clamp_i64))?;
            st.raw_bind_parameter(11, s.cost_usd)?;
            st.raw_bind_parameter(12, s.has_error())?;
            st.raw_execute()?;
        }
        Ok(())
    }
}

/// Whether `step` gets a row in `steps`: when it names a model or failed. Every query of the
/// table reads only such rows (`model_name IS NOT NULL`, a model filter, `has_error`); the
/// others (two thirds of the corpus's steps) would cost every save a B-tree insert and a
/// foreign key check each, and every erasure their deletion, for nothing. A step's full
/// record is in the run body either way. Databases written before keep a row for every step
/// (a superset that the same queries read the same way).
fn stores_step_row(step: &tracecraft_core::Step) -> bool {
    step.model_name.is_some() || step.has_error()
}

/// Applies pending migrations, each in its own transaction; refuses a newer schema.
fn migrate(path: &Path, conn: &Connection) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    debug_assert_eq!(supported, SCHEMA_VERSION);
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| db_err(path, &e))?;
    if found > supported {
        return Err(StoreError::UnsupportedSchema {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let step = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            // Re-check under the lock: another process may have migrated meanwhile.
            let now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if now == version as i64 {
                conn.execute_batch(sql)?;
                if version == 5 {
                    search::index_existing(conn)?;
                }
                if version == 7 {
                    search::cap_existing(conn)?;
                }
                conn.execute_batch(&format!("PRAGMA user_version = {}", version + 1))?;
            }
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = step() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(db_err(path, &e));
        }
    }
    Ok(())
}

/// The WHERE clause and its parameters for `q` (validated).
fn where_clause(q: &TraceQuery) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(" WHERE 1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut push = |cond: &str, v: SqlValue| {
        sql.push_str(" AND ");
        sql.push_str(cond);
        args.push(v);
    };
    if let Some(n) = &q.name {
        push("name = ?", SqlValue::Text(n.clone()));
    }
    if let Some(p) = &q.id_prefix {
        let p = p.to_ascii_lowercase();
        push(
            &format!("substr(id, 1, {}) = ?", p.chars().count()),
            SqlValue::Text(p),
        );
    }
    if let Some(n) = &q.name_contains {
        // instr, not LIKE: exact substring of the Unicode-lower-cased name, no wildcards.
        push("instr(name_lower, ?) > 0", SqlValue::Text(n.to_lowercase()));
    }
    if let Some(e) = q.has_error {
        push("has_error = ?", SqlValue::Integer(i64::from(e)));
    }
    // A NULL duration fails any comparison, as `matches` requires.
    if let Some(v) = q.min_duration_ms {
        push("duration_ms >= ?", SqlValue::Real(v));
    }
    if let Some(v) = q.max_duration_ms {
        push("duration_ms <= ?", SqlValue::Real(v));
    }
    if let Some(v) = q.min_cost_usd {
        push("total_cost_usd >= ?", SqlValue::Real(v));
    }
    if let Some(v) = q.max_cost_usd {
        push("total_cost_usd <= ?", SqlValue::Real(v));
    }
    for t in &q.tags {
        push(
            "pk IN (SELECT trace_pk FROM tags WHERE tag = ?)",
            SqlValue::Text(t.clone()),
        );
    }
    if let Some(t) = q.start_after {
        push("start_ns >= ?", SqlValue::Integer(nanos(t)));
    }
    if let Some(t) = q.start_before {
        push("start_ns < ?", SqlValue::Integer(nanos(t)));
    }
    if let Some(v) = &q.session_id {
        push("session_id = ?", SqlValue::Text(v.clone()));
    }
    if let Some(v) = &q.user_id {
        push("user_id = ?", SqlValue::Text(v.clone()));
    }
    if let Some(v) = &q.environment {
        push("environment = ?", SqlValue::Text(v.clone()));
    }
    if let Some(m) = &q.model {
        // SQLite's lower() folds ASCII letters only, as `TraceQuery::model_matches` does.
        push(
            "pk IN (SELECT trace_pk FROM steps WHERE instr(lower(model_name), ?) > 0)",
            SqlValue::Text(m.to_ascii_lowercase()),
        );
    }
    if let Some(m) = q.text.as_deref().and_then(search::match_expr) {
        push(
            "pk IN (SELECT rowid FROM traces_fts WHERE traces_fts MATCH ?)",
            SqlValue::Text(m),
        );
    }
    (sql, args)
}

fn order_clause(q: &TraceQuery) -> String {
    let key = match q.order_by {
        OrderBy::Duration => "COALESCE(duration_ms, 0.0)",
        OrderBy::Cost => "total_cost_usd",
        OrderBy::Name => "name",
        _ => "start_ns",
    };
    let dir = if q.descending { "DESC" } else { "ASC" };
    format!(" ORDER BY {key} {dir}, id {dir}")
}

impl TraceStore for SqliteStore {
    fn name(&self) -> &str {
        BACKEND
    }

    fn save(&self, run: &ProcessedRun) -> Result<(), StoreError> {
        self.write(|tx| self.save_in(tx, run.run(), &mut Vec::new(), None))
    }

    fn save_batch(&self, runs: &[ProcessedRun]) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        if self.config.encode_thread && runs.len() >= ENCODE_THREAD_MIN_RUNS {
            return self.save_batch_encoding_ahead(runs);
        }
        let mut buf = Vec::with_capacity(16 << 10);
        self.write(|tx| {
            runs.iter()
                .try_for_each(|r| self.save_in(tx, r.run(), &mut buf, None))
        })
    }

    fn merged(&self) -> u64 {
        self.merged.load(Ordering::Relaxed)
    }

    fn get(&self, trace_id: Uuid) -> Result<Option<AgentRun>, StoreError> {
        let mut id = Uuid::encode_buffer();
        let id = &*trace_id.hyphenated().encode_lower(&mut id);
        // Decoded straight from SQLite's row buffer: no copy of the body.
        self.with_reader(|conn| {
            let mut st = conn
                .prepare_cached("SELECT pk, run, id FROM traces WHERE id = ?1")
                .map_err(|e| self.err(&e))?;
            let mut rows = st.query([id]).map_err(|e| self.err(&e))?;
            match rows.next().map_err(|e| self.err(&e))? {
                Some(row) => Ok(Some(self.decode_pk_run(row)?.1)),
                None => Ok(None),
            }
        })
    }

    fn query(&self, query: &TraceQuery) -> Result<Vec<AgentRun>, StoreError> {
        query.validate()?;
        let (filter, mut args) = where_clause(query);
        let sql = format!(
            "SELECT pk, run, id FROM traces{filter}{} LIMIT ? OFFSET ?",
            order_clause(query)
        );
        args.push(SqlValue::Integer(
            query
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
        ));
        args.push(SqlValue::Integer(
            i64::try_from(query.offset).unwrap_or(i64::MAX),
        ));
        self.with_reader(|conn| {
            let mut st = conn.prepare_cached(&sql).map_err(|e| self.err(&e))?;
            let mut rows = st
                .query(rusqlite::params_from_iter(args))
                .map_err(|e| self.err(&e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| self.err(&e))? {
                out.push(self.decode_pk_run(row)?.1);
            }
            Ok(out)
        })
    }

    fn count(&self, query: &TraceQuery) -> Result<u64, StoreError> {
        query.validate()?;
        let (filter, args) = where_clause(query);
        let sql = format!("SELECT COUNT(*) FROM traces{filter}");
        let n: i64 = self.with_reader(|conn| {
            conn.prepare_cached(&sql)
                .and_then(|mut st| st.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
                .map_err(|e| self.err(&e))
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn delete(&self, trace_id: Uuid) -> Result<bool, StoreError> {
        let mut id = Uuid::encode_buffer();
        let id = &*trace_id.hyphenated().encode_lower(&mut id);
        // The run's words leave the search index at the next write or `flush` (see `search`).
        self.write_then_drain(true, |tx| {
            tx.prepare_cached("DELETE FROM traces WHERE id = ?1")
                .and_then(|mut st| st.execute([id]))
                .map(|n| n > 0)
                .map_err(|e| self.err(&e))
        })
    }

    fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(|tx| {
            let cutoff = nanos(cutoff);
            let purge = || -> rusqlite::Result<u64> {
                let n: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM traces WHERE start_ns < ?1",
                    [cutoff],
                    |r| r.get(0),
                )?;
                if n == 0 {
                    return Ok(0);
                }
                let deleted = tx
                    .prepare_cached("DELETE FROM traces WHERE start_ns < ?1")?
                    .execute([cutoff])?;
                // In the purge's transaction: one merge of the index for a bulk purge.
                search::drain_erased(tx)?;
                Ok(deleted as u64)
            };
            purge().map_err(|e| self.err(&e))
        })
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let (traces, steps, errors, tokens, cost): (i64, i64, i64, i64, f64) =
            self.with_reader(|conn| {
                conn.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(step_count), 0), COALESCE(SUM(any_error), 0),
                     COALESCE(SUM(total_tokens), 0), COALESCE(SUM(total_cost_usd), 0.0)
                     FROM traces",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .map_err(|e| self.err(&e))
            })?;
        let mut bytes = 0;
        for suffix in ["", "-wal"] {
            let mut p = self.config.path.clone().into_os_string();
            p.push(suffix);
            bytes += std::fs::metadata(&p).map_or(0, |m| m.len());
        }
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(StoreStats::new(
            u(traces),
            u(steps),
            u(errors),
            u(tokens),
            cost,
            bytes,
        ))
    }

    fn overview(&self, query: &TraceQuery, top: usize) -> Result<Overview, StoreError> {
        query.validate()?;
        self.with_reader(|conn| overview::overview(conn, query, top).map_err(|e| self.err(&e)))
    }

    fn groups(
        &self,
        query: &TraceQuery,
        by: tracecraft_core::GroupKey,
        limit: usize,
    ) -> Result<Vec<tracecraft_core::RunGroup>, StoreError> {
        query.validate()?;
        self.with_reader(|conn| overview::groups(conn, query, by, limit).map_err(|e| self.err(&e)))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every save commits before returning; a full checkpoint moves the WAL into the
        // (fsynced) database file and truncates the WAL, so erased rows leave no old frames.
        // Erased runs' words leave the search index first.
        self.drain_erased()?;
        let conn = self.writer.lock();
        // Not at the same time as the checkpointing thread's checkpoint, which would make
        // this one give up at once ("busy") instead of emptying the WAL.
        let _exclusive = self
            .checkpointer
            .as_ref()
            .map(checkpoint::Checkpointer::exclusive);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| self.err(&e))
    }
}
