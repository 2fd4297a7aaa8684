//! Re-sending the spool: oldest first, one attempt per file, in the background (a thread of
//! the exporter) and in the foreground ([`OtlpExporter::flush_spool`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tracecraft_core::ExportError;

use crate::error::ExportFailure;
use crate::exporter::OtlpExporter;
use crate::spool::Spool;

/// What a foreground re-send did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SpoolFlush {
    /// Spooled requests the collector accepted (and that were removed).
    pub sent_batches: u64,
    /// Spans in them.
    pub sent_spans: u64,
    /// Spooled requests the collector rejected for their content (removed, counted).
    pub rejected_batches: u64,
    /// Requests left in the spool.
    pub remaining_batches: u64,
    /// Why it stopped early (the collector is still down, ...), if it did.
    pub error: Option<ExportError>,
}

/// Whether the collector refused the content itself: re-sending it cannot help.
pub(crate) fn is_content_rejection(e: &ExportError) -> bool {
    use crate::error::Cause;
    e.cause()
        .and_then(|c| c.downcast_ref::<ExportFailure>())
        .is_some_and(|f| {
            matches!(
                f.cause,
                Cause::Http { status: 400 | 413 }
                    | Cause::Grpc {
                        code: tonic::Code::InvalidArgument
                    }
            )
        })
}

/// Sends spooled requests oldest first, one attempt each, until the spool is empty, a
/// request fails (the collector is still down), `stop` is set or `deadline` passes.
pub(crate) fn resend_pending(
    sender: &mut OtlpExporter,
    spool: &Spool,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> SpoolFlush {
    let mut report = SpoolFlush::default();
    let entries = match spool.entries() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("OTLP spool: cannot list the spool directory: {e}");
            return report;
        }
    };
    let total = entries.len() as u64;
    let mut done = 0u64;
    for entry in &entries {
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Some(claimed) = spool.claim(entry) else {
            // Another process is sending it, it is gone, or it was set aside as corrupt.
            done += 1;
            continue;
        };
        let Ok(request) = ExportTraceServiceRequest::decode(claimed.request.as_slice()) else {
            tracing::warn!(
                file = %claimed.path.display(),
                "OTLP spool: a spooled request does not decode; removed"
            );
            spool
                .counters
                .rejected_batches
                .fetch_add(1, Ordering::Relaxed);
            claimed.remove();
            done += 1;
            continue;
        };
        match sender.send_with_attempts(&request, 1) {
            Ok(()) => {
                spool
                    .counters
                    .resent_batches
                    .fetch_add(1, Ordering::Relaxed);
                spool
                    .counters
                    .resent_spans
                    .fetch_add(claimed.spans, Ordering::Relaxed);
                report.sent_batches += 1;
                report.sent_spans += claimed.spans;
                claimed.remove();
                done += 1;
            }
            Err(e) if is_content_rejection(&e) => {
                tracing::warn!(
                    file = %claimed.path.display(),
                    spans = claimed.spans,
                    "OTLP spool: the collector rejected a spooled request for its content; removed: {e}"
                );
                spool
                    .counters
                    .rejected_batches
                    .fetch_add(1, Ordering::Relaxed);
                report.rejected_batches += 1;
                claimed.remove();
                done += 1;
            }
            Err(e) => {
                report.error = Some(e);
                break;
            }
        }
    }
    report.remaining_batches = total.saturating_sub(done);
    report
}

struct Shared {
    stop: AtomicBool,
    /// Set when the spool may hold something (written to, or found non-empty).
    pending: AtomicBool,
    wake: Mutex<bool>,
    cond: Condvar,
}

/// The background re-sender: a thread with its own connection to the collector.
pub(crate) struct Resender {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Resender {
    pub(crate) fn start(
        mut sender: OtlpExporter,
        spool: Arc<Spool>,
        interval: Duration,
    ) -> std::io::Result<Resender> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            pending: AtomicBool::new(true),
            wake: Mutex::new(false),
            cond: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tracecraft-otlp-spool".into())
            .spawn(move || {
                loop {
                    if s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if s.pending.swap(false, Ordering::AcqRel) {
                        let report = resend_pending(&mut sender, &spool, &s.stop, None);
                        if report.sent_batches > 0 {
                            tracing::info!(
                                batches = report.sent_batches,
                                spans = report.sent_spans,
                                "OTLP spool: re-sent spooled requests"
                            );
                        }
                        if report.remaining_batches > 0 {
                            s.pending.store(true, Ordering::Release);
                        }
                    }
                    let mut woken = s.wake.lock().unwrap_or_else(PoisonError::into_inner);
                    if !*woken && !s.stop.load(Ordering::Relaxed) {
                        woken = s
                            .cond
                            .wait_timeout(woken, interval)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    *woken = false;
                }
                let _ = tracecraft_core::Exporter::shutdown(&mut sender, Duration::ZERO);
            })?;
        Ok(Resender {
            shared,
            thread: Some(thread),
        })
    }

    /// Something was spooled: try again at the next interval.
    pub(crate) fn mark_pending(&self) {
        self.shared.pending.store(true, Ordering::Release);
    }

    /// The collector answers: re-send now if anything is pending.
    pub(crate) fn collector_answered(&self) {
        if self.shared.pending.load(Ordering::Acquire) {
            *self
                .shared
                .wake
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = true;
            self.shared.cond.notify_one();
        }
    }

    /// Stops the thread and waits for it (its in-flight attempt is bounded by the exporter's
    /// timeout). What is still spooled stays on disk for the next start.
    pub(crate) fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        *self
            .shared
            .wake
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.cond.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Resender {
    fn drop(&mut self) {
        self.stop();
    }
}
