//! [`Metrics`]: the gateway's counters, in Prometheus text at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request (or some of its spans) was refused. Exhaustive: [`Reject::ALL`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Reject {
    /// No or an invalid bearer token.
    Unauthenticated,
    /// Body above `max_request_bytes`.
    TooLarge,
    /// More spans than `max_spans_per_request`.
    TooManySpans,
    /// Undecodable protobuf/JSON/gzip, or an unsupported content type.
    Malformed,
    /// Spans with invalid ids or absurd times (reported in `partial_success`).
    InvalidSpan,
    /// The pipeline queue was full (503 / `UNAVAILABLE`).
    QueueFull,
    /// Too many requests at once (503 / `UNAVAILABLE`).
    Busy,
    /// The gateway is shutting down.
    ShuttingDown,
}

impl Reject {
    /// Every reason, in the order metrics show them.
    pub const ALL: [Reject; 8] = [
        Reject::Unauthenticated,
        Reject::TooLarge,
        Reject::TooManySpans,
        Reject::Malformed,
        Reject::InvalidSpan,
        Reject::QueueFull,
        Reject::Busy,
        Reject::ShuttingDown,
    ];

    /// The label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Reject::Unauthenticated => "unauthenticated",
            Reject::TooLarge => "too_large",
            Reject::TooManySpans => "too_many_spans",
            Reject::Malformed => "malformed",
            Reject::InvalidSpan => "invalid_span",
            Reject::QueueFull => "queue_full",
            Reject::Busy => "busy",
            Reject::ShuttingDown => "shutting_down",
        }
    }

    fn index(self) -> usize {
        Reject::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The gateway's counters. Cheap to bump from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    requests_grpc: AtomicU64,
    requests_http: AtomicU64,
    spans_received: AtomicU64,
    rejected_requests: [AtomicU64; 8],
    rejected_spans: [AtomicU64; 8],
    pub(crate) traces_completed: AtomicU64,
    pub(crate) spans_late: AtomicU64,
    pub(crate) runs_processed: AtomicU64,
    pub(crate) runs_dropped: AtomicU64,
    pub(crate) runs_failed: AtomicU64,
    pub(crate) pending_spans: AtomicU64,
    pub(crate) queued_requests: AtomicU64,
    /// Runs exported / failed per exporter (`sqlite`, `otlp-grpc`, ...), summed over tenants.
    pub(crate) exporters: Mutex<BTreeMap<String, (u64, u64)>>,
    pub(crate) spooled_spans: AtomicU64,
    pub(crate) forwarded_spans: AtomicU64,
    /// Redactions by rule (counts from processed runs).
    pub(crate) redactions: Mutex<BTreeMap<String, u64>>,
}

/// A snapshot of [`Metrics`], for tests and summaries.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Spans accepted into the queue.
    pub spans_received: u64,
    /// Requests refused, by reason.
    pub rejected_requests: BTreeMap<&'static str, u64>,
    /// Spans refused, by reason.
    pub rejected_spans: BTreeMap<&'static str, u64>,
    /// Traces handed to the pipeline.
    pub traces_completed: u64,
    /// Spans that arrived after their trace was processed (stored as a separate part).
    pub spans_late: u64,
    /// Runs that passed the pipeline.
    pub runs_processed: u64,
    /// Runs dropped by sampling.
    pub runs_dropped: u64,
    /// Runs dropped because a processor failed (fail closed).
    pub runs_failed: u64,
    /// Runs exported / failed, by exporter.
    pub exporters: BTreeMap<String, (u64, u64)>,
    /// Redactions by rule.
    pub redactions: BTreeMap<String, u64>,
}

impl Metrics {
    pub(crate) fn request(&self, grpc: bool) {
        if grpc {
            self.requests_grpc.fetch_add(1, Ordering::Relaxed);
        } else {
            self.requests_http.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn received(&self, spans: u64) {
        self.spans_received.fetch_add(spans, Ordering::Relaxed);
    }

    pub(crate) fn reject(&self, why: Reject, spans: u64) {
        self.rejected_requests[why.index()].fetch_add(1, Ordering::Relaxed);
        self.rejected_spans[why.index()].fetch_add(spans, Ordering::Relaxed);
    }

    pub(crate) fn reject_spans(&self, why: Reject, spans: u64) {
        self.rejected_spans[why.index()].fetch_add(spans, Ordering::Relaxed);
    }

    /// The counters now.
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            spans_received: load(&self.spans_received),
            rejected_requests: Reject::ALL
                .iter()
                .map(|r| (r.label(), load(&self.rejected_requests[r.index()])))
                .filter(|(_, n)| *n > 0)
                .collect(),
            rejected_spans: Reject::ALL
                .iter()
                .map(|r| (r.label(), load(&self.rejected_spans[r.index()])))
                .filter(|(_, n)| *n > 0)
                .collect(),
            traces_completed: load(&self.traces_completed),
            spans_late: load(&self.spans_late),
            runs_processed: load(&self.runs_processed),
            runs_dropped: load(&self.runs_dropped),
            runs_failed: load(&self.runs_failed),
            exporters: self.exporters.lock().map(|m| m.clone()).unwrap_or_default(),
            redactions: self
                .redactions
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
        }
    }

    /// Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn prometheus(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "tracecraft_gateway_requests_total",
            "OTLP export requests received, by protocol.",
            &[
                ("{protocol=\"grpc\"}".into(), load(&self.requests_grpc)),
                ("{protocol=\"http\"}".into(), load(&self.requests_http)),
            ],
        );
        counter(
            "tracecraft_gateway_spans_received_total",
            "Spans accepted for processing.",
            &[(String::new(), load(&self.spans_received))],
        );
        let by_reason = |arr: &[AtomicU64; 8]| -> Vec<(String, u64)> {
            Reject::ALL
                .iter()
                .map(|r| {
                    (
                        format!("{{reason=\"{}\"}}", r.label()),
                        load(&arr[r.index()]),
                    )
                })
                .collect()
        };
        counter(
            "tracecraft_gateway_requests_rejected_total",
            "Requests refused, by reason.",
            &by_reason(&self.rejected_requests),
        );
        counter(
            "tracecraft_gateway_spans_rejected_total",
            "Spans refused, by reason.",
            &by_reason(&self.rejected_spans),
        );
        counter(
            "tracecraft_gateway_traces_completed_total",
            "Traces handed to the pipeline.",
            &[(String::new(), load(&self.traces_completed))],
        );
        counter(
            "tracecraft_gateway_spans_late_total",
            "Spans that arrived after their trace was processed.",
            &[(String::new(), load(&self.spans_late))],
        );
        counter(
            "tracecraft_gateway_runs_total",
            "Runs out of the pipeline, by outcome (processed = redacted and kept).",
            &[
                ("{outcome=\"processed\"}".into(), load(&self.runs_processed)),
                ("{outcome=\"sampled_out\"}".into(), load(&self.runs_dropped)),
                ("{outcome=\"failed\"}".into(), load(&self.runs_failed)),
            ],
        );
        let exporters = self.exporters.lock().map(|m| m.clone()).unwrap_or_default();
        let ok: Vec<(String, u64)> = exporters
            .iter()
            .map(|(e, (ok, _))| (format!("{{exporter=\"{e}\"}}"), *ok))
            .collect();
        let failed: Vec<(String, u64)> = exporters
            .iter()
            .map(|(e, (_, bad))| (format!("{{exporter=\"{e}\"}}"), *bad))
            .collect();
        counter(
            "tracecraft_gateway_runs_exported_total",
            "Runs stored or forwarded, by exporter (sqlite, jsonl = stored; otlp-* = forwarded).",
            &ok,
        );
        counter(
            "tracecraft_gateway_runs_export_failed_total",
            "Runs whose store or forward failed, by exporter.",
            &failed,
        );
        let redactions: Vec<(String, u64)> = self
            .redactions
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(r, n)| (format!("{{rule=\"{r}\"}}"), *n))
                    .collect()
            })
            .unwrap_or_default();
        counter(
            "tracecraft_gateway_redactions_total",
            "Values redacted, by rule.",
            &redactions,
        );
        counter(
            "tracecraft_gateway_forward_spans_total",
            "Spans of forwarded runs, by outcome.",
            &[
                ("{outcome=\"sent\"}".into(), load(&self.forwarded_spans)),
                ("{outcome=\"spooled\"}".into(), load(&self.spooled_spans)),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP tracecraft_gateway_pending_spans Spans held in incomplete traces.\n\
             # TYPE tracecraft_gateway_pending_spans gauge\n\
             tracecraft_gateway_pending_spans {}",
            load(&self.pending_spans)
        );
        let _ = writeln!(
            out,
            "# HELP tracecraft_gateway_queued_requests Requests waiting for the pipeline.\n\
             # TYPE tracecraft_gateway_queued_requests gauge\n\
             tracecraft_gateway_queued_requests {}",
            load(&self.queued_requests)
        );
        out
    }

    /// One log line's worth.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let s = self.snapshot();
        let rejected: u64 = s.rejected_requests.values().sum();
        let exported: Vec<String> = s
            .exporters
            .iter()
            .map(|(e, (ok, bad))| format!("{e} {ok} ok {bad} failed"))
            .collect();
        format!(
            "spans received {}, requests rejected {rejected} {:?}, traces {}, runs processed {} \
             (sampled out {}, failed {}), {}",
            s.spans_received,
            s.rejected_requests,
            s.traces_completed,
            s.runs_processed,
            s.runs_dropped,
            s.runs_failed,
            exported.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exposed() {
        let m = Metrics::default();
        m.reject(Reject::QueueFull, 3);
        let text = m.prometheus();
        for r in Reject::ALL {
            assert!(text.contains(&format!("reason=\"{}\"", r.label())));
        }
        assert!(text.contains("tracecraft_gateway_spans_rejected_total{reason=\"queue_full\"} 3"));
        assert_eq!(m.snapshot().rejected_requests["queue_full"], 1);
    }
}
