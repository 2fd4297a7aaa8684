//! The shared contract suite, plus JSONL-specific behaviour: bad lines, Python files,
//! permissions, rotation, retention, erasure.
#![allow(clippy::disallowed_methods)] // tests wrap fixture runs as processed runs

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracecraft_core::{AgentRun, ProcessedRun, StoreError, TraceQuery, TraceStore, contract};
use tracecraft_store_jsonl::{Fsync, JsonlConfig, JsonlStore, PermissionPolicy};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn passes_the_contract() {
    let root = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    contract::run_all(|| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        JsonlStore::open(JsonlConfig::new(root.path().join(i.to_string())).fsync(Fsync::Never))
            .unwrap()
    });
}

#[test]
fn passes_the_contract_with_tiny_files() {
    // Every few runs a new file: merges, deletes and purges span files.
    let root = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let make = || {
        let i = n.fetch_add(1, Ordering::Relaxed);
        JsonlStore::open(
            JsonlConfig::new(root.path().join(i.to_string()))
                .rotate_bytes(Some(2_000))
                .fsync(Fsync::Always),
        )
        .unwrap()
    };
    contract::check_save_get(&make());
    contract::check_query_oracle(&make());
    contract::check_merge(&make());
    contract::check_batch(&make());
    contract::check_delete(&make());
    contract::check_purge(&make());
    contract::check_stats(&make());
    contract::check_concurrency(&make(), 4, 100);
}

#[test]
fn reopening_rebuilds_the_index() {
    let root = tempfile::tempdir().unwrap();
    let runs = contract::fixture_runs(40);
    {
        let store =
            JsonlStore::open(JsonlConfig::new(root.path()).rotate_bytes(Some(3_000))).unwrap();
        store.save_batch(&contract::processed(&runs)).unwrap();
        let mut again = runs[5].clone();
        again.name = "renamed".into();
        again.steps.clear();
        store.save(&ProcessedRun::assume_processed(again)).unwrap();
        assert!(store.delete(runs[9].id).unwrap());
    }
    let store = JsonlStore::open(JsonlConfig::new(root.path())).unwrap();
    assert!(store.bad_lines().is_empty(), "{:?}", store.bad_lines());
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 39);
    let merged = store.get(runs[5].id).unwrap().unwrap();
    assert_eq!(merged.name, "renamed");
    assert_eq!(
        merged.step_count(),
        runs[5].step_count(),
        "steps survive reopen"
    );
    assert_eq!(store.get(runs[9].id).unwrap(), None);
    let q = TraceQuery::new().environment("production");
    let want = q.apply(store.query(&TraceQuery::new()).unwrap());
    assert_eq!(store.query(&q).unwrap(), want);
}

#[test]
fn torn_malformed_and_newer_lines_are_reported_and_the_rest_reads() {
    let root = tempfile::tempdir().unwrap();
    let runs = contract::sample_runs();
    let path = root.path().join("tracecraft.jsonl");
    let mut text = String::new();
    for (i, r) in runs.iter().enumerate() {
        text.push_str(&tracecraft_core::to_json(r));
        text.push('\n');
        if i == 2 {
            text.push_str("{not json at all, sk-secret-123}\n");
        }
        if i == 4 {
            let mut newer = tracecraft_core::to_json(&AgentRun::new("future"));
            newer.insert_str(1, "\"schema_version\":2,");
            text.push_str(&newer);
            text.push('\n');
        }
    }
    let torn = tracecraft_core::to_json(&AgentRun::new("torn"));
    text.push_str(&torn[..torn.len() / 2]);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let store = JsonlStore::open(JsonlConfig::new(root.path())).unwrap();
    let bad = store.bad_lines();
    let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
    assert_eq!(lines, [4, 7, 23], "{bad:?}");
    assert!(bad.iter().all(|b| b.path == path));
    assert!(bad[1].message.contains("newer schema"), "{}", bad[1]);
    assert!(bad[2].message.contains("torn"), "{}", bad[2]);
    assert!(bad.iter().all(|b| !b.to_string().contains("sk-secret")));
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), runs.len() as u64);
    for r in &runs {
        assert_eq!(store.get(r.id).unwrap().as_ref(), Some(r));
    }
    // Appending after a torn line starts on a new line; bad lines are kept, not dropped.
    let extra = AgentRun::new("after-crash");
    store
        .save(&ProcessedRun::assume_processed(extra.clone()))
        .unwrap();
    assert!(store.delete(runs[0].id).unwrap());
    drop(store);
    let store = JsonlStore::open(JsonlConfig::new(root.path())).unwrap();
    assert_eq!(store.get(extra.id).unwrap(), Some(extra));
    assert_eq!(store.bad_lines().len(), 3);
    let all = std::fs::read_to_string(&path).unwrap();
    assert!(all.contains("{not json at all, sk-secret-123}"));
}

#[test]
fn python_reference_files_load_and_written_lines_are_the_wire_format() {
    let root = tempfile::tempdir().unwrap();
    let store = JsonlStore::open(JsonlConfig::new(root.path()).rotate_daily(false)).unwrap();
    let runs = contract::sample_runs();
    store.save_batch(&contract::processed(&runs)).unwrap();
    store.flush().unwrap();
    let written = std::fs::read_to_string(root.path().join("traces.jsonl")).unwrap();
    let want: String = runs
        .iter()
        .map(|r| tracecraft_core::to_json(r) + "\n")
        .collect();
    assert!(
        written == want,
        "one wire-format AgentRun per line, in order"
    );
    for (line, (_, parsed)) in tracecraft_core::read_jsonl(written.as_bytes()).enumerate() {
        assert_eq!(&parsed.unwrap(), &runs[line]);
    }
}

#[test]
fn files_are_private_and_loose_ones_are_reported_refused_or_tightened_on_request() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("traces");
    let store = JsonlStore::open(JsonlConfig::new(&dir)).unwrap();
    store
        .save(&ProcessedRun::assume_processed(AgentRun::new("a")))
        .unwrap();
    let files = store.files();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("traces-20") && name.ends_with(".jsonl"),
        "{name}"
    );
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&files[0]), 0o600);
    drop(store);

    std::fs::set_permissions(&files[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    let err =
        JsonlStore::open(JsonlConfig::new(&dir).permissions(PermissionPolicy::Error)).unwrap_err();
    assert!(
        matches!(err, StoreError::Permissions { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&name));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The default warns and changes nothing.
    let store = JsonlStore::open(JsonlConfig::new(&dir)).unwrap();
    assert_eq!(mode(&files[0]), 0o644);
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 1);
    drop(store);
    let store =
        JsonlStore::open(JsonlConfig::new(&dir).permissions(PermissionPolicy::Tighten)).unwrap();
    assert_eq!(mode(&files[0]), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 1);
}

#[test]
fn without_create_a_missing_directory_is_not_found_and_nothing_is_created() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("typo/traces");
    let err = JsonlStore::open(JsonlConfig::new(&dir).create(false)).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(!root.path().join("typo").exists());
    drop(JsonlStore::open(JsonlConfig::new(&dir)).unwrap());
    let store = JsonlStore::open(JsonlConfig::new(&dir).create(false)).unwrap();
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 0);
}

#[test]
fn erasure_removes_every_line_of_the_trace() {
    let root = tempfile::tempdir().unwrap();
    let store = JsonlStore::open(JsonlConfig::new(root.path())).unwrap();
    let runs = contract::sample_runs();
    store.save_batch(&contract::processed(&runs)).unwrap();
    // A second part: the trace now has two lines.
    let mut part = runs[3].clone();
    part.steps.clear();
    store.save(&ProcessedRun::assume_processed(part)).unwrap();
    let marker = runs[3].input.to_string();
    assert!(store.delete(runs[3].id).unwrap());
    let id = runs[3].id.to_string();
    for f in std::fs::read_dir(root.path()).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains(&id) && !text.contains(&marker[1..marker.len() - 1]));
        assert_eq!(mode(&f), 0o600);
    }
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 19);
}

#[test]
fn retention_deletes_old_files_and_rewrites_the_boundary() {
    let root = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let old: Vec<AgentRun> = (0..5)
        .map(|i| {
            AgentRun::builder(format!("old-{i}"))
                .start_time(now - chrono::Duration::days(60))
                .build()
        })
        .collect();
    let new: Vec<AgentRun> = (0..3)
        .map(|i| AgentRun::builder(format!("new-{i}")).build())
        .collect();
    // An old-only file, and a boundary file mixing old and new runs.
    let write = |name: &str, runs: &[&AgentRun]| {
        let mut f = std::fs::File::create(root.path().join(name)).unwrap();
        for r in runs {
            writeln!(f, "{}", tracecraft_core::to_json(r)).unwrap();
        }
    };
    write("traces-2020-01-01.jsonl", &[&old[0], &old[1], &old[2]]);
    write(
        "traces-2020-01-02.jsonl",
        &[&old[3], &new[0], &old[4], &new[1]],
    );
    let store = JsonlStore::open(JsonlConfig::new(root.path()).retention_days(Some(30))).unwrap();
    assert!(!root.path().join("traces-2020-01-01.jsonl").exists());
    let boundary = std::fs::read_to_string(root.path().join("traces-2020-01-02.jsonl")).unwrap();
    assert_eq!(boundary.lines().count(), 2);
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 2);
    store
        .save(&ProcessedRun::assume_processed(new[2].clone()))
        .unwrap();
    assert_eq!(store.apply_retention().unwrap(), 0);
    assert_eq!(store.get(new[1].id).unwrap().as_ref(), Some(&new[1]));
}

#[test]
fn rotates_by_size() {
    let root = tempfile::tempdir().unwrap();
    let store = JsonlStore::open(
        JsonlConfig::new(root.path())
            .rotate_daily(false)
            .rotate_bytes(Some(20_000)),
    )
    .unwrap();
    let runs = contract::sample_runs();
    store.save_batch(&contract::processed(&runs)).unwrap();
    let files = store.files();
    assert!(files.len() > 3, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("traces.1.jsonl")));
    for r in &runs {
        assert_eq!(store.get(r.id).unwrap().as_ref(), Some(r));
    }
    assert!(store.stats().unwrap().bytes > 200_000);
}

#[test]
fn batches_larger_than_the_buffer_are_written_whole_under_every_fsync_policy() {
    // A 4 KiB buffer makes every batch several chunks: with `Fsync::Batch` the earlier chunks
    // are fsynced in the background while the next ones are serialized.
    // Batches of 150 runs are serialized on several threads unless `encode_threads` is 1; the
    // files must be the same bytes either way.
    let runs = contract::fixture_runs(150);
    let mut written: Vec<Vec<u8>> = Vec::new();
    for (policy, threads) in [
        (Fsync::Batch, 0),
        (Fsync::Batch, 1),
        (Fsync::Batch, 3),
        (Fsync::Never, 2),
        (Fsync::Always, 4),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = JsonlConfig::new(dir.path())
            .fsync(policy)
            .rotate_bytes(Some(64 << 10))
            .encode_threads(threads);
        config.buffer_bytes = 4096;
        let store = JsonlStore::open(config.clone()).unwrap();
        store.save_batch(&contract::processed(&runs)).unwrap();
        // A merge inside the next batch, and again within it.
        let mut again = runs[3].clone();
        again.tags.push("again".into());
        store
            .save_batch(&contract::processed(&[
                again.clone(),
                runs[4].clone(),
                again.clone(),
            ]))
            .unwrap();
        // Another batch for the threads, smaller than the first: their kept buffers are
        // reused and must not leak lines of the earlier batch.
        let later: Vec<_> = runs[100..140]
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.tags.push("later".into());
                r
            })
            .collect();
        store.save_batch(&contract::processed(&later)).unwrap();
        let check = |store: &JsonlStore| {
            assert!(store.bad_lines().is_empty(), "{:?}", store.bad_lines());
            assert_eq!(store.count(&TraceQuery::new()).unwrap(), runs.len() as u64);
            for (i, run) in runs.iter().enumerate() {
                let got = store.get(run.id).unwrap().unwrap();
                if run.id == runs[3].id {
                    assert!(got.tags.iter().any(|t| t == "again"));
                } else if (100..140).contains(&i) {
                    assert_eq!(got.tags.last().map(String::as_str), Some("later"));
                } else {
                    assert_eq!(&got, run);
                }
            }
        };
        check(&store);
        assert!(store.files().len() > 1, "rotated by size mid-batch");
        written.push(
            store
                .files()
                .iter()
                .flat_map(|f| std::fs::read(f).unwrap())
                .collect(),
        );
        drop(store);
        check(&JsonlStore::open(config).unwrap());
    }
    assert!(written.windows(2).all(|w| w[0] == w[1]));
}
