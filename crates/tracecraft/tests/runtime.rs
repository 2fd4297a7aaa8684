//! Runtime, guards, context propagation, capture controls, tenants, shutdown.
#![cfg(feature = "pipeline")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracecraft::core::testing::{MemoryExporter, MemoryStore};
use tracecraft::core::{TraceQuery, TraceStore};
use tracecraft::pipeline::Pipeline;
use tracecraft::runtime::{DROPPED_AFTER_SHUTDOWN, STEPS_DROPPED, STEPS_LATE};
use tracecraft::{AgentRun, InRun, Runtime, RuntimeOptions, StepType};

mod common;

fn runtime_with(options: RuntimeOptions) -> (Runtime, MemoryExporter) {
    common::memory_runtime(options)
}

fn runtime() -> (Runtime, MemoryExporter) {
    runtime_with(RuntimeOptions::default())
}

fn only_run(sink: &MemoryExporter) -> AgentRun {
    let runs = sink.runs();
    assert_eq!(runs.len(), 1, "expected one run");
    runs.into_iter().next().unwrap()
}

#[test]
fn run_with_nested_steps() {
    let (rt, sink) = runtime();
    {
        let mut run = rt
            .run("agent_task")
            .user_id("u-1")
            .session_id("s-1")
            .tags(["a", "b"])
            .tag("c")
            .input(&json!({"q": "hi"}))
            .attribute("k", &1)
            .start();
        {
            let _agent = run.step(StepType::Agent, "plan").start();
            let mut llm = run
                .step(StepType::Llm, "call")
                .model("gpt-4", "openai")
                .input("prompt", "hello")
                .input("n", &2)
                .start();
            llm.set_tokens(10, 5);
            llm.set_cost_usd(0.01);
            llm.push_chunk("he");
            llm.push_chunk("llo");
            llm.set_output(&"hello back");
            drop(llm);
            // The free function attaches to the current step too.
            let _tool = tracecraft::step(StepType::Tool, "search").start();
        }
        run.step(StepType::Evaluation, "score").start().end();
        run.set_output(&"done");
    }
    let run = only_run(&sink);
    assert_eq!(run.name, "agent_task");
    assert_eq!(run.user_id.as_deref(), Some("u-1"));
    assert_eq!(run.session_id.as_deref(), Some("s-1"));
    assert_eq!(run.tags, ["a", "b", "c"]);
    assert_eq!(run.input, json!({"q": "hi"}));
    assert_eq!(run.output, json!("done"));
    assert_eq!(run.attributes["k"], json!(1));
    assert!(run.end_time.is_some());
    assert_eq!(run.steps.len(), 2);
    let plan = &run.steps[0];
    assert_eq!(plan.name, "plan");
    assert_eq!(plan.children.len(), 2);
    let llm = &plan.children[0];
    assert_eq!(llm.parent_id, Some(plan.id));
    assert_eq!(llm.trace_id, run.id);
    assert_eq!(llm.model_name.as_deref(), Some("gpt-4"));
    assert_eq!(llm.inputs["prompt"], json!("hello"));
    assert_eq!(llm.inputs["n"], json!(2));
    assert_eq!(llm.outputs["result"], json!("hello back"));
    assert_eq!(llm.streaming_chunks, ["he", "llo"]);
    assert!(llm.is_streaming);
    assert!(llm.end_time.is_some());
    assert_eq!(plan.children[1].name, "search");
    assert_eq!(run.steps[1].name, "score");
    assert_eq!(run.steps[1].parent_id, None);
    assert_eq!(run.total_tokens, 15);
    assert!((run.total_cost_usd - 0.01).abs() < 1e-12);
    assert_eq!(run.error_count, 0);
    assert!(!run.attributes.contains_key(STEPS_DROPPED));
    assert!(!run.attributes.contains_key(STEPS_LATE));
}

#[derive(Debug)]
struct QuotaError;
impl std::fmt::Display for QuotaError {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(()) // empty message
    }
}

#[test]
fn step_times_nest_inside_their_parents_and_the_run() {
    let (rt, sink) = runtime();
    {
        let run = rt.run("timed").start();
        for _ in 0..3 {
            let _outer = run.step(StepType::Agent, "outer").start();
            std::thread::sleep(Duration::from_millis(2));
            let _inner = run.step(StepType::Tool, "inner").start();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let run = only_run(&sink);
    let run_end = run.end_time.expect("run end");
    let mut prev_start = run.start_time;
    for outer in &run.steps {
        let end = outer.end_time.expect("step end");
        assert!(prev_start <= outer.start_time && outer.start_time <= end && end <= run_end);
        assert!(outer.duration_ms.unwrap() >= 2.0, "{:?}", outer.duration_ms);
        let inner = &outer.children[0];
        let inner_end = inner.end_time.unwrap();
        assert!(outer.start_time <= inner.start_time && inner.start_time <= inner_end);
        assert!(inner_end <= end);
        prev_start = outer.start_time;
    }
    // Microsecond precision, like the Python package.
    assert_eq!(run.steps[0].start_time.timestamp_subsec_nanos() % 1_000, 0);
}

#[test]
fn errors_record_message_and_short_type_name() {
    let (rt, sink) = runtime();
    {
        let mut run = rt.run("r").start();
        let mut s = run.step(StepType::Tool, "read").start();
        let err = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        s.fail(&err);
        drop(s);
        let mut s = run.step(StepType::Llm, "quota").start();
        let r: Result<(), QuotaError> = Err(QuotaError);
        let _ = s.record(r);
        drop(s);
        let parse = "x".parse::<u32>().unwrap_err();
        run.fail(&parse);
    }
    let run = only_run(&sink);
    assert_eq!(run.steps[0].error.as_deref(), Some("no such file"));
    assert_eq!(run.steps[0].error_type.as_deref(), Some("Error"));
    assert_eq!(run.steps[1].error.as_deref(), Some(""));
    assert_eq!(run.steps[1].error_type.as_deref(), Some("QuotaError"));
    assert_eq!(run.error_type.as_deref(), Some("ParseIntError"));
    assert_eq!(run.error_count, 3);
}

#[test]
fn panics_are_recorded_without_payload_and_the_run_is_exported() {
    let (rt, sink) = runtime();
    let rt2 = rt.clone();
    let r = std::panic::catch_unwind(move || {
        let _run = rt2.run("r").start();
        let _s = tracecraft::step(StepType::Tool, "t").start();
        panic!("secret sk-live-123");
    });
    assert!(r.is_err());
    let run = only_run(&sink);
    assert_eq!(run.error.as_deref(), Some("panicked"));
    assert_eq!(run.error_type.as_deref(), Some("panic"));
    assert_eq!(run.steps[0].error_type.as_deref(), Some("panic"));
    assert!(!tracecraft::core::json::to_json(&run).contains("sk-live"));
    // The thread's context is clean again.
    assert!(Runtime::current().is_none());
}

#[test]
fn capture_controls() {
    let (rt, sink) = runtime_with({
        let mut o = RuntimeOptions::default();
        o.exclude_inputs = vec!["api_key".into()];
        o
    });
    #[derive(serde::Serialize)]
    struct Args<'a> {
        query: &'a str,
        options: serde_json::Value,
        api_key: &'a str,
    }
    {
        let run = rt
            .run("r")
            .input(&json!({"auth": {"api_key": "sk-1"}}))
            .start();
        run.step(StepType::Tool, "kw")
            .inputs(&Args {
                query: "q",
                options: json!({"nested": {"API_KEY": "sk-2"}, "keep": 1}),
                api_key: "sk-3",
            })
            .input("api_key", "sk-4")
            .start()
            .end();
        run.step(StepType::Tool, "off")
            .input("query", "q")
            .capture_inputs(false)
            .start()
            .end();
        run.step(StepType::Tool, "late_exclude")
            .input("token", "t-1")
            .exclude_inputs(["token"])
            .start()
            .end();
        let mut s = run
            .step(StepType::Llm, "no_out")
            .capture_outputs(false)
            .start();
        s.set_output(&"answer");
        s.push_chunk("ans");
        drop(s);
    }
    let (rt_off, sink_off) = runtime_with({
        let mut o = RuntimeOptions::default();
        o.capture_inputs = false;
        o
    });
    {
        let run = rt_off.run("r").input(&"question").start();
        run.step(StepType::Tool, "t").input("a", &1).start().end();
        // A run override turns capture back on.
        let run2 = rt_off.run("r2").capture_inputs(true).input(&"q2").start();
        run2.step(StepType::Tool, "t").input("a", &1).start().end();
    }
    let run = only_run(&sink);
    let ex = json!(tracecraft::EXCLUDED);
    assert_eq!(run.input, json!({"auth": {"api_key": ex}}));
    let kw = &run.steps[0].inputs;
    assert_eq!(kw["query"], json!("q"));
    assert_eq!(kw["options"], json!({"nested": {"API_KEY": ex}, "keep": 1}));
    assert_eq!(kw["api_key"], ex);
    assert!(run.steps[1].inputs.is_empty());
    assert_eq!(run.steps[2].inputs["token"], ex);
    assert!(run.steps[3].outputs.is_empty());
    assert!(run.steps[3].streaming_chunks.is_empty());
    let json = tracecraft::core::json::to_json(&run);
    for secret in ["sk-1", "sk-2", "sk-3", "sk-4", "t-1"] {
        assert!(!json.contains(secret), "{secret} leaked");
    }
    let runs = sink_off.runs();
    assert_eq!(runs.len(), 2);
    let r2 = runs.iter().find(|r| r.name == "r2").unwrap();
    let r1 = runs.iter().find(|r| r.name == "r").unwrap();
    assert_eq!(r1.input, serde_json::Value::Null);
    assert!(r1.steps[0].inputs.is_empty());
    assert_eq!(r2.input, json!("q2"));
    assert_eq!(r2.steps[0].inputs["a"], json!(1));
}

#[test]
fn unserializable_value_fails_only_its_field() {
    struct Bad;
    impl serde::Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("contains sk-secret"))
        }
    }
    let (rt, sink) = runtime();
    {
        let run = rt.run("r").start();
        let mut s = run
            .step(StepType::Tool, "t")
            .input("bad", &Bad)
            .input("good", &1)
            .start();
        s.set_output(&Bad);
    }
    let run = only_run(&sink);
    let s = &run.steps[0];
    assert_eq!(s.inputs["good"], json!(1));
    let bad = s.inputs["bad"].as_str().unwrap();
    assert!(bad.starts_with("[unserializable: "), "{bad}");
    assert!(!bad.contains("sk-secret"));
    assert!(
        s.outputs["result"]
            .as_str()
            .unwrap()
            .starts_with("[unserializable")
    );
}

#[test]
fn depth_limit_drops_and_counts() {
    let (rt, sink) = runtime_with({
        let mut o = RuntimeOptions::default();
        o.max_step_depth = Some(2);
        o
    });
    {
        let _run = rt.run("r").start();
        let _a = tracecraft::step(StepType::Agent, "d1").start();
        let _b = tracecraft::step(StepType::Agent, "d2").start();
        let c = tracecraft::step(StepType::Agent, "d3").start();
        assert!(!c.is_recording());
        let _d = tracecraft::step(StepType::Agent, "d4").start();
    }
    let run = only_run(&sink);
    assert_eq!(run.step_count(), 2);
    assert_eq!(run.steps[0].children[0].name, "d2");
    assert!(run.steps[0].children[0].children.is_empty());
    assert_eq!(run.attributes[STEPS_DROPPED], json!(2));
}

#[test]
fn nested_runs_do_not_break_the_outer_run() {
    let (rt, sink) = runtime();
    {
        let outer = rt.run("outer").start();
        tracecraft::step(StepType::Tool, "before").start().end();
        {
            let _inner = rt.run("inner").start();
            tracecraft::step(StepType::Tool, "inside").start().end();
        }
        tracecraft::step(StepType::Tool, "after").start().end();
        outer.step(StepType::Tool, "explicit").start().end();
    }
    let runs = sink.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].name, "inner");
    assert_eq!(runs[0].steps.len(), 1);
    let names: Vec<_> = runs[1].steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["before", "after", "explicit"]);
}

#[test]
fn late_steps_are_counted() {
    let (rt, sink) = runtime();
    let late = {
        let run = rt.run("r").start();
        let late = run.step(StepType::Tool, "slow").start();
        run.step(StepType::Tool, "fast").start().end();
        late
    };
    let run = only_run(&sink);
    assert_eq!(run.attributes[STEPS_LATE], json!(1));
    assert_eq!(run.steps.len(), 1);
    assert_eq!(rt.late_steps(), 0);
    drop(late);
    assert_eq!(rt.late_steps(), 1);
    assert_eq!(sink.len(), 1);
}

#[test]
fn no_run_means_inert_guards() {
    assert!(Runtime::current().is_none());
    let mut s = tracecraft::step(StepType::Tool, "orphan")
        .input("a", &1)
        .start();
    assert!(s.id().is_none());
    s.set_tokens(1, 2);
    s.fail(&"x");
    assert!(!tracecraft::context::current().is_active());
}

#[test]
fn current_runtime_and_runtime_step() {
    let (a, sink_a) = runtime();
    let (b, sink_b) = runtime();
    {
        let _run = a.run("r").start();
        assert!(Runtime::current().is_some());
        a.step(StepType::Tool, "mine").start().end();
        // b has no active run here: its step is inert, never lands in a's run.
        b.step(StepType::Tool, "not_mine").start().end();
    }
    assert!(Runtime::current().is_none());
    assert_eq!(only_run(&sink_a).steps.len(), 1);
    assert!(sink_b.is_empty());
}

#[test]
fn shutdown_flushes_closes_and_counts_later_runs() {
    let (rt, sink) = runtime();
    rt.run("before").start().end();
    let pending = rt.run("straddles").start();
    assert!(rt.shutdown(Duration::from_secs(5)).is_clean());
    assert!(sink.is_shut_down());
    assert!(rt.shutdown(Duration::from_secs(5)).is_clean()); // idempotent
    drop(pending);
    rt.run("after").start().end();
    assert_eq!(sink.len(), 1);
    assert_eq!(rt.stats().runs.dropped[DROPPED_AFTER_SHUTDOWN], 2);
    assert!(rt.is_shut_down());
}

#[test]
fn context_moves_to_threads() {
    let (rt, sink) = runtime();
    {
        let run = rt.run("r").start();
        let parent = run.step(StepType::Workflow, "fan_out").start();
        let ctx = tracecraft::context::current();
        assert_eq!(ctx.step_id(), parent.id());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    ctx.enter(|| {
                        let _s = tracecraft::step(StepType::Tool, format!("worker{i}")).start();
                        tracecraft::step(StepType::Llm, "inner").start().end();
                    });
                    let _g = ctx.attach();
                    tracecraft::step(StepType::Tool, "attached").start().end();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        drop(parent);
    }
    let run = only_run(&sink);
    assert_eq!(run.steps.len(), 1);
    let fan = &run.steps[0];
    assert_eq!(fan.children.len(), 8);
    for w in fan.children.iter().filter(|s| s.name.starts_with("worker")) {
        assert_eq!(w.children.len(), 1);
        assert_eq!(w.children[0].parent_id, Some(w.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_tasks_and_spawn_blocking_attach_to_the_right_parent() {
    let (rt, sink) = runtime();
    let rt2 = rt.clone();
    async move {
        let run = rt2.run("async").start();
        let parent = tracecraft::step(StepType::Agent, "parent").start();
        let mut tasks = Vec::new();
        for i in 0..4 {
            tasks.push(tokio::spawn(
                async move {
                    let mut s = tracecraft::step(StepType::Tool, format!("task{i}")).start();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    tokio::task::yield_now().await;
                    // Still inside s, possibly on another worker thread.
                    tracecraft::step(StepType::Llm, "child").start().end();
                    s.set_output(&i);
                }
                .in_current_run(),
            ));
        }
        let ctx = tracecraft::context::current();
        tokio::task::spawn_blocking(move || {
            ctx.enter(|| tracecraft::step(StepType::Tool, "blocking").start().end());
        })
        .await
        .unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        drop(parent);
        drop(run);
    }
    .in_current_run()
    .await;
    let run = only_run(&sink);
    assert_eq!(run.steps.len(), 1);
    let parent = &run.steps[0];
    assert_eq!(parent.children.len(), 5);
    for t in parent
        .children
        .iter()
        .filter(|s| s.name.starts_with("task"))
    {
        assert_eq!(t.children.len(), 1, "{}", t.name);
        assert_eq!(t.children[0].name, "child");
    }
    assert!(Runtime::current().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_futures_record_cancellation() {
    let (rt, sink) = runtime();
    {
        let _run = rt.run("r").start();
        let fut = async {
            let _s = tracecraft::step(StepType::Llm, "slow").start();
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        .in_current_run();
        let r = tokio::time::timeout(Duration::from_millis(5), fut).await;
        assert!(r.is_err());
    }
    let run = only_run(&sink);
    assert_eq!(run.steps[0].error_type.as_deref(), Some("cancelled"));
    assert!(run.error.is_none());
}

fn tenant_work(rt: &Runtime, tenant: &str, i: usize) {
    let run = rt.run(format!("{tenant}-run-{i}")).tag(tenant).start();
    for j in 0..3 {
        let _s = run
            .step(StepType::Tool, format!("{tenant}-step-{j}"))
            .start();
        tracecraft::step(StepType::Llm, format!("{tenant}-llm"))
            .start()
            .end();
    }
}

async fn tenant_task(rt: Runtime, tenant: &'static str, i: usize) {
    let run = rt.run(format!("{tenant}-run-{i}")).tag(tenant).start();
    for j in 0..3 {
        let _s = run
            .step(StepType::Tool, format!("{tenant}-step-{j}"))
            .start();
        tokio::task::yield_now().await;
        tracecraft::step(StepType::Llm, format!("{tenant}-llm"))
            .start()
            .end();
    }
}

fn check_tenant(store: &MemoryStore, tenant: &str, expected_runs: usize) {
    let runs = store.query(&TraceQuery::new().limit(1000)).unwrap();
    assert_eq!(runs.len(), expected_runs, "{tenant}");
    for run in runs {
        assert!(run.name.starts_with(tenant), "cross-write: {}", run.name);
        assert_eq!(run.tags, [tenant]);
        assert_eq!(run.step_count(), 6, "{}", run.name);
        for s in run.walk() {
            assert!(s.name.starts_with(tenant), "cross-write: {}", s.name);
            assert_eq!(s.trace_id, run.id);
        }
    }
}

#[test]
fn tenants_on_threads_and_tasks_never_cross_write() {
    tenants_never_cross_write(false);
}

#[test]
fn tenants_never_cross_write_with_background_processing() {
    tenants_never_cross_write(true);
}

fn tenants_never_cross_write(background: bool) {
    let store_a = Arc::new(MemoryStore::new());
    let store_b = Arc::new(MemoryStore::new());
    let make = |store: &Arc<MemoryStore>, env: &str| {
        let pipeline = Pipeline::builder()
            .without_redaction()
            .store(Arc::clone(store))
            .build()
            .unwrap();
        Runtime::builder()
            .options({
                let mut o = RuntimeOptions::default();
                o.environment = Some(env.into());
                o.background_processing = background;
                o
            })
            .pipeline(pipeline)
            .build()
            .unwrap()
    };
    let a = make(&store_a, "prod-a");
    let b = make(&store_b, "prod-b");
    // Threads.
    std::thread::scope(|s| {
        for t in 0..4 {
            let (a, b) = (a.clone(), b.clone());
            s.spawn(move || {
                for i in 0..10 {
                    tenant_work(&a, "a", t * 100 + i);
                    tenant_work(&b, "b", t * 100 + i);
                }
            });
        }
    });
    // Async tasks on a multi-thread runtime, interleaving at every await.
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..20 {
            handles.push(tokio::spawn(
                tenant_task(a.clone(), "a", 1000 + i).in_current_run(),
            ));
            handles.push(tokio::spawn(
                tenant_task(b.clone(), "b", 1000 + i).in_current_run(),
            ));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    a.shutdown(Duration::from_secs(5));
    b.shutdown(Duration::from_secs(5));
    check_tenant(&store_a, "a", 60);
    check_tenant(&store_b, "b", 60);
    assert!(store_a.query(&TraceQuery::new().limit(1)).unwrap()[0].environment == "prod-a");
}
