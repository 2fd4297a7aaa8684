//! The shared contract suite, plus SQLite-specific behaviour: schema versions, permissions,
//! erasure, retention, WAL survival.
#![allow(clippy::disallowed_methods)] // tests wrap fixture runs as processed runs

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracecraft_core::{AgentRun, ProcessedRun, StoreError, TraceQuery, TraceStore, contract};
use tracecraft_store_sqlite::{PermissionPolicy, SCHEMA_VERSION, SqliteConfig, SqliteStore};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
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
fn files_are_private_and_loose_ones_are_tightened_or_refused() {
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
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 1);
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
                supported: 1,
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
        .map(AgentRun::step_count)
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

#[test]
fn corrupt_row_is_reported_with_file_and_row() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let runs = contract::fixture_runs(3);
    store.save_batch(&contract::processed(&runs)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE traces SET run_json = '{\"id\": \"secret-value' WHERE id = ?1",
        [runs[1].id.to_string()],
    )
    .unwrap();
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
