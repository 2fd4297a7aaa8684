//! Tree operations, aggregation, merge and query semantics.

use tracecraft_core::{AgentRun, DateTime, OrderBy, Step, StepType, TraceQuery, Utc, merge_runs};

fn t(s: &str) -> DateTime<Utc> {
    tracecraft_core::time::parse(s).unwrap()
}

fn sample() -> AgentRun {
    let mut run = AgentRun::builder("agent").build();
    let id = run.id;
    let llm = Step::builder(id, StepType::Llm, "llm")
        .tokens(10, 5)
        .cost_usd(0.25)
        .build();
    let tool = Step::builder(id, StepType::Tool, "tool")
        .error("", "TimeoutError")
        .build();
    let wf = Step::builder(id, StepType::Workflow, "wf")
        .child(llm)
        .child(tool)
        .build();
    let llm2 = Step::builder(id, StepType::Llm, "llm2")
        .tokens(1, 1)
        .cost_usd(0.5)
        .build();
    run.push_step(wf);
    run.push_step(llm2);
    run
}

#[test]
fn walk_is_depth_first_preorder_with_depths() {
    let run = sample();
    let names: Vec<_> = run
        .walk()
        .with_depth()
        .map(|(s, d)| (s.name.as_str(), d))
        .collect();
    assert_eq!(names, [("wf", 0), ("llm", 1), ("tool", 1), ("llm2", 0)]);
}

#[test]
fn walk_mut_reaches_every_step() {
    let mut run = sample();
    run.walk_mut(|s, d| s.name = format!("{}@{d}", s.name));
    let names: Vec<_> = run.walk().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["wf@0", "llm@1", "tool@1", "llm2@0"]);
}

#[test]
fn find_by_id_shared_and_mutable() {
    let mut run = sample();
    let tool_id = run.walk().find(|s| s.name == "tool").unwrap().id;
    assert_eq!(run.find_step(tool_id).unwrap().name, "tool");
    run.find_step_mut(tool_id).unwrap().name = "renamed".into();
    assert_eq!(run.find_step(tool_id).unwrap().name, "renamed");
    assert!(run.find_step(uuid::Uuid::new_v4()).is_none());
}

#[test]
fn aggregate_counts_tokens_cost_and_errors_including_empty_and_run_level() {
    let mut run = sample();
    run.aggregate();
    assert_eq!(run.total_tokens, 17);
    assert!((run.total_cost_usd - 0.75).abs() < 1e-12);
    assert_eq!(run.error_count, 1, "empty message with error_type counts");
    run.error = Some(String::new());
    run.aggregate();
    assert_eq!(run.error_count, 2, "run-level error counts");
}

#[test]
fn builders_set_parent_and_trace_ids() {
    let run = sample();
    let wf = &run.steps[0];
    assert_eq!(wf.parent_id, None);
    assert!(wf.children.iter().all(|c| c.parent_id == Some(wf.id)));
    assert!(run.walk().all(|s| s.trace_id == run.id));
}

#[test]
fn deep_trees_walk_without_stack_overflow() {
    let mut run = AgentRun::new("deep");
    let mut step = Step::new(run.id, StepType::Agent, "leaf");
    for i in 0..10_000 {
        let mut parent = Step::new(run.id, StepType::Workflow, format!("l{i}"));
        parent.push_child(step);
        step = parent;
    }
    run.push_step(step);
    assert_eq!(run.walk().count(), 10_001);
    let mut deepest = 0;
    run.walk_mut(|_, d| deepest = deepest.max(d));
    assert_eq!(deepest, 10_000);
    let leaf = run.walk().last().unwrap().id;
    assert!(run.find_step_mut(leaf).is_some());
    // Dropping a deep tree recursively is fine at this depth on the test thread's stack; flatten
    // it anyway so the test does not depend on the stack size.
    let mut stack = std::mem::take(&mut run.steps);
    while let Some(mut s) = stack.pop() {
        stack.append(&mut s.children);
    }
}

#[test]
fn merge_keeps_earlier_steps_and_later_fields() {
    let mut first = sample();
    first.name = "first".into();
    let mut second = first.clone();
    second.name = "second".into();
    // The second part knows the workflow but not its tool child, nor llm2; it adds a new step.
    let tool_id = second.steps[0].children[1].id;
    second.steps[0].children.retain(|c| c.id != tool_id);
    second.steps.truncate(1);
    let new = Step::builder(second.id, StepType::Tool, "new").build();
    second.push_step(new);

    let merged = merge_runs(first.clone(), second);
    assert_eq!(merged.name, "second");
    let names: Vec<_> = merged.walk().map(|s| s.name.as_str()).collect();
    for n in ["wf", "llm", "tool", "llm2", "new"] {
        assert!(names.contains(&n), "{n} lost in merge: {names:?}");
    }
    let tool = merged.find_step(tool_id).unwrap();
    assert_eq!(
        tool.parent_id,
        Some(merged.steps.iter().find(|s| s.name == "wf").unwrap().id)
    );
    assert_eq!(merged.step_count(), 5);
    assert_eq!(merged.total_tokens, 17);
}

fn runs() -> Vec<AgentRun> {
    let mk = |name: &str, start: &str, dur: f64, cost: f64, tags: &[&str], sess: &str| {
        let mut r = AgentRun::builder(name)
            .start_time(t(start))
            .session_id(sess)
            .user_id("u1")
            .environment("production")
            .build();
        r.duration_ms = Some(dur);
        r.total_cost_usd = cost;
        r.tags = tags.iter().map(|s| s.to_string()).collect();
        r
    };
    let mut failing = mk(
        "Checkout_Agent",
        "2026-01-03T00:00:00Z",
        300.0,
        0.3,
        &["eu"],
        "s2",
    );
    failing.error = Some("boom".into());
    failing.aggregate();
    failing.total_cost_usd = 0.3;
    vec![
        mk(
            "support_agent",
            "2026-01-01T00:00:00Z",
            100.0,
            0.1,
            &["eu", "beta"],
            "s1",
        ),
        mk(
            "SUPPORT_bot",
            "2026-01-02T00:00:00Z",
            200.0,
            0.2,
            &["us"],
            "s1",
        ),
        failing,
    ]
}

fn names(q: &TraceQuery) -> Vec<String> {
    q.apply(runs()).into_iter().map(|r| r.name).collect()
}

#[test]
fn query_filters() {
    assert_eq!(
        names(&TraceQuery::new()),
        ["Checkout_Agent", "SUPPORT_bot", "support_agent"]
    );
    assert_eq!(
        names(&TraceQuery::new().name("SUPPORT_bot")),
        ["SUPPORT_bot"]
    );
    assert_eq!(
        names(&TraceQuery::new().name_contains("support")),
        ["SUPPORT_bot", "support_agent"]
    );
    assert_eq!(
        names(&TraceQuery::new().has_error(true)),
        ["Checkout_Agent"]
    );
    assert_eq!(names(&TraceQuery::new().has_error(false)).len(), 2);
    assert_eq!(
        names(&TraceQuery::new().duration_ms(Some(150.0), Some(250.0))),
        ["SUPPORT_bot"]
    );
    assert_eq!(
        names(&TraceQuery::new().cost_usd(Some(0.25), None)),
        ["Checkout_Agent"]
    );
    assert_eq!(
        names(&TraceQuery::new().tag("eu").tag("beta")),
        ["support_agent"]
    );
    assert_eq!(
        names(&TraceQuery::new().started(
            Some(t("2026-01-02T00:00:00Z")),
            Some(t("2026-01-03T00:00:00Z"))
        )),
        ["SUPPORT_bot"]
    );
    assert_eq!(
        names(&TraceQuery::new().session_id("s2")),
        ["Checkout_Agent"]
    );
    assert_eq!(names(&TraceQuery::new().user_id("u1")).len(), 3);
    assert!(names(&TraceQuery::new().environment("staging")).is_empty());
}

#[test]
fn query_order_offset_limit() {
    assert_eq!(
        names(&TraceQuery::new().order_by(OrderBy::Name, false)),
        ["Checkout_Agent", "SUPPORT_bot", "support_agent"]
    );
    assert_eq!(
        names(
            &TraceQuery::new()
                .order_by(OrderBy::Duration, false)
                .offset(1)
                .limit(1)
        ),
        ["SUPPORT_bot"]
    );
    assert_eq!(
        names(&TraceQuery::new().order_by(OrderBy::Cost, true).limit(1)),
        ["Checkout_Agent"]
    );
}

#[test]
fn query_validation_names_the_filter() {
    let e = TraceQuery::new()
        .cost_usd(Some(2.0), Some(1.0))
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("cost filter"), "{e}");
    let e = TraceQuery::new()
        .duration_ms(Some(f64::NAN), None)
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("duration filter"), "{e}");
}
