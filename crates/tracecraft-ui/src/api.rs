//! The JSON API: `/api/meta`, `/api/runs`, `/api/runs/{id}`, `/api/runs/{id}/steps/{id}`,
//! `/api/overview`, `/api/sessions`, `/api/users`, `/api/changes`, and erasure.
//!
//! Every answer is bounded and covers the whole store: lists page through the store
//! ([`TraceStore::query`] with a limit; every filter, text search and the model of any step
//! included, is the store's), and the overview and the sessions and users views are the
//! store's aggregates ([`TraceStore::overview`], [`TraceStore::groups`]: SQL over every
//! matching run for SQLite).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracecraft_core::{
    AgentRun, DateTime, JsonMap, OrderBy, Step, StoreError, TraceQuery, TraceStore, Utc, Uuid,
};

use crate::params::Params;

/// The largest page of the runs list.
pub(crate) const MAX_PAGE: usize = 200;
/// The runs list's page when none is asked for.
const DEFAULT_PAGE: usize = 50;
/// Decoded runs kept for step-detail requests, and for how long.
const CACHE_RUNS: usize = 4;
const CACHE_TTL: Duration = Duration::from_secs(15);

/// Why an API request failed. Messages name parameters, never their values.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// What every request shares.
pub(crate) struct State {
    store: Arc<dyn TraceStore>,
    pub(crate) allow_erase: bool,
    cache: Mutex<Vec<(Uuid, Instant, Arc<AgentRun>)>>,
}

impl State {
    pub(crate) fn new(store: Arc<dyn TraceStore>, allow_erase: bool) -> Self {
        State {
            store,
            allow_erase,
            cache: Mutex::new(Vec::new()),
        }
    }

    /// The run, read from the store (`fresh`) or from the small cache of recent reads.
    fn run(&self, id: Uuid, fresh: bool) -> Result<Arc<AgentRun>, ApiError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.retain(|(_, at, _)| at.elapsed() < CACHE_TTL);
        if !fresh && let Some((_, _, run)) = cache.iter().find(|(k, _, _)| *k == id) {
            return Ok(Arc::clone(run));
        }
        drop(cache);
        let run = Arc::new(self.store.get(id)?.ok_or(ApiError::NotFound)?);
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.retain(|(k, _, _)| *k != id);
        if cache.len() >= CACHE_RUNS {
            cache.remove(0);
        }
        cache.push((id, Instant::now(), Arc::clone(&run)));
        Ok(run)
    }

    fn forget(&self, id: Uuid) {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(k, _, _)| *k != id);
    }
}

/// Answers a GET under `/api/` with a JSON body.
pub(crate) fn get(state: &State, path: &str, params: &Params) -> Result<Vec<u8>, ApiError> {
    let parts: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let value = match parts.as_slice() {
        ["meta"] => meta(state),
        ["runs"] => list(state, params)?,
        // Serialized straight from the run: a 20,000-step outline is not built as `Value`s.
        ["runs", id] => return run_detail(state, parse_id(id)?),
        ["runs", id, "steps", step] => step_detail(state, parse_id(id)?, parse_id(step)?)?,
        ["overview"] => crate::overview::overview(state, params)?,
        ["sessions"] => crate::overview::groups(state, params, tracecraft_core::GroupKey::Session)?,
        ["users"] => crate::overview::groups(state, params, tracecraft_core::GroupKey::User)?,
        ["changes"] => json!({ "count": state.store.count(&TraceQuery::new())? }),
        _ => return Err(ApiError::NotFound),
    };
    to_bytes(&value)
}

fn to_bytes(v: &impl serde::Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v).map_err(|_| ApiError::Internal("could not encode the answer".into()))
}

/// Erases one run (the caller checked that erasure is allowed and confirmed).
pub(crate) fn erase(state: &State, id: Uuid) -> Result<Vec<u8>, ApiError> {
    let existed = state.store.delete(id)?;
    state.store.flush()?;
    state.forget(id);
    tracing::info!(trace_id = %id, existed, "trace erased from the trace browser");
    to_bytes(&json!({ "id": id, "existed": existed }))
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::NotFound)
}

fn meta(state: &State) -> Value {
    json!({
        "store": state.store.name(),
        "allow_erase": state.allow_erase,
        "version": env!("CARGO_PKG_VERSION"),
    })
}

fn bad(param: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!("parameter `{param}`: {what}"))
}

fn number(p: &Params, key: &str) -> Result<Option<f64>, ApiError> {
    p.get(key)
        .map(|v| match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
            _ => Err(bad(key, "expected a non-negative number")),
        })
        .transpose()
}

fn time(p: &Params, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    p.get(key)
        .map(|v| {
            tracecraft_core::time::parse(v)
                .map_err(|_| bad(key, "expected an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"))
        })
        .transpose()
}

/// Reads the filters shared by the list, the overview and the groupings: all of them the
/// store's (text search and the model of any step included).
pub(crate) fn filters(p: &Params) -> Result<TraceQuery, ApiError> {
    let mut q = TraceQuery::new();
    if let Some(v) = p.get("name") {
        q = q.name_contains(v);
    }
    match p.get("error") {
        None => {}
        Some("1" | "true" | "yes") => q = q.has_error(true),
        Some("0" | "false" | "no") => q = q.has_error(false),
        Some(_) => return Err(bad("error", "expected 1 or 0")),
    }
    if let Some(v) = p.get("q") {
        q = q.text(v);
    }
    if let Some(v) = p.get("user") {
        q = q.user_id(v);
    }
    if let Some(v) = p.get("session") {
        q = q.session_id(v);
    }
    if let Some(v) = p.get("env") {
        q = q.environment(v);
    }
    for t in p.all("tag") {
        q = q.tag(t);
    }
    if let Some(v) = p.get("model") {
        q = q.model(v);
    }
    q = q.started(time(p, "from")?, time(p, "to")?);
    q = q.duration_ms(number(p, "min_ms")?, number(p, "max_ms")?);
    q = q.cost_usd(number(p, "min_cost")?, number(p, "max_cost")?);
    let by = match p.get("sort") {
        None | Some("start") => OrderBy::StartTime,
        Some("duration") => OrderBy::Duration,
        Some("cost") => OrderBy::Cost,
        Some("name") => OrderBy::Name,
        Some(_) => return Err(bad("sort", "expected start, duration, cost or name")),
    };
    let descending = match p.get("dir") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(bad("dir", "expected asc or desc")),
    };
    q = q.order_by(by, descending);
    q.validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(q)
}

fn count_param(p: &Params, key: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    match p.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| bad(key, "expected a whole number")),
    }
}

/// `GET /api/runs`: one page of run summaries, with the exact total of matching runs.
fn list(state: &State, p: &Params) -> Result<Value, ApiError> {
    let query = filters(p)?;
    let offset = count_param(p, "offset", 0, usize::MAX)?;
    let limit = count_param(p, "limit", DEFAULT_PAGE, MAX_PAGE)?.max(1);
    // `io=1`: with each run's input and output (the session conversation view).
    let io = p.get("io") == Some("1");
    let total = state.store.count(&query)?;
    let runs = state.store.query(&query.offset(offset).limit(limit))?;
    let next = offset + runs.len();
    Ok(json!({
        "runs": runs.iter().map(|r| row(r, io)).collect::<Vec<_>>(),
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": (u64::try_from(next).unwrap_or(u64::MAX) < total).then_some(next),
    }))
}

/// The run attributes about redaction: disabled or not, how many values, which rules.
fn redaction(attributes: &JsonMap) -> Value {
    let disabled = attributes
        .get(tracecraft_pipeline::REDACTION_ATTRIBUTE)
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("disabled"));
    let mut rules: Vec<(&str, u64)> = attributes
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix(tracecraft_pipeline::REDACTION_RULE_PREFIX)?,
                v.as_u64()?,
            ))
        })
        .collect();
    rules.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let count_attr = |k: &str| attributes.get(k).and_then(Value::as_u64);
    json!({
        "disabled": disabled,
        "values_truncated": count_attr(tracecraft_pipeline::VALUES_TRUNCATED),
        "steps_dropped": count_attr(tracecraft_pipeline::STEPS_DROPPED),
        "count": attributes.get(tracecraft_pipeline::REDACTION_COUNT).and_then(Value::as_u64),
        "rules": rules.iter().map(|(r, n)| json!({"rule": r, "count": n})).collect::<Vec<_>>(),
    })
}

fn fmt_time(t: &DateTime<Utc>) -> String {
    tracecraft_core::time::format(t)
}

/// A summary, with the run's input and output when `io`.
fn row(run: &AgentRun, io: bool) -> Value {
    let mut v = summary(run);
    if io && let Value::Object(m) = &mut v {
        m.insert("input".into(), run.input.clone());
        m.insert("output".into(), run.output.clone());
        m.insert("error".into(), json!(run.error));
    }
    v
}

/// One row of the runs list.
pub(crate) fn summary(run: &AgentRun) -> Value {
    let mut models: Vec<&str> = Vec::new();
    let mut steps = 0usize;
    for s in run.walk() {
        steps += 1;
        if let Some(m) = s.model_name.as_deref()
            && models.len() < 3
            && !models.contains(&m)
        {
            models.push(m);
        }
    }
    json!({
        "id": run.id,
        "name": run.name,
        "start_time": fmt_time(&run.start_time),
        "duration_ms": run.duration_ms,
        "steps": steps,
        "total_tokens": run.total_tokens,
        "total_cost_usd": run.total_cost_usd,
        "error_count": run.error_count,
        "has_error": run.error_count > 0 || run.has_any_error(),
        "user_id": run.user_id,
        "session_id": run.session_id,
        "environment": run.environment,
        "tags": run.tags,
        "models": models,
        "redaction_disabled": redaction(&run.attributes)["disabled"],
    })
}

/// `GET /api/runs/{id}`: the run's fields and a flat outline of its steps (tree order,
/// siblings by start time) with what the waterfall needs; step bodies come one at a time.
fn run_detail(state: &State, id: Uuid) -> Result<Vec<u8>, ApiError> {
    let run = state.run(id, true)?;
    // Every field is named: a new one does not compile until someone decides whether the
    // page shows it.
    let AgentRun {
        id,
        name,
        description,
        start_time,
        end_time,
        duration_ms,
        session_id,
        user_id,
        environment,
        tags,
        agent_name,
        agent_id,
        agent_description,
        cloud_provider,
        cloud_trace_id,
        input,
        output,
        steps,
        total_tokens,
        total_cost_usd,
        error_count,
        error,
        error_type,
        attributes,
        should_export: _,
        sample_reason,
    } = &*run;
    let outline = outline(steps, *start_time);
    let span_ms = outline
        .iter()
        .map(|s| s.s + s.ms.unwrap_or(0.0))
        .fold(duration_ms.unwrap_or(0.0), f64::max);
    let run_fields = json!({
            "id": id,
            "name": name,
            "description": description,
            "start_time": fmt_time(start_time),
            "end_time": end_time.as_ref().map(fmt_time),
            "duration_ms": duration_ms,
            "session_id": session_id,
            "user_id": user_id,
            "environment": environment,
            "tags": tags,
            "agent_name": agent_name,
            "agent_id": agent_id,
            "agent_description": agent_description,
            "cloud_provider": cloud_provider,
            "cloud_trace_id": cloud_trace_id,
            "input": input,
            "output": output,
            "total_tokens": total_tokens,
            "total_cost_usd": total_cost_usd,
            "error_count": error_count,
            "error": error,
            "error_type": error_type,
            "attributes": attributes,
            "sample_reason": sample_reason,
    });
    to_bytes(&RunDetail {
        run: run_fields,
        redaction: redaction(attributes),
        span_ms,
        steps: outline,
    })
}

#[derive(serde::Serialize)]
struct RunDetail<'a> {
    run: Value,
    redaction: Value,
    span_ms: f64,
    steps: Vec<OutlineRow<'a>>,
}

/// One step of a run's outline (short keys: a 20,000-step run sends 20,000 of them).
#[derive(serde::Serialize)]
struct OutlineRow<'a> {
    /// Index in tree order.
    i: usize,
    /// Parent's index, -1 for a root.
    p: i64,
    /// Depth (roots are 0).
    d: usize,
    id: Uuid,
    /// Step type.
    t: &'static str,
    /// Name.
    n: &'a str,
    /// Start, ms after the run's start.
    s: f64,
    /// Duration in ms.
    ms: Option<f64>,
    /// Failed.
    e: bool,
    /// Model.
    #[serde(skip_serializing_if = "Option::is_none")]
    m: Option<&'a str>,
    /// Input and output tokens, cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    ti: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    c: Option<f64>,
    /// Tokens estimated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    est: bool,
    /// Number of children.
    k: usize,
}

fn offset_ms(t: DateTime<Utc>, origin: DateTime<Utc>) -> f64 {
    tracecraft_core::model::duration_ms(origin, t)
}

fn estimated(step: &Step, key: &str) -> bool {
    step.attributes.get(key).and_then(Value::as_bool) == Some(true)
}

/// The steps in tree order (siblings by start time): index, parent index, depth, id, type,
/// name, start offset and duration in ms, error, model, tokens, cost, child count.
fn outline(roots: &[Step], origin: DateTime<Utc>) -> Vec<OutlineRow<'_>> {
    let by_start = |v: &mut Vec<&Step>| v.sort_by_key(|s| s.start_time);
    let mut rows = Vec::new();
    let mut stack: Vec<(&Step, i64, usize)> = {
        let mut r: Vec<&Step> = roots.iter().collect();
        by_start(&mut r);
        r.into_iter().rev().map(|s| (s, -1, 0)).collect()
    };
    while let Some((s, parent, depth)) = stack.pop() {
        let index = rows.len();
        let duration = s.duration_ms.or_else(|| {
            s.end_time
                .map(|e| tracecraft_core::model::duration_ms(s.start_time, e))
        });
        rows.push(OutlineRow {
            i: index,
            p: parent,
            d: depth,
            id: s.id,
            t: s.step_type.as_str(),
            n: &s.name,
            s: offset_ms(s.start_time, origin),
            ms: duration,
            e: s.has_error(),
            m: s.model_name.as_deref(),
            ti: s.input_tokens,
            to: s.output_tokens,
            c: s.cost_usd,
            est: estimated(s, tracecraft_pipeline::TOKENS_ESTIMATED),
            k: s.children.len(),
        });
        let mut kids: Vec<&Step> = s.children.iter().collect();
        by_start(&mut kids);
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        stack.extend(kids.into_iter().rev().map(|c| (c, index, depth + 1)));
    }
    rows
}

/// `GET /api/runs/{id}/steps/{step}`: one step in full (no truncation), without its children.
fn step_detail(state: &State, run_id: Uuid, step_id: Uuid) -> Result<Value, ApiError> {
    let run = state.run(run_id, false)?;
    let step = run.find_step(step_id).ok_or(ApiError::NotFound)?;
    let Step {
        id,
        parent_id,
        trace_id,
        step_type,
        name,
        start_time,
        end_time,
        duration_ms,
        inputs,
        outputs,
        attributes,
        model_name,
        model_provider,
        input_tokens,
        output_tokens,
        cost_usd,
        is_streaming,
        streaming_chunks,
        error,
        error_type,
        children,
    } = step;
    Ok(json!({
        "id": id,
        "parent_id": parent_id,
        "trace_id": trace_id,
        "type": step_type.as_str(),
        "name": name,
        "start_time": fmt_time(start_time),
        "end_time": end_time.as_ref().map(fmt_time),
        "offset_ms": offset_ms(*start_time, run.start_time),
        "duration_ms": duration_ms,
        "inputs": inputs,
        "outputs": outputs,
        "attributes": attributes,
        "model_name": model_name,
        "model_provider": model_provider,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tokens_estimated": estimated(step, tracecraft_pipeline::TOKENS_ESTIMATED),
        "cost_usd": cost_usd,
        "cost_estimated": estimated(step, tracecraft_pipeline::COST_ESTIMATED),
        "is_streaming": is_streaming,
        "streaming_chunks": streaming_chunks,
        "error": error,
        "error_type": error_type,
        "children": children.len(),
    }))
}

impl State {
    pub(crate) fn store(&self) -> &dyn TraceStore {
        &*self.store
    }
}
