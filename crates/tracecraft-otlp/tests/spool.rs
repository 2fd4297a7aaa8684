//! The durable spool against the mock collector: a collector down at first then up, a child
//! process killed with SIGKILL mid-export then restarted, eviction counted, a corrupt file
//! skipped with a warning naming it, several exporters on one directory. Every span arrives at
//! least once, with the span ids it was exported with.
#![allow(clippy::disallowed_methods)] // tests build ProcessedRuns directly

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracecraft_core::{AgentRun, Exporter, ProcessedRun, Step, StepType, Uuid};
use tracecraft_otlp::mapping;
use tracecraft_otlp::testing::MockCollector;
use tracecraft_otlp::{OtlpExporter, Protocol, RetryPolicy, Spool, SpoolConfig};
use tracecraft_pipeline::{BatchConfig, BatchExporter, Pipeline};

/// Run `i` of series `series`: a run and two steps, ids derived from both (3 spans).
fn run(series: u64, i: u64) -> ProcessedRun {
    // Span ids are the first 8 bytes: series and index live there.
    let id = Uuid::from_u128((u128::from(series) << 120) | (u128::from(i) << 64) | 1);
    let mut run = AgentRun::with_id(id, format!("run-{i}"), chrono::Utc::now());
    for k in 0..2u128 {
        let step_id = Uuid::from_u128(id.as_u128() + ((k + 1) << 104));
        let step = Step::with_id(step_id, id, StepType::Llm, "chat", chrono::Utc::now());
        run.push_step(step);
    }
    ProcessedRun::assume_processed(run)
}

fn span_ids(runs: impl IntoIterator<Item = ProcessedRun>) -> HashSet<Vec<u8>> {
    runs.into_iter()
        .flat_map(|r| mapping::run_spans(r.run()))
        .map(|s| s.span_id)
        .collect()
}

fn received_ids(collector: &MockCollector) -> HashSet<Vec<u8>> {
    collector.spans().into_iter().map(|s| s.span_id).collect()
}

fn wait_for_ids(collector: &MockCollector, expected: &HashSet<Vec<u8>>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if received_ids(collector).is_superset(expected) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn exporter(port: u16, spool: SpoolConfig) -> OtlpExporter {
    OtlpExporter::builder()
        .protocol(Protocol::HttpProtobuf)
        .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
        .timeout(Duration::from_secs(5))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(5),
        })
        .spool(spool)
        .build()
        .unwrap()
}

fn spool_config(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig::builder(dir)
        .resend_interval(Duration::from_millis(100))
        .build()
}

/// The shape (a 10,000-run export with the collector down for its first 30 s),
/// scaled down: 2,000 runs through the batch exporter, the collector down for the first
/// second. Every span arrives, with its own span id.
#[test]
fn collector_down_at_first_then_up_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let otlp = exporter(port, spool_config(&dir.path().join("spool")));
    let stats = otlp.stats_handle();
    let batch = BatchExporter::new(
        otlp,
        BatchConfig {
            max_queue_size: 4096,
            batch_size: 64,
            flush_interval: Duration::from_millis(50),
        },
    );
    let pipeline = Pipeline::builder()
        .without_redaction()
        .exporter(batch)
        .build()
        .unwrap();
    let runs: Vec<ProcessedRun> = (0..2_000).map(|i| run(1, i)).collect();
    let started = Instant::now();
    let mut collector = None;
    for (i, r) in runs.iter().enumerate() {
        pipeline.export(std::slice::from_ref(r));
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(100));
        }
        if collector.is_none() && started.elapsed() >= Duration::from_secs(1) {
            collector = Some(MockCollector::start_on_port(port).unwrap());
        }
    }
    let collector = collector.unwrap_or_else(|| MockCollector::start_on_port(port).unwrap());
    let expected = span_ids(runs);
    assert!(
        wait_for_ids(&collector, &expected, Duration::from_secs(60)),
        "missing {} spans",
        expected.difference(&received_ids(&collector)).count()
    );
    let report = pipeline.shutdown(Duration::from_secs(30));
    assert!(report.is_clean(), "{:?}", report.errors);
    let s = stats.get();
    assert!(
        s.spool.spooled_batches > 0,
        "the collector was never down: {s:?}"
    );
    assert_eq!(s.spool.evicted_batches, 0);
    assert_eq!(
        Spool::open_existing(&dir.path().join("spool"))
            .unwrap()
            .unwrap()
            .status()
            .unwrap()
            .batches,
        0,
        "everything spooled was re-sent"
    );
}

/// The child side of `killed_with_sigkill_mid_export_then_restarted`: does nothing unless the
/// parent set its environment.
#[test]
fn spool_child_process() {
    let Ok(dir) = std::env::var("TRACECRAFT_SPOOL_CHILD_DIR") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap().parse::<u64>().unwrap();
    let port = var("TRACECRAFT_SPOOL_CHILD_PORT") as u16;
    let (first, last) = (
        var("TRACECRAFT_SPOOL_CHILD_FIRST"),
        var("TRACECRAFT_SPOOL_CHILD_LAST"),
    );
    let mut exporter = exporter(port, spool_config(std::path::Path::new(&dir)));
    let mut out = std::io::stdout().lock();
    for b in first..=last {
        let batch: Vec<ProcessedRun> = (0..10).map(|i| run(2, b * 10 + i)).collect();
        exporter.export(&batch).unwrap();
        // Acknowledged: delivered or durably spooled.
        writeln!(out, "acked {b}").unwrap();
        out.flush().unwrap();
    }
    // Wait for the background re-sender to empty the spool (the collector is up by now).
    let deadline = Instant::now() + Duration::from_secs(30);
    while exporter.spool().unwrap().status().unwrap().batches > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    exporter.shutdown(Duration::from_secs(5)).unwrap();
    writeln!(out, "done").unwrap();
}

fn child(dir: &std::path::Path, port: u16, first: u64, last: u64) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spool_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TRACECRAFT_SPOOL_CHILD_DIR", dir)
        .env("TRACECRAFT_SPOOL_CHILD_PORT", port.to_string())
        .env("TRACECRAFT_SPOOL_CHILD_FIRST", first.to_string())
        .env("TRACECRAFT_SPOOL_CHILD_LAST", last.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// An exporting process is killed (SIGKILL) while the collector is down and it is spooling;
/// restarted from its last acknowledged batch once the collector is up, it re-sends the spool:
/// every span of every batch arrives at least once.
#[cfg(unix)]
#[test]
fn killed_with_sigkill_mid_export_then_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let port = free_port();
    let last = 40u64;
    let mut first_child = child(&spool_dir, port, 0, last);
    let mut acked = None;
    let mut lines = std::io::BufReader::new(first_child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if let Some(b) = line.strip_prefix("acked ") {
            acked = Some(b.parse::<u64>().unwrap());
            if acked >= Some(5) {
                break;
            }
        }
    }
    first_child.kill().unwrap(); // SIGKILL on unix
    first_child.wait().unwrap();
    let acked = acked.expect("the child acknowledged nothing");
    assert!(acked < last, "the child finished before it was killed");

    let collector = MockCollector::start_on_port(port).unwrap();
    let mut second = child(&spool_dir, port, acked + 1, last);
    let out: Vec<String> = std::io::BufReader::new(second.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(second.wait().unwrap().success(), "{out:?}");
    assert!(out.iter().any(|l| l == "done"), "{out:?}");
    let expected = span_ids((0..=last).flat_map(|b| (0..10).map(move |i| run(2, b * 10 + i))));
    assert!(
        wait_for_ids(&collector, &expected, Duration::from_secs(10)),
        "missing {} spans",
        expected.difference(&received_ids(&collector)).count()
    );
}

#[test]
fn eviction_keeps_the_bound_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = SpoolConfig::builder(dir.path().join("spool"))
        .max_bytes(20_000)
        .resend_interval(Duration::from_secs(3600))
        .build();
    let mut exporter = exporter(port, config);
    let runs: Vec<ProcessedRun> = (0..60).map(|i| run(3, i)).collect();
    for chunk in runs.chunks(3) {
        exporter.export(chunk).unwrap();
    }
    let s = exporter.stats_handle().get().spool;
    assert_eq!(s.spooled_batches, 20);
    assert!(s.evicted_batches > 0, "{s:?}");
    let status = exporter.spool().unwrap().status().unwrap();
    assert!(status.bytes <= 20_000, "{status:?}");
    assert!(status.batches > 1, "{status:?}");
    assert_eq!(status.batches + s.evicted_batches, s.spooled_batches);
    assert_eq!(status.spans + s.evicted_spans, s.spooled_spans);
    assert_eq!(s.spooled_spans, 180);

    // The newest survived; they all arrive once the collector is up.
    let collector = MockCollector::start_on_port(port).unwrap();
    let flush = exporter.flush_spool(Duration::from_secs(20)).unwrap();
    assert!(flush.error.is_none(), "{:?}", flush.error);
    assert_eq!(flush.sent_batches, status.batches);
    assert_eq!(received_ids(&collector).len() as u64, status.spans);
    let newest = span_ids(runs[57..].iter().cloned());
    assert!(received_ids(&collector).is_superset(&newest));
}

#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Text(String);
impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = Text(String::new());
            event.record(&mut text);
            self.0.lock().unwrap().push(text.0);
        }
    }
}

#[test]
fn a_corrupt_file_is_skipped_with_a_warning_naming_it() {
    use tracing_subscriber::layer::SubscriberExt;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let port = free_port();
    // No background re-sender: the warning is emitted on this thread, where it is captured.
    let config = SpoolConfig::builder(&spool_dir).background(false).build();
    let mut down = exporter(port, config.clone());
    down.export(&[run(4, 0)]).unwrap();
    down.export(&[run(4, 1)]).unwrap();
    down.shutdown(Duration::from_secs(1)).unwrap();
    // The oldest file is garbage.
    let corrupt = spool_dir.join("00000000000000000001-1-000000-3s.tcspool");
    std::fs::write(&corrupt, b"\xc1 not messagepack").unwrap();

    let collector = MockCollector::start_on_port(port).unwrap();
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let stats = tracing::subscriber::with_default(subscriber, || {
        let mut up = exporter(port, config);
        let flush = up.flush_spool(Duration::from_secs(20)).unwrap();
        assert!(flush.error.is_none(), "{:?}", flush.error);
        let expected = span_ids([run(4, 0), run(4, 1)]);
        assert!(wait_for_ids(&collector, &expected, Duration::from_secs(20)));
        up.shutdown(Duration::from_secs(5)).unwrap();
        up.stats_handle().get()
    });
    assert_eq!(stats.spool.resent_batches, 2);
    assert_eq!(stats.spool.corrupt_files, 1);
    assert!(!corrupt.exists());
    assert!(corrupt.with_extension("corrupt").exists());
    let warnings = warnings.0.lock().unwrap();
    assert!(
        warnings.iter().any(
            |w| w.contains("corrupt") && w.contains("00000000000000000001-1-000000-3s.tcspool")
        ),
        "{warnings:?}"
    );
    assert!(received_ids(&collector).is_superset(&span_ids([run(4, 0), run(4, 1)])));
}

#[test]
fn several_exporters_share_one_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let port = free_port();
    let config = SpoolConfig::builder(&spool_dir)
        .resend_interval(Duration::from_secs(3600))
        .build();
    let mut down = exporter(port, config.clone());
    let runs: Vec<ProcessedRun> = (0..40).map(|i| run(5, i)).collect();
    for r in &runs {
        down.export(std::slice::from_ref(r)).unwrap();
    }
    down.shutdown(Duration::from_secs(1)).unwrap();
    let collector = MockCollector::start_on_port(port).unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut e = exporter(port, config);
                let flush = e.flush_spool(Duration::from_secs(20)).unwrap();
                assert!(flush.error.is_none(), "{:?}", flush.error);
                e.shutdown(Duration::from_secs(5)).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Each file is sent under its lock, by one of the three exporters (or their background
    // re-senders); all arrive, and the spool ends empty.
    assert!(wait_for_ids(
        &collector,
        &span_ids(runs),
        Duration::from_secs(20)
    ));
    assert_eq!(
        Spool::open_existing(&spool_dir)
            .unwrap()
            .unwrap()
            .status()
            .unwrap()
            .batches,
        0
    );
}

/// `persist` (what the batch exporter calls for runs its shutdown deadline left) writes to the
/// spool without sending; they arrive at the next flush.
#[test]
fn persist_spools_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let collector = MockCollector::start().unwrap();
    let port = collector.addr().port();
    let mut e = exporter(
        port,
        SpoolConfig::builder(dir.path().join("spool"))
            .resend_interval(Duration::from_secs(3600))
            .build(),
    );
    let runs: Vec<ProcessedRun> = (0..5).map(|i| run(6, i)).collect();
    assert!(e.persist(&runs).unwrap());
    // The re-sender's first pass may already have taken it; either way it arrives.
    let flush = e.flush_spool(Duration::from_secs(20)).unwrap();
    assert!(flush.error.is_none(), "{:?}", flush.error);
    assert!(wait_for_ids(
        &collector,
        &span_ids(runs),
        Duration::from_secs(20)
    ));
}

/// The span ids of each request, in order.
fn request_ids(requests: &[mapping::EncodedRequest]) -> Vec<Vec<Vec<u8>>> {
    use prost::Message;
    requests
        .iter()
        .map(|r| {
            let decoded =
                opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                    r.body().clone(),
                )
                .unwrap();
            decoded
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.span_id.clone())
                .collect()
        })
        .collect()
}

/// A batch split into six requests is encoded while the previous request is in flight; what
/// each request does is still decided in order: 1 delivered, 2 fails for good and is spooled,
/// 3 gets a single attempt (the collector was down) and is delivered, 4 fails for good, 5 and
/// 6 get one attempt each and are spooled. The spool holds 2, 4, 5, 6 in that order, with
/// their span ids; the counters add up.
#[test]
fn a_split_batch_is_sent_in_order_while_the_next_request_is_encoded() {
    for protocol in [Protocol::HttpProtobuf, Protocol::Grpc] {
        split_batch_in_order(protocol);
    }
}

fn split_batch_in_order(protocol: Protocol) {
    use tracecraft_otlp::testing::Reply;
    let dir = tempfile::tempdir().unwrap();
    let collector = MockCollector::start().unwrap();
    let limit = 1_500;
    let runs: Vec<ProcessedRun> = (0..6).map(|i| run(7, i)).collect();
    let expected = mapping::encode_requests(&runs, &mapping::MappingOptions::default(), limit);
    assert_eq!(expected.len(), 6, "the test needs six requests");
    let ids = request_ids(&expected);
    let spans = |i: usize| expected[i].spans();
    let mut exporter = OtlpExporter::builder()
        .protocol(protocol)
        .endpoint(match protocol {
            Protocol::Grpc => collector.grpc_endpoint(),
            _ => collector.http_endpoint(),
        })
        .timeout(Duration::from_secs(5))
        .max_request_bytes(limit)
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(5),
        })
        .spool(
            SpoolConfig::builder(dir.path().join("spool"))
                .background(false)
                .build(),
        )
        .build()
        .unwrap();
    let down = || Reply::Unavailable;
    collector.script([
        Reply::Ok,
        down(),
        down(),
        down(),
        Reply::Ok,
        down(),
        down(),
        down(),
        down(),
        down(),
    ]);
    exporter.export(&runs).unwrap();

    let accepted: Vec<Vec<Vec<u8>>> = collector
        .received()
        .iter()
        .filter(|r| r.accepted())
        .map(|r| r.spans().into_iter().map(|s| s.span_id).collect())
        .collect();
    assert_eq!(accepted, vec![ids[0].clone(), ids[2].clone()], "{protocol}");
    assert_eq!(
        collector.received().len(),
        10,
        "attempts: 1 + 3 + 1 + 3 + 1 + 1"
    );
    let stats = exporter.stats_handle().get();
    assert_eq!(stats.requests_ok, 2, "{protocol}");
    assert_eq!(stats.requests_failed, 4);
    assert_eq!(stats.retries, 4);
    assert_eq!(stats.spans_sent, spans(0) + spans(2));
    assert_eq!(stats.spool.spooled_batches, 4);
    assert_eq!(
        stats.spool.spooled_spans,
        spans(1) + spans(3) + spans(4) + spans(5)
    );

    // Re-sent oldest first: the failed requests in their order, with their span ids.
    collector.clear();
    let flush = exporter.flush_spool(Duration::from_secs(20)).unwrap();
    assert!(flush.error.is_none(), "{:?}", flush.error);
    assert_eq!(flush.sent_batches, 4);
    let resent: Vec<Vec<Vec<u8>>> = collector
        .received()
        .iter()
        .map(|r| r.spans().into_iter().map(|s| s.span_id).collect())
        .collect();
    assert_eq!(
        resent,
        vec![
            ids[1].clone(),
            ids[3].clone(),
            ids[4].clone(),
            ids[5].clone()
        ]
    );
}
