//! The shared [`TraceStore`] contract suite: every backend (JSONL, SQLite, [`MemoryStore`])
//! runs these same checks from its own tests.
//!
//! [`TraceQuery::apply`] is the oracle: a store's `query` and `count` must agree with it on
//! the same runs. Each `check_*` function takes a fresh, empty store and panics (with a message
//! naming the check) when the store breaks the contract; [`run_all`] runs them all, asking the
//! factory for a new store before each check.
//!
//! ```
//! use tracecraft_core::{contract, testing::MemoryStore};
//! contract::run_all(MemoryStore::new);
//! ```
//!
//! [`MemoryStore`]: crate::testing::MemoryStore

#![allow(clippy::disallowed_methods)] // test code: wraps fixture runs as processed runs.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use crate::export::ProcessedRun;
use crate::model::{AgentRun, Step, StepType};
use crate::overview::OverviewBuilder;
use crate::store::{OrderBy, StoreError, TraceQuery, TraceStore, merge_runs};

/// The 20-run sample of Python tracecraft 0.2.1 JSONL (the bench corpus's format).
pub const SAMPLE_JSONL: &str = include_str!("../testdata/runs_sample.jsonl");

/// Runs every check, each against a fresh store from `make`.
///
/// # Panics
/// When a store breaks the contract (the message names the check).
pub fn run_all<S: TraceStore>(make: impl Fn() -> S) {
    check_save_get(&make());
    check_sample_round_trip(&make());
    check_query_oracle(&make());
    check_text_search(&make());
    check_overview(&make());
    check_groups(&make());
    check_invalid_query(&make());
    check_merge(&make());
    check_batch(&make());
    check_delete(&make());
    check_purge(&make());
    check_stats(&make());
    check_concurrency(&make(), 8, 1_000);
}

/// Wraps runs as processed runs (fixtures are already "processed").
#[must_use]
pub fn processed(runs: &[AgentRun]) -> Vec<ProcessedRun> {
    runs.iter()
        .cloned()
        .map(ProcessedRun::assume_processed)
        .collect()
}

/// The sample runs, parsed.
///
/// # Panics
/// If the embedded sample does not parse (a bug in this crate).
#[must_use]
pub fn sample_runs() -> Vec<AgentRun> {
    crate::json::read_jsonl(SAMPLE_JSONL.as_bytes())
        .map(|(line, r)| r.unwrap_or_else(|e| panic!("sample line {line}: {e}")))
        .collect()
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// `n` varied, deterministic runs: names, sessions, users, environments, tags, costs,
/// durations (some missing), errors (run-level and in steps) and start times all vary, with
/// deliberate ties so that the id tie-break matters.
#[must_use]
pub fn fixture_runs(n: usize) -> Vec<AgentRun> {
    let names = [
        "triage_agent",
        "Research_Agent",
        "support-bot",
        "RESEARCH",
        "planner",
        "Émile_agent",
    ];
    let envs = ["production", "staging", "development"];
    let tags = ["eu", "beta", "vip", "batch"];
    let models = [
        ("gpt-4o", "openai"),
        ("GPT-4o-mini", "openai"),
        ("claude-3-5-sonnet", "anthropic"),
        ("Mistral_Large%", "mistral"),
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..n)
        .map(|i| {
            let r = next();
            let mut b = AgentRun::builder(names[(r % names.len() as u64) as usize])
                .id(Uuid::from_u128(u128::from(next()) << 64 | i as u128))
                .environment(envs[((r >> 8) % 3) as usize])
                .start_time(base_time() + Duration::seconds(((r >> 12) % 40) as i64 * 60));
            if (r >> 20) % 4 != 0 {
                b = b.session_id(format!("sess-{}", (r >> 22) % 5));
            }
            if (r >> 25) % 3 != 0 {
                b = b.user_id(format!("user-{}", (r >> 27) % 4));
            }
            for (k, tag) in tags.iter().enumerate() {
                if (r >> (30 + k)) & 1 == 1 {
                    b = b.tag(*tag);
                }
            }
            if (r >> 36) % 7 == 0 {
                b = b.error("boom", "RuntimeError");
            }
            let mut run = b.build();
            let steps = (r >> 40) % 4;
            for s in 0..steps {
                let mut step = Step::builder(run.id, StepType::Llm, format!("llm-{s}"))
                    .model(
                        models[((r >> 60) as usize + s as usize) % models.len()].0,
                        models[((r >> 60) as usize + s as usize) % models.len()].1,
                    )
                    .tokens((r >> 44) % 100, s * 10)
                    .cost_usd(((r >> 48) % 5) as f64 * 0.25)
                    .start_time(run.start_time + Duration::milliseconds(s as i64))
                    .build();
                if (r >> 52) % 9 == 0 && s == 0 {
                    step.error = Some("tool failed".into());
                    step.error_type = Some("ToolError".into());
                }
                run.push_step(step);
            }
            run.aggregate();
            if (r >> 56) % 5 != 0 {
                let d = ((r >> 58) % 4) as f64 * 500.0;
                run.end_time = Some(run.start_time + Duration::milliseconds(d as i64));
                run.duration_ms = Some(d);
            }
            run
        })
        .collect()
}

/// The queries the oracle check runs: every filter alone, combinations, every order in both
/// directions, limits and offsets.
#[must_use]
pub fn oracle_queries() -> Vec<TraceQuery> {
    let t = base_time();
    let mut qs = vec![
        TraceQuery::new(),
        TraceQuery::new().name("planner"),
        TraceQuery::new().name("nope"),
        TraceQuery::new().name_contains("research"),
        TraceQuery::new().name_contains("AGENT"),
        TraceQuery::new().name_contains("émile"),
        TraceQuery::new().name_contains("%"),
        TraceQuery::new().name_contains("_"),
        TraceQuery::new().has_error(true),
        TraceQuery::new().has_error(false),
        TraceQuery::new().duration_ms(Some(500.0), None),
        TraceQuery::new().duration_ms(None, Some(500.0)),
        TraceQuery::new().duration_ms(Some(0.0), Some(1000.0)),
        TraceQuery::new().cost_usd(Some(0.5), None),
        TraceQuery::new().cost_usd(None, Some(0.25)),
        TraceQuery::new().cost_usd(Some(0.0), Some(0.0)),
        TraceQuery::new().tag("eu"),
        TraceQuery::new().tag("eu").tag("vip"),
        TraceQuery::new().tag("missing"),
        TraceQuery::new().started(Some(t + Duration::minutes(10)), None),
        TraceQuery::new().started(None, Some(t + Duration::minutes(10))),
        TraceQuery::new().started(
            Some(t + Duration::minutes(5)),
            Some(t + Duration::minutes(20)),
        ),
        TraceQuery::new().session_id("sess-1"),
        TraceQuery::new().user_id("user-2"),
        TraceQuery::new().environment("staging"),
        TraceQuery::new()
            .session_id("sess-2")
            .environment("production")
            .has_error(false),
        TraceQuery::new()
            .tag("beta")
            .name_contains("agent")
            .limit(3),
        TraceQuery::new().text("research"),
        TraceQuery::new().text("RESEARCH agent"),
        TraceQuery::new().text("émile"),
        TraceQuery::new().text("boom"),
        TraceQuery::new().text("tool fail"),
        TraceQuery::new().text("OpenAI gpt 4o"),
        TraceQuery::new().text("%"),
        TraceQuery::new().text("absentword"),
        TraceQuery::new().text("gpt").has_error(true).limit(4),
        TraceQuery::new().model("gpt-4o"),
        TraceQuery::new().model("GPT"),
        TraceQuery::new().model("claude"),
        TraceQuery::new().model("%"),
        TraceQuery::new().model("_large"),
        TraceQuery::new().model("nope"),
        TraceQuery::new().model("gpt").has_error(true).limit(4),
        TraceQuery::new().limit(0),
        TraceQuery::new().limit(5).offset(3),
        TraceQuery::new().offset(1_000),
    ];
    for by in [
        OrderBy::StartTime,
        OrderBy::Duration,
        OrderBy::Cost,
        OrderBy::Name,
    ] {
        for desc in [false, true] {
            qs.push(TraceQuery::new().order_by(by, desc));
            qs.push(TraceQuery::new().order_by(by, desc).limit(7).offset(2));
            qs.push(
                TraceQuery::new()
                    .environment("production")
                    .order_by(by, desc),
            );
        }
    }
    qs
}

fn ids(runs: &[AgentRun]) -> Vec<Uuid> {
    runs.iter().map(|r| r.id).collect()
}

fn all_ids<S: TraceStore>(store: &S) -> BTreeSet<Uuid> {
    store
        .query(&TraceQuery::new())
        .expect("query all")
        .iter()
        .map(|r| r.id)
        .collect()
}

/// Save then get returns the same run; an unknown id is `None`.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_save_get<S: TraceStore>(store: &S) {
    let runs = fixture_runs(10);
    for r in processed(&runs) {
        store.save(&r).expect("save");
    }
    for r in &runs {
        assert_eq!(
            store.get(r.id).expect("get").as_ref(),
            Some(r),
            "save_get: run {} reads back equal",
            r.id
        );
    }
    assert_eq!(store.get(Uuid::nil()).expect("get unknown"), None);
    assert_eq!(store.count(&TraceQuery::new()).expect("count"), 10);
    store.flush().expect("flush");
}

/// The Python-format sample round-trips field for field.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_sample_round_trip<S: TraceStore>(store: &S) {
    let runs = sample_runs();
    store.save_batch(&processed(&runs)).expect("save_batch");
    for r in &runs {
        let back = store.get(r.id).expect("get").expect("present");
        assert_eq!(&back, r, "sample run {} reads back equal", r.id);
        assert_eq!(crate::json::to_json(&back), crate::json::to_json(r));
    }
}

/// `query` and `count` agree with [`TraceQuery::apply`] on every query of
/// [`oracle_queries`].
///
/// # Panics
/// When the store breaks the contract.
pub fn check_query_oracle<S: TraceStore>(store: &S) {
    let runs = fixture_runs(60);
    store.save_batch(&processed(&runs)).expect("save_batch");
    for q in oracle_queries() {
        let want = q.apply(runs.iter().cloned());
        let got = store.query(&q).expect("query");
        assert_eq!(ids(&got), ids(&want), "query oracle: {q:?}");
        assert_eq!(got, want, "query oracle (full runs): {q:?}");
        let mut unbounded = q.clone();
        unbounded.limit = None;
        unbounded.offset = 0;
        assert_eq!(
            store.count(&q).expect("count"),
            unbounded.apply(runs.iter().cloned()).len() as u64,
            "count oracle: {q:?}"
        );
    }
}

/// Text search ([`TraceQuery::text`]) agrees with [`crate::search::run_matches`] over the
/// sample runs' content (words and word prefixes taken from it), and follows merges,
/// erasure and retention: an erased run is found by no search.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_text_search<S: TraceStore>(store: &S) {
    let runs = sample_runs();
    store.save_batch(&processed(&runs)).expect("save_batch");
    let mut searches: Vec<String> = ["", "?!", "absentword", "zebracorn"]
        .map(String::from)
        .to_vec();
    for run in &runs {
        let mut n = 0;
        crate::search::for_each_text(run, &mut |s| {
            for w in crate::search::words(s).into_iter().take(2) {
                if n < 4 {
                    n += 1;
                    let prefix: String = w.chars().take(3).collect();
                    searches.push(format!("{prefix} {}", w.to_uppercase()));
                    searches.push(w);
                }
            }
        });
    }
    let check = |when: &str| {
        let stored = store.query(&TraceQuery::new()).expect("query all");
        for text in &searches {
            let q = TraceQuery::new().text(text.clone());
            let want = q.apply(stored.iter().cloned());
            let got = store.query(&q).expect("query");
            assert_eq!(ids(&got), ids(&want), "text search {when}: {text:?}");
            assert_eq!(
                store.count(&q).expect("count"),
                want.len() as u64,
                "text search count {when}: {text:?}"
            );
        }
    };
    check("after saving");
    // A merge replaces the indexed text of the run.
    let mut changed = runs[1].clone();
    changed.output = serde_json::json!("zebracorn");
    changed.name = "renamed".into();
    store
        .save(&ProcessedRun::assume_processed(changed))
        .expect("save");
    check("after a merge");
    assert_eq!(
        store
            .count(&TraceQuery::new().text("zebracorn"))
            .expect("count"),
        1,
        "text search finds merged content"
    );
    // Erasure and retention take runs out of every search.
    assert!(store.delete(runs[1].id).expect("delete"));
    assert!(store.delete(runs[2].id).expect("delete"));
    check("after erasure");
    assert_eq!(
        store
            .count(&TraceQuery::new().text("zebracorn"))
            .expect("count"),
        0,
        "an erased run is found by no search"
    );
    let mut starts: Vec<DateTime<Utc>> = runs.iter().map(|r| r.start_time).collect();
    starts.sort();
    store
        .purge_older_than(starts[starts.len() / 2])
        .expect("purge");
    check("after retention");
}

/// [`TraceStore::groups`] agrees with [`GroupsBuilder`](crate::GroupsBuilder) fed the
/// matching runs, by session and by user, filtered and limited (sums of costs to within
/// rounding).
///
/// # Panics
/// When the store breaks the contract.
pub fn check_groups<S: TraceStore>(store: &S) {
    let mut runs = fixture_runs(120);
    runs.extend(sample_runs());
    store.save_batch(&processed(&runs)).expect("save_batch");
    let stored = store.query(&TraceQuery::new()).expect("query all");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for q in [
        TraceQuery::new(),
        TraceQuery::new().has_error(true),
        TraceQuery::new().environment("staging").limit(3).offset(1),
        TraceQuery::new().model("gpt"),
        TraceQuery::new().text("agent"),
        TraceQuery::new().name("nope"),
    ] {
        for by in [crate::GroupKey::Session, crate::GroupKey::User] {
            for limit in [500, 2] {
                let mut want = crate::GroupsBuilder::new(by);
                stored
                    .iter()
                    .filter(|r| q.matches(r))
                    .for_each(|r| want.add_run(r));
                let want = want.finish(limit);
                let got = store.groups(&q, by, limit).expect("groups");
                let what = format!("groups by {by:?} of {q:?}, limit {limit}");
                assert_eq!(got.len(), want.len(), "{what}: count");
                for (g, w) in got.iter().zip(&want) {
                    assert!(close(g.cost_usd, w.cost_usd), "{what}: cost");
                    let mut g = g.clone();
                    g.cost_usd = w.cost_usd;
                    assert_eq!(&g, w, "{what}");
                }
            }
        }
    }
}

/// [`TraceStore::overview`] agrees with [`OverviewBuilder`] fed the matching runs (sums of
/// costs to within rounding).
///
/// # Panics
/// When the store breaks the contract.
pub fn check_overview<S: TraceStore>(store: &S) {
    let mut runs = fixture_runs(80);
    runs.extend(sample_runs());
    store.save_batch(&processed(&runs)).expect("save_batch");
    let stored = store.query(&TraceQuery::new()).expect("query all");
    let t = base_time();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for q in [
        TraceQuery::new(),
        TraceQuery::new().has_error(true),
        TraceQuery::new().environment("staging").limit(3).offset(1),
        TraceQuery::new().started(
            Some(t + Duration::minutes(10)),
            Some(t + Duration::minutes(25)),
        ),
        TraceQuery::new().text("agent"),
        TraceQuery::new().name("nope"),
    ] {
        let mut all = q.clone();
        all.limit = None;
        all.offset = 0;
        let mut builder = OverviewBuilder::new();
        all.apply(stored.iter().cloned())
            .iter()
            .for_each(|r| builder.add_run(r));
        let want = builder.finish(3);
        let got = store.overview(&q, 3).expect("overview");
        let what = format!("overview of {q:?}");
        assert_eq!(
            (
                got.runs,
                got.errors,
                got.tokens,
                got.p50_ms,
                got.p95_ms,
                got.bucket_s
            ),
            (
                want.runs,
                want.errors,
                want.tokens,
                want.p50_ms,
                want.p95_ms,
                want.bucket_s
            ),
            "{what}"
        );
        assert!(close(got.cost_usd, want.cost_usd), "{what}: cost");
        assert_eq!(got.buckets.len(), want.buckets.len(), "{what}: buckets");
        for (g, w) in got.buckets.iter().zip(&want.buckets) {
            assert_eq!(
                (g.start, g.runs, g.errors, g.tokens, g.p50_ms, g.p95_ms),
                (w.start, w.runs, w.errors, w.tokens, w.p50_ms, w.p95_ms),
                "{what}: bucket"
            );
            assert!(close(g.cost_usd, w.cost_usd), "{what}: bucket cost");
        }
        assert_eq!(got.models.len(), want.models.len(), "{what}: models");
        for (g, w) in got.models.iter().zip(&want.models) {
            assert_eq!(
                (&g.model, g.calls, g.tokens, g.errors),
                (&w.model, w.calls, w.tokens, w.errors),
                "{what}: model"
            );
            assert!(close(g.cost_usd, w.cost_usd), "{what}: model cost");
        }
        assert_eq!(
            got.failing_steps, want.failing_steps,
            "{what}: failing steps"
        );
    }
}

/// Nonsensical bounds are [`StoreError::Invalid`].
///
/// # Panics
/// When the store breaks the contract.
pub fn check_invalid_query<S: TraceStore>(store: &S) {
    for q in [
        TraceQuery::new().cost_usd(Some(2.0), Some(1.0)),
        TraceQuery::new().duration_ms(Some(f64::NAN), None),
    ] {
        assert!(
            matches!(store.query(&q), Err(StoreError::Invalid { .. })),
            "invalid query rejected: {q:?}"
        );
        assert!(
            matches!(store.count(&q), Err(StoreError::Invalid { .. })),
            "invalid count rejected: {q:?}"
        );
    }
}

fn two_parts() -> (AgentRun, AgentRun) {
    let mut first = AgentRun::builder("part-one")
        .session_id("sess-a")
        .tag("first")
        .start_time(base_time())
        .build();
    let id = first.id;
    let s1 = Step::builder(id, StepType::Llm, "early-llm")
        .start_time(base_time() + Duration::milliseconds(1))
        .tokens(10, 10)
        .cost_usd(1.0)
        .build();
    let s1_id = s1.id;
    let s1_child = Step::builder(id, StepType::Tool, "early-tool")
        .start_time(base_time() + Duration::milliseconds(2))
        .parent_id(s1_id)
        .build();
    let mut s1 = s1;
    s1.push_child(s1_child);
    first.push_step(s1);
    first.aggregate();
    let mut second = AgentRun::builder("part-two")
        .id(id)
        .session_id("sess-b")
        .tag("second")
        .start_time(base_time())
        .build();
    second.push_step(
        Step::builder(id, StepType::Llm, "late-llm")
            .start_time(base_time() + Duration::milliseconds(5))
            .tokens(1, 1)
            .cost_usd(0.5)
            .build(),
    );
    second.aggregate();
    (first, second)
}

/// Saving an existing id merges: earlier steps kept, later fields win, totals recomputed,
/// and the query fields follow the merged run.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_merge<S: TraceStore>(store: &S) {
    let (first, second) = two_parts();
    let id = first.id;
    store
        .save(&ProcessedRun::assume_processed(first.clone()))
        .expect("save first part");
    assert_eq!(store.merged(), 0, "merge: a new id is not a merge");
    store
        .save(&ProcessedRun::assume_processed(second.clone()))
        .expect("save second part");
    assert_eq!(store.merged(), 1, "merge: counted");
    let want = merge_runs(first, second);
    let got = store.get(id).expect("get").expect("present");
    assert_eq!(got, want, "merge: result is merge_runs(earlier, later)");
    assert_eq!(got.step_count(), 3, "merge: earlier steps kept");
    assert_eq!(got.name, "part-two", "merge: later fields win");
    assert_eq!(store.count(&TraceQuery::new()).expect("count"), 1);
    assert_eq!(
        store
            .count(&TraceQuery::new().session_id("sess-b"))
            .expect("count"),
        1,
        "merge: index follows the later session"
    );
    assert_eq!(
        store
            .count(&TraceQuery::new().session_id("sess-a"))
            .expect("count"),
        0,
        "merge: old session no longer matches"
    );
    assert_eq!(
        store
            .count(&TraceQuery::new().cost_usd(Some(1.5), Some(1.5)))
            .expect("count"),
        1,
        "merge: totals recomputed"
    );
    assert!(store.count(&TraceQuery::new().tag("first")).expect("count") == 0);
    let stats = store.stats().expect("stats");
    assert_eq!((stats.traces, stats.steps), (1, 3), "merge: stats");
}

/// `save_batch` equals saving one by one, including an id repeated inside one batch.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_batch<S: TraceStore>(store: &S) {
    let mut runs = fixture_runs(30);
    let (first, second) = two_parts();
    runs.insert(3, first.clone());
    runs.push(second.clone());
    store.save_batch(&processed(&runs)).expect("save_batch");
    store.save_batch(&[]).expect("empty batch");
    assert_eq!(store.count(&TraceQuery::new()).expect("count"), 31);
    assert_eq!(store.merged(), 1, "batch: the repeated id is one merge");
    assert_eq!(
        store.get(first.id).expect("get"),
        Some(merge_runs(first, second)),
        "batch: repeated id merged in order"
    );
    for r in &runs[..3] {
        assert_eq!(store.get(r.id).expect("get").as_ref(), Some(r));
    }
    store
        .save_batch(&processed(&runs[..5]))
        .expect("save_batch again");
    assert_eq!(
        store.merged(),
        6,
        "batch: each stored id saved again is a merge"
    );
}

/// `delete` erases the run and its steps, says whether it existed, and leaves the rest.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_delete<S: TraceStore>(store: &S) {
    let runs = fixture_runs(20);
    store.save_batch(&processed(&runs)).expect("save_batch");
    let gone: HashSet<Uuid> = [runs[0].id, runs[7].id, runs[19].id].into();
    for id in &gone {
        assert!(store.delete(*id).expect("delete"), "delete: existed");
        assert!(
            !store.delete(*id).expect("delete again"),
            "delete: idempotent"
        );
        assert_eq!(store.get(*id).expect("get"), None, "delete: gone");
    }
    assert!(!store.delete(Uuid::nil()).expect("delete unknown"));
    let left: Vec<AgentRun> = runs
        .iter()
        .filter(|r| !gone.contains(&r.id))
        .cloned()
        .collect();
    assert_eq!(all_ids(store), left.iter().map(|r| r.id).collect());
    for r in &left {
        assert_eq!(
            store.get(r.id).expect("get").as_ref(),
            Some(r),
            "delete: others intact"
        );
    }
    let stats = store.stats().expect("stats");
    assert_eq!(stats.traces, 17);
    assert_eq!(
        stats.steps,
        left.iter().map(|r| r.step_count() as u64).sum::<u64>(),
        "delete: steps erased with their trace"
    );
    // A deleted id can be saved afresh, without its erased steps coming back.
    let mut again = runs[0].clone();
    again.steps.clear();
    again.aggregate();
    store
        .save(&ProcessedRun::assume_processed(again.clone()))
        .expect("save again");
    assert_eq!(
        store.get(again.id).expect("get"),
        Some(again),
        "delete: no resurrection"
    );
}

/// `purge_older_than` deletes exactly the runs that started before the cut-off.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_purge<S: TraceStore>(store: &S) {
    let runs = fixture_runs(40);
    store.save_batch(&processed(&runs)).expect("save_batch");
    let cutoff = base_time() + Duration::minutes(20);
    let old = runs.iter().filter(|r| r.start_time < cutoff).count() as u64;
    assert!(old > 0 && old < 40, "fixture spans the cut-off");
    assert_eq!(store.purge_older_than(cutoff).expect("purge"), old);
    assert_eq!(store.purge_older_than(cutoff).expect("purge again"), 0);
    let want: BTreeSet<Uuid> = runs
        .iter()
        .filter(|r| r.start_time >= cutoff)
        .map(|r| r.id)
        .collect();
    assert_eq!(all_ids(store), want, "purge: exactly the old runs go");
    for r in runs.iter().filter(|r| r.start_time < cutoff) {
        assert_eq!(store.get(r.id).expect("get"), None);
    }
}

/// `stats` totals traces, steps, errors, tokens and cost.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_stats<S: TraceStore>(store: &S) {
    let empty = store.stats().expect("stats");
    assert_eq!((empty.traces, empty.steps, empty.total_tokens), (0, 0, 0));
    let runs = fixture_runs(25);
    store.save_batch(&processed(&runs)).expect("save_batch");
    let s = store.stats().expect("stats");
    assert_eq!(s.traces, 25);
    assert_eq!(
        s.steps,
        runs.iter().map(|r| r.step_count() as u64).sum::<u64>()
    );
    assert_eq!(
        s.errors,
        runs.iter().filter(|r| r.has_any_error()).count() as u64
    );
    assert_eq!(
        s.total_tokens,
        runs.iter().map(|r| r.total_tokens).sum::<u64>()
    );
    let cost: f64 = runs.iter().map(|r| r.total_cost_usd).sum();
    assert!((s.total_cost_usd - cost).abs() < 1e-9, "stats: cost");
}

/// `threads` threads each save `per_thread` runs (alternating single saves and batches) while
/// querying; nothing is lost and every thread reads its own writes.
///
/// # Panics
/// When the store breaks the contract.
pub fn check_concurrency<S: TraceStore>(store: &S, threads: usize, per_thread: usize) {
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let session = format!("thread-{t}");
                let mut saved = 0usize;
                let mut pending = Vec::new();
                for i in 0..per_thread {
                    let run = AgentRun::builder(format!("c-{t}-{i}"))
                        .id(Uuid::from_u128(((t as u128) << 64) | i as u128 | 1 << 100))
                        .session_id(session.clone())
                        .start_time(base_time() + Duration::milliseconds(i as i64))
                        .build();
                    if i % 2 == 0 {
                        store
                            .save(&ProcessedRun::assume_processed(run))
                            .expect("concurrent save");
                        saved += 1;
                    } else {
                        pending.push(ProcessedRun::assume_processed(run));
                    }
                    if pending.len() == 25 {
                        store.save_batch(&pending).expect("concurrent batch");
                        saved += pending.len();
                        pending.clear();
                    }
                    if i % 100 == 99 {
                        let q = TraceQuery::new().session_id(session.clone());
                        let n = store.count(&q).expect("concurrent count");
                        assert_eq!(n, saved as u64, "concurrency: reads own writes");
                        let page = store.query(&q.limit(5)).expect("concurrent query");
                        assert!(page.len() <= 5);
                        let first = Uuid::from_u128(((t as u128) << 64) | 1 << 100);
                        assert!(store.get(first).expect("concurrent get").is_some());
                    }
                }
                store.save_batch(&pending).expect("final batch");
            });
        }
    });
    store.flush().expect("flush");
    assert_eq!(
        store.count(&TraceQuery::new()).expect("count"),
        (threads * per_thread) as u64,
        "concurrency: nothing lost"
    );
    for t in 0..threads {
        assert_eq!(
            store
                .count(&TraceQuery::new().session_id(format!("thread-{t}")))
                .expect("count"),
            per_thread as u64
        );
    }
}
