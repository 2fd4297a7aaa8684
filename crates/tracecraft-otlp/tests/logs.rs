//! What the exporter logs: a warning for credentials over plaintext to a non-loopback host (not
//! for loopback, not for https), partial successes, failures — never a header value.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use std::sync::{Arc, Mutex};

use tracecraft_core::{AgentRun, Exporter, ProcessedRun};
use tracecraft_otlp::testing::{MockCollector, Reply};
use tracecraft_otlp::{OtlpExporter, Protocol, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

const SECRET: &str = "Bearer tok-log-5e6f7a8b";

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(tracing::Level, String)>>>);

struct Text(String);
impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0));
    }
}

impl Events {
    fn capture(f: impl FnOnce()) -> Vec<(tracing::Level, String)> {
        let events = Events::default();
        let subscriber = tracing_subscriber::registry().with(events.clone());
        tracing::subscriber::with_default(subscriber, f);
        let out = events.0.lock().unwrap().clone();
        for (_, text) in &out {
            assert!(
                !text.contains("tok-log"),
                "a header value was logged: {text}"
            );
        }
        out
    }
}

fn warnings(events: &[(tracing::Level, String)]) -> Vec<&str> {
    events
        .iter()
        .filter(|(l, _)| *l == tracing::Level::WARN)
        .map(|(_, t)| t.as_str())
        .collect()
}

#[test]
fn plaintext_credentials_to_a_remote_host_warn_once_at_build() {
    let events = Events::capture(|| {
        let _ = OtlpExporter::builder()
            .endpoint("http://collector.example:4318/v1/traces")
            .header("authorization", SECRET)
            .build()
            .unwrap();
    });
    let w = warnings(&events);
    assert_eq!(w.len(), 1, "{events:?}");
    assert!(w[0].contains("plaintext"), "{}", w[0]);
    assert!(w[0].contains("collector.example"), "{}", w[0]);
    for endpoint in [
        "http://127.0.0.1:4318/v1/traces",
        "http://localhost:4318/v1/traces",
        "https://collector.example:4318/v1/traces",
    ] {
        let events = Events::capture(|| {
            let _ = OtlpExporter::builder()
                .endpoint(endpoint)
                .header("authorization", SECRET)
                .build()
                .unwrap();
        });
        assert!(warnings(&events).is_empty(), "{endpoint}: {events:?}");
    }
    // No headers, no credentials: no warning either.
    let events = Events::capture(|| {
        let _ = OtlpExporter::builder()
            .endpoint("http://collector.example:4318/v1/traces")
            .build()
            .unwrap();
    });
    assert!(warnings(&events).is_empty(), "{events:?}");
}

#[test]
fn partial_success_and_failures_are_logged_without_secrets() {
    let collector = MockCollector::start().unwrap();
    collector.script([
        Reply::Partial {
            rejected_spans: 1,
            message: "x".repeat(10_000),
        },
        Reply::Unavailable,
    ]);
    let run = ProcessedRun::assume_processed(AgentRun::new("logged"));
    let events = Events::capture(|| {
        let mut exporter = OtlpExporter::builder()
            .protocol(Protocol::Grpc)
            .endpoint(collector.grpc_endpoint())
            .header("authorization", SECRET)
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        exporter.export(std::slice::from_ref(&run)).unwrap();
        assert!(exporter.export(&[run]).is_err());
    });
    let w = warnings(&events);
    assert_eq!(w.len(), 2, "{events:?}");
    assert!(
        w[0].contains("partially") && w[0].contains("rejected_spans=1"),
        "{}",
        w[0]
    );
    assert!(w[0].len() < 1_000, "the collector's message is not cut");
    assert!(w[1].contains("UNAVAILABLE"), "{}", w[1]);
}
