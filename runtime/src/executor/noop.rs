//! The `noop` executor: no work at all, for benchmarking the queue itself.

use std::future::Future;

use beaver_core::{Execution, Outcome};

use super::Executor;

/// Succeeds every attempt on its first poll, without sleeping or allocating.
///
/// Guarantees: the outcome is always [`Outcome::Succeeded`], whatever the
/// execution's timeout (even 0); it runs unchanged under madsim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoopExecutor;

impl Executor for NoopExecutor {
    fn execute(&self, _exec: Execution) -> impl Future<Output = Outcome> + Send + 'static {
        std::future::ready(Outcome::Succeeded)
    }
}
