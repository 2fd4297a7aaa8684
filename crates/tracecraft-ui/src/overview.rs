//! Aggregate views over the newest runs (at most the scan budget): the overview's time
//! series and top lists, and runs grouped by session or by user.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use tracecraft_core::{AgentRun, DateTime, Utc};

use crate::api::{ApiError, State, filters};
use crate::params::Params;

/// Bucket widths the overview picks from, in seconds.
const BUCKETS: [i64; 12] = [
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
/// The most buckets a chart gets.
const MAX_BUCKETS: i64 = 48;
/// Entries of each top list.
const TOP: usize = 8;

struct RunPoint {
    start: DateTime<Utc>,
    duration_ms: Option<f64>,
    tokens: u64,
    cost: f64,
    error: bool,
}

#[derive(Default)]
struct ModelUse {
    calls: u64,
    tokens: u64,
    cost: f64,
    errors: u64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// `GET /api/overview`: runs, errors, tokens, cost and p50/p95 latency per time bucket, the
/// top models and the top failing steps, over the newest runs matching the filters.
pub(crate) fn overview(state: &State, p: &Params) -> Result<Value, ApiError> {
    let f = filters(p)?;
    let mut points = Vec::new();
    let mut models: HashMap<String, ModelUse> = HashMap::new();
    let mut failing: HashMap<(String, &'static str), u64> = HashMap::new();
    let (sampled, more) = state.scan_runs(&f.query, |run| {
        if !f.matches(&run) {
            return true;
        }
        for s in run.walk() {
            if let Some(m) = &s.model_name {
                let u = models.entry(m.clone()).or_default();
                u.calls += 1;
                u.tokens += s.total_tokens().unwrap_or(0);
                u.cost += s.cost_usd.unwrap_or(0.0);
                u.errors += u64::from(s.has_error());
            }
            if s.has_error() {
                *failing
                    .entry((s.name.clone(), s.step_type.as_str()))
                    .or_default() += 1;
            }
        }
        points.push(point(&run));
        true
    })?;
    let total = state.store().count(&f.query)?;
    let buckets = series(&points);
    let mut models: Vec<(String, ModelUse)> = models.into_iter().collect();
    models.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(&b.0)));
    let mut failing: Vec<((String, &str), u64)> = failing.into_iter().collect();
    failing.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut durations: Vec<f64> = points.iter().filter_map(|p| p.duration_ms).collect();
    durations.sort_by(f64::total_cmp);
    Ok(json!({
        "sampled": sampled,
        "total": total,
        "complete": more.is_none(),
        "totals": {
            "runs": points.len(),
            "errors": points.iter().filter(|p| p.error).count(),
            "tokens": points.iter().map(|p| p.tokens).sum::<u64>(),
            "cost": points.iter().map(|p| p.cost).sum::<f64>(),
            "p50": percentile(&durations, 0.50),
            "p95": percentile(&durations, 0.95),
        },
        "bucket_s": buckets.0,
        "buckets": buckets.1,
        "models": models.iter().take(TOP).map(|(m, u)| json!({
            "model": m, "calls": u.calls, "tokens": u.tokens, "cost": u.cost, "errors": u.errors,
        })).collect::<Vec<_>>(),
        "failing": failing.iter().take(TOP).map(|((n, t), c)| json!({
            "name": n, "type": t, "errors": c,
        })).collect::<Vec<_>>(),
    }))
}

fn point(run: &AgentRun) -> RunPoint {
    RunPoint {
        start: run.start_time,
        duration_ms: run.duration_ms,
        tokens: run.total_tokens,
        cost: run.total_cost_usd,
        error: run.error_count > 0 || run.has_any_error(),
    }
}

/// Buckets the points on a width chosen so that their time span fits [`MAX_BUCKETS`].
fn series(points: &[RunPoint]) -> (i64, Vec<Value>) {
    let (Some(min), Some(max)) = (
        points.iter().map(|p| p.start.timestamp()).min(),
        points.iter().map(|p| p.start.timestamp()).max(),
    ) else {
        return (BUCKETS[0], Vec::new());
    };
    let span = max - min + 1;
    let width = BUCKETS
        .iter()
        .copied()
        .find(|w| span / w < MAX_BUCKETS)
        .unwrap_or(BUCKETS[BUCKETS.len() - 1]);
    let first = min.div_euclid(width) * width;
    let n = usize::try_from((max - first) / width + 1).unwrap_or(1);
    let mut buckets: Vec<(u64, u64, u64, f64, Vec<f64>)> = vec![(0, 0, 0, 0.0, Vec::new()); n];
    for p in points {
        let i = usize::try_from((p.start.timestamp() - first) / width).unwrap_or(0);
        let b = &mut buckets[i.min(n - 1)];
        b.0 += 1;
        b.1 += u64::from(p.error);
        b.2 += p.tokens;
        b.3 += p.cost;
        if let Some(d) = p.duration_ms {
            b.4.push(d);
        }
    }
    let values = buckets
        .into_iter()
        .enumerate()
        .map(|(i, (runs, errors, tokens, cost, mut d))| {
            d.sort_by(f64::total_cmp);
            let t = first + i64::try_from(i).unwrap_or(0) * width;
            json!({
                "t": DateTime::<Utc>::from_timestamp(t, 0).map(|t| tracecraft_core::time::format(&t)),
                "runs": runs, "errors": errors, "tokens": tokens, "cost": cost,
                "p50": percentile(&d, 0.50), "p95": percentile(&d, 0.95),
            })
        })
        .collect();
    (width, values)
}

/// What runs are grouped by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GroupBy {
    Session,
    User,
}

#[derive(Default)]
struct Group {
    runs: u64,
    errors: u64,
    tokens: u64,
    cost: f64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    /// Users of a session, or sessions of a user (distinct, a few shown).
    others: Vec<String>,
    other_count: u64,
    last_run: Option<String>,
}

/// `GET /api/sessions` and `GET /api/users`: the newest runs grouped by session or user
/// (ids as stored: pseudonymous where configured), most recently active first.
pub(crate) fn groups(state: &State, p: &Params, by: GroupBy) -> Result<Value, ApiError> {
    let f = filters(p)?;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let (sampled, more) = state.scan_runs(&f.query, |run| {
        if !f.matches(&run) {
            return true;
        }
        let (key, other) = match by {
            GroupBy::Session => (run.session_id.clone(), run.user_id.clone()),
            GroupBy::User => (run.user_id.clone(), run.session_id.clone()),
        };
        let Some(key) = key else { return true };
        let g = groups.entry(key).or_default();
        g.runs += 1;
        g.errors += u64::from(run.error_count > 0 || run.has_any_error());
        g.tokens += run.total_tokens;
        g.cost += run.total_cost_usd;
        g.first = Some(g.first.map_or(run.start_time, |t| t.min(run.start_time)));
        if g.last.is_none_or(|t| run.start_time > t) {
            g.last = Some(run.start_time);
            g.last_run = Some(run.name.clone());
        }
        if let Some(o) = other
            && !g.others.contains(&o)
        {
            g.other_count += 1;
            if g.others.len() < 3 {
                g.others.push(o);
            }
        }
        true
    })?;
    let mut list: Vec<(String, Group)> = groups.into_iter().collect();
    list.sort_by(|a, b| b.1.last.cmp(&a.1.last).then(a.0.cmp(&b.0)));
    let fmt = |t: &Option<DateTime<Utc>>| t.as_ref().map(tracecraft_core::time::format);
    Ok(json!({
        "sampled": sampled,
        "complete": more.is_none(),
        "groups": list.iter().take(500).map(|(k, g)| json!({
            "id": k,
            "runs": g.runs,
            "errors": g.errors,
            "tokens": g.tokens,
            "cost": g.cost,
            "first": fmt(&g.first),
            "last": fmt(&g.last),
            "last_run": g.last_run,
            "others": g.others,
            "other_count": g.other_count,
        })).collect::<Vec<_>>(),
    }))
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
