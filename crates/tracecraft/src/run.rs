//! An active run's shared state ([`RunShared`]): its clock, the steps finished so far, its
//! counters; and what its guard leaves when it ends ([`RawRun`]), built into an [`AgentRun`]
//! (its step tree assembled by parent id) where the run is processed.
//!
//! Below the context and the guards: it knows its runtime only as a [`RunOwner`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tracecraft_core::{AgentRun, JsonMap, Step, Uuid};

use crate::capture::Capture;
use crate::record::{self, StepRecord};

/// Attribute counting the steps not recorded because of [`RuntimeOptions::max_step_depth`](crate::RuntimeOptions::max_step_depth).
pub const STEPS_DROPPED: &str = "tracecraft.steps_dropped";
/// Attribute counting the steps still open when their run ended (not in the run).
pub const STEPS_LATE: &str = "tracecraft.steps_late";
/// What a run needs from the runtime it belongs to. Implemented by the runtime's shared
/// state, which the runtime module downcasts back (`Any`) to hand out a handle.
pub(crate) trait RunOwner: std::any::Any + Send + Sync {
    /// Counts a step that ended after its run had ended.
    fn step_late(&self);
}

/// A run's clock: its start on the wall clock and on the monotonic clock. Step and end times
/// are derived from the monotonic clock (one clock read per timestamp; times within a run never
/// go backwards when the wall clock is adjusted).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    wall_start: DateTime<Utc>,
    mono_start: Instant,
}

impl Timeline {
    /// The wall-clock time of `at`, to the microsecond.
    pub(crate) fn wall(&self, at: Instant) -> DateTime<Utc> {
        let micros = at.saturating_duration_since(self.mono_start).as_micros();
        self.wall_start + TimeDelta::microseconds(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

/// A run whose guard ended: everything needed to build its [`AgentRun`], which happens where
/// it is processed (on the processing thread with
/// [`RuntimeOptions::background_processing`](crate::RuntimeOptions::background_processing)).
pub(crate) struct RawRun {
    /// The run without its steps, end time and totals.
    run: AgentRun,
    finished: Finished,
    capture: Capture,
    timeline: Timeline,
    end: Instant,
    /// Steps not recorded because of the depth limit.
    dropped: u64,
    /// Steps still open at the end.
    open: usize,
}

impl RawRun {
    pub(crate) fn id(&self) -> Uuid {
        self.run.id
    }

    /// Builds the run: its step tree, counters, end time and totals.
    pub(crate) fn finish(self) -> AgentRun {
        let mut run = self.run;
        run.steps = assemble(
            self.finished
                .materialize(&self.capture, run.id, &self.timeline),
        );
        set_count(&mut run.attributes, STEPS_DROPPED, self.dropped);
        set_count(&mut run.attributes, STEPS_LATE, self.open as u64);
        run.finish_at(self.timeline.wall(self.end));
        run.aggregate();
        run
    }
}

/// State of an active run shared by its guard, its steps and contexts.
pub(crate) struct RunShared {
    /// The runtime the run belongs to (see [`RunOwner`]).
    pub(crate) owner: Arc<dyn RunOwner>,
    pub(crate) id: Uuid,
    timeline: Timeline,
    pub(crate) capture: Capture,
    pub(crate) max_depth: Option<usize>,
    ended: AtomicBool,
    seq: AtomicU64,
    /// Recorded steps started and not yet ended.
    open: AtomicUsize,
    /// Steps not recorded because of the depth limit.
    dropped: AtomicU64,
    /// Finished steps (taken when the run ends).
    state: Mutex<Finished>,
}

/// The finished steps of a run: their records, and their buffers' bytes one after another.
#[derive(Default)]
pub(crate) struct Finished {
    records: Vec<(StepRecord, Instant, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
    /// Records added to open steps through [`crate::current_step`], by step id (appended to
    /// the step's own when it ends, so they win).
    extras: Vec<(Uuid, Vec<u8>)>,
}

impl Finished {
    /// The data-model steps, in start order.
    fn materialize(mut self, capture: &Capture, trace_id: Uuid, timeline: &Timeline) -> Vec<Step> {
        self.records.sort_unstable_by_key(|(rec, _, _)| rec.seq);
        let bytes = &self.bytes;
        self.records
            .into_iter()
            .map(|(rec, end, range)| {
                record::materialize(rec, end, &bytes[range], capture, trace_id, |at| {
                    timeline.wall(at)
                })
            })
            .collect()
    }
}

impl RunShared {
    /// The shared state of a run `id` that started at `wall_start` (now).
    pub(crate) fn new(
        owner: Arc<dyn RunOwner>,
        id: Uuid,
        wall_start: DateTime<Utc>,
        capture: Capture,
        max_depth: Option<usize>,
    ) -> RunShared {
        RunShared {
            owner,
            id,
            timeline: Timeline {
                wall_start,
                mono_start: Instant::now(),
            },
            capture,
            max_depth,
            ended: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            state: Mutex::new(Finished::default()),
        }
    }

    /// Whether the run belongs to the runtime whose shared state is at `owner`.
    pub(crate) fn is_owned_by<T>(&self, owner: &Arc<T>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.owner), Arc::as_ptr(owner))
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Registers a step being started; returns its sequence number.
    pub(crate) fn step_started(&self) -> u64 {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn step_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn step_late(&self) {
        self.owner.step_late();
    }

    /// Records a finished step (its record and its buffer's bytes), or counts it late when
    /// the run has ended.
    pub(crate) fn step_finished(&self, rec: StepRecord, end: Instant, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_ended() {
            drop(state);
            self.step_late();
            return;
        }
        if state.records.capacity() == 0 {
            // Most runs have a handful of small steps: no reallocation until the ninth.
            state.records.reserve(8);
            state.bytes.reserve(8 * 128);
        }
        let at = state.bytes.len();
        state.bytes.extend_from_slice(bytes);
        if let Some(i) = state.extras.iter().position(|(id, _)| *id == rec.id) {
            let (_, extra) = state.extras.swap_remove(i);
            state.bytes.extend_from_slice(&extra);
        }
        let to = state.bytes.len();
        state.records.push((rec, end, at..to));
        drop(state);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Appends records to the open step `step` (see [`crate::current_step`]); nothing once
    /// the run has ended.
    pub(crate) fn step_extra(&self, step: Uuid, f: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_ended() {
            return;
        }
        let i = match state.extras.iter().position(|(id, _)| *id == step) {
            Some(i) => i,
            None => {
                state.extras.push((step, Vec::new()));
                state.extras.len() - 1
            }
        };
        f(&mut state.extras[i].1);
    }

    /// Marks the run ended; returns its finished steps and the number still open.
    fn end(&self) -> (Finished, usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.ended.store(true, Ordering::Release);
        let open = self.open.load(Ordering::Relaxed);
        (std::mem::take(&mut *state), open)
    }

    /// Ends the run whose guard ended at `end`: what is needed to build `run` (the run without
    /// its steps) where it is processed.
    pub(crate) fn close(&self, run: AgentRun, end: Instant) -> RawRun {
        let (finished, open) = self.end();
        RawRun {
            run,
            finished,
            capture: self.capture.clone(),
            timeline: self.timeline,
            end,
            dropped: self.dropped.load(Ordering::Relaxed),
            open,
        }
    }
}

fn set_count(attrs: &mut JsonMap, key: &str, n: u64) {
    if n > 0 {
        attrs.insert(key.to_owned(), Value::from(n));
    }
}

/// Builds the step tree from finished steps in start order, by parent id. A step whose parent
/// is not among them becomes a root. No recursion.
fn assemble(finished: Vec<Step>) -> Vec<Step> {
    if finished.iter().all(|s| s.parent_id.is_none()) {
        // Flat (every step a root): nothing moves.
        return finished;
    }
    let n = finished.len();
    // Parent lookup by id: a sorted list and binary search (no hashing, one allocation).
    let mut by_id: Vec<(Uuid, usize)> = finished
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    by_id.sort_unstable_by_key(|(id, _)| *id);
    let index_of = |id: Uuid| {
        by_id
            .binary_search_by_key(&id, |(k, _)| *k)
            .ok()
            .map(|at| by_id[at].1)
    };
    // A parent starts before its children, so it has a smaller index. Children are listed by
    // index first, then steps are built from the last to the first: every step's children are
    // complete when it is reached, and each step moves once (into its parent), whatever the
    // shape of the tree.
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    let mut slots: Vec<Option<Step>> = Vec::with_capacity(n);
    for (i, mut step) in finished.into_iter().enumerate() {
        match step.parent_id.and_then(index_of) {
            Some(p) if p < i => kids[p].push(i),
            _ => {
                step.parent_id = None;
                roots.push(i);
            }
        }
        slots.push(Some(step));
    }
    for i in (0..n).rev() {
        if kids[i].is_empty() {
            continue;
        }
        let children: Vec<Step> = kids[i].iter().filter_map(|&c| slots[c].take()).collect();
        if let Some(step) = slots[i].as_mut() {
            step.children = children;
        }
    }
    roots.iter().filter_map(|&r| slots[r].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecraft_core::StepType;

    #[test]
    fn assemble_builds_tree_in_start_order() {
        let t = Uuid::nil();
        let a = Step::new(t, StepType::Agent, "a");
        let mut b = Step::new(t, StepType::Llm, "b");
        b.parent_id = Some(a.id);
        let mut c = Step::new(t, StepType::Tool, "c");
        c.parent_id = Some(a.id);
        let mut d = Step::new(t, StepType::Tool, "d");
        d.parent_id = Some(Uuid::from_u128(7)); // parent never recorded
        let e = Step::new(t, StepType::Tool, "e");
        let tree = assemble(vec![a, b, c, d, e]);
        let names: Vec<_> = tree.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "d", "e"]);
        let kids: Vec<_> = tree[0].children.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(kids, ["b", "c"]);
        assert_eq!(tree[1].parent_id, None);
    }

    #[test]
    fn assemble_matches_a_naive_tree_builder_on_random_shapes() {
        // Deterministic pseudo-random shapes: each step's parent is an earlier step, the run
        // (None) or an unknown id; steps in start order (as `Finished::materialize` sorts them).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let t = Uuid::from_u128(1);
        for n in [1usize, 2, 5, 10, 40, 200] {
            let mut steps: Vec<Step> = Vec::new();
            for i in 0..n {
                let mut s = Step::new(t, StepType::Tool, format!("s{i}"));
                s.id = Uuid::from_u128(1000 + next(1 << 40) as u128 * 1000 + i as u128);
                s.parent_id = match next(4) {
                    0 => None,
                    1 => Some(Uuid::from_u128(7)),
                    _ if i > 0 => Some(steps[next(i as u64) as usize].id),
                    _ => None,
                };
                steps.push(s);
            }
            // Naive: children of `parent` in start order, recursively.
            fn naive(steps: &[Step], parent: Option<Uuid>) -> Vec<String> {
                let known = |p: &Option<Uuid>| p.is_some_and(|p| steps.iter().any(|s| s.id == p));
                steps
                    .iter()
                    .filter(|s| match parent {
                        None => !known(&s.parent_id),
                        Some(p) => s.parent_id == Some(p),
                    })
                    .map(|s| format!("{}({})", s.name, naive(steps, Some(s.id)).join(",")))
                    .collect()
            }
            fn shape(tree: &[Step]) -> Vec<String> {
                tree.iter()
                    .map(|s| format!("{}({})", s.name, shape(&s.children).join(",")))
                    .collect()
            }
            let expected = naive(&steps, None);
            let tree = assemble(steps);
            assert_eq!(shape(&tree), expected, "n = {n}");
            assert!(tree.iter().all(|s| s.parent_id.is_none()));
            let mut all: Vec<&Step> = tree.iter().collect();
            let mut count = 0;
            while let Some(s) = all.pop() {
                assert_eq!(s.trace_id, t, "no step is altered");
                count += 1;
                all.extend(s.children.iter());
            }
            assert_eq!(count, n, "every step is in the tree once");
        }
    }
}
