//! Queue controls: `PauseQueue` and `PurgeQueue`, each one durable record,
//! answered once it is durable.
//!
//! A paused queue hands out nothing, to the pool or to leases, until its
//! pause ends (`u64::MAX`: until resumed; 0 resumes). A purge cancels every
//! pending job of the queue as it applies; while it is on its way to the
//! log, nothing of the queue is handed out (a dispatch proposed after it
//! would find its job cancelled), and a cancel of one of its pending jobs
//! waits for it instead of adding a record of its own.

use super::Core;
use super::proposals::{Answer, Origin, reply};
use crate::job::QueueName;
use crate::protocol::{Effect, QueuePause, Rejection, Reply, RequestId};
use crate::record::{Lsn, Op};
use crate::time::UnixMillis;

impl Core {
    /// Pauses (or resumes) a queue; a queue no job named yet is created,
    /// within `limits.queues_max`. A pause for a while ends where a delay
    /// of that length would (`span_end`): never before it has lasted.
    pub(super) fn on_pause_queue(
        &mut self,
        req: RequestId,
        queue: QueueName,
        pause: QueuePause,
        out: &mut Vec<Effect>,
    ) {
        let max = self.config.limits.queues_max;
        if !self.state.queue_ix.contains_key(&queue) && self.state.queues.len() as u64 >= max {
            let rejection = Rejection::Busy {
                reason: format!(
                    "queue {queue} does not exist and the number of queues is at its limit of {max}"
                ),
                retry_after_ms: 60_000,
            };
            return reply(out, req, Reply::Paused(Err(rejection)));
        }
        let until = match pause {
            QueuePause::UntilResumed => UnixMillis::MAX,
            QueuePause::ForMs(ms) => self.span_end(ms),
            QueuePause::Resume => 0,
        };
        let lsn = self.propose(Op::PauseQueue { queue, until }, Origin::Client, out);
        self.wait(lsn, req, Answer::Paused, out);
    }

    /// Cancels every pending job of a queue; answers how many once
    /// durable (a queue no job names: none, at once).
    pub(super) fn on_purge_queue(
        &mut self,
        req: RequestId,
        queue: QueueName,
        out: &mut Vec<Effect>,
    ) {
        let Some(&q) = self.state.queue_ix.get(&queue) else {
            return reply(out, req, Reply::Purged(Ok(0)));
        };
        let lsn = self.propose(Op::PurgeQueue { queue }, Origin::Client, out);
        self.purging.insert(lsn, q);
        self.wait(lsn, req, Answer::Purged(0), out);
    }

    /// The newest purge of queue `q` on its way to the log, if any.
    pub(super) fn purge_of(&self, q: u32) -> Option<Lsn> {
        self.purging
            .iter()
            .rev()
            .find(|&(_, &queue)| queue == q)
            .map(|(&lsn, _)| lsn)
    }

    /// Whether queue `q` may hand out jobs now: not paused, no purge on
    /// its way.
    pub(super) fn hands_out(&self, q: u32) -> bool {
        !self.state.queues[q as usize].is_paused(self.state.now) && self.purge_of(q).is_none()
    }
}
