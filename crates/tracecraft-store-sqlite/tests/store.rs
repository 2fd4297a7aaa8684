//! The shared contract suite, plus SQLite-specific behaviour: schema versions, permissions,
//! erasure, retention, WAL survival.
#![allow(clippy::disallowed_methods)] // tests wrap fixture runs as processed runs

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracecraft_core::{AgentRun, ProcessedRun, Step, StoreError, TraceQuery, TraceStore, contract};
use tracecraft_store_sqlite::{PermissionPolicy, SCHEMA_VERSION, SqliteConfig, SqliteStore};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn passes_the_contract() {
    let root = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    contract::run_all(|| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        SqliteStore::open(SqliteConfig::new(
            root.path().join(format!("{i}/traces.db")),
        ))
        .unwrap()
    });
}

#[test]
fn files_are_private_and_loose_ones_are_reported_refused_or_tightened_on_request() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    let path = dir.join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store
        .save(&ProcessedRun::assume_processed(AgentRun::new("a")))
        .unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.join("traces.db-wal")), 0o600);
    assert_eq!(mode(&dir.join("traces.db-shm")), 0o600);
    drop(store);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path).permissions(PermissionPolicy::Error))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Permissions { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("traces.db"));
    // The default warns and changes nothing: neither the file nor a directory it did not create.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    assert_eq!(mode(&path), 0o644);
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 1);
    drop(store);
    let store =
        SqliteStore::open(SqliteConfig::new(&path).permissions(PermissionPolicy::Tighten)).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o755, "the directory is not the store's");
    drop(store);
}

#[test]
fn a_shared_parent_directory_keeps_its_mode() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(shared.join("README"), b"project").unwrap();
    let store = SqliteStore::open(SqliteConfig::new(shared.join("t.db"))).unwrap();
    drop(store);
    assert_eq!(mode(&shared), 0o1777);
    assert_eq!(mode(&shared.join("t.db")), 0o600);
}

#[test]
fn without_create_a_missing_database_is_not_found_and_nothing_is_created() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("typo/x.db");
    let err = SqliteStore::open(SqliteConfig::new(&path).create(false)).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("typo/x.db"), "{err}");
    assert!(!root.path().join("typo").exists());
    drop(SqliteStore::open(SqliteConfig::new(&path)).unwrap());
    let store = SqliteStore::open(SqliteConfig::new(&path).create(false)).unwrap();
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 0);
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    drop(SqliteStore::open(SqliteConfig::new(&path)).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let err = SqliteStore::open(SqliteConfig::new(&path)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedSchema {
                found: 99,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("traces.db") && err.to_string().contains("newer"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
}

#[test]
fn erasure_removes_steps_and_tags_and_overwrites_bytes() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let runs = contract::sample_runs();
    store.save_batch(&contract::processed(&runs)).unwrap();
    let victim = &runs[3];
    let marker = victim.input.to_string();
    assert!(marker.len() > 20);
    assert!(store.delete(victim.id).unwrap());
    // secure_delete zeroes the freed pages; a checkpoint (flush) clears old WAL frames.
    store.flush().unwrap();
    for f in ["traces.db", "traces.db-wal"] {
        let bytes = std::fs::read(root.path().join(f)).unwrap_or_default();
        let needle = &marker.as_bytes()[1..21];
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "erased text must not survive in {f}"
        );
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let id = victim.id.to_string();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count(&format!("SELECT COUNT(*) FROM traces WHERE id = '{id}'")),
        0
    );
    let steps: i64 = count("SELECT COUNT(*) FROM steps");
    let want: usize = runs
        .iter()
        .filter(|r| r.id != victim.id)
        .map(|r| r.walk().filter(|s| queried_step(s)).count())
        .sum();
    assert_eq!(steps as usize, want);
    assert_eq!(
        count("SELECT COUNT(*) FROM tags WHERE trace_pk NOT IN (SELECT pk FROM traces)"),
        0
    );
    drop(conn);
    store.vacuum().unwrap();
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 19);
}

#[test]
fn retention_runs_on_open() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let old = AgentRun::builder("old")
        .start_time(chrono::Utc::now() - chrono::Duration::days(40))
        .build();
    let new = AgentRun::new("new");
    store
        .save_batch(&contract::processed(&[old.clone(), new.clone()]))
        .unwrap();
    drop(store);
    let store = SqliteStore::open(SqliteConfig::new(&path).retention_days(Some(30))).unwrap();
    assert_eq!(store.get(old.id).unwrap(), None);
    assert!(store.get(new.id).unwrap().is_some());
    assert_eq!(store.apply_retention().unwrap(), 0);
}

#[test]
fn committed_data_survives_reopen_without_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let runs = contract::fixture_runs(50);
    {
        let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
        store.save_batch(&contract::processed(&runs)).unwrap();
        // Simulate a crash: copy the files while the store is open (WAL not checkpointed).
        for f in ["traces.db", "traces.db-wal"] {
            std::fs::copy(root.path().join(f), root.path().join(format!("copy-{f}"))).unwrap();
        }
    }
    let store = SqliteStore::open(SqliteConfig::new(root.path().join("copy-traces.db"))).unwrap();
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 50);
}

/// Three stored runs in `traces.db`, then `sql` run behind the store's back with the second
/// run's id as `?1`.
fn store_with_edited_row(
    sql: &str,
) -> (
    tempfile::TempDir,
    SqliteStore,
    Vec<tracecraft_core::AgentRun>,
) {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let runs = contract::fixture_runs(3);
    store.save_batch(&contract::processed(&runs)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(sql, [runs[1].id.to_string()]).unwrap();
    (root, store, runs)
}

#[test]
fn corrupt_row_is_reported_with_file_and_row() {
    let (_root, store, runs) =
        store_with_edited_row("UPDATE traces SET run = '{\"id\": \"secret-value' WHERE id = ?1");
    let err = store.get(runs[1].id).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains("traces.db") && !msg.contains("secret-value"),
        "{msg}"
    );
    assert!(store.get(runs[0].id).unwrap().is_some());
    assert!(store.get(runs[2].id).unwrap().is_some());
}

#[test]
fn debug_shows_config_only() {
    let root = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(root.path().join("t.db"))).unwrap();
    let dbg = format!("{store:?}");
    assert!(dbg.contains("SqliteStore") && dbg.contains("t.db"));
}

/// The schema of version 1, as the first release wrote it.
const SCHEMA_V1: &str = r"
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
PRAGMA user_version = 1;
";

/// Version 2's migration from version 1, as version 2 applied it.
const MIGRATION_V2: &str = r"
ALTER TABLE traces RENAME COLUMN run_json TO run;
DROP INDEX IF EXISTS traces_duration;
DROP INDEX IF EXISTS traces_cost;
PRAGMA user_version = 2;
";

/// Writes `runs` into a new database of schema `version` (1 or 2) the way that version did:
/// JSON text bodies in `run_json` (v1) or MessagePack behind format byte 1 in `run` (v2);
/// step ids as hyphenated lower-case text (both).
fn write_old_database(path: &Path, runs: &[AgentRun], version: u8) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
        .unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    let body_column = match version {
        1 => "run_json",
        2 => {
            conn.execute_batch(MIGRATION_V2).unwrap();
            "run"
        }
        _ => unreachable!(),
    };
    let body = |run: &AgentRun| -> rusqlite::types::Value {
        if version == 1 {
            rusqlite::types::Value::Text(tracecraft_core::to_json(run))
        } else {
            let mut out = vec![1u8];
            rmp_serde::encode::write(&mut out, run).unwrap();
            rusqlite::types::Value::Blob(out)
        }
    };
    let nanos = |t: chrono::DateTime<chrono::Utc>| t.timestamp_nanos_opt().unwrap();
    for run in runs {
        conn.execute(
            &format!(
                "INSERT INTO traces (id, name, name_lower, start_ns, duration_ms, total_cost_usd,
             total_tokens, error_count, has_error, any_error, session_id, user_id, environment,
             step_count, {body_column}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
             ?13, ?14, ?15)"
            ),
            rusqlite::params![
                run.id.to_string(),
                run.name,
                run.name.to_lowercase(),
                nanos(run.start_time),
                run.duration_ms,
                run.total_cost_usd,
                run.total_tokens as i64,
                run.error_count as i64,
                run.error_count > 0 || run.has_any_error(),
                run.has_any_error(),
                run.session_id,
                run.user_id,
                run.environment,
                run.step_count() as i64,
                body(run),
            ],
        )
        .unwrap();
        let pk = conn.last_insert_rowid();
        for tag in &run.tags {
            conn.execute(
                "INSERT OR IGNORE INTO tags (tag, trace_pk) VALUES (?1, ?2)",
                rusqlite::params![tag, pk],
            )
            .unwrap();
        }
        for s in run.walk() {
            conn.execute(
                "INSERT OR IGNORE INTO steps (trace_pk, step_id, parent_id, type, name, start_ns,
                 duration_ms, model_name, input_tokens, output_tokens, cost_usd, has_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                rusqlite::params![
                    pk,
                    s.id.to_string(),
                    s.parent_id.map(|p| p.to_string()),
                    s.step_type.as_str(),
                    s.name,
                    nanos(s.start_time),
                    s.duration_ms,
                    s.model_name,
                    s.input_tokens.map(|v| v as i64),
                    s.output_tokens.map(|v| v as i64),
                    s.cost_usd,
                    s.has_error(),
                ],
            )
            .unwrap();
        }
    }
}

/// Whether a step has a `steps` row in a database written by this version: one that names a
/// model or failed (the rows queries read).
fn queried_step(s: &Step) -> bool {
    s.model_name.is_some() || s.has_error()
}

/// The `steps` rows of the database at `path` equal what `runs` give, step ids as 16 bytes:
/// a row for every step (`every_step`, databases written before) or for the queried ones.
fn assert_steps_rows(conn: &rusqlite::Connection, runs: &[AgentRun], every_step: bool) {
    type Row = (
        Vec<u8>,
        Option<Vec<u8>>,
        String,
        String,
        i64,
        Option<f64>,
        Option<String>,
    );
    let mut st = conn
        .prepare(
            "SELECT s.step_id, s.parent_id, s.type, s.name, s.start_ns, s.duration_ms,
             s.model_name FROM steps s JOIN traces t ON t.pk = s.trace_pk
             WHERE t.id = ?1 ORDER BY s.step_id",
        )
        .unwrap();
    let mut total = 0;
    for run in runs {
        let got: Vec<Row> = st
            .query_map([run.id.to_string()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut want: Vec<Row> = run
            .walk()
            .filter(|s| every_step || queried_step(s))
            .map(|s| {
                (
                    s.id.as_bytes().to_vec(),
                    s.parent_id.map(|p| p.as_bytes().to_vec()),
                    s.step_type.as_str().to_owned(),
                    s.name.clone(),
                    s.start_time.timestamp_nanos_opt().unwrap(),
                    s.duration_ms,
                    s.model_name.clone(),
                )
            })
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        want.dedup_by(|a, b| a.0 == b.0);
        total += want.len();
        assert_eq!(got, want, "steps of {}", run.id);
    }
    let all: i64 = conn
        .query_row("SELECT COUNT(*) FROM steps", [], |r| r.get(0))
        .unwrap();
    assert_eq!(all as usize, total);
    let text: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM steps WHERE typeof(step_id) != 'blob'
             OR (parent_id IS NOT NULL AND typeof(parent_id) != 'blob')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(text, 0);
}

#[test]
fn new_databases_store_step_ids_as_16_bytes() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let mut runs = contract::sample_runs();
    runs.extend(contract::fixture_runs(30));
    store.save_batch(&contract::processed(&runs)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_steps_rows(&conn, &runs, false);
    assert!(
        runs.iter()
            .flat_map(AgentRun::walk)
            .any(|s| !queried_step(s)),
        "the runs have steps without a row"
    );
}

#[test]
fn version_1_databases_migrate_and_stay_readable() {
    old_databases_migrate_and_stay_readable(1);
}

#[test]
fn version_2_databases_migrate_and_stay_readable() {
    old_databases_migrate_and_stay_readable(2);
}

#[test]
fn migration_to_v3_refuses_step_ids_that_are_not_uuids() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let runs = contract::sample_runs();
    write_old_database(&path, &runs, 2);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "UPDATE steps SET parent_id = 'not-a-uuid'
         WHERE (trace_pk, step_id) = (SELECT trace_pk, step_id FROM steps LIMIT 1)",
    )
    .unwrap();
    drop(conn);
    let before = dump(&path);
    let err = SqliteStore::open(SqliteConfig::new(&path)).unwrap_err();
    assert!(err.to_string().contains("traces.db"), "{err}");
    // Rolled back: still version 2, every row as it was.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    drop(conn);
    assert_eq!(dump(&path), before);
}

fn old_databases_migrate_and_stay_readable(version: u8) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join("traces.db");
    let mut runs = contract::sample_runs();
    runs.extend(contract::fixture_runs(30));
    write_old_database(&path, &runs, version);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let (store, conn) = open_migrated(&path);
    // Step rows rebuilt with 16-byte ids, all else kept.
    assert_steps_rows(&conn, &runs, true);
    // Old rows are read from their body, byte-identical once serialized again.
    for run in &runs {
        let got = store.get(run.id).unwrap().expect("migrated run");
        assert_eq!(&got, run);
        assert_eq!(
            tracecraft_core::to_json(&got),
            tracecraft_core::to_json(run)
        );
    }
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), runs.len() as u64);
    for q in contract::oracle_queries() {
        let want = runs.iter().filter(|r| q.matches(r)).count() as u64;
        assert_eq!(store.count(&q).unwrap(), want, "{q:?}");
    }
    let stats = store.stats().unwrap();
    assert_eq!(
        stats.steps,
        runs.iter().map(AgentRun::step_count).sum::<usize>() as u64
    );

    // Saving again merges with the old row (rewritten as MessagePack if it was JSON).
    let mut again = runs[0].clone();
    again.tags.push("resaved".into());
    store
        .save(&ProcessedRun::assume_processed(again.clone()))
        .unwrap();
    let merged = store.get(runs[0].id).unwrap().unwrap();
    assert_eq!(merged, tracecraft_core::merge_runs(runs[0].clone(), again));
    let kind: String = conn
        .query_row(
            "SELECT typeof(run) FROM traces WHERE id = ?1",
            [runs[0].id.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "blob");
    assert_eq!(store.count(&TraceQuery::new().tag("resaved")).unwrap(), 1);

    // Erasure of an old row cascades as before.
    let victim = &runs[3];
    assert!(store.delete(victim.id).unwrap());
    assert_eq!(store.get(victim.id).unwrap(), None);
    let orphans: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM steps WHERE trace_pk NOT IN (SELECT pk FROM traces))
                  + (SELECT COUNT(*) FROM tags WHERE trace_pk NOT IN (SELECT pk FROM traces))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    drop(store);
    // Reopening a migrated database applies nothing more.
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    assert_eq!(
        store.count(&TraceQuery::new()).unwrap(),
        runs.len() as u64 - 1
    );
}

#[test]
fn corrupt_messagepack_body_is_reported_without_payload() {
    let (_root, store, runs) =
        store_with_edited_row("UPDATE traces SET run = substr(run, 1, 40) WHERE id = ?1");
    let err = store.get(runs[1].id).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("traces.db"), "{err}");
    assert!(store.get(runs[0].id).unwrap().is_some());
}

#[test]
fn corrupt_body_error_names_the_trace_without_payload() {
    for sql in [
        // Format 2: the structure cut short; a byte of the text section changed.
        "UPDATE traces SET run = substr(run, 1, 60) WHERE id = ?1",
        "UPDATE traces SET run = substr(run, 1, length(run) - 3) || x'ff' || substr(run, -2)
         WHERE id = ?1",
        // Format 1 (schemas v2, v3): cut short.
        "UPDATE traces SET run = x'01' || substr(run, 6, 50) WHERE id = ?1",
    ] {
        let (_root, store, runs) = store_with_edited_row(sql);
        let err = store.get(runs[1].id).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{msg}");
        assert!(msg.contains("traces.db"), "{msg}");
        assert!(msg.contains(&runs[1].id.to_string()), "{msg}");
        for field in [&runs[1].name, &runs[1].environment] {
            assert!(!msg.contains(field.as_str()), "{msg}");
        }
        // The same error from a query that meets the row; the other rows read as before.
        let err = store.query(&TraceQuery::new()).unwrap_err();
        assert!(err.to_string().contains(&runs[1].id.to_string()), "{err}");
        assert_eq!(store.get(runs[0].id).unwrap().as_ref(), Some(&runs[0]));
        assert_eq!(store.get(runs[2].id).unwrap().as_ref(), Some(&runs[2]));
    }
}

/// Takes schemas v5 and v6 out of a database (the search index, its trigger and the erased
/// runs' table), as older versions left it.
fn unmigrate_search(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "DROP TRIGGER traces_fts_erase; DROP TABLE traces_fts; DROP TABLE traces_fts_erased;",
    )
    .unwrap();
}

/// The number of runs with entries in the search index (the index keeps no row table to
/// scan, `columnsize=0`: its entries are read through `fts5vocab`).
fn indexed_runs(conn: &rusqlite::Connection) -> i64 {
    conn.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.traces_fts_instances
         USING fts5vocab(main, traces_fts, instance);",
    )
    .unwrap();
    conn.query_row(
        "SELECT count(DISTINCT doc) FROM temp.traces_fts_instances",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Whether the database file (and its WAL) hold `needle` anywhere.
fn file_holds(path: &Path, needle: &[u8]) -> bool {
    ["", "-wal"].iter().any(|suffix| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::read(&p)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

/// A v4 database (no search index) is indexed when opened: text search agrees with the
/// reference over every stored run, old and new.
#[test]
fn version_4_databases_get_their_runs_indexed_for_text_search() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let mut runs = contract::sample_runs();
    runs.extend(contract::fixture_runs(30));
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store.save_batch(&contract::processed(&runs)).unwrap();
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        unmigrate_search(&conn);
        conn.execute_batch("PRAGMA user_version = 4").unwrap();
    }
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let mut searches = vec!["research".to_owned(), "tool fail".into(), "gpt".into()];
    for run in &runs[..6] {
        let mut words = Vec::new();
        tracecraft_core::search::for_each_text(run, &mut |s| {
            words.extend(tracecraft_core::search::words(s));
        });
        searches.extend(words.into_iter().step_by(7).take(3));
    }
    for text in searches {
        let q = TraceQuery::new().text(text.clone());
        let want: Vec<_> = q.apply(runs.iter().cloned()).iter().map(|r| r.id).collect();
        let got: Vec<_> = store.query(&q).unwrap().iter().map(|r| r.id).collect();
        assert!(!want.is_empty(), "{text}");
        assert_eq!(got, want, "{text}");
    }
}

/// Text search finds words of stored content; an erased run is found by no search, and once
/// the change is checkpointed its words are in neither the index nor the file.
#[test]
fn erased_runs_leave_the_search_index_and_the_file() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let mut runs = contract::fixture_runs(40);
    runs[7].output = serde_json::json!({"answer": "Your parcel was QUIXOTICALLY rerouted"});
    runs[8].error = Some("zygomorphic failure".into());
    store.save_batch(&contract::processed(&runs)).unwrap();
    store.flush().unwrap();
    let found = |text: &str| {
        store
            .query(&TraceQuery::new().text(text))
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(found("quixotic parcel"), [runs[7].id]);
    assert_eq!(found("ZYGOMORPH"), [runs[8].id]);
    assert!(file_holds(&path, b"quixotically"));

    assert!(store.delete(runs[7].id).unwrap());
    let cutoff = runs[8].start_time + chrono::Duration::seconds(1);
    assert!(store.purge_older_than(cutoff).unwrap() > 0);
    store.flush().unwrap();
    assert!(found("quixotically").is_empty());
    assert!(found("zygomorphic").is_empty());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let indexed: i64 = conn
        .query_row(
            "SELECT count(*) FROM traces_fts WHERE traces_fts MATCH 'quixotically OR zygomorphic'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 0);
    let rows = indexed_runs(&conn);
    assert_eq!(rows as u64, store.count(&TraceQuery::new()).unwrap());
    drop(conn);
    assert!(
        !file_holds(&path, b"quixotically"),
        "erased words stay in the file"
    );
    assert!(
        !file_holds(&path, b"zygomorphic"),
        "purged words stay in the file"
    );

    // A bulk purge (more than 1% of the runs) takes the words out by merging the index.
    let mut more = contract::fixture_runs(60);
    for (i, r) in more.iter_mut().enumerate() {
        r.id = tracecraft_core::Uuid::new_v4();
        r.start_time = cutoff - chrono::Duration::days(1) + chrono::Duration::seconds(i as i64);
        if i % 2 == 0 {
            r.output = serde_json::json!(format!("the xylophonist number {i}"));
        }
    }
    store.save_batch(&contract::processed(&more)).unwrap();
    store.flush().unwrap();
    assert_eq!(found("xylophonist").len(), 30);
    assert!(file_holds(&path, b"xylophonist"));
    let left = store.count(&TraceQuery::new()).unwrap();
    assert_eq!(store.purge_older_than(cutoff).unwrap(), 60);
    store.flush().unwrap();
    assert!(found("xylophonist").is_empty());
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), left - 60);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows = indexed_runs(&conn);
    assert_eq!(rows as u64, left - 60);
    let secure: i64 = conn
        .query_row(
            "SELECT v FROM traces_fts_config WHERE k = 'secure-delete'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(secure, 1, "secure-delete is back on after a bulk purge");
    drop(conn);
    assert!(
        !file_holds(&path, b"xylophonist"),
        "bulk-purged words stay in the file"
    );
    // Single erasures still work after it.
    let survivor = store.query(&TraceQuery::new().limit(1)).unwrap().remove(0);
    assert!(store.delete(survivor.id).unwrap());
    assert_eq!(
        found(&survivor.name).len() as u64,
        store
            .count(&TraceQuery::new().text(survivor.name.clone()))
            .unwrap()
    );
}

/// An erasure takes the run out of every search at once; its words leave the index at the
/// next write (before any new row can take its `pk`), at `flush`, or when the store is
/// dropped, and then the file.
#[test]
fn erased_words_leave_the_index_at_the_next_write_flush_or_drop() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let indexed = |word: &str| -> i64 {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row(
            "SELECT count(*) FROM traces_fts WHERE traces_fts MATCH ?1",
            [word],
            |r| r.get(0),
        )
        .unwrap()
    };
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let mut runs = contract::fixture_runs(3);
    runs[2].output = serde_json::json!("a quixotically rerouted parcel");
    store.save_batch(&contract::processed(&runs)).unwrap();
    // The last run has the highest `pk`: a row inserted after its deletion would reuse it.
    assert!(store.delete(runs[2].id).unwrap());
    assert!(
        store
            .query(&TraceQuery::new().text("quixotically"))
            .unwrap()
            .is_empty()
    );
    let mut next = contract::fixture_runs(1).remove(0);
    next.id = tracecraft_core::Uuid::new_v4();
    next.output = serde_json::json!("zygomorphic flowers");
    store
        .save(&contract::processed(&[next.clone()])[0])
        .unwrap();
    assert_eq!(indexed("quixotically"), 0, "the next write drains");
    let found = store.query(&TraceQuery::new().text("zygomorphic")).unwrap();
    assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), [next.id]);
    assert!(
        store
            .query(&TraceQuery::new().text("parcel"))
            .unwrap()
            .is_empty()
    );

    // Dropped without a flush: the words leave the index all the same.
    assert!(store.delete(next.id).unwrap());
    assert_eq!(indexed("zygomorphic"), 1);
    drop(store);
    assert_eq!(indexed("zygomorphic"), 0, "drop drains");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store.flush().unwrap();
    assert!(!file_holds(&path, b"zygomorphic"));
    assert!(!file_holds(&path, b"quixotically"));
}

/// The format byte of the stored body of `id`.
fn body_format(conn: &rusqlite::Connection, id: tracecraft_core::Uuid) -> i64 {
    conn.query_row(
        "SELECT unicode(CAST(substr(run, 1, 1) AS TEXT)) FROM traces WHERE id = ?1",
        [id.to_string()],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn version_3_databases_with_format_1_bodies_migrate_and_stay_readable() {
    // A v3 database as the previous version left it: its rows, with format 1 bodies
    // (rmp-serde MessagePack behind byte 1), and `user_version` 3.
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let mut runs = contract::sample_runs();
    runs.extend(contract::fixture_runs(30));
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store.save_batch(&contract::processed(&runs)).unwrap();
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for run in &runs {
            let mut body = vec![1u8];
            rmp_serde::encode::write(&mut body, run).unwrap();
            conn.execute(
                "UPDATE traces SET run = ?1 WHERE id = ?2",
                rusqlite::params![body, run.id.to_string()],
            )
            .unwrap();
        }
        unmigrate_search(&conn);
        conn.execute_batch("PRAGMA user_version = 3").unwrap();
        assert_eq!(body_format(&conn, runs[0].id), 1);
    }
    let (store, conn) = open_migrated(&path);
    for run in &runs {
        assert_eq!(body_format(&conn, run.id), 1);
        let got = store.get(run.id).unwrap().expect("migrated run");
        assert_eq!(&got, run);
        assert_eq!(
            tracecraft_core::to_json(&got),
            tracecraft_core::to_json(run)
        );
    }
    for q in contract::oracle_queries() {
        let found = store.query(&q).unwrap();
        let matching = runs.iter().filter(|r| q.matches(r)).count();
        let want = matching
            .saturating_sub(q.offset)
            .min(q.limit.unwrap_or(usize::MAX));
        assert_eq!(found.len(), want, "{q:?}");
        assert!(found.iter().all(|r| runs.contains(r)), "{q:?}");
    }
    // Saved again: merged, and rewritten in format 2.
    let mut again = runs[0].clone();
    again.tags.push("resaved".into());
    store
        .save(&ProcessedRun::assume_processed(again.clone()))
        .unwrap();
    assert_eq!(body_format(&conn, runs[0].id), 2);
    assert_eq!(
        store.get(runs[0].id).unwrap().unwrap(),
        tracecraft_core::merge_runs(runs[0].clone(), again)
    );
    assert_eq!(body_format(&conn, runs[1].id), 1);
    assert_eq!(store.get(runs[1].id).unwrap().as_ref(), Some(&runs[1]));
}

/// Every row of `traces`, `tags` and `steps`, in key order, as text (bodies as hex).
fn dump(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT id, name, name_lower, start_ns, duration_ms, total_cost_usd, total_tokens,
         error_count, has_error, any_error, session_id, user_id, environment, step_count,
         hex(run) FROM traces ORDER BY id",
        "SELECT t.id, g.tag FROM tags g JOIN traces t ON t.pk = g.trace_pk ORDER BY t.id, g.tag",
        "SELECT t.id, s.step_id, s.parent_id, s.type, s.name, s.start_ns, s.duration_ms,
         s.model_name, s.input_tokens, s.output_tokens, s.cost_usd, s.has_error
         FROM steps s JOIN traces t ON t.pk = s.trace_pk ORDER BY t.id, s.step_id",
    ] {
        let mut st = conn.prepare(sql).unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| v.join("|"))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

#[test]
fn bodies_encoded_on_a_second_thread_make_the_same_database() {
    // A batch long enough for the encoding thread to run ahead (past its channel bound),
    // with ids repeated within the batch (merged with the earlier line of the batch) and
    // ids already stored (merged with the stored run): the pre-encoded body of a merged run
    // must not be used, and body i must land in row i.
    let runs = contract::fixture_runs(300);
    let stored: Vec<AgentRun> = runs[..20].to_vec();
    let mut batch: Vec<AgentRun> = runs[10..].to_vec();
    for i in (0..280).step_by(7) {
        let mut again = batch[i].clone();
        again.tags.push(format!("again-{i}"));
        again.output = tracecraft_core::json!({ "second": i });
        batch.insert(i + 100.min(batch.len() - i), again);
    }
    let root = tempfile::tempdir().unwrap();
    let mut dumps = Vec::new();
    for (k, threaded) in [false, true].into_iter().enumerate() {
        let path = root.path().join(format!("{k}/traces.db"));
        let store = SqliteStore::open(SqliteConfig::new(&path).encode_thread(threaded)).unwrap();
        store.save_batch(&contract::processed(&stored)).unwrap();
        store.save_batch(&contract::processed(&batch)).unwrap();
        for run in &runs {
            assert!(store.get(run.id).unwrap().is_some());
        }
        store.flush().unwrap();
        drop(store);
        dumps.push(dump(&path));
    }
    assert!(dumps[0].len() > 1_000, "{}", dumps[0].len());
    assert_eq!(dumps[0], dumps[1]);
}

#[test]
fn passes_the_contract_without_the_encoding_thread() {
    let root = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    contract::run_all(|| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        SqliteStore::open(
            SqliteConfig::new(root.path().join(format!("{i}/traces.db"))).encode_thread(false),
        )
        .unwrap()
    });
}

/// Fuzz crashes (`cargo xtask fuzz sqlite_body`) are replayed here: no body may panic the
/// decoder, and one that decodes is written again and reads back equal.
#[test]
fn body_fuzz_regressions_do_not_panic() {
    use tracecraft_store_sqlite::fuzzing::{decode_body, encode_body};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/sqlite_body");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        if let Ok(run) = decode_body(&bytes) {
            let again = decode_body(&encode_body(&run).unwrap()).unwrap();
            assert_eq!(again, run, "{}", e.path().display());
        }
    }
}

/// The fuzz entry points read what they write, in both formats, for the shared fixtures.
#[test]
fn fuzz_entry_points_round_trip() {
    use tracecraft_store_sqlite::fuzzing::{decode_body, encode_body, encode_body_v1};
    for run in contract::sample_runs() {
        let v2 = encode_body(&run).unwrap();
        let v1 = encode_body_v1(&run).unwrap();
        assert_eq!((v2[0], v1[0]), (2, 1));
        assert_eq!(decode_body(&v2).unwrap(), run);
        assert_eq!(decode_body(&v1).unwrap(), run);
        assert!(decode_body(&v2[..v2.len() / 2]).is_err());
    }
}

mod search_oracle {
    use super::*;
    use proptest::prelude::*;

    /// Words from a small vocabulary (so searches hit), with case, accents, digits and
    /// punctuation around them.
    fn text() -> impl Strategy<Value = String> {
        let word = prop::sample::select(vec![
            "refund",
            "Refunded",
            "ORDER",
            "order42",
            "école",
            "Écoles",
            "naïve",
            "日本語",
            "x",
            "42",
            "tool_call",
            "e-mail",
            "straße",
            "ΣΟΦΊΑ",
            // Letters followed by combining marks, which Rust counts as alphanumeric: one
            // word each for the reference, whatever the index's tokenizer.
            "हिंदी",
            "हि",
        ]);
        let sep = prop::sample::select(vec![" ", ", ", "-", "\n", "#", "'", "  "]);
        prop::collection::vec((word, sep), 0..8)
            .prop_map(|v| v.into_iter().map(|(w, s)| format!("{w}{s}")).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// The FTS5 index answers text search as the reference (`TraceQuery::matches`)
        /// does, after saving, merging and erasing.
        #[test]
        fn fts_agrees_with_the_reference(
            contents in prop::collection::vec((text(), text()), 1..6),
            searches in prop::collection::vec(text(), 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(SqliteConfig::new(dir.path().join("t.db"))).unwrap();
            let mut runs = contract::fixture_runs(contents.len());
            for (r, (name, output)) in runs.iter_mut().zip(&contents) {
                r.name = name.clone();
                r.output = serde_json::json!({"text": output});
            }
            store.save_batch(&contract::processed(&runs)).unwrap();
            let check = |store: &SqliteStore| -> Result<(), TestCaseError> {
                let stored = store.query(&TraceQuery::new()).unwrap();
                for s in &searches {
                    let q = TraceQuery::new().text(s.clone());
                    let want: Vec<_> = q.apply(stored.iter().cloned()).iter().map(|r| r.id).collect();
                    let got: Vec<_> = store.query(&q).unwrap().iter().map(|r| r.id).collect();
                    prop_assert_eq!(got, want, "search {:?}", s);
                }
                Ok(())
            };
            check(&store)?;
            let mut changed = runs[0].clone();
            changed.output = serde_json::json!(searches[0].clone());
            store.save(&ProcessedRun::assume_processed(changed)).unwrap();
            check(&store)?;
            store.delete(runs[runs.len() - 1].id).unwrap();
            check(&store)?;
        }
    }
}

/// Runs of ~64 KB each (a large input), `n` of them.
fn large_runs(n: usize) -> Vec<AgentRun> {
    (0..n)
        .map(|i| {
            let mut run = AgentRun::builder(format!("large {i}")).build();
            run.input = serde_json::json!(format!("{i:08} {}", "lorem ipsum ".repeat(5_400)));
            run
        })
        .collect()
}

fn file_len(path: &Path, suffix: &str) -> u64 {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Checkpoints happen off the writer (ADR 0011) but the WAL stays bounded: ~20 MB of runs
/// written in 2 MB transactions never make the WAL larger than twice the ~4 MB threshold
/// plus a transaction, and the runs reach the database file without any `flush`.
#[test]
fn the_wal_is_checkpointed_without_flush_and_stays_bounded() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let runs = large_runs(320);
    let mut largest = 0;
    for batch in runs.chunks(32) {
        store.save_batch(&contract::processed(batch)).unwrap();
        largest = largest.max(file_len(&path, "-wal"));
    }
    assert!(
        largest <= 2 * 4_120_000 + 6_000_000,
        "the WAL grew to {largest} bytes"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while file_len(&path, "") < 16_000_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        file_len(&path, "") >= 16_000_000,
        "runs not checkpointed into the database: {} bytes",
        file_len(&path, "")
    );
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 320);
    drop(store);
    // The last connection to close checkpoints and removes the WAL, as before.
    assert_eq!(file_len(&path, "-wal"), 0);
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    assert_eq!(store.get(runs[7].id).unwrap().as_ref(), Some(&runs[7]));
}

/// `flush` empties the WAL even while the checkpointing thread is busy with a checkpoint of
/// its own (it waits for it instead of giving up "busy"): erased bytes leave both files.
#[test]
fn flush_empties_the_wal_while_checkpoints_run_in_the_background() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let runs = large_runs(200);
    for (i, batch) in runs.chunks(20).enumerate() {
        store.save_batch(&contract::processed(batch)).unwrap();
        // Erase one run and flush right after a write that may have woken the thread.
        let victim = &batch[i % batch.len()];
        assert!(store.delete(victim.id).unwrap());
        store.flush().unwrap();
        assert_eq!(file_len(&path, "-wal"), 0, "flush left WAL frames");
        let needle = format!(
            "{:08} lorem",
            runs.iter().position(|r| r.id == victim.id).unwrap()
        );
        assert!(
            !file_holds(&path, needle.as_bytes()),
            "erased text survives after flush"
        );
    }
}

/// Bodies past 1 MiB are written into their row in place (a zero-filled BLOB, then
/// incremental BLOB I/O) instead of being bound: such a run reads back whole, is found by
/// its words, merges (the row rewritten the same way), and is erased with its rows; in a
/// batch (encoding thread) as alone.
#[test]
fn large_run_bodies_round_trip_merge_and_erase() {
    let root = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(root.path().join("traces.db"))).unwrap();
    // Over 2 MiB, of 1,000 distinct words (within the search document's limit).
    let text = |tag: &str| -> String {
        (0..250_000)
            .map(|i| format!("{tag}{} ", i % 1000))
            .collect()
    };
    let mut large = AgentRun::builder("large").tag("big").build();
    large.input = serde_json::Value::String(text("alpha"));
    assert!(large.input.as_str().unwrap().len() > 2 << 20);
    store
        .save_batch(&contract::processed(std::slice::from_ref(&large)))
        .unwrap();
    assert_eq!(store.get(large.id).unwrap().as_ref(), Some(&large));
    let found = |word: &str| store.count(&TraceQuery::new().text(word)).unwrap();
    assert_eq!(found("alpha999"), 1);

    // A merge rewrites the row, the body streamed again.
    let mut later = large.clone();
    later.output = serde_json::Value::String(text("beta"));
    later.tags = vec!["again".into()];
    store
        .save_batch(&contract::processed(std::slice::from_ref(&later)))
        .unwrap();
    let want = tracecraft_core::merge_runs(large.clone(), later);
    assert_eq!(store.get(large.id).unwrap().as_ref(), Some(&want));
    assert_eq!(found("beta999"), 1);
    assert_eq!(found("alpha999"), 1);

    // In a batch of small runs, through the encoding thread.
    let mut batch = contract::fixture_runs(12);
    let mut second = AgentRun::builder("large 2").build();
    second.output = serde_json::Value::String(text("gamma"));
    batch.insert(5, second.clone());
    store.save_batch(&contract::processed(&batch)).unwrap();
    for run in &batch {
        assert_eq!(store.get(run.id).unwrap().as_ref(), Some(run));
    }
    assert_eq!(found("gamma7"), 1);
    assert_eq!(found("gamma999"), 1);

    assert!(store.delete(large.id).unwrap());
    assert_eq!(store.get(large.id).unwrap(), None);
    assert_eq!(found("beta999"), 0);
    store.flush().unwrap();
    assert_eq!(found("alpha999"), 0);
}

/// Schema v7: the search index merges its segments 16 at a time (FTS5 `automerge`), in new
/// databases and in v6 ones once migrated; a migrated database's runs stay found by search.
#[test]
fn version_6_databases_migrate_to_merging_the_index_16_segments_at_a_time() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let mut runs = contract::sample_runs();
    runs.extend(contract::fixture_runs(30));
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store.save_batch(&contract::processed(&runs)).unwrap();
    drop(store);
    let automerge = |conn: &rusqlite::Connection| -> Option<i64> {
        conn.query_row(
            "SELECT v FROM traces_fts_config WHERE k = 'automerge'",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(automerge(&conn), Some(16));
        // A v6 database: FTS5's default (no `automerge` row).
        conn.execute_batch(
            "DELETE FROM traces_fts_config WHERE k = 'automerge'; PRAGMA user_version = 6;",
        )
        .unwrap();
        assert_eq!(automerge(&conn), None);
    }
    let (store, conn) = open_migrated(&path);
    assert_eq!(automerge(&conn), Some(16));
    for run in &runs {
        let mut word = None;
        tracecraft_core::search::for_each_text(run, &mut |s| {
            if word.is_none() {
                word = tracecraft_core::search::words(s).into_iter().next();
            }
        });
        let q = TraceQuery::new().text(word.unwrap());
        let found = store.query(&q).unwrap();
        assert!(found.iter().any(|r| r.id == run.id), "{q:?}");
    }
}

/// Opens the store at `path` (migrating it) and a connection of its own to the file, and
/// checks that the file is at this build's schema.
fn open_migrated(path: &Path) -> (SqliteStore, rusqlite::Connection) {
    let store = SqliteStore::open(SqliteConfig::new(path)).unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    (store, conn)
}

/// The terms of the search index (`fts5vocab`), and in how many runs each is.
fn indexed_terms(conn: &rusqlite::Connection) -> std::collections::HashMap<String, i64> {
    conn.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.traces_fts_rows
         USING fts5vocab(main, traces_fts, row);",
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT term, doc FROM temp.traces_fts_rows")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `n` distinct words beginning with `tag`, as one text.
fn many_words(tag: &str, n: usize) -> String {
    (0..n).map(|i| format!("{tag}{i} ")).collect()
}

/// Schema v8: a run's search document holds at most 1 MiB of words. A run past that is found
/// by its first words, not by the ones past the limit; a single word of megabytes is not
/// indexed and does not stop the words after it.
#[test]
fn a_run_past_the_search_document_limit_is_indexed_up_to_it() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let mut big = AgentRun::builder("big").build();
    big.input = serde_json::json!(["q".repeat(4 << 20), many_words("alpha", 200_000)]);
    let small = contract::fixture_runs(1).remove(0);
    store
        .save_batch(&contract::processed(&[big.clone(), small.clone()]))
        .unwrap();
    assert_eq!(store.get(big.id).unwrap().as_ref(), Some(&big));
    let found = |word: &str| store.count(&TraceQuery::new().text(word)).unwrap();
    assert_eq!(found("alpha0"), 1);
    assert_eq!(found("alpha50000"), 1);
    assert_eq!(found("alpha199999"), 0, "past the limit");
    assert_eq!(found("qqqq"), 0, "a word of 4 MB");
    assert_eq!(found(&small.name), 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let terms = indexed_terms(&conn);
    let bytes: usize = terms.keys().map(|t| t.len() + 1).sum();
    assert!(bytes < (1 << 20) + (64 << 10), "{bytes} bytes of terms");
    // Erasure takes out exactly what was indexed.
    erase_and_check_index(&store, &conn, &big, "alpha");
}

/// A v7 database indexed runs whole: migrating it to v8 gives back the words of its runs past
/// the limit (stored and erased but not yet drained) and indexes them within it, so no
/// erased word stays in the index.
#[test]
fn version_7_databases_migrate_without_leaving_words_past_the_limit() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let mut big = AgentRun::builder("big").build();
    big.input = serde_json::json!(many_words("alpha", 200_000));
    let mut gone = AgentRun::builder("gone").build();
    gone.input = serde_json::json!(many_words("omega", 200_000));
    let small = contract::fixture_runs(1).remove(0);
    let runs = [big.clone(), gone.clone(), small.clone()];
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store.save_batch(&contract::processed(&runs)).unwrap();
    drop(store);
    {
        // Index every run whole, as v7 did, then erase `gone` (its body waits in
        // `traces_fts_erased` for its words to be given back).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("INSERT INTO traces_fts (traces_fts) VALUES ('delete-all')")
            .unwrap();
        for run in &runs {
            let mut words: Vec<String> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            tracecraft_core::search::for_each_text(run, &mut |s| {
                for w in tracecraft_core::search::words(s) {
                    if seen.insert(w.clone()) {
                        words.push(w);
                    }
                }
            });
            let pk: i64 = conn
                .query_row(
                    "SELECT pk FROM traces WHERE id = ?1",
                    [run.id.to_string()],
                    |r| r.get(0),
                )
                .unwrap();
            conn.execute(
                "INSERT INTO traces_fts (rowid, text) VALUES (?1, ?2)",
                rusqlite::params![pk, words.join(" ")],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM traces WHERE id = ?1", [gone.id.to_string()])
            .unwrap();
        conn.execute_batch("PRAGMA user_version = 7").unwrap();
        let terms = indexed_terms(&conn);
        assert_eq!(terms.get("alpha199999"), Some(&1));
        assert_eq!(terms.get("omega199999"), Some(&1));
    }
    let (store, conn) = open_migrated(&path);
    assert_no_terms(&conn, "omega");
    let terms = indexed_terms(&conn);
    assert_eq!(terms.get("alpha199999"), None, "a word past the limit left");
    assert_eq!(terms.get("alpha0"), Some(&1));
    let found = |word: &str| store.count(&TraceQuery::new().text(word)).unwrap();
    assert_eq!(found("alpha0"), 1);
    assert_eq!(found(&small.name), 1);
    // The migrated run's words leave with it.
    erase_and_check_index(&store, &conn, &big, "alpha");
}

/// Erases `run` and checks that, once flushed, no indexed term begins with `prefix` (the
/// words that only `run` held).
fn erase_and_check_index(
    store: &SqliteStore,
    conn: &rusqlite::Connection,
    run: &AgentRun,
    prefix: &str,
) {
    assert!(store.delete(run.id).unwrap());
    store.flush().unwrap();
    assert_no_terms(conn, prefix);
}

/// Checks that no indexed term begins with `prefix` (words that only erased runs held).
fn assert_no_terms(conn: &rusqlite::Connection, prefix: &str) {
    assert!(
        indexed_terms(conn).keys().all(|t| !t.starts_with(prefix)),
        "erased words left"
    );
}
