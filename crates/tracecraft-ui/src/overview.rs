//! Aggregate views: the overview (totals, time series, top models and failing steps) over
//! every run matching the filters, computed by the store (in SQL for SQLite); and runs grouped
//! by session or by user, over the newest runs (at most the scan budget).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tracecraft_core::{DateTime, Overview, OverviewBuilder, Utc};

use crate::api::{ApiError, State, filters};
use crate::params::Params;

/// Entries of each top list.
const TOP: usize = 8;

/// `GET /api/overview`: runs, errors, tokens, cost and p50/p95 latency per time bucket, the
/// top models and the top failing steps, over every run matching the filters
/// ([`TraceStore::overview`](tracecraft_core::TraceStore::overview)). With a model filter,
/// which the store cannot answer, over the newest runs up to the scan budget.
pub(crate) fn overview(state: &State, p: &Params) -> Result<Value, ApiError> {
    let f = filters(p)?;
    let (o, sampled, complete) = if f.in_memory() {
        let mut b = OverviewBuilder::new();
        let (sampled, more) = state.scan_runs(&f.query, |run| {
            if f.matches(&run) {
                b.add_run(&run);
            }
            true
        })?;
        (b.finish(TOP), sampled as u64, more.is_none())
    } else {
        let o = state.store().overview(&f.query, TOP)?;
        let n = o.runs;
        (o, n, true)
    };
    let total = if complete {
        sampled
    } else {
        state.store().count(&f.query)?
    };
    let fmt = |t: &DateTime<Utc>| tracecraft_core::time::format(t);
    let Overview {
        runs,
        errors,
        tokens,
        cost_usd,
        p50_ms,
        p95_ms,
        bucket_s,
        buckets,
        models,
        failing_steps,
        ..
    } = o;
    Ok(json!({
        "sampled": sampled,
        "total": total,
        "complete": complete,
        "totals": {
            "runs": runs, "errors": errors, "tokens": tokens, "cost": cost_usd,
            "p50": p50_ms, "p95": p95_ms,
        },
        "bucket_s": bucket_s,
        "buckets": buckets.iter().map(|b| json!({
            "t": fmt(&b.start),
            "runs": b.runs, "errors": b.errors, "tokens": b.tokens, "cost": b.cost_usd,
            "p50": b.p50_ms, "p95": b.p95_ms,
        })).collect::<Vec<_>>(),
        "models": models.iter().map(|u| json!({
            "model": u.model, "calls": u.calls, "tokens": u.tokens, "cost": u.cost_usd,
            "errors": u.errors,
        })).collect::<Vec<_>>(),
        "failing": failing_steps.iter().map(|s| json!({
            "name": s.name, "type": s.step_type.as_str(), "errors": s.errors,
        })).collect::<Vec<_>>(),
    }))
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
