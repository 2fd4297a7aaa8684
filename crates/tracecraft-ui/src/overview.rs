//! Aggregate views over every run matching the filters, computed by the store (in SQL for
//! SQLite): the overview (totals, time series, top models and failing steps), and runs
//! grouped by session or by user.

use serde_json::{Value, json};
use tracecraft_core::{DateTime, GroupKey, Overview, Utc};

use crate::api::{ApiError, State, filters};
use crate::params::Params;

/// Entries of each top list.
const TOP: usize = 8;

/// `GET /api/overview`: runs, errors, tokens, cost and p50/p95 latency per time bucket, the
/// top models and the top failing steps, over every run matching the filters
/// ([`TraceStore::overview`](tracecraft_core::TraceStore::overview)).
pub(crate) fn overview(state: &State, p: &Params) -> Result<Value, ApiError> {
    let query = filters(p)?;
    let o = state.store().overview(&query, TOP)?;
    let (sampled, total, complete) = (o.runs, o.runs, true);
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

/// Groups a view lists.
const GROUPS: usize = 500;

/// `GET /api/sessions` and `GET /api/users`: every matching run grouped by session or user
/// (ids as stored: pseudonymous where configured), the most recently active first
/// ([`TraceStore::groups`](tracecraft_core::TraceStore::groups)).
pub(crate) fn groups(state: &State, p: &Params, by: GroupKey) -> Result<Value, ApiError> {
    let query = filters(p)?;
    let runs = state.store().count(&query)?;
    let list = state.store().groups(&query, by, GROUPS)?;
    let fmt = |t: &DateTime<Utc>| tracecraft_core::time::format(t);
    Ok(json!({
        "sampled": runs,
        "complete": true,
        "groups": list.iter().map(|g| json!({
            "id": g.id,
            "runs": g.runs,
            "errors": g.errors,
            "tokens": g.tokens,
            "cost": g.cost_usd,
            "first": fmt(&g.first),
            "last": fmt(&g.last),
            "last_run": g.last_run,
            "others": g.others,
            "other_count": g.other_count,
        })).collect::<Vec<_>>(),
    }))
}
