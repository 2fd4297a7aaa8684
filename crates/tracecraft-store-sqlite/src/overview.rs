//! [`TraceStore::overview`](tracecraft_core::TraceStore::overview) and
//! [`TraceStore::groups`](tracecraft_core::TraceStore::groups) in SQL. The overview: the runs' totals
//! are read from the indexed columns of `traces` (never the run bodies), the models and the
//! failing steps are grouped in `steps`; all three in one read transaction, over every run
//! the query matches. The bucketing and the percentiles are
//! [`OverviewBuilder`](tracecraft_core::OverviewBuilder)'s, as for every store.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};
use tracecraft_core::groups::GROUP_OTHERS_SHOWN;
use tracecraft_core::{
    DateTime, GroupKey, Overview, OverviewBuilder, RunGroup, StepType, TraceQuery,
};

/// The overview of the runs matching `query` (its limit, offset and order ignored).
pub(crate) fn overview(
    conn: &Connection,
    query: &TraceQuery,
    top: usize,
) -> rusqlite::Result<Overview> {
    let (filter, args) = crate::where_clause(query);
    // Steps of the matching runs: all of them when nothing is filtered.
    let of_runs = if args.is_empty() {
        String::new()
    } else {
        format!(" AND trace_pk IN (SELECT pk FROM traces{filter})")
    };
    let tx = conn.unchecked_transaction()?;
    let mut b = OverviewBuilder::new();
    {
        let mut st = tx.prepare(&format!(
            "SELECT start_ns, duration_ms, total_tokens, total_cost_usd, has_error
             FROM traces{filter}"
        ))?;
        let mut rows = st.query(params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            let tokens: i64 = r.get(2)?;
            b.add_totals(
                DateTime::from_timestamp_nanos(r.get(0)?),
                r.get(1)?,
                u64::try_from(tokens).unwrap_or(0),
                r.get(3)?,
                r.get(4)?,
            );
        }
    }
    {
        let mut st = tx.prepare(&format!(
            "SELECT model_name, COUNT(*),
                    SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)),
                    TOTAL(cost_usd), SUM(has_error)
             FROM steps WHERE model_name IS NOT NULL{of_runs} GROUP BY model_name"
        ))?;
        let mut rows = st.query(params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            let n = |i: usize| -> rusqlite::Result<u64> {
                Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
            };
            let model: String = r.get(0)?;
            b.add_model_use(&model, n(1)?, n(2)?, r.get(3)?, n(4)?);
        }
    }
    {
        let mut st = tx.prepare(&format!(
            "SELECT name, type, COUNT(*) FROM steps WHERE has_error{of_runs} GROUP BY name, type"
        ))?;
        let mut rows = st.query(params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let step_type: String = r.get(1)?;
            let errors: i64 = r.get(2)?;
            // Types are written from `StepType::as_str`; an unknown one is left out.
            if let Ok(t) = step_type.parse::<StepType>() {
                b.add_failing_steps(&name, t, u64::try_from(errors).unwrap_or(0));
            }
        }
    }
    tx.commit()?;
    Ok(b.finish(top))
}

/// [`TraceStore::groups`](tracecraft_core::TraceStore::groups) in SQL: the totals grouped
/// over the indexed columns of `traces`, then for each of the (at most `limit`) groups its
/// latest run's name and its first few other ids, through the session and user indexes.
pub(crate) fn groups(
    conn: &Connection,
    query: &TraceQuery,
    by: GroupKey,
    limit: usize,
) -> rusqlite::Result<Vec<RunGroup>> {
    let (filter, args) = crate::where_clause(query);
    let (key, other) = match by {
        GroupKey::User => ("user_id", "session_id"),
        // `GroupKey` is non-exhaustive: a key added later is grouped by session until
        // it is written here.
        _ => ("session_id", "user_id"),
    };
    let tx = conn.unchecked_transaction()?;
    let mut list = Vec::new();
    {
        let mut st = tx.prepare(&format!(
            "SELECT {key}, COUNT(*), SUM(has_error), SUM(total_tokens), TOTAL(total_cost_usd),
                    MIN(start_ns), MAX(start_ns), COUNT(DISTINCT {other})
             FROM traces{filter} AND {key} IS NOT NULL
             GROUP BY {key} ORDER BY MAX(start_ns) DESC, {key} ASC LIMIT ?"
        ))?;
        let mut all = args.clone();
        all.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let mut rows = st.query(params_from_iter(all.iter()))?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        while let Some(r) = rows.next()? {
            list.push(RunGroup::new(
                r.get::<_, String>(0)?,
                n(r.get(1)?),
                n(r.get(2)?),
                n(r.get(3)?),
                r.get(4)?,
                DateTime::from_timestamp_nanos(r.get(5)?),
                DateTime::from_timestamp_nanos(r.get(6)?),
                n(r.get(7)?),
            ));
        }
    }
    let mut last = tx.prepare(&format!(
        "SELECT name FROM traces{filter} AND {key} = ? ORDER BY start_ns DESC, id DESC LIMIT 1"
    ))?;
    let mut others = tx.prepare(&format!(
        "SELECT DISTINCT {other} FROM traces{filter} AND {key} = ? AND {other} IS NOT NULL
         ORDER BY {other} LIMIT {GROUP_OTHERS_SHOWN}"
    ))?;
    for g in &mut list {
        let mut all = args.clone();
        all.push(SqlValue::Text(g.id.clone()));
        g.last_run = last.query_row(params_from_iter(all.iter()), |r| r.get(0))?;
        g.others = others
            .query_map(params_from_iter(all.iter()), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
    }
    drop((last, others));
    tx.commit()?;
    Ok(list)
}
