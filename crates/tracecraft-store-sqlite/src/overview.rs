//! [`TraceStore::overview`](tracecraft_core::TraceStore::overview) in SQL: the runs' totals
//! are read from the indexed columns of `traces` (never the run bodies), the models and the
//! failing steps are grouped in `steps`; all three in one read transaction, over every run
//! the query matches. The bucketing and the percentiles are
//! [`OverviewBuilder`](tracecraft_core::OverviewBuilder)'s, as for every store.

use rusqlite::{Connection, params_from_iter};
use tracecraft_core::{DateTime, Overview, OverviewBuilder, StepType, TraceQuery};

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
