//! Warnings about steps that cannot be recorded as asked: counted, and logged once with the
//! fix. Its own test binary: it installs a global subscriber (events logged from inside a
//! layer's callbacks reach only a global one; `tracing` drops them under `with_default`).
#![cfg(feature = "tracing")]

use tracecraft::layer::TraceCraftLayer;
use tracecraft::{RuntimeOptions, StepType};
use tracing_subscriber::layer::SubscriberExt;

mod common;

/// Counts WARN events whose message starts with a prefix (to check "warned once").
#[derive(Clone, Default)]
struct WarnCounter(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarnCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut m = Msg(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }
}

#[test]
fn unknown_step_types_and_steps_outside_runs_are_counted_and_warned_once() {
    let (rt, sink) = common::memory_runtime(RuntimeOptions::default());
    let warnings = WarnCounter::default();
    let sub = tracing_subscriber::registry()
        .with(TraceCraftLayer::new(rt.clone()))
        .with(warnings.clone());
    tracing::subscriber::set_global_default(sub).unwrap();

    tracing::info_span!("agent").in_scope(|| {
        tracing::info_span!("a", tracecraft.step_type = "toool").in_scope(|| {});
        tracing::info_span!("b", tracecraft.step_type = "tol").in_scope(|| {});
        tracing::info_span!("c", tracecraft.step_type = "tool").in_scope(|| {});
    });
    let run = &sink.runs()[0];
    let types: Vec<_> = run.steps.iter().map(|s| s.step_type).collect();
    assert_eq!(
        types,
        [StepType::Workflow, StepType::Workflow, StepType::Tool]
    );
    assert_eq!(rt.stats().unknown_step_types, 2);

    // A spawned thread that did not take the context along.
    let before = rt.stats().steps_outside_run;
    {
        let _run = rt.run("r").start();
        std::thread::spawn(|| {
            tracecraft::step(StepType::Tool, "lost").start().end();
            tracecraft::step(StepType::Tool, "lost too").start().end();
        })
        .join()
        .unwrap();
    }
    assert_eq!(rt.stats().steps_outside_run - before, 2);
    assert!(sink.runs()[1].steps.is_empty());

    let warned = warnings.0.lock().unwrap();
    let about = |needle: &str| warned.iter().filter(|m| m.contains(needle)).count();
    assert_eq!(about("unknown tracecraft.type"), 1, "{warned:?}");
    assert_eq!(about("outside any run"), 1, "{warned:?}");
    assert!(
        warned.iter().any(|m| m.contains("in_current_run")),
        "the fix is named"
    );
    assert!(
        !warned.iter().any(|m| m.contains("toool")),
        "values are not logged"
    );
}
