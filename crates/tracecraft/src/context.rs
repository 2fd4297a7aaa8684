//! The current context: which run (and which step in it) new steps attach to.
//!
//! Sync code needs nothing: starting a run or a step pushes it on a thread-local stack, its guard
//! pops it when dropped. Work that moves to another thread or task takes the context along:
//!
//! - **threads, `spawn_blocking`**: `let ctx = tracecraft::context::current();` then, on the
//!   other thread, `ctx.enter(|| ...)` or `let _g = ctx.attach();`;
//! - **futures, `tokio::spawn`**: `fut.in_current_run()` ([`InRun`]) captures the current
//!   context and enters it on every poll (like `tracing`'s `Instrument`); `fut.with_context(ctx)`
//!   uses a given one. Guards created inside the future and held across `.await` travel with it
//!   (they are saved after each poll and restored before the next), so the future may move
//!   between worker threads. Dropping the wrapped future before it completes records the
//!   guards it still holds as cancelled (`error_type = "cancelled"`).
//!
//! A [`Context`] is `Send + Sync + Clone`; it holds an `Arc` to the run's shared state, the
//! current step's id and its depth. Steps of concurrent tasks attach under the right parent by
//! id; the run's step tree is assembled when the run guard ends.
//!
//! In async code, wrap the task's future with [`InRun::in_current_run`] (or
//! [`InRun::with_context`]) whenever it holds a guard across an `.await`: without the
//! wrapper, the guard's entry stays on the worker thread's stack while the task is suspended.
//! Entries of runs that have ended are ignored and pruned, so a leak never attaches steps to a
//! finished run, but another task on that thread could briefly see the suspended one's step
//! as its parent.
//!
//! No async runtime is needed: the wrapper is a plain [`Future`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tracecraft_core::Uuid;

use crate::run::RunShared;

/// One entry of the thread-local stack.
#[derive(Clone)]
pub(crate) struct Frame {
    /// Identifies the entry so that its owner removes exactly it (a step id, a run id, or a
    /// random id for `attach`).
    pub(crate) key: Uuid,
    pub(crate) run: Arc<RunShared>,
    /// The step new steps become children of; `None` for the run's root.
    pub(crate) step: Option<Uuid>,
    /// Depth of `step` (root steps are 1; the run itself is 0).
    pub(crate) depth: usize,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    static CANCELLING: Cell<bool> = const { Cell::new(false) };
}

/// Pushes `frame`, first pruning entries of ended runs from the top.
pub(crate) fn push(frame: Frame) {
    let mut pruned = Vec::new();
    let _ = STACK.try_with(|s| {
        let mut s = s.borrow_mut();
        while s.last().is_some_and(|f| f.run.is_ended()) {
            pruned.extend(s.pop());
        }
        s.push(frame);
    });
    // Dropped outside the borrow: the last `Arc` of a run may run arbitrary drop code.
    drop(pruned);
}

/// Removes the entry `key` (normally the top one).
pub(crate) fn pop(key: Uuid) {
    let removed = STACK
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let i = s.iter().rposition(|f| f.key == key)?;
            Some(s.remove(i))
        })
        .ok()
        .flatten();
    drop(removed);
}

/// The innermost live entry, optionally only of `run`.
pub(crate) fn top(run: Option<&Arc<RunShared>>) -> Option<Frame> {
    STACK
        .try_with(|s| {
            s.borrow()
                .iter()
                .rev()
                .find(|f| !f.run.is_ended() && run.is_none_or(|r| Arc::ptr_eq(r, &f.run)))
                .cloned()
        })
        .ok()
        .flatten()
}

/// Whether guards are being dropped because a wrapped future was dropped before completion.
pub(crate) fn cancelling() -> bool {
    CANCELLING.try_with(Cell::get).unwrap_or(false)
}

/// The current context: the innermost active run (and step) on this thread or task.
///
/// Cheap to clone; `Send` and `Sync`, so it moves into threads, `spawn_blocking` closures and
/// spawned futures. An empty context (no active run) is valid: entering it changes nothing.
#[derive(Clone, Default)]
pub struct Context {
    frame: Option<Frame>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids only: never names or payloads.
        let mut d = f.debug_struct("Context");
        if let Some(fr) = &self.frame {
            d.field("run_id", &fr.run.id).field("step_id", &fr.step);
        }
        d.finish()
    }
}

/// The current context (see the [module docs](self)).
#[must_use]
pub fn current() -> Context {
    Context { frame: top(None) }
}

impl Context {
    pub(crate) fn from_frame(frame: Frame) -> Context {
        Context { frame: Some(frame) }
    }

    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn into_frame(self) -> Option<Frame> {
        self.frame
    }

    pub(crate) fn frame(&self) -> Option<&Frame> {
        self.frame.as_ref()
    }

    /// Whether this context has an active run.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.frame.as_ref().is_some_and(|f| !f.run.is_ended())
    }

    /// The id of the run, if any.
    #[must_use]
    pub fn run_id(&self) -> Option<Uuid> {
        self.frame.as_ref().map(|f| f.run.id)
    }

    /// The id of the step new steps would become children of, if any.
    #[must_use]
    pub fn step_id(&self) -> Option<Uuid> {
        self.frame.as_ref().and_then(|f| f.step)
    }

    /// Makes this the current context on this thread until the returned guard is dropped.
    ///
    /// The guard is not `Send`: attach the context on the thread that runs the work.
    pub fn attach(&self) -> ContextGuard {
        let key = self.frame.as_ref().map(|f| {
            let key = crate::capture::new_id();
            push(Frame { key, ..f.clone() });
            key
        });
        ContextGuard {
            key,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Runs `f` with this as the current context.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.attach();
        f()
    }
}

/// Returned by [`Context::attach`]; restores the previous context when dropped.
#[must_use = "the context is current only while the guard lives"]
pub struct ContextGuard {
    key: Option<Uuid>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl std::fmt::Debug for ContextGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextGuard").finish_non_exhaustive()
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            pop(key);
        }
    }
}

/// Propagates the current context into futures (see the [module docs](self)).
pub trait InRun: Future + Sized {
    /// Wraps the future so that it runs in the context current now.
    fn in_current_run(self) -> Instrumented<Self> {
        self.with_context(current())
    }

    /// Wraps the future so that it runs in `ctx`.
    fn with_context(self, ctx: Context) -> Instrumented<Self> {
        Instrumented {
            inner: Some(Box::pin(self)),
            ctx,
            saved: Vec::new(),
        }
    }
}

impl<F: Future> InRun for F {}

/// A future that enters a [`Context`] on every poll; see [`InRun`].
///
/// Dropping it before it completes drops the inner future with cancellation recorded: guards
/// it still holds end with `error = "cancelled"`, `error_type = "cancelled"`.
pub struct Instrumented<F: Future> {
    inner: Option<Pin<Box<F>>>,
    ctx: Context,
    /// Entries pushed by guards during a poll and still alive after it.
    saved: Vec<Frame>,
}

impl<F: Future> std::fmt::Debug for Instrumented<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Pending; // polled after completion: never ready again
        };
        // Enter: the captured context, then the entries saved after the previous poll.
        let ctx_key = this.ctx.frame.as_ref().map(|_| crate::capture::new_id());
        let base = STACK
            .try_with(|s| {
                let mut s = s.borrow_mut();
                let base = s.len();
                if let (Some(f), Some(key)) = (&this.ctx.frame, ctx_key) {
                    s.push(Frame { key, ..f.clone() });
                }
                s.append(&mut this.saved);
                base
            })
            .ok();
        let result = inner.as_mut().poll(cx);
        // Leave: whatever is above `base` belongs to this future.
        if let Some(base) = base {
            let above = STACK
                .try_with(|s| {
                    let mut s = s.borrow_mut();
                    let base = base.min(s.len());
                    s.split_off(base)
                })
                .unwrap_or_default();
            this.saved = above
                .into_iter()
                .filter(|f| Some(f.key) != ctx_key && !f.run.is_ended())
                .collect();
        }
        if result.is_ready() {
            this.inner = None;
            this.saved.clear();
        }
        result
    }
}

impl<F: Future> Drop for Instrumented<F> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let was = CANCELLING.try_with(|c| c.replace(true)).unwrap_or(false);
            drop(inner);
            let _ = CANCELLING.try_with(|c| c.set(was));
        }
    }
}
