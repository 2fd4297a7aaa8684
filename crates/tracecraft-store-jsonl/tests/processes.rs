//! Several real processes on one store directory (DESIGN invariant 13): appends, rotation,
//! erasure and retention lose nothing and erase everything they report.
//!
//! The processes are this test binary again, running the `worker` test with
//! `TRACECRAFT_JSONL_WORKER` set (without it, `worker` does nothing). Each scenario runs a few
//! rounds, bounded in time, with small batches and small files so that appends, rotations and
//! rewrites interleave; then a fresh open and the raw files are checked.
#![allow(clippy::disallowed_methods)] // tests wrap runs as processed runs

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::Utc;
use tracecraft_core::{AgentRun, ProcessedRun, TraceQuery, TraceStore, Uuid, read_jsonl};
use tracecraft_store_jsonl::{Fsync, JsonlConfig, JsonlStore};

const WORKER: &str = "TRACECRAFT_JSONL_WORKER";
/// Small files: appends rotate every few batches, erasures rewrite several files.
const ROTATE_BYTES: u64 = 40_000;
/// Each scenario repeats until this much time has passed (at least one round).
const BUDGET: Duration = Duration::from_secs(12);
const MAX_ROUNDS: usize = 3;

/// The store's settings in every process; `rotate` false keeps everything in one file (so
/// that every erasure rewrites the file being appended to).
fn config(dir: &Path, rotate: bool) -> JsonlConfig {
    JsonlConfig::new(dir)
        .fsync(Fsync::Never)
        .rotate_bytes(rotate.then_some(ROTATE_BYTES))
}

/// Runs of ~1 KB with fresh ids, started `age_days` ago.
fn runs(prefix: &str, n: usize, age_days: i64) -> Vec<AgentRun> {
    (0..n)
        .map(|i| {
            let mut run = AgentRun::builder(format!("{prefix}-{i}"))
                .start_time(Utc::now() - chrono::Duration::days(age_days))
                .session_id(format!("{prefix}-session-{}", i % 7))
                .build();
            run.input = serde_json::Value::String(format!("{prefix} {i} ").repeat(60));
            run
        })
        .collect()
}

fn write_runs(path: &Path, runs: &[AgentRun]) {
    let mut f = std::fs::File::create(path).unwrap();
    for r in runs {
        writeln!(f, "{}", tracecraft_core::to_json(r)).unwrap();
    }
}

fn write_ids(path: &Path, ids: &[Uuid]) {
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn read_ids(path: &Path) -> Vec<Uuid> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// One worker process: `op` on the store in `dir`, input from `input`, results to `out`.
fn spawn(op: &str, rotate: bool, dir: &Path, input: &Path, out: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["worker", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(WORKER, op)
        .env("WORKER_ROTATE", if rotate { "1" } else { "0" })
        .env("WORKER_DIR", dir)
        .env("WORKER_IN", input)
        .env("WORKER_OUT", out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_all(children: Vec<Child>) {
    for mut c in children {
        let status = c.wait().unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }
}

/// The body of the worker processes (does nothing in a normal test run).
#[test]
fn worker() {
    let Ok(op) = std::env::var(WORKER) else {
        return;
    };
    let env = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let (dir, input, out) = (env("WORKER_DIR"), env("WORKER_IN"), env("WORKER_OUT"));
    let rotate = std::env::var("WORKER_ROTATE").unwrap() == "1";
    let store = JsonlStore::open(config(&dir, rotate)).unwrap();
    let pause = || std::thread::sleep(Duration::from_millis(3));
    match op.as_str() {
        // Appends in small batches, as an importer does.
        "import" => {
            let file = std::fs::File::open(&input).unwrap();
            let runs: Vec<ProcessedRun> = read_jsonl(std::io::BufReader::new(file))
                .map(|(_, r)| ProcessedRun::assume_processed(r.unwrap()))
                .collect();
            for batch in runs.chunks(7) {
                store.save_batch(batch).unwrap();
                pause();
            }
            store.flush().unwrap();
        }
        // Erases one trace at a time and lists those reported erased.
        "rm" => {
            let mut erased = Vec::new();
            for id in read_ids(&input) {
                if store.delete(id).unwrap() {
                    erased.push(id);
                }
                // A read through an index other processes have made stale.
                assert_eq!(store.get(id).unwrap(), None);
                pause();
            }
            write_ids(&out, &erased);
        }
        // Purges runs older than 30 days a few times; writes the total.
        "purge" => {
            let mut total = 0;
            for _ in 0..12 {
                total += store
                    .purge_older_than(Utc::now() - chrono::Duration::days(30))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(25));
            }
            std::fs::write(&out, total.to_string()).unwrap();
        }
        other => panic!("unknown worker op {other}"),
    }
}

/// The store as a fresh process sees it: every line readable, and the ids it holds.
fn reopen(dir: &Path) -> (JsonlStore, HashSet<Uuid>) {
    let store = JsonlStore::open(config(dir, false)).unwrap();
    assert!(store.bad_lines().is_empty(), "{:?}", store.bad_lines());
    let ids = store
        .query(&TraceQuery::new())
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    (store, ids)
}

/// No file of the directory holds any of `ids`, in any form.
fn assert_gone_from_files(dir: &Path, ids: &[Uuid]) {
    for f in std::fs::read_dir(dir).unwrap() {
        let path = f.unwrap().path();
        // Bytes: the lock file holds a binary counter.
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for id in ids {
            assert!(
                !text.contains(&id.to_string()),
                "{id} still in {}",
                path.display()
            );
        }
    }
}

fn seed(dir: &Path, rotate: bool, runs: &[AgentRun]) {
    let store = JsonlStore::open(config(dir, rotate)).unwrap();
    for batch in runs.chunks(50) {
        store
            .save_batch(&tracecraft_core::contract::processed(batch))
            .unwrap();
    }
}

fn rounds(mut round: impl FnMut(usize)) {
    let start = Instant::now();
    for i in 0..MAX_ROUNDS {
        round(i);
        if start.elapsed() > BUDGET {
            break;
        }
    }
}

#[test]
fn import_while_erasing_loses_nothing_and_erases_what_it_reports() {
    rounds(|_| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let seeded = runs("seed", 200, 0);
        seed(&dir, false, &seeded);
        let imported = runs("import", 700, 0);
        let import_file = tmp.path().join("import.jsonl");
        write_runs(&import_file, &imported);
        let doomed: Vec<Uuid> = seeded.iter().step_by(5).map(|r| r.id).collect();
        let doomed_file = tmp.path().join("doomed.txt");
        write_ids(&doomed_file, &doomed);
        let erased_file = tmp.path().join("erased.txt");

        wait_all(vec![
            spawn("import", false, &dir, &import_file, &tmp.path().join("x")),
            spawn("rm", false, &dir, &doomed_file, &erased_file),
        ]);

        let erased = read_ids(&erased_file);
        assert_eq!(
            erased, doomed,
            "every delete of an existing trace reports it"
        );
        let (_, held) = reopen(&dir);
        for r in seeded.iter().chain(&imported) {
            assert_eq!(
                held.contains(&r.id),
                !erased.contains(&r.id),
                "{} lost or not erased",
                r.name
            );
        }
        assert_eq!(held.len(), seeded.len() + imported.len() - erased.len());
        assert_gone_from_files(&dir, &erased);
    });
}

#[test]
fn three_concurrent_erasures_all_erase() {
    rounds(|_| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let seeded = runs("seed", 300, 0);
        seed(&dir, true, &seeded);
        let mut children = Vec::new();
        let mut wanted = Vec::new();
        for w in 0..3 {
            // Distinct traces per process, plus one all three erase (one of them reports it).
            let mut ids: Vec<Uuid> = seeded.iter().skip(w).step_by(20).map(|r| r.id).collect();
            ids.insert(ids.len() / 2, seeded[299].id);
            wanted.push(ids.clone());
            let input = tmp.path().join(format!("ids-{w}.txt"));
            write_ids(&input, &ids);
            children.push(spawn(
                "rm",
                true,
                &dir,
                &input,
                &tmp.path().join(format!("erased-{w}.txt")),
            ));
        }
        wait_all(children);
        let mut all_erased = Vec::new();
        for (w, ids) in wanted.iter().enumerate() {
            let erased = read_ids(&tmp.path().join(format!("erased-{w}.txt")));
            let distinct: Vec<Uuid> = ids
                .iter()
                .copied()
                .filter(|id| *id != seeded[299].id)
                .collect();
            let own: Vec<Uuid> = erased
                .iter()
                .copied()
                .filter(|id| *id != seeded[299].id)
                .collect();
            assert_eq!(own, distinct, "process {w} erased each of its traces");
            all_erased.extend(erased);
        }
        let shared = all_erased.iter().filter(|id| **id == seeded[299].id);
        assert_eq!(
            shared.count(),
            1,
            "the shared trace is reported erased once"
        );
        let (_, held) = reopen(&dir);
        for r in &seeded {
            assert_eq!(
                held.contains(&r.id),
                !all_erased.contains(&r.id),
                "{}",
                r.name
            );
        }
        assert_gone_from_files(&dir, &all_erased);
    });
}

#[test]
fn four_importers_and_a_purge_lose_nothing_recent_and_purge_what_they_report() {
    // Old runs are imported too, in every file (small ones: appends rotate while purges
    // rewrite): every old run missing at the end was purged, and purges report exactly those.
    rounds(|_| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mut recent = Vec::new();
        let mut old = Vec::new();
        let mut mixed: Vec<AgentRun> = Vec::new();
        for (o, r) in runs("old", 150, 60).into_iter().zip(runs("recent", 150, 0)) {
            mixed.push(o.clone());
            mixed.push(r.clone());
            old.push(o);
            recent.push(r);
        }
        seed(&dir, true, &mixed);
        let mut children = Vec::new();
        for w in 0..4 {
            let mut batch = Vec::new();
            for (o, r) in runs(&format!("old{w}"), 60, 60)
                .into_iter()
                .zip(runs(&format!("import{w}"), 120, 0).chunks(2))
            {
                old.push(o.clone());
                batch.push(o);
                recent.extend(r.iter().cloned());
                batch.extend(r.iter().cloned());
            }
            let input = tmp.path().join(format!("import-{w}.jsonl"));
            write_runs(&input, &batch);
            children.push(spawn("import", true, &dir, &input, &tmp.path().join("x")));
        }
        let purged_file = tmp.path().join("purged.txt");
        children.push(spawn(
            "purge",
            true,
            &dir,
            &tmp.path().join("none"),
            &purged_file,
        ));
        wait_all(children);

        let purged: u64 = std::fs::read_to_string(&purged_file)
            .unwrap()
            .parse()
            .unwrap();
        let (_, held) = reopen(&dir);
        for r in &recent {
            assert!(held.contains(&r.id), "{} lost", r.name);
        }
        let gone: Vec<Uuid> = old
            .iter()
            .map(|r| r.id)
            .filter(|id| !held.contains(id))
            .collect();
        assert!(gone.len() >= 150, "the seeded old runs are purged");
        assert_eq!(purged, gone.len() as u64, "purges report what they removed");
        assert_gone_from_files(&dir, &gone);
    });
}
