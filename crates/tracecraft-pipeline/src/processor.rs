//! The [`Processor`] trait and its combinators.

use std::fmt;

use tracecraft_core::AgentRun;

/// What a processor did with a run.
// The run moves through processors by value; boxing it would add an allocation per step.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    /// Keep the (possibly changed) run and pass it on.
    Keep(AgentRun),
    /// Drop the run; it goes no further. The reason is counted in the pipeline's stats.
    Drop(DropReason),
}

/// Why a run was dropped on purpose (not a failure).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DropReason(pub String);

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A processor failed: the pipeline drops the run (fail closed) and counts it.
///
/// The message must not contain payload text: it is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

/// Processes one finished run: keeps it (possibly changed) or drops it with a reason.
///
/// Processors run in the pipeline's order on the thread that submits the run. They take
/// `&self` and may be called from several threads at once. A processor that returns an error
/// or panics makes the pipeline drop the run: the original is never exported (fail closed).
///
/// Composition follows `tracing`'s `Layer`: `Option<P>` is a processor (`None` passes runs
/// through), so is `Vec<Box<dyn Processor>>` (in order, stopping at the first drop), and
/// [`Processor::and_then`] chains two.
pub trait Processor: Send + Sync {
    /// A short name for logs and stats (`"enrich"`, `"redact"`, `"sample"`).
    fn name(&self) -> &str;

    /// Processes one run.
    ///
    /// # Errors
    /// [`ProcessError`] when the run could not be processed; the pipeline then drops it.
    fn process(&self, run: AgentRun) -> Result<Outcome, ProcessError>;

    /// Runs `self`, then `next` on what `self` kept.
    fn and_then<P: Processor>(self, next: P) -> Chain<Self, P>
    where
        Self: Sized,
    {
        Chain {
            first: self,
            second: next,
        }
    }

    /// Boxes the processor.
    fn boxed(self) -> Box<dyn Processor>
    where
        Self: Sized + 'static,
    {
        Box::new(self)
    }
}

/// Two processors in sequence; see [`Processor::and_then`].
#[derive(Debug, Clone)]
pub struct Chain<A, B> {
    first: A,
    second: B,
}

impl<A: Processor, B: Processor> Processor for Chain<A, B> {
    fn name(&self) -> &str {
        self.first.name()
    }
    fn process(&self, run: AgentRun) -> Result<Outcome, ProcessError> {
        match self.first.process(run)? {
            Outcome::Keep(run) => self.second.process(run),
            drop => Ok(drop),
        }
    }
}

impl<P: Processor> Processor for Option<P> {
    fn name(&self) -> &str {
        self.as_ref().map_or("none", Processor::name)
    }
    fn process(&self, run: AgentRun) -> Result<Outcome, ProcessError> {
        match self {
            Some(p) => p.process(run),
            None => Ok(Outcome::Keep(run)),
        }
    }
}

impl<P: Processor + ?Sized> Processor for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn process(&self, run: AgentRun) -> Result<Outcome, ProcessError> {
        (**self).process(run)
    }
}

impl<P: Processor + ?Sized> Processor for std::sync::Arc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn process(&self, run: AgentRun) -> Result<Outcome, ProcessError> {
        (**self).process(run)
    }
}

impl<P: Processor> Processor for Vec<P> {
    fn name(&self) -> &str {
        "chain"
    }
    fn process(&self, mut run: AgentRun) -> Result<Outcome, ProcessError> {
        for p in self {
            match p.process(run)? {
                Outcome::Keep(next) => run = next,
                drop => return Ok(drop),
            }
        }
        Ok(Outcome::Keep(run))
    }
}

/// A processor from a closure (handy for tests and small adjustments).
pub struct FnProcessor<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for FnProcessor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnProcessor")
            .field("name", &self.name)
            .finish()
    }
}

impl<F> FnProcessor<F>
where
    F: Fn(AgentRun) -> Result<Outcome, ProcessError> + Send + Sync,
{
    /// A processor named `name` that calls `f`.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        FnProcessor {
            name: name.into(),
            f,
        }
    }
}

impl<F> Processor for FnProcessor<F>
where
    F: Fn(AgentRun) -> Result<Outcome, ProcessError> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn process(&self, run: AgentRun) -> Result<Outcome, ProcessError> {
        (self.f)(run)
    }
}
