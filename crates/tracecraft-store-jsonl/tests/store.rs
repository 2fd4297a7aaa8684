//! The shared contract suite, plus JSONL-specific behaviour: bad lines, Python files,
//! permissions, rotation, retention, erasure.
#![allow(clippy::disallowed_methods)] // tests wrap fixture runs as processed runs

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracecraft_core::{
    AgentRun, ProcessedRun, Step, StepType, StoreError, TraceQuery, TraceStore, contract,
};
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
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
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

/// The `WARN` events emitted while `f` runs, each as its message and fields.
fn warnings_during(f: impl FnOnce()) -> Vec<String> {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Default)]
    struct Capture(Arc<Mutex<Vec<String>>>);
    struct Fields(String);
    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                self.0.lock().unwrap().push(fields.0);
            }
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
    tracing::subscriber::with_default(subscriber, f);
    std::mem::take(&mut *seen.lock().unwrap())
}

#[test]
fn a_torn_last_line_is_a_warning_naming_file_and_line_never_content() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("traces.jsonl");
    let runs = contract::sample_runs();
    let mut text = String::new();
    for r in &runs[..3] {
        text.push_str(&tracecraft_core::to_json(r));
        text.push('\n');
    }
    // A crash in the middle of a line holding a secret: no newline, incomplete JSON.
    let mut torn = AgentRun::new("torn-secret-run");
    torn.input = serde_json::Value::String("sk-proj-TORNSECRET0123456789".into());
    let torn = tracecraft_core::to_json(&torn);
    let cut = torn.find("TORNSECRET").unwrap() + 6;
    text.push_str(&torn[..cut]);
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut store = None;
    let warnings =
        warnings_during(|| store = Some(JsonlStore::open(JsonlConfig::new(root.path())).unwrap()));
    let store = store.unwrap();
    let torn_warnings: Vec<&String> = warnings.iter().filter(|w| w.contains("torn")).collect();
    assert_eq!(torn_warnings.len(), 1, "{warnings:?}");
    let w = torn_warnings[0];
    assert!(
        w.contains(&path.display().to_string()),
        "names the file: {w}"
    );
    assert!(w.contains("line=4"), "names the line: {w}");
    for w in &warnings {
        assert!(
            !w.contains("TORN") && !w.contains("sk-proj") && !w.contains("torn-secret-run"),
            "{w}"
        );
    }
    let bad = store.bad_lines();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].path.as_path(), bad[0].line), (path.as_path(), 4));
    assert!(!bad[0].to_string().contains("TORN"));
    // The complete lines read; the torn bytes stay in the file (nothing dropped silently).
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 3);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .ends_with(&torn[..cut])
    );
}

#[test]
fn two_stores_on_one_directory_see_each_others_erasures_and_appends() {
    // Two stores in one process lock like two processes (one lock file description each).
    let root = tempfile::tempdir().unwrap();
    let config = JsonlConfig::new(root.path()).rotate_daily(false);
    let runs = contract::fixture_runs(30);
    let a = JsonlStore::open(config.clone()).unwrap();
    a.save_batch(&contract::processed(&runs)).unwrap();
    let b = JsonlStore::open(config.clone()).unwrap();
    // B erases: the file A appends to is rewritten, every later line moves.
    assert!(b.delete(runs[0].id).unwrap());
    assert!(b.delete(runs[7].id).unwrap());
    // A never returns an erased run nor a wrong one through its stale offsets.
    assert_eq!(a.get(runs[0].id).unwrap(), None);
    assert_eq!(a.get(runs[20].id).unwrap().as_ref(), Some(&runs[20]));
    let listed = a.query(&TraceQuery::new()).unwrap();
    assert_eq!(listed.len(), 28);
    assert!(
        listed
            .iter()
            .all(|r| r.id != runs[0].id && r.id != runs[7].id)
    );
    // A appends after B's rewrite: into the file at the path, not the replaced one.
    let extra = AgentRun::new("after-rewrite");
    a.save(&ProcessedRun::assume_processed(extra.clone()))
        .unwrap();
    // B erases again, with A's append unknown to its index: it must keep it.
    assert!(b.delete(runs[1].id).unwrap());
    assert!(!a.delete(runs[1].id).unwrap(), "already erased by B");
    // A merges with a trace B appended (found by catching up before writing).
    let mut from_b = AgentRun::new("from-b");
    from_b
        .steps
        .push(Step::new(from_b.id, StepType::Tool, "step-by-b"));
    b.save(&ProcessedRun::assume_processed(from_b.clone()))
        .unwrap();
    let mut more = AgentRun::new("from-b");
    more.id = from_b.id;
    more.steps
        .push(Step::new(from_b.id, StepType::Tool, "step-by-a"));
    a.save(&ProcessedRun::assume_processed(more)).unwrap();
    let merged = a.get(from_b.id).unwrap().unwrap();
    let names: Vec<&str> = merged.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 2, "B's step kept by A's merge: {names:?}");
    // Reads see what the other store completed before them: A's merge and append in B.
    assert_eq!(b.get(from_b.id).unwrap().as_ref(), Some(&merged));
    assert!(b.get(extra.id).unwrap().is_some());
    assert_eq!(b.count(&TraceQuery::new()).unwrap(), 27 + 2);
    assert_eq!(b.stats().unwrap().traces, 27 + 2);
    drop((a, b));
    let fresh = JsonlStore::open(config).unwrap();
    assert!(fresh.bad_lines().is_empty(), "{:?}", fresh.bad_lines());
    assert_eq!(fresh.get(extra.id).unwrap(), Some(extra));
    assert_eq!(fresh.get(merged.id).unwrap(), Some(merged));
    assert_eq!(fresh.count(&TraceQuery::new()).unwrap(), 27 + 2);
    let text = std::fs::read_to_string(root.path().join("traces.jsonl")).unwrap();
    for gone in [&runs[0], &runs[1], &runs[7]] {
        assert!(!text.contains(&gone.id.to_string()));
    }
}
