//! Two stores on one directory (two lock file descriptions: they exclude each other as two
//! processes do) under random interleavings of saves, merges, erasures, purges and reads,
//! against a model of which traces exist with which steps: erasures report exactly what
//! existed, and every read sees exactly what the other store completed before it.
//! Deterministic counterpart of `tests/processes.rs`.
#![allow(clippy::disallowed_methods)] // tests wrap runs as processed runs

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::Utc;
use proptest::prelude::*;
use tracecraft_core::{AgentRun, ProcessedRun, Step, StepType, TraceQuery, TraceStore};
use tracecraft_store_jsonl::{Fsync, JsonlConfig, JsonlStore};

const RUNS: usize = 16;
/// Versions of each run: version `k` carries step `k`; saving versions merges their steps.
const VERSIONS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Save {
        store: usize,
        run: usize,
        version: usize,
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
        3 => (s.clone(), r.clone(), 0..VERSIONS)
            .prop_map(|(store, run, version)| Op::Save { store, run, version }),
        2 => (s.clone(), r.clone(), 1..6usize)
            .prop_map(|(store, first, len)| Op::SaveBatch { store, first, len }),
        3 => (s.clone(), r.clone()).prop_map(|(store, run)| Op::Delete { store, run }),
        1 => s.clone().prop_map(|store| Op::Purge { store }),
        2 => (s.clone(), r).prop_map(|(store, run)| Op::Get { store, run }),
        1 => s.prop_map(|store| Op::Query { store }),
    ]
}

/// `runs[i][k]`: version `k` of run `i`, with step `step-k` (the same step id in every
/// call). Even runs are recent, odd ones 60 days old (purged by a 30-day cutoff).
fn runs() -> Vec<Vec<AgentRun>> {
    (0..RUNS)
        .map(|i| {
            let mut run = AgentRun::builder(format!("run-{i}"))
                .start_time(Utc::now() - chrono::Duration::days(if i % 2 == 1 { 60 } else { 0 }))
                .build();
            run.input = serde_json::Value::String(format!("payload {i} ").repeat(40));
            (0..VERSIONS)
                .map(|k| {
                    let mut v = run.clone();
                    v.steps
                        .push(Step::new(run.id, StepType::Tool, format!("step-{k}")));
                    v
                })
                .collect()
        })
        .collect()
}

fn steps(run: &AgentRun) -> BTreeSet<String> {
    run.steps.iter().map(|s| s.name.clone()).collect()
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
        let versions = runs();
        let runs: Vec<&AgentRun> = versions.iter().map(|v| &v[0]).collect();
        // The live runs and the steps their saves merged.
        let mut live: HashMap<usize, BTreeSet<String>> = HashMap::new();
        let cutoff = Utc::now() - chrono::Duration::days(30);
        for op in ops {
            match op {
                Op::Save { store, run, version } => {
                    stores[store]
                        .save(&ProcessedRun::assume_processed(versions[run][version].clone()))
                        .unwrap();
                    live.entry(run).or_default().insert(format!("step-{version}"));
                }
                Op::SaveBatch { store, first, len } => {
                    let picked: Vec<(usize, usize)> =
                        (first..first + len).map(|i| (i % RUNS, i % VERSIONS)).collect();
                    let batch: Vec<ProcessedRun> = picked
                        .iter()
                        .map(|&(i, k)| ProcessedRun::assume_processed(versions[i][k].clone()))
                        .collect();
                    stores[store].save_batch(&batch).unwrap();
                    for (i, k) in picked {
                        live.entry(i).or_default().insert(format!("step-{k}"));
                    }
                }
                Op::Delete { store, run } => {
                    // Erasure acts on the files as they are, whatever this store last saw.
                    let erased = stores[store].delete(runs[run].id).unwrap();
                    prop_assert_eq!(erased, live.remove(&run).is_some(), "delete of run {}", run);
                }
                Op::Purge { store } => {
                    let old: Vec<usize> = live.keys().copied().filter(|i| i % 2 == 1).collect();
                    let purged = stores[store].purge_older_than(cutoff).unwrap();
                    prop_assert_eq!(purged, old.len() as u64);
                    for i in old {
                        live.remove(&i);
                    }
                }
                Op::Get { store, run } => {
                    // Every change the other store completed is seen: exactly the model.
                    let got = stores[store].get(runs[run].id).unwrap();
                    prop_assert_eq!(got.as_ref().map(|g| g.id), live.contains_key(&run).then_some(runs[run].id));
                    prop_assert_eq!(got.as_ref().map(steps), live.get(&run).cloned());
                }
                Op::Query { store } => {
                    let listed = stores[store].query(&TraceQuery::new()).unwrap();
                    prop_assert_eq!(stores[store].count(&TraceQuery::new()).unwrap(), live.len() as u64);
                    prop_assert_eq!(listed.len(), live.len());
                    for got in listed {
                        let i = runs.iter().position(|r| r.id == got.id).unwrap();
                        prop_assert_eq!(Some(steps(&got)), live.get(&i).cloned(), "run {}", i);
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
        prop_assert_eq!(&held, &live.keys().copied().collect::<HashSet<_>>());
        // Every merge is in the files: a fresh open folds each run's lines to all its steps.
        for (i, run) in runs.iter().enumerate() {
            let got = fresh.get(run.id).unwrap();
            prop_assert_eq!(got.as_ref().map(steps), live.get(&i).cloned());
        }
    }
}
