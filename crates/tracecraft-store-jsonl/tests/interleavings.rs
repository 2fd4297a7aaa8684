//! Two stores on one directory (two lock file descriptions: they exclude each other as two
//! processes do) under random interleavings of saves, erasures, purges and reads, against a
//! model of which traces exist. Deterministic counterpart of `tests/processes.rs`.
#![allow(clippy::disallowed_methods)] // tests wrap runs as processed runs

use std::collections::HashSet;

use chrono::Utc;
use proptest::prelude::*;
use tracecraft_core::{AgentRun, ProcessedRun, TraceQuery, TraceStore};
use tracecraft_store_jsonl::{Fsync, JsonlConfig, JsonlStore};

const RUNS: usize = 16;

#[derive(Debug, Clone)]
enum Op {
    Save {
        store: usize,
        run: usize,
    },
    SaveBatch {
        store: usize,
        first: usize,
        len: usize,
    },
    Delete {
        store: usize,
        run: usize,
    },
    Purge {
        store: usize,
    },
    Get {
        store: usize,
        run: usize,
    },
    Query {
        store: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..2usize;
    let r = 0..RUNS;
    prop_oneof![
        3 => (s.clone(), r.clone()).prop_map(|(store, run)| Op::Save { store, run }),
        2 => (s.clone(), r.clone(), 1..6usize)
            .prop_map(|(store, first, len)| Op::SaveBatch { store, first, len }),
        3 => (s.clone(), r.clone()).prop_map(|(store, run)| Op::Delete { store, run }),
        1 => s.clone().prop_map(|store| Op::Purge { store }),
        2 => (s.clone(), r).prop_map(|(store, run)| Op::Get { store, run }),
        1 => s.prop_map(|store| Op::Query { store }),
    ]
}

/// Even runs are recent, odd ones 60 days old (purged by a 30-day cutoff).
fn runs() -> Vec<AgentRun> {
    (0..RUNS)
        .map(|i| {
            let mut run = AgentRun::builder(format!("run-{i}"))
                .start_time(Utc::now() - chrono::Duration::days(if i % 2 == 1 { 60 } else { 0 }))
                .build();
            run.input = serde_json::Value::String(format!("payload {i} ").repeat(40));
            run
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn two_stores_interleaved_agree_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let root = tempfile::tempdir().unwrap();
        // Small files: appends rotate, erasures rewrite several files or remove them.
        let config = JsonlConfig::new(root.path())
            .fsync(Fsync::Never)
            .rotate_daily(false)
            .rotate_bytes(Some(2_500));
        let stores = [
            JsonlStore::open(config.clone()).unwrap(),
            JsonlStore::open(config.clone()).unwrap(),
        ];
        let runs = runs();
        let mut live: HashSet<usize> = HashSet::new();
        let cutoff = Utc::now() - chrono::Duration::days(30);
        for op in ops {
            match op {
                Op::Save { store, run } => {
                    stores[store]
                        .save(&ProcessedRun::assume_processed(runs[run].clone()))
                        .unwrap();
                    live.insert(run);
                }
                Op::SaveBatch { store, first, len } => {
                    let picked: Vec<usize> = (first..first + len).map(|i| i % RUNS).collect();
                    let batch: Vec<ProcessedRun> = picked
                        .iter()
                        .map(|&i| ProcessedRun::assume_processed(runs[i].clone()))
                        .collect();
                    stores[store].save_batch(&batch).unwrap();
                    live.extend(picked);
                }
                Op::Delete { store, run } => {
                    // Erasure acts on the files as they are, whatever this store last saw.
                    let erased = stores[store].delete(runs[run].id).unwrap();
                    prop_assert_eq!(erased, live.remove(&run), "delete of run {}", run);
                }
                Op::Purge { store } => {
                    let old: Vec<usize> = live.iter().copied().filter(|i| i % 2 == 1).collect();
                    let purged = stores[store].purge_older_than(cutoff).unwrap();
                    prop_assert_eq!(purged, old.len() as u64);
                    for i in old {
                        live.remove(&i);
                    }
                }
                Op::Get { store, run } => {
                    // Possibly stale about the other's appends; never wrong, never erased.
                    if let Some(got) = stores[store].get(runs[run].id).unwrap() {
                        prop_assert_eq!(got.id, runs[run].id);
                        prop_assert!(live.contains(&run), "run {} was erased", run);
                    }
                }
                Op::Query { store } => {
                    for got in stores[store].query(&TraceQuery::new()).unwrap() {
                        let i = runs.iter().position(|r| r.id == got.id).unwrap();
                        prop_assert!(live.contains(&i), "run {} was erased", i);
                        prop_assert_eq!(&got, &runs[i]);
                    }
                }
            }
        }
        drop(stores);
        let fresh = JsonlStore::open(config).unwrap();
        prop_assert!(fresh.bad_lines().is_empty(), "{:?}", fresh.bad_lines());
        let held: HashSet<usize> = fresh
            .query(&TraceQuery::new())
            .unwrap()
            .iter()
            .map(|r| runs.iter().position(|x| x.id == r.id).unwrap())
            .collect();
        prop_assert_eq!(&held, &live);
        for (i, run) in runs.iter().enumerate() {
            let got = fresh.get(run.id).unwrap();
            prop_assert_eq!(got.as_ref(), live.contains(&i).then_some(run));
        }
    }
}
