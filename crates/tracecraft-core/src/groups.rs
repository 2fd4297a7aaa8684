//! Runs grouped by session or by user ([`TraceStore::groups`](crate::TraceStore::groups)):
//! the conversation and user views of a trace browser, over every matching run.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::AgentRun;

/// What runs are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupKey {
    /// The session (conversation) id; runs without one are left out.
    Session,
    /// The user id (pseudonymous where configured); runs without one are left out.
    User,
}

/// Distinct other ids a group lists (users of a session, sessions of a user), smallest first.
pub const GROUP_OTHERS_SHOWN: usize = 3;

/// The runs of one session or one user.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunGroup {
    /// The session or user id.
    pub id: String,
    /// Runs in the group.
    pub runs: u64,
    /// Runs with an error (on the run or on any step).
    pub errors: u64,
    /// Tokens of its runs.
    pub tokens: u64,
    /// Cost of its runs.
    pub cost_usd: f64,
    /// When its first run started.
    pub first: DateTime<Utc>,
    /// When its latest run started.
    pub last: DateTime<Utc>,
    /// The name of its latest run (the greatest trace id among runs that started together).
    pub last_run: String,
    /// The first [`GROUP_OTHERS_SHOWN`] distinct other ids, in order: the users of a session
    /// or the sessions of a user.
    pub others: Vec<String>,
    /// How many distinct other ids there are.
    pub other_count: u64,
}

impl RunGroup {
    /// A group with its totals; `last_run` empty and no `others` yet (a store's aggregate
    /// fills them in).
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn new(
        id: String,
        runs: u64,
        errors: u64,
        tokens: u64,
        cost_usd: f64,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        other_count: u64,
    ) -> Self {
        RunGroup {
            id,
            runs,
            errors,
            tokens,
            cost_usd,
            first,
            last,
            last_run: String::new(),
            others: Vec::new(),
            other_count,
        }
    }
}

/// One run as [`GroupsBuilder::add`] reads it (a store's index row or a run).
#[derive(Debug, Clone, Copy)]
pub struct GroupRow<'a> {
    /// The trace id.
    pub id: Uuid,
    /// The run's name.
    pub name: &'a str,
    /// Session id.
    pub session_id: Option<&'a str>,
    /// User id.
    pub user_id: Option<&'a str>,
    /// Start time.
    pub start: DateTime<Utc>,
    /// The run or any step has an error.
    pub has_error: bool,
    /// Total tokens.
    pub tokens: u64,
    /// Total cost.
    pub cost_usd: f64,
}

impl<'a> GroupRow<'a> {
    /// The row of a run.
    #[must_use]
    pub fn of(run: &'a AgentRun) -> Self {
        GroupRow {
            id: run.id,
            name: &run.name,
            session_id: run.session_id.as_deref(),
            user_id: run.user_id.as_deref(),
            start: run.start_time,
            has_error: run.error_count > 0 || run.has_any_error(),
            tokens: run.total_tokens,
            cost_usd: run.total_cost_usd,
        }
    }
}

struct Acc {
    runs: u64,
    errors: u64,
    tokens: u64,
    cost_usd: f64,
    first: DateTime<Utc>,
    last: (DateTime<Utc>, Uuid),
    last_run: String,
    others: BTreeSet<String>,
}

/// Accumulates runs into [`RunGroup`]s (stores without a database, and the contract's oracle).
pub struct GroupsBuilder {
    by: GroupKey,
    groups: HashMap<String, Acc>,
}

impl GroupsBuilder {
    /// No groups yet.
    #[must_use]
    pub fn new(by: GroupKey) -> Self {
        GroupsBuilder {
            by,
            groups: HashMap::new(),
        }
    }

    /// Adds a run.
    pub fn add_run(&mut self, run: &AgentRun) {
        self.add(GroupRow::of(run));
    }

    /// Adds a run's row; a run without the key is left out.
    pub fn add(&mut self, row: GroupRow<'_>) {
        let (key, other) = match self.by {
            GroupKey::Session => (row.session_id, row.user_id),
            GroupKey::User => (row.user_id, row.session_id),
        };
        let Some(key) = key else { return };
        let g = match self.groups.get_mut(key) {
            Some(g) => g,
            None => self.groups.entry(key.to_owned()).or_insert(Acc {
                runs: 0,
                errors: 0,
                tokens: 0,
                cost_usd: 0.0,
                first: row.start,
                last: (row.start, row.id),
                last_run: row.name.to_owned(),
                others: BTreeSet::new(),
            }),
        };
        g.runs += 1;
        g.errors += u64::from(row.has_error);
        g.tokens = g.tokens.saturating_add(row.tokens);
        g.cost_usd += row.cost_usd;
        g.first = g.first.min(row.start);
        if (row.start, row.id) > g.last {
            g.last = (row.start, row.id);
            row.name.clone_into(&mut g.last_run);
        }
        if let Some(o) = other
            && !g.others.contains(o)
        {
            g.others.insert(o.to_owned());
        }
    }

    /// The `limit` most recently active groups, latest first (ties by id).
    #[must_use]
    pub fn finish(self, limit: usize) -> Vec<RunGroup> {
        let mut list: Vec<RunGroup> = self
            .groups
            .into_iter()
            .map(|(id, g)| RunGroup {
                id,
                runs: g.runs,
                errors: g.errors,
                tokens: g.tokens,
                cost_usd: g.cost_usd,
                first: g.first,
                last: g.last.0,
                last_run: g.last_run,
                other_count: g.others.len() as u64,
                others: g.others.into_iter().take(GROUP_OTHERS_SHOWN).collect(),
            })
            .collect();
        sort_groups(&mut list);
        list.truncate(limit);
        list
    }
}

/// The order of [`TraceStore::groups`](crate::TraceStore::groups): latest activity first, then
/// by id.
pub fn sort_groups(list: &mut [RunGroup]) {
    list.sort_by(|a, b| b.last.cmp(&a.last).then_with(|| a.id.cmp(&b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn groups_total_their_runs_and_list_the_others() {
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let run = |name: &str, s: Option<&str>, u: Option<&str>, min: i64, err: bool| {
            let mut b = AgentRun::builder(name).start_time(t + Duration::minutes(min));
            if let Some(s) = s {
                b = b.session_id(s);
            }
            if let Some(u) = u {
                b = b.user_id(u);
            }
            if err {
                b = b.error("boom", "E");
            }
            let mut r = b.build();
            r.total_tokens = 10;
            r.total_cost_usd = 0.5;
            r
        };
        let runs = [
            run("a", Some("s1"), Some("u2"), 0, false),
            run("b", Some("s1"), Some("u1"), 5, true),
            run("c", Some("s2"), Some("u1"), 3, false),
            run("d", None, Some("u1"), 9, false),
            run("e", Some("s1"), Some("u3"), 1, false),
            run("f", Some("s1"), Some("u4"), 2, false),
        ];
        let mut by_session = GroupsBuilder::new(GroupKey::Session);
        let mut by_user = GroupsBuilder::new(GroupKey::User);
        for r in &runs {
            by_session.add_run(r);
            by_user.add_run(r);
        }
        let sessions = by_session.finish(10);
        assert_eq!(sessions.len(), 2, "runs without a session are left out");
        let s1 = &sessions[0];
        assert_eq!((s1.id.as_str(), s1.runs, s1.errors), ("s1", 4, 1));
        assert_eq!((s1.tokens, s1.cost_usd), (40, 2.0));
        assert_eq!((s1.first, s1.last), (t, t + Duration::minutes(5)));
        assert_eq!(s1.last_run, "b");
        assert_eq!(s1.others, ["u1", "u2", "u3"]);
        assert_eq!(s1.other_count, 4);
        let users = by_user.finish(1);
        assert_eq!(users.len(), 1, "limited");
        assert_eq!((users[0].id.as_str(), users[0].runs), ("u1", 3));
        assert_eq!(users[0].last_run, "d");
        assert_eq!(users[0].others, ["s1", "s2"]);
    }
}
