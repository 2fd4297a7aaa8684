//! The [`TraceStore`] trait, [`TraceQuery`] filters and [`StoreError`].

use std::cmp::Ordering;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::export::ProcessedRun;
use crate::model::AgentRun;
use crate::overview::{Overview, OverviewBuilder};

/// Why a store operation failed. Messages name files, lines and fields, never payloads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command that reads or erases named a store that does not exist (it is never
    /// created by such a command: DESIGN invariant 12).
    #[error(
        "{path}: no store here (commands that read or erase never create one; check the path, --store or TRACECRAFT_STORAGE)"
    )]
    NotFound {
        /// The database file or directory that was expected.
        path: PathBuf,
    },
    /// A stored record could not be read back.
    #[error("{path}:{line}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line (or row) number.
        line: u64,
        /// What was wrong (no payload).
        message: String,
    },
    /// The stored data uses a schema version this build does not know.
    #[error(
        "{path}: schema version {found} is newer than this build supports ({supported}); upgrade tracecraft"
    )]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version supported.
        supported: i64,
    },
    /// A file or directory is readable by others and tightening was disabled or failed.
    #[error("{path}: permissions {mode:o} are looser than {expected:o}")]
    Permissions {
        /// The file or directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// The mode TraceCraft requires.
        expected: u32,
    },
    /// The database backend failed.
    #[error("{backend}: {message}")]
    Backend {
        /// `sqlite`, ...
        backend: &'static str,
        /// What went wrong (no payload).
        message: String,
    },
    /// A query or argument was invalid.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The argument.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// What [`TraceQuery`] results are ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OrderBy {
    /// Start time (the default; newest first unless ascending).
    #[default]
    StartTime,
    /// Duration.
    Duration,
    /// Total cost.
    Cost,
    /// Name.
    Name,
}

/// Filters for [`TraceStore::query`] and [`TraceStore::count`]. Every filter set must match.
///
/// ```
/// use tracecraft_core::{OrderBy, TraceQuery};
/// let q = TraceQuery::new().session_id("sess-1").has_error(true).limit(10).order_by(OrderBy::Cost, true);
/// assert_eq!(q.limit, Some(10));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct TraceQuery {
    /// Exact name.
    pub name: Option<String>,
    /// Name contains this text, case-insensitively.
    pub name_contains: Option<String>,
    /// Whether the run or any step has an error.
    pub has_error: Option<bool>,
    /// Minimum duration in ms (inclusive).
    pub min_duration_ms: Option<f64>,
    /// Maximum duration in ms (inclusive).
    pub max_duration_ms: Option<f64>,
    /// Minimum total cost (inclusive).
    pub min_cost_usd: Option<f64>,
    /// Maximum total cost (inclusive).
    pub max_cost_usd: Option<f64>,
    /// The run has all of these tags.
    pub tags: Vec<String>,
    /// Started at or after.
    pub start_after: Option<DateTime<Utc>>,
    /// Started before.
    pub start_before: Option<DateTime<Utc>>,
    /// Session id.
    pub session_id: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// A step's model name contains this, ignoring ASCII case (`gpt-4` finds `GPT-4o`):
    /// see [`TraceQuery::model_matches`].
    pub model: Option<String>,
    /// The trace id starts with this (lower-case hex, hyphenated as ids print): `568cca74`,
    /// so ids can be given by a unique prefix, as git does with commits.
    pub id_prefix: Option<String>,
    /// Text search over names and stored (redacted) content: each word of it begins a word
    /// of the run (see [`search`](crate::search)); indexed by the SQLite store.
    pub text: Option<String>,
    /// At most this many results.
    pub limit: Option<usize>,
    /// Skip this many results.
    pub offset: usize,
    /// Sort key.
    pub order_by: OrderBy,
    /// Descending (the default for start time: newest first).
    pub descending: bool,
}

impl TraceQuery {
    /// Matches everything, newest first.
    #[must_use]
    pub fn new() -> Self {
        TraceQuery {
            descending: true,
            ..TraceQuery::default()
        }
    }
    /// Exact name.
    #[must_use]
    pub fn name(mut self, v: impl Into<String>) -> Self {
        self.name = Some(v.into());
        self
    }
    /// Name contains (case-insensitive).
    #[must_use]
    pub fn name_contains(mut self, v: impl Into<String>) -> Self {
        self.name_contains = Some(v.into());
        self
    }
    /// Has (or has not) an error.
    #[must_use]
    pub fn has_error(mut self, v: bool) -> Self {
        self.has_error = Some(v);
        self
    }
    /// Duration bounds in ms (inclusive).
    #[must_use]
    pub fn duration_ms(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.min_duration_ms = min;
        self.max_duration_ms = max;
        self
    }
    /// Cost bounds (inclusive).
    #[must_use]
    pub fn cost_usd(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.min_cost_usd = min;
        self.max_cost_usd = max;
        self
    }
    /// Requires a tag (all required tags must be present).
    #[must_use]
    pub fn tag(mut self, v: impl Into<String>) -> Self {
        self.tags.push(v.into());
        self
    }
    /// Start time range: `[after, before)`.
    #[must_use]
    pub fn started(mut self, after: Option<DateTime<Utc>>, before: Option<DateTime<Utc>>) -> Self {
        self.start_after = after;
        self.start_before = before;
        self
    }
    /// Session id.
    #[must_use]
    pub fn session_id(mut self, v: impl Into<String>) -> Self {
        self.session_id = Some(v.into());
        self
    }
    /// User id.
    #[must_use]
    pub fn user_id(mut self, v: impl Into<String>) -> Self {
        self.user_id = Some(v.into());
        self
    }
    /// Environment.
    #[must_use]
    pub fn environment(mut self, v: impl Into<String>) -> Self {
        self.environment = Some(v.into());
        self
    }
    /// Text search: each word of `v` begins a word of the run's names or stored content
    /// (see [`search`](crate::search)).
    #[must_use]
    pub fn text(mut self, v: impl Into<String>) -> Self {
        self.text = Some(v.into());
        self
    }
    /// At most `n` results.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
    /// Skip `n` results.
    #[must_use]
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }
    /// Only traces whose id starts with `prefix` (case-insensitive).
    #[must_use]
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into().to_ascii_lowercase());
        self
    }
    /// Whether trace id `id` passes [`id_prefix`](Self::id_prefix).
    #[must_use]
    pub fn id_matches(&self, id: &Uuid) -> bool {
        self.id_prefix.as_deref().is_none_or(|p| {
            let mut buf = Uuid::encode_buffer();
            id.hyphenated()
                .encode_lower(&mut buf)
                .starts_with(&p.to_ascii_lowercase())
        })
    }
    /// Sort order.
    #[must_use]
    pub fn order_by(mut self, by: OrderBy, descending: bool) -> Self {
        self.order_by = by;
        self.descending = descending;
        self
    }

    /// Whether `run` passes every filter (limit, offset and order aside).
    ///
    /// This is the reference semantics every [`TraceStore`] implements.
    #[must_use]
    pub fn matches(&self, run: &AgentRun) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        let within = |v: f64, min: Option<f64>, max: Option<f64>| {
            min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
        };
        eq(&self.name, Some(&run.name))
            && self.id_matches(&run.id)
            && self
                .name_contains
                .as_deref()
                .is_none_or(|n| run.name.to_lowercase().contains(&n.to_lowercase()))
            && self
                .has_error
                .is_none_or(|e| (run.error_count > 0 || run.has_any_error()) == e)
            && (self.min_duration_ms.is_none() && self.max_duration_ms.is_none()
                || run
                    .duration_ms
                    .is_some_and(|d| within(d, self.min_duration_ms, self.max_duration_ms)))
            && within(run.total_cost_usd, self.min_cost_usd, self.max_cost_usd)
            && self.tags.iter().all(|t| run.tags.contains(t))
            && self.start_after.is_none_or(|t| run.start_time >= t)
            && self.start_before.is_none_or(|t| run.start_time < t)
            && eq(&self.session_id, run.session_id.as_deref())
            && eq(&self.user_id, run.user_id.as_deref())
            && eq(&self.environment, Some(&run.environment))
            && (self.model.is_none()
                || run.walk().any(|s| {
                    s.model_name
                        .as_deref()
                        .is_some_and(|m| self.model_matches(m))
                }))
            && self
                .text
                .as_deref()
                .is_none_or(|t| crate::search::run_matches(run, &crate::search::words(t)))
    }

    /// Compares two runs by this query's order (ties broken by id, for a stable order).
    #[must_use]
    pub fn compare(&self, a: &AgentRun, b: &AgentRun) -> Ordering {
        let ord = match self.order_by {
            OrderBy::StartTime => a.start_time.cmp(&b.start_time),
            OrderBy::Duration => a
                .duration_ms
                .unwrap_or(0.0)
                .total_cmp(&b.duration_ms.unwrap_or(0.0)),
            OrderBy::Cost => a.total_cost_usd.total_cmp(&b.total_cost_usd),
            OrderBy::Name => a.name.cmp(&b.name),
        }
        .then_with(|| a.id.cmp(&b.id));
        if self.descending { ord.reverse() } else { ord }
    }

    /// Filters, sorts, offsets and limits runs in memory: the reference implementation of a
    /// query, for stores that scan and as the oracle of the contract tests.
    #[must_use]
    pub fn apply(&self, runs: impl IntoIterator<Item = AgentRun>) -> Vec<AgentRun> {
        let mut out: Vec<AgentRun> = runs.into_iter().filter(|r| self.matches(r)).collect();
        out.sort_by(|a, b| self.compare(a, b));
        out.into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// Only runs with a step whose model name contains `v`, ignoring ASCII case.
    #[must_use]
    pub fn model(mut self, v: impl Into<String>) -> Self {
        self.model = Some(v.into());
        self
    }

    /// Whether `name` (a step's model name) matches the [`model`](Self::model) filter: it
    /// contains the filter's text, ASCII letters compared without case (model names are
    /// ASCII; other characters must match exactly, as stores compare them).
    #[must_use]
    pub fn model_matches(&self, name: &str) -> bool {
        self.model.as_deref().is_none_or(|want| {
            let (h, n) = (name.as_bytes(), want.as_bytes());
            n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
        })
    }

    /// Checks the query for nonsense (negative or NaN bounds, min above max).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] naming the filter.
    pub fn validate(&self) -> Result<(), StoreError> {
        let check = |what: &'static str, min: Option<f64>, max: Option<f64>| {
            for v in [min, max].into_iter().flatten() {
                if !v.is_finite() {
                    return Err(StoreError::Invalid {
                        what,
                        message: "bound must be a finite number".into(),
                    });
                }
            }
            if let (Some(a), Some(b)) = (min, max)
                && a > b
            {
                return Err(StoreError::Invalid {
                    what,
                    message: format!("minimum {a} is above maximum {b}"),
                });
            }
            Ok(())
        };
        check(
            "duration filter",
            self.min_duration_ms,
            self.max_duration_ms,
        )?;
        check("cost filter", self.min_cost_usd, self.max_cost_usd)
    }
}

/// Totals over a store.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct StoreStats {
    /// Stored traces.
    pub traces: u64,
    /// Stored steps.
    pub steps: u64,
    /// Traces with an error.
    pub errors: u64,
    /// Sum of `total_tokens`.
    pub total_tokens: u64,
    /// Sum of `total_cost_usd`.
    pub total_cost_usd: f64,
    /// Bytes on disk (0 for in-memory stores).
    pub bytes: u64,
}

impl StoreStats {
    /// Stats with every total set.
    #[must_use]
    pub fn new(
        traces: u64,
        steps: u64,
        errors: u64,
        total_tokens: u64,
        total_cost_usd: f64,
        bytes: u64,
    ) -> Self {
        StoreStats {
            traces,
            steps,
            errors,
            total_tokens,
            total_cost_usd,
            bytes,
        }
    }
}

/// A place runs are kept and queried: a JSONL directory, a SQLite database, memory.
///
/// # Contract (every backend passes the same contract tests)
/// - Methods take `&self` and are safe to call from many threads at once.
/// - [`save`](TraceStore::save) of an id that already exists **merges**: steps from the earlier
///   save that the later one lacks are kept (a trace may arrive in parts); the later save's
///   run-level fields win.
/// - [`get`](TraceStore::get), [`query`](TraceStore::query) and [`count`](TraceStore::count)
///   follow [`TraceQuery::matches`] and [`TraceQuery::compare`].
/// - [`merged`](TraceStore::merged) counts the successful saves that merged.
/// - [`delete`](TraceStore::delete) erases the trace and all of its steps (GDPR erasure) and
///   says whether it existed; [`purge_older_than`](TraceStore::purge_older_than) deletes runs
///   that started before the cut-off (retention).
/// - Files are created mode 0600 and directories 0700.
/// - Errors never contain payload text.
pub trait TraceStore: Send + Sync {
    /// A short name for logs and stats (`"sqlite"`, `"jsonl"`, `"memory"`).
    fn name(&self) -> &str;

    /// Saves one run (merging with an existing run of the same id).
    ///
    /// # Errors
    /// [`StoreError`] when it could not be written.
    fn save(&self, run: &ProcessedRun) -> Result<(), StoreError>;

    /// Saves many runs; backends make this one transaction or one buffered write.
    ///
    /// # Errors
    /// [`StoreError`] when any could not be written.
    fn save_batch(&self, runs: &[ProcessedRun]) -> Result<(), StoreError> {
        runs.iter().try_for_each(|r| self.save(r))
    }

    /// How many of the runs this store object saved (since it was opened) went into a trace id
    /// that was already stored, or saved earlier in the same batch, and were merged with it
    /// (see the contract): `tracecraft import` reports them apart from new traces. Saves that
    /// failed are not counted.
    fn merged(&self) -> u64;

    /// The run with this trace id.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be read.
    fn get(&self, trace_id: Uuid) -> Result<Option<AgentRun>, StoreError>;

    /// The runs that match, ordered, offset and limited.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be read or the query is invalid.
    fn query(&self, query: &TraceQuery) -> Result<Vec<AgentRun>, StoreError>;

    /// How many runs match (limit and offset ignored).
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be read or the query is invalid.
    fn count(&self, query: &TraceQuery) -> Result<u64, StoreError>;

    /// Erases a trace and its steps; `true` when it existed.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be changed.
    fn delete(&self, trace_id: Uuid) -> Result<bool, StoreError>;

    /// Deletes runs that started before `cutoff`; returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be changed.
    fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Totals.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be read.
    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Aggregates over every run `query` matches (its limit, offset and order ignored):
    /// totals, a time series with p50/p95 latency, the `top` models and failing steps (see
    /// [`Overview`]). The default reads the matching runs a page at a time into an
    /// [`OverviewBuilder`]; stores with a database aggregate there instead.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be read or the query is invalid.
    fn overview(&self, query: &TraceQuery, top: usize) -> Result<Overview, StoreError> {
        let mut builder = OverviewBuilder::new();
        each_matching_run(self, query, |r| builder.add_run(r))?;
        Ok(builder.finish(top))
    }

    /// The runs `query` matches (its limit, offset and order ignored) grouped by session or
    /// by user, the `limit` most recently active groups first (see
    /// [`RunGroup`](crate::RunGroup)). The default reads the matching runs a page at a time
    /// into a [`GroupsBuilder`](crate::GroupsBuilder); stores with an index or a database
    /// aggregate there instead.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not be read or the query is invalid.
    fn groups(
        &self,
        query: &TraceQuery,
        by: crate::GroupKey,
        limit: usize,
    ) -> Result<Vec<crate::RunGroup>, StoreError> {
        let mut builder = crate::GroupsBuilder::new(by);
        each_matching_run(self, query, |r| builder.add_run(r))?;
        Ok(builder.finish(limit))
    }

    /// Makes every save so far durable.
    ///
    /// # Errors
    /// [`StoreError`] when it could not.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Calls `f` on every run `query` matches (its limit, offset and order ignored), read a page
/// at a time, oldest first: the default aggregates of [`TraceStore`].
fn each_matching_run<S: TraceStore + ?Sized>(
    store: &S,
    query: &TraceQuery,
    mut f: impl FnMut(&AgentRun),
) -> Result<(), StoreError> {
    const PAGE: usize = 500;
    let mut page = query
        .clone()
        .order_by(OrderBy::StartTime, false)
        .limit(PAGE);
    page.offset = 0;
    loop {
        let runs = store.query(&page)?;
        runs.iter().for_each(&mut f);
        if runs.len() < PAGE {
            return Ok(());
        }
        page.offset += PAGE;
    }
}

/// Merges `incoming` into `existing` per the [`TraceStore`] contract: the incoming run's
/// fields win; steps (matched by id, at any depth) that only the existing run has are kept,
/// under their parent when it is present, else as roots. Totals are recomputed.
#[must_use]
pub fn merge_runs(existing: AgentRun, mut incoming: AgentRun) -> AgentRun {
    let known: std::collections::HashSet<Uuid> = incoming.walk().map(|s| s.id).collect();
    // Collect the earlier steps missing from the incoming tree, keeping their subtrees whole.
    let mut missing = Vec::new();
    let mut stack: Vec<crate::model::Step> = existing.steps;
    while let Some(mut step) = stack.pop() {
        if known.contains(&step.id) {
            stack.append(&mut std::mem::take(&mut step.children));
        } else {
            missing.push(step);
        }
    }
    missing.sort_by_key(|s| s.start_time);
    for step in missing {
        match step.parent_id.and_then(|p| incoming.find_step_mut(p)) {
            Some(parent) => {
                parent.children.push(step);
                parent.children.sort_by_key(|s| s.start_time);
            }
            None => incoming.steps.push(step),
        }
    }
    incoming.steps.sort_by_key(|s| s.start_time);
    incoming.aggregate();
    incoming
}
