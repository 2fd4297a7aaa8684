//! Aggregates over many runs for dashboards ([`TraceStore::overview`](crate::TraceStore::overview)):
//! totals, a time series with p50/p95 latency, the most used models and the steps that fail
//! most. [`OverviewBuilder`] is the one implementation of the bucketing and the percentiles;
//! a store that aggregates in its database feeds it rows instead of runs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::{AgentRun, StepType};

/// Bucket widths a time series picks from, in seconds (the narrowest that gives at most
/// [`MAX_BUCKETS`]).
pub const BUCKET_WIDTHS: [i64; 12] = [
    60,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    30 * 86_400,
];

/// The most buckets a time series has (unless the runs span more than 48 x 30 days).
pub const MAX_BUCKETS: i64 = 48;

/// Totals of the runs a query matches (see [`TraceStore::overview`](crate::TraceStore::overview)).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Overview {
    /// Runs.
    pub runs: u64,
    /// Runs with an error (the run's or a step's).
    pub errors: u64,
    /// Sum of the runs' `total_tokens`.
    pub tokens: u64,
    /// Sum of the runs' `total_cost_usd`.
    pub cost_usd: f64,
    /// Median run duration (nearest rank; runs without a duration left out).
    pub p50_ms: Option<f64>,
    /// 95th percentile of run durations (nearest rank).
    pub p95_ms: Option<f64>,
    /// Width of each bucket, in seconds.
    pub bucket_s: i64,
    /// The time series: one bucket per `bucket_s` from the first run's to the last run's,
    /// empty ones included.
    pub buckets: Vec<OverviewBucket>,
    /// Models by number of calls (then name), at most `top`.
    pub models: Vec<ModelUse>,
    /// Failing steps (name and type) by number of failures (then name, type), at most `top`.
    pub failing_steps: Vec<FailingStep>,
}

/// One bucket of [`Overview::buckets`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OverviewBucket {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// Runs that started in it.
    pub runs: u64,
    /// Of which with an error.
    pub errors: u64,
    /// Their tokens.
    pub tokens: u64,
    /// Their cost.
    pub cost_usd: f64,
    /// Median duration.
    pub p50_ms: Option<f64>,
    /// 95th percentile duration.
    pub p95_ms: Option<f64>,
}

/// Use of one model by steps ([`Overview::models`]).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ModelUse {
    /// The model name as stored.
    pub model: String,
    /// Steps that named it.
    pub calls: u64,
    /// Their input plus output tokens.
    pub tokens: u64,
    /// Their cost.
    pub cost_usd: f64,
    /// Of which failed.
    pub errors: u64,
}

/// Steps of one name and type that failed ([`Overview::failing_steps`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailingStep {
    /// Step name.
    pub name: String,
    /// Step type.
    pub step_type: StepType,
    /// How many failed.
    pub errors: u64,
}

struct Point {
    start_s: i64,
    duration_ms: Option<f64>,
    tokens: u64,
    cost: f64,
    error: bool,
}

/// Accumulates runs (or a database's rows) into an [`Overview`].
#[derive(Default)]
pub struct OverviewBuilder {
    points: Vec<Point>,
    models: HashMap<String, ModelUse>,
    failing: HashMap<(String, StepType), u64>,
}

impl std::fmt::Debug for OverviewBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverviewBuilder")
            .field("runs", &self.points.len())
            .finish_non_exhaustive()
    }
}

/// Nearest-rank percentile `p` of `sorted`.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

impl OverviewBuilder {
    /// An empty overview.
    #[must_use]
    pub fn new() -> Self {
        OverviewBuilder::default()
    }

    /// Adds a run: its totals and each of its steps.
    pub fn add_run(&mut self, run: &AgentRun) {
        self.add_totals(
            run.start_time,
            run.duration_ms,
            run.total_tokens,
            run.total_cost_usd,
            run.error_count > 0 || run.has_any_error(),
        );
        for s in run.walk() {
            if let Some(m) = &s.model_name {
                self.add_model_use(
                    m,
                    1,
                    s.total_tokens().unwrap_or(0),
                    s.cost_usd.unwrap_or(0.0),
                    u64::from(s.has_error()),
                );
            }
            if s.has_error() {
                self.add_failing_steps(&s.name, s.step_type, 1);
            }
        }
    }

    /// Adds one run's totals (a store that aggregates steps itself adds those apart).
    pub fn add_totals(
        &mut self,
        start: DateTime<Utc>,
        duration_ms: Option<f64>,
        tokens: u64,
        cost_usd: f64,
        error: bool,
    ) {
        self.points.push(Point {
            start_s: start.timestamp(),
            duration_ms,
            tokens,
            cost: cost_usd,
            error,
        });
    }

    /// Adds `calls` steps of `model`.
    pub fn add_model_use(&mut self, model: &str, calls: u64, tokens: u64, cost: f64, errors: u64) {
        let u = self.models.entry(model.to_owned()).or_default();
        u.calls += calls;
        u.tokens = u.tokens.saturating_add(tokens);
        u.cost_usd += cost;
        u.errors += errors;
    }

    /// Adds `errors` failed steps named `name` of type `step_type`.
    pub fn add_failing_steps(&mut self, name: &str, step_type: StepType, errors: u64) {
        *self
            .failing
            .entry((name.to_owned(), step_type))
            .or_default() += errors;
    }

    /// The overview, with the `top` models and failing steps.
    #[must_use]
    pub fn finish(self, top: usize) -> Overview {
        let OverviewBuilder {
            points,
            models,
            failing,
        } = self;
        let mut durations: Vec<f64> = points.iter().filter_map(|p| p.duration_ms).collect();
        durations.sort_by(f64::total_cmp);
        let (bucket_s, buckets) = series(&points);
        let mut models: Vec<ModelUse> = models
            .into_iter()
            .map(|(model, u)| ModelUse { model, ..u })
            .collect();
        models.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.model.cmp(&b.model)));
        models.truncate(top);
        let mut failing_steps: Vec<FailingStep> = failing
            .into_iter()
            .map(|((name, step_type), errors)| FailingStep {
                name,
                step_type,
                errors,
            })
            .collect();
        failing_steps.sort_by(|a, b| {
            b.errors
                .cmp(&a.errors)
                .then(a.name.cmp(&b.name))
                .then(a.step_type.as_str().cmp(b.step_type.as_str()))
        });
        failing_steps.truncate(top);
        Overview {
            runs: points.len() as u64,
            errors: points.iter().filter(|p| p.error).count() as u64,
            tokens: points.iter().fold(0u64, |a, p| a.saturating_add(p.tokens)),
            cost_usd: points.iter().map(|p| p.cost).sum(),
            p50_ms: percentile(&durations, 0.50),
            p95_ms: percentile(&durations, 0.95),
            bucket_s,
            buckets,
            models,
            failing_steps,
        }
    }
}

/// Buckets the points on a width chosen so that their time span fits [`MAX_BUCKETS`].
fn series(points: &[Point]) -> (i64, Vec<OverviewBucket>) {
    let (Some(min), Some(max)) = (
        points.iter().map(|p| p.start_s).min(),
        points.iter().map(|p| p.start_s).max(),
    ) else {
        return (BUCKET_WIDTHS[0], Vec::new());
    };
    let span = max.saturating_sub(min).saturating_add(1);
    let width = BUCKET_WIDTHS
        .iter()
        .copied()
        .find(|w| span / w < MAX_BUCKETS)
        .unwrap_or(BUCKET_WIDTHS[BUCKET_WIDTHS.len() - 1]);
    let first = min.div_euclid(width) * width;
    let n = usize::try_from((max - first) / width + 1).unwrap_or(1);
    let mut acc: Vec<(u64, u64, u64, f64, Vec<f64>)> = vec![(0, 0, 0, 0.0, Vec::new()); n];
    for p in points {
        let i = usize::try_from((p.start_s - first) / width).unwrap_or(0);
        let b = &mut acc[i.min(n - 1)];
        b.0 += 1;
        b.1 += u64::from(p.error);
        b.2 = b.2.saturating_add(p.tokens);
        b.3 += p.cost;
        if let Some(d) = p.duration_ms {
            b.4.push(d);
        }
    }
    let buckets = acc
        .into_iter()
        .enumerate()
        .map(|(i, (runs, errors, tokens, cost_usd, mut d))| {
            d.sort_by(f64::total_cmp);
            let t = first + i64::try_from(i).unwrap_or(0) * width;
            OverviewBucket {
                start: DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default(),
                runs,
                errors,
                tokens,
                cost_usd,
                p50_ms: percentile(&d, 0.50),
                p95_ms: percentile(&d, 0.95),
            }
        })
        .collect();
    (width, buckets)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
