//! Background processing: runs built, processed and exported on the runtime's own thread give
//! the same runs as inline processing; queue limits, flushing, shutdown and drop.
#![cfg(feature = "pipeline")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tracecraft::core::testing::MemoryExporter;
use tracecraft::pipeline::{Outcome, Pipeline, ProcessError, Processor, RedactionProcessor};
use tracecraft::redact::RedactionConfig;
use tracecraft::runtime::{DROPPED_AFTER_SHUTDOWN, PROCESSING_QUEUE_FULL, PROCESSING_UNFINISHED};
use tracecraft::{AgentRun, Runtime, RuntimeOptions, StepType};

fn runtime(background: bool, redact: bool) -> (Runtime, MemoryExporter) {
    let sink = MemoryExporter::new();
    let mut builder = Pipeline::builder().exporter(sink.clone());
    builder = if redact {
        builder.redaction(RedactionProcessor::new(&RedactionConfig::default()).unwrap())
    } else {
        builder.without_redaction()
    };
    let options = {
        let mut o = RuntimeOptions::default();
        o.background_processing = background;
        o.exclude_inputs = vec!["note".into()];
        o
    };
    (
        Runtime::builder()
            .options(options)
            .pipeline(builder.build().unwrap())
            .build()
            .unwrap(),
        sink,
    )
}

/// A run exercising every kind of field a step records.
fn workload(rt: &Runtime) {
    let mut run = rt
        .run("agent")
        .user_id("u-1")
        .tags(["a", "b"])
        .input(&json!({"q": "hi"}))
        .start();
    {
        let mut plan = run
            .step(StepType::Agent, "plan")
            .input("goal", "ship ✓")
            .input("opts", &json!({"NOTE": "n-x", "depth": [1, 2.5, null]}))
            .start();
        {
            let mut llm = run
                .step(StepType::Llm, "chat")
                .model("gpt-4o", "openai")
                .input("prompt", "say hi")
                .input("note", "n-never-serialized")
                .start();
            llm.push_chunk("h");
            llm.push_chunk("i");
            llm.set_tokens(3, 2);
            llm.set_cost_usd(0.001);
            llm.set_attribute("temperature", &0.2);
            llm.set_output(&"hi");
        }
        let mut tool = run.step(StepType::Tool, "lookup").start();
        tool.fail_with("", "Timeout");
        drop(tool);
        run.step(StepType::Tool, "lookup")
            .input("n", &2)
            .capture_inputs(false)
            .start()
            .end();
        plan.output("plan", &json!(["a", "b"]));
    }
    run.set_output(&"done");
}

/// The run as JSON with ids and times blanked (they differ between two executions).
fn shape(run: &AgentRun) -> Value {
    fn blank(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    if matches!(
                        k.as_str(),
                        "id" | "trace_id" | "parent_id" | "start_time" | "end_time" | "duration_ms"
                    ) {
                        *child = Value::Null;
                    } else {
                        blank(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(blank),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(run).unwrap();
    blank(&mut v);
    v
}

#[test]
fn background_runs_equal_inline_runs() {
    let (inline, inline_sink) = runtime(false, true);
    let (bg, bg_sink) = runtime(true, true);
    workload(&inline);
    workload(&bg);
    bg.force_flush().unwrap();
    let a = inline_sink.runs();
    let b = bg_sink.runs();
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(shape(&a[0]), shape(&b[0]));
    // And the run is what the workload recorded.
    let run = &b[0];
    let plan = &run.steps[0];
    assert_eq!(plan.inputs["opts"]["NOTE"], json!(tracecraft::EXCLUDED));
    assert_eq!(plan.children.len(), 3);
    let llm = &plan.children[0];
    assert_eq!(llm.model_name.as_deref(), Some("gpt-4o"));
    assert_eq!(llm.streaming_chunks, ["h", "i"]);
    assert_eq!(llm.inputs["note"], json!(tracecraft::EXCLUDED));
    assert_eq!(plan.children[1].error.as_deref(), Some(""));
    assert!(plan.children[2].inputs.is_empty());
    assert_eq!(run.total_tokens, 5);
    assert_eq!(run.error_count, 1);
    assert!(plan.children.iter().all(|s| s.parent_id == Some(plan.id)));
    assert!(run.steps.iter().all(|s| s.trace_id == run.id));
    let text = tracecraft::core::json::to_json(run);
    assert!(!text.contains("n-x") && !text.contains("n-never"));
    inline.shutdown(Duration::from_secs(5));
    bg.shutdown(Duration::from_secs(5));
}

#[test]
fn secrets_are_redacted_on_the_processing_thread() {
    let (rt, sink) = runtime(true, true);
    {
        let run = rt.run("r").start();
        run.step(StepType::Llm, "chat")
            .input(
                "prompt",
                "mail jane@example.com, key sk-proj-abcdefghijklmnopqrstuvwxyz0123",
            )
            .start()
            .end();
    }
    rt.shutdown(Duration::from_secs(5));
    let runs = sink.runs();
    assert_eq!(runs.len(), 1);
    let text = tracecraft::core::json::to_json(&runs[0]);
    assert!(!text.contains("jane@example.com"), "{text}");
    assert!(!text.contains("sk-proj-abc"), "{text}");
    assert!(text.contains("[REDACTED]"));
}

/// Blocks every run until released: holds the processing thread busy.
struct Gate(Arc<Mutex<()>>);

impl Processor for Gate {
    fn name(&self) -> &str {
        "gate"
    }
    fn process(&self, run: AgentRun) -> Result<Outcome, ProcessError> {
        drop(self.0.lock().unwrap());
        Ok(Outcome::Keep(run))
    }
}

fn gated(gate: &Arc<Mutex<()>>, queue: usize) -> (Runtime, MemoryExporter) {
    let sink = MemoryExporter::new();
    let pipeline = Pipeline::builder()
        .without_redaction()
        .processor(Gate(Arc::clone(gate)))
        .exporter(sink.clone())
        .build()
        .unwrap();
    let rt = Runtime::builder()
        .options({
            let mut o = RuntimeOptions::default();
            o.background_processing = true;
            o.processing_queue_size = queue;
            o
        })
        .pipeline(pipeline)
        .build()
        .unwrap();
    (rt, sink)
}

#[test]
fn a_shutdown_that_times_out_counts_the_runs_left() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let (rt, sink) = gated(&gate, 100);
    for i in 0..10 {
        rt.run(format!("r{i}")).start().end();
    }
    // The thread is stuck on the first run it took (at the latest after its 100 ms tick).
    std::thread::sleep(Duration::from_millis(300));
    let report = rt.shutdown(Duration::from_millis(50));
    assert!(!report.is_clean());
    assert_eq!(report.errors[0].0, "tracecraft-process");
    let left = rt.stats().runs.dropped[PROCESSING_UNFINISHED];
    assert_eq!(left, 9, "the run being processed is not counted");
    assert_eq!(sink.len(), 0);
    drop(held);
}

#[test]
fn a_full_queue_drops_new_runs_and_counts_them() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let (rt, sink) = gated(&gate, 2);
    // The processing thread takes runs only when woken (queue half full) or every 100 ms;
    // keep ending runs until one is refused.
    let mut ended = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt
        .stats()
        .runs
        .dropped
        .get(PROCESSING_QUEUE_FULL)
        .copied()
        .unwrap_or(0)
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "queue never filled");
        rt.run(format!("r{ended}")).start().end();
        ended += 1;
    }
    drop(held);
    rt.shutdown(Duration::from_secs(5));
    let dropped = rt.stats().runs.dropped[PROCESSING_QUEUE_FULL];
    assert_eq!(dropped, 1);
    assert_eq!(sink.len() as u64 + dropped, ended);
}

#[test]
fn shutdown_processes_queued_runs_and_counts_later_ones() {
    let (rt, sink) = runtime(true, false);
    for i in 0..100 {
        rt.run(format!("r{i}")).start().end();
    }
    let report = rt.shutdown(Duration::from_secs(5));
    assert!(report.is_clean());
    assert_eq!(sink.len(), 100);
    rt.run("late").start().end();
    assert_eq!(rt.stats().runs.dropped[DROPPED_AFTER_SHUTDOWN], 1);
    assert_eq!(sink.len(), 100);
}

#[test]
fn dropping_the_runtime_processes_queued_runs() {
    let (rt, sink) = runtime(true, false);
    {
        let run = rt.run("r").start();
        run.step(StepType::Tool, "t").start().end();
    }
    drop(rt);
    let runs = sink.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].steps.len(), 1);
}

#[test]
fn force_flush_waits_for_runs_ended_on_other_threads() {
    let (rt, sink) = runtime(true, false);
    std::thread::scope(|s| {
        for t in 0..4 {
            let rt = rt.clone();
            s.spawn(move || {
                for i in 0..50 {
                    let run = rt.run(format!("t{t}-{i}")).start();
                    run.step(StepType::Tool, "x").input("i", &i).start().end();
                }
            });
        }
    });
    rt.force_flush().unwrap();
    assert_eq!(sink.len(), 200);
    assert!(sink.runs().iter().all(|r| r.steps.len() == 1));
    rt.shutdown(Duration::from_secs(5));
}
