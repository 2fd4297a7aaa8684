//! Terminal views shared by every command: durations, costs and times formatted one way, and
//! the waterfall of a run (bars on one time axis, so parallel steps visibly overlap).
//!
//! Everything printed comes from a store (already redacted); names and values are still
//! printed with control characters escaped, so a captured string cannot drive the terminal.

use std::fmt::Write as _;

use chrono::{DateTime, Local, Utc};
use tracecraft_core::{AgentRun, Step};

/// `412 ms`, `36.7 s`, `2 min 5 s`, `1.2 µs`: the same everywhere.
pub(crate) fn duration(ms: Option<f64>) -> String {
    let Some(ms) = ms.filter(|m| m.is_finite() && *m >= 0.0) else {
        return "—".into();
    };
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// `$0.0053`, `$1.25`, `$0` : the same everywhere.
pub(crate) fn cost(usd: f64) -> String {
    if usd == 0.0 || !usd.is_finite() {
        "$0".into()
    } else if usd < 0.01 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// A time with its zone: local by default, UTC with `--utc`.
pub(crate) fn time(t: &DateTime<Utc>, utc: bool) -> String {
    if utc {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        t.with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string()
    }
}

/// `text` with control characters escaped (`\u{1b}` cannot start an escape sequence).
pub(crate) fn safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut to `max` characters (with `…`).
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Whether tokens or cost of a step were estimated by enrichment, not reported.
fn estimated(step: &Step) -> bool {
    step.attributes
        .get("tracecraft.tokens.estimated")
        .is_some_and(|v| v.as_bool() == Some(true))
}

/// Token column: `31/12` (in/out), `~31/12` when estimated.
fn tokens(step: &Step) -> String {
    match (step.input_tokens, step.output_tokens) {
        (None, None) => String::new(),
        (i, o) => format!(
            "{}{}/{}",
            if estimated(step) { "~" } else { "" },
            i.unwrap_or(0),
            o.unwrap_or(0)
        ),
    }
}

struct Row<'a> {
    depth: usize,
    step: &'a Step,
}

fn flatten<'a>(steps: &'a [Step], depth: usize, out: &mut Vec<Row<'a>>) {
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_by_key(|s| s.start_time);
    for step in sorted {
        out.push(Row { depth, step });
        flatten(&step.children, depth + 1, out);
    }
}

/// The run as a waterfall: a header, then one row per step (tree name, a bar on the run's time
/// axis, duration, tokens, cost); with `full`, every input and output in full below its step.
pub(crate) fn waterfall(run: &AgentRun, utc: bool, full: bool, width: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}  {}", safe(&run.name), run.id);
    let _ = writeln!(
        out,
        "started {}  took {}  {} step(s)  {} tokens  {}  {} error(s)",
        time(&run.start_time, utc),
        duration(run.duration_ms),
        run.step_count(),
        run.total_tokens,
        cost(run.total_cost_usd),
        run.error_count
    );
    let mut who = Vec::new();
    if let Some(u) = &run.user_id {
        who.push(format!("user {}", safe(u)));
    }
    if let Some(s) = &run.session_id {
        who.push(format!("session {}", safe(s)));
    }
    if !run.tags.is_empty() {
        who.push(format!("tags {}", safe(&run.tags.join(", "))));
    }
    if !who.is_empty() {
        let _ = writeln!(out, "{}", who.join("  "));
    }
    if run
        .attributes
        .get("tracecraft.redaction")
        .and_then(|v| v.as_str())
        == Some("disabled")
    {
        let _ = writeln!(
            out,
            "!! stored with redaction DISABLED: values are as captured"
        );
    }
    let mut rows = Vec::new();
    flatten(&run.steps, 0, &mut rows);
    if rows.is_empty() {
        let _ = writeln!(out, "(no steps)");
        return out;
    }
    let t0 = run.start_time;
    let end_of = |s: &Step| {
        s.end_time.unwrap_or_else(|| {
            s.start_time
                + chrono::Duration::microseconds((s.duration_ms.unwrap_or(0.0) * 1000.0) as i64)
        })
    };
    let t1 = rows
        .iter()
        .map(|r| end_of(r.step))
        .chain(run.end_time)
        .max()
        .unwrap_or(t0)
        .max(t0 + chrono::Duration::microseconds(1));
    let span = (t1 - t0).num_microseconds().unwrap_or(1).max(1) as f64;
    let bar = width.clamp(10, 120);
    let name_width = 36;
    let _ = writeln!(
        out,
        "{:<name_width$} {:<bar$} {:>9} {:>11} {:>8}",
        "STEP",
        format!("0{:>w$}", duration(Some(span / 1000.0)), w = bar - 1),
        "TOOK",
        "TOKENS",
        "COST"
    );
    for row in &rows {
        let s = row.step;
        let from = ((s.start_time - t0).num_microseconds().unwrap_or(0).max(0) as f64 / span
            * bar as f64) as usize;
        let to = ((end_of(s) - t0).num_microseconds().unwrap_or(0).max(0) as f64 / span
            * bar as f64)
            .ceil() as usize;
        let from = from.min(bar - 1);
        let to = to.clamp(from + 1, bar);
        let fill = if s.error.is_some() { '!' } else { '█' };
        let mut line: String = " ".repeat(from);
        line.extend(std::iter::repeat_n(fill, to - from));
        line.extend(std::iter::repeat_n(' ', bar - to));
        let label = format!(
            "{}{} {}",
            "  ".repeat(row.depth),
            s.step_type.as_str(),
            safe(&s.name)
        );
        let _ = writeln!(
            out,
            "{:<name_width$} {line} {:>9} {:>11} {:>8}{}",
            cut(&label, name_width),
            duration(s.duration_ms),
            tokens(s),
            s.cost_usd.map(cost).unwrap_or_default(),
            s.error
                .as_deref()
                .map(|e| format!("  ERROR: {}", cut(&safe(e), 80)))
                .unwrap_or_default()
        );
        if full {
            for (kind, map) in [("input", &s.inputs), ("output", &s.outputs)] {
                for (k, v) in map.iter() {
                    let text = match v {
                        serde_json::Value::String(t) => t.clone(),
                        other => serde_json::to_string_pretty(other).unwrap_or_default(),
                    };
                    let indent = "  ".repeat(row.depth + 2);
                    let _ = writeln!(out, "{indent}{kind} {}:", safe(k));
                    for l in safe(&text).lines() {
                        let _ = writeln!(out, "{indent}  {l}");
                    }
                }
            }
        }
    }
    if rows.iter().any(|r| estimated(r.step)) {
        let _ = writeln!(
            out,
            "~ tokens estimated by enrichment (the provider reported none)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecraft_core::StepType;

    #[test]
    fn durations_and_costs_read_at_a_glance() {
        assert_eq!(duration(Some(36_700.0)), "36.7 s");
        assert_eq!(duration(Some(412.2)), "412 ms");
        assert_eq!(duration(Some(0.25)), "250 µs");
        assert_eq!(duration(Some(125_000.0)), "2 min 5 s");
        assert_eq!(duration(None), "—");
        assert_eq!(cost(0.00531), "$0.0053");
        assert_eq!(cost(1.254), "$1.25");
        assert_eq!(cost(0.0), "$0");
    }

    #[test]
    fn parallel_steps_overlap_on_the_time_axis() {
        let mut run = AgentRun::new("par");
        let t0 = run.start_time;
        for (name, from, to) in [("a", 0, 600), ("b", 100, 700), ("c", 700, 1000)] {
            let mut s = Step::builder(run.id, StepType::Tool, name).build();
            s.start_time = t0 + chrono::Duration::milliseconds(from);
            s.end_time = Some(t0 + chrono::Duration::milliseconds(to));
            s.duration_ms = Some((to - from) as f64);
            run.push_step(s);
        }
        run.end_time = Some(t0 + chrono::Duration::milliseconds(1000));
        let text = waterfall(&run, true, false, 50);
        let bars: Vec<(usize, usize)> = text
            .lines()
            .filter(|l| l.starts_with("tool "))
            .map(|l| {
                let chars: Vec<char> = l.chars().collect();
                let first = chars.iter().position(|c| *c == '█').unwrap();
                let last = chars.iter().rposition(|c| *c == '█').unwrap();
                (first, last)
            })
            .collect();
        assert_eq!(bars.len(), 3, "{text}");
        assert!(bars[1].0 < bars[0].1, "a and b overlap: {text}");
        assert!(bars[2].0 >= bars[1].1, "c starts after b: {text}");
        assert!(text.contains("UTC"), "{text}");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(safe("a\u{1b}[31mb"), "a\\u{1b}[31mb");
    }
}
