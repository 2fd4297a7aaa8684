//! Measures the trace browser on a SQLite store of 100,000 runs whose newest run has 20,000
//! steps: API latencies, and (with Chromium) the time from navigation to a rendered runs
//! list and to a rendered run view. Prints the figures; asserts only on behaviour (tests do
//! not assert on wall-clock time). Figures and the command: `docs/perf/ui.md`.
//!
//! `cargo test --release -p tracecraft-ui --test perf -- --ignored --nocapture`
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    clippy::cast_precision_loss
)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use common::webdriver::{Session, browser_or_skip};
use common::*;
use tracecraft_core::{AgentRun, ProcessedRun, StepType, TraceStore, Utc, Uuid, json};

const RUNS: usize = 100_000;
const BIG_STEPS: usize = 20_000;

/// A 20,000-step run: 200 iterations, each an agent step with an LLM call and 98 tools run
/// two at a time (overlapping).
fn big_run(start: tracecraft_core::DateTime<Utc>) -> AgentRun {
    let mut run = AgentRun::builder("deep_research_agent")
        .session_id("sess-big")
        .user_id("user-big")
        .tag("load-test")
        .build();
    run.start_time = start;
    run.input = json!({"question": "Summarize every filing of 2025."});
    let mut t = 0i64;
    for i in 0..BIG_STEPS / 100 {
        let mut it = step(
            &run,
            StepType::Agent,
            &format!("iteration {i}"),
            start,
            t,
            t + 990,
        );
        let mut llm = step(&run, StepType::Llm, "openai.chat", start, t, t + 200);
        llm.model_name = Some("gpt-4o".into());
        llm.input_tokens = Some(900);
        llm.output_tokens = Some(120);
        llm.cost_usd = Some(0.0035);
        llm.inputs.insert(
            "messages".into(),
            json!([{"role": "user", "content": format!("Step {i}: read the next filing and extract the totals. ").repeat(4)}]),
        );
        llm.outputs
            .insert("content".into(), json!("Totals extracted."));
        it.push_child(llm);
        for k in 0..98i64 {
            let s0 = t + 200 + (k / 2) * 16;
            let mut tool = step(
                &run,
                StepType::Tool,
                &format!("fetch_page_{k}"),
                start,
                s0,
                s0 + 25,
            );
            tool.inputs.insert(
                "url".into(),
                json!(format!("https://example.com/f/{i}/{k}")),
            );
            tool.outputs.insert("bytes".into(), json!(1024 + k));
            it.push_child(tool);
        }
        run.push_step(it);
        t += 1000;
    }
    run.walk_mut(|s, _| {
        if let Some(e) = s.end_time {
            s.duration_ms = Some(tracecraft_core::model::duration_ms(s.start_time, e));
        }
    });
    run.finish_at(at(start, t));
    run.aggregate();
    run
}

fn small_run(i: usize, start: tracecraft_core::DateTime<Utc>) -> AgentRun {
    let name = [
        "research_agent",
        "triage_agent",
        "summarizer",
        "support_agent",
        "billing_agent",
    ][i % 5];
    let mut run = AgentRun::builder(name)
        .session_id(format!("sess-{}", i % 9_000))
        .user_id(format!("user-{}", i % 1_200))
        .tag(["prod", "staging", "eu", "us"][i % 4])
        .build();
    run.start_time = start;
    run.input = json!({"question": format!("question number {i}")});
    run.output = json!({"answer": "done"});
    let ms = 200 + (i * 37 % 4000) as i64;
    let mut llm = step(&run, StepType::Llm, "openai.chat", start, 5, ms / 2);
    llm.model_name = Some(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"][i % 3].into());
    llm.input_tokens = Some(300 + (i % 500) as u64);
    llm.output_tokens = Some(60);
    llm.cost_usd = Some(0.001);
    llm.inputs.insert(
        "messages".into(),
        json!([{"role": "user", "content": format!("question number {i}")}]),
    );
    let mut tool = step(&run, StepType::Tool, "search", start, ms / 2, ms - 5);
    if i.is_multiple_of(23) {
        tool.error = Some("timeout".into());
        tool.error_type = Some("TimeoutError".into());
    }
    for s in [&mut llm, &mut tool] {
        s.duration_ms = s
            .end_time
            .map(|e| tracecraft_core::model::duration_ms(s.start_time, e));
    }
    run.push_step(llm);
    run.push_step(tool);
    run.finish_at(at(start, ms));
    run.aggregate();
    run
}

fn perf_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-perf");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The store (built once, kept in `target/ui-perf/`) and the big run's id.
fn store() -> (Arc<dyn TraceStore>, Uuid) {
    let dir = perf_dir();
    let fresh = !dir.join("traces.db").exists();
    let store: Arc<dyn TraceStore> = sqlite_store(&dir);
    let now = Utc::now();
    if fresh {
        let t = Instant::now();
        let mut batch = Vec::with_capacity(2_000);
        for i in 0..RUNS - 1 {
            let start = now - chrono::Duration::seconds(60 + i as i64 * 25);
            batch.push(ProcessedRun::assume_processed(small_run(i, start)));
            if batch.len() == 2_000 {
                store.save_batch(&batch).unwrap();
                batch.clear();
            }
        }
        store.save_batch(&batch).unwrap();
        let big = big_run(now - chrono::Duration::seconds(30));
        store.save(&ProcessedRun::assume_processed(big)).unwrap();
        store.flush().unwrap();
        println!("built the store in {:.1} s", t.elapsed().as_secs_f64());
    }
    let big = store
        .query(
            &tracecraft_core::TraceQuery::new()
                .name("deep_research_agent")
                .limit(1),
        )
        .unwrap()
        .remove(0);
    (store, big.id)
}

fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "builds a 100,000-run store; run with --release -- --ignored --nocapture (docs/perf/ui.md)"]
fn list_and_a_20000_step_run_on_100000_runs() {
    let (store, big) = store();
    assert_eq!(
        store.count(&tracecraft_core::TraceQuery::new()).unwrap(),
        RUNS as u64
    );
    let server = tracecraft_ui::Server::builder()
        .store(Arc::clone(&store))
        .bind("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap()
        .spawn()
        .unwrap();
    let a = server.local_addr();
    let timed = |label: &str, path: &str, n: usize| {
        let mut bytes = 0;
        let ms = median_ms(n, || {
            let r = get(a, path);
            assert_eq!(r.status, 200, "{path}");
            bytes = r.body.len();
        });
        println!(
            "| {label} | `{path}` | {ms:.1} ms | {:.0} KB |",
            bytes as f64 / 1024.0
        );
    };
    println!("| what | request | median | body |\n|---|---|---|---|");
    timed(
        "runs list, first page (includes the 20,000-step run)",
        "/api/runs?limit=50",
        7,
    );
    timed(
        "runs list, page 1,000",
        "/api/runs?limit=50&offset=50000",
        5,
    );
    timed(
        "runs list, name filter",
        "/api/runs?limit=50&name=triage",
        5,
    );
    timed("runs list, errors only", "/api/runs?limit=50&error=1", 5);
    timed(
        "runs list, user filter",
        "/api/runs?limit=50&user=user-17",
        5,
    );
    timed("runs list, sort by cost", "/api/runs?limit=50&sort=cost", 3);
    timed(
        "text search, no match (FTS5)",
        "/api/runs?limit=50&q=nosuchword",
        5,
    );
    timed(
        "text search, one run (FTS5)",
        "/api/runs?limit=50&q=question+number+4242",
        5,
    );
    timed(
        "text search, every run matches (FTS5)",
        "/api/runs?limit=50&q=question",
        3,
    );
    timed(
        "text search and a name filter",
        "/api/runs?limit=50&q=question&name=triage",
        3,
    );
    let get_ms = median_ms(5, || {
        assert!(store.get(big).unwrap().is_some());
    });
    println!("| `TraceStore::get` of the 20,000-step run alone (no HTTP) | | {get_ms:.1} ms | |");
    timed(
        "run view of the 20,000-step run (outline)",
        &format!("/api/runs/{big}"),
        5,
    );
    let outline = get(a, &format!("/api/runs/{big}")).json();
    assert_eq!(outline["steps"].as_array().unwrap().len(), BIG_STEPS);
    let mid = outline["steps"][BIG_STEPS / 2]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    timed(
        "one step's detail (cached run)",
        &format!("/api/runs/{big}/steps/{mid}"),
        7,
    );
    timed("overview, whole store (SQL)", "/api/overview", 3);
    let day = |d: i64| {
        (Utc::now() - chrono::Duration::days(d)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    timed(
        "overview, one day of a month (SQL)",
        &format!("/api/overview?from={}&to={}", day(11), day(10)),
        3,
    );
    let o = get(a, "/api/overview").json();
    assert_eq!(
        o["totals"]["runs"], RUNS,
        "the overview covers the whole store"
    );
    timed("sessions, whole store (SQL)", "/api/sessions", 3);
    timed("users, whole store (SQL)", "/api/users", 3);
    timed(
        "runs list, model filter (SQL)",
        "/api/runs?limit=50&model=gpt",
        3,
    );
    let u = get(a, "/api/users").json();
    let grouped: u64 = u["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["runs"].as_u64().unwrap())
        .sum();
    assert!(
        grouped > 30_000,
        "users cover more than the newest 5,000 runs: {grouped}"
    );
    timed("live poll", "/api/changes", 7);

    let Some((chromium, chromedriver)) = browser_or_skip("the browser half of the perf test")
    else {
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let b = Session::start(&chromium, &chromedriver, profile.path());
    let base = server.url().trim_end_matches('/').to_owned();
    let mark = |name: &str| {
        b.wait(
            name,
            &format!("return performance.getEntriesByName('{name}').length > 0"),
        );
        b.js(&format!(
            "return performance.getEntriesByName('{name}')[0].startTime"
        ))
        .as_f64()
        .unwrap()
    };
    println!(
        "\n| page (headless Chromium, navigation start to rendered) | run 1 | run 2 | run 3 |\n|---|---|---|---|"
    );
    let mut list = Vec::new();
    let mut run = Vec::new();
    for i in 0..3 {
        b.goto(&format!("{base}/"));
        list.push(mark("tc:list-rendered"));
        if i == 0 {
            // Where the first load's time goes: the document, each module and API call.
            let t = b.js(
                "const n = performance.getEntriesByType('navigation')[0]; \
                 return [`document ${n.responseEnd.toFixed(0)}`].concat(performance.getEntriesByType('resource') \
                 .map(r => `${r.name.replace(location.origin, '')} ${r.startTime.toFixed(0)}-${r.responseEnd.toFixed(0)}`)).join('; ')",
            );
            println!(
                "first load (ms from navigation start): {}",
                t.as_str().unwrap_or_default()
            );
            let marks = b.js(
                "const n = performance.getEntriesByType('navigation')[0]; \
                 return [`domInteractive ${n.domInteractive.toFixed(0)}`, `domContentLoaded ${n.domContentLoadedEventStart.toFixed(0)}`] \
                 .concat(performance.getEntriesByType('mark').map(m => `${m.name} ${m.startTime.toFixed(0)}`)).join('; ')",
            );
            println!("first load marks: {}", marks.as_str().unwrap_or_default());
        }
        let fetched = b.js(
            "return performance.getEntriesByType('resource').filter(r => r.name.includes('/api/runs')).length",
        );
        assert_eq!(
            fetched, 1,
            "the list's request is the preloaded one, made once"
        );
        b.goto(&format!("{base}/runs/{big}"));
        run.push(mark("tc:run-rendered"));
    }
    let rows = b.js("return document.querySelectorAll('#waterfall .wf-row').length");
    println!(
        "| runs list (50 rows) | {:.0} ms | {:.0} ms | {:.0} ms |",
        list[0], list[1], list[2]
    );
    println!(
        "| run view, 20,000 steps ({rows} rows in the DOM) | {:.0} ms | {:.0} ms | {:.0} ms |",
        run[0], run[1], run[2]
    );
    assert!(rows.as_u64().unwrap() < 200, "the waterfall is virtualized");
    // Scrolling to the middle redraws only the visible rows.
    let scroll = b.js(
        "const w = document.getElementById('waterfall'); const t = performance.now(); \
         w.scrollTop = w.scrollHeight / 2; w.dispatchEvent(new Event('scroll')); \
         return performance.now() - t",
    );
    println!(
        "| scroll the waterfall to step 10,000 (redraw) | {:.1} ms | | |",
        scroll.as_f64().unwrap()
    );
    b.screenshot(&common::webdriver::screenshot_dir().join("big-run.png"));
}
