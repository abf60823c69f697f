//! beanstalkd's waiting order, for lease requests that ask for it
//! ([`WaitOrder::Beanstalk`](crate::protocol::WaitOrder)).
//!
//! beanstalkd 1.12 keeps, per tube, the set of connections waiting on it
//! (an array) and a cursor. A connection that starts waiting is appended
//! to the set of each tube it watches. Taking one for a job reads the
//! cursor modulo the set's length, takes that member, moves the set's last
//! member into its place and moves the cursor on by one. A member that
//! stops waiting (served by another tube, timed out, gone) is removed the
//! same way, its place taken by the last member, the cursor unchanged.
//! A `reserve` that finds a job at once goes the same way: appended to
//! each watched tube's set, then taken from the set of the tube whose job
//! it gets. That set held nobody else (a tube with a job to give has
//! nobody waiting on it), so the take leaves the tube's cursor at 1.
//! The cursor lives as long as the tube: here, as long as the caller's
//! count of the queue's lives says the same life.
//!
//! Bounded: a ring per queue that waiting requests name, and rings with
//! nobody waiting are dropped once [`RINGS_MAX`] are kept (their cursors
//! start again at 0).

use std::collections::BTreeMap;

use crate::job::QueueName;
use crate::protocol::RequestId;

/// Rings kept before those with nobody waiting are dropped.
pub(super) const RINGS_MAX: usize = 4_096;

/// One queue's waiting requests and cursor.
#[derive(Debug, Default)]
struct Ring {
    members: Vec<RequestId>,
    cursor: usize,
    life: u64,
}

/// The rings of every queue a beanstalk-ordered request waits on.
#[derive(Debug, Default)]
pub(super) struct Rings {
    by_queue: BTreeMap<QueueName, Ring>,
}

impl Rings {
    /// `req` starts waiting on `queue` (in its life `life`): it joins the
    /// end of the queue's set.
    pub(super) fn join(&mut self, queue: &QueueName, life: u64, req: RequestId) {
        self.ring(queue, life).members.push(req);
    }

    /// A request took a job of `queue` (in its life `life`) at once: the
    /// take from a set of it alone (see the module's text).
    pub(super) fn served_at_once(&mut self, queue: &QueueName, life: u64) {
        self.ring(queue, life).cursor = 1;
    }

    /// `queue`'s ring in its life `life` (its cursor at 0 in a new life).
    fn ring(&mut self, queue: &QueueName, life: u64) -> &mut Ring {
        if self.by_queue.len() >= RINGS_MAX && !self.by_queue.contains_key(queue) {
            self.by_queue.retain(|_, r| !r.members.is_empty());
        }
        let ring = self.by_queue.entry(queue.clone()).or_default();
        if ring.life != life {
            ring.life = life;
            ring.cursor = 0;
        }
        ring
    }

    /// Takes the member at `queue`'s cursor (see the module's text).
    pub(super) fn take(&mut self, queue: &QueueName) -> Option<RequestId> {
        let ring = self.by_queue.get_mut(queue)?;
        if ring.members.is_empty() {
            return None;
        }
        let at = ring.cursor % ring.members.len();
        let req = ring.members.swap_remove(at);
        ring.cursor = at + 1;
        Some(req)
    }

    /// `req` no longer waits on `queue`.
    pub(super) fn leave(&mut self, queue: &QueueName, req: RequestId) {
        if let Some(ring) = self.by_queue.get_mut(queue)
            && let Some(at) = ring.members.iter().position(|&m| m == req)
        {
            ring.members.swap_remove(at);
        }
    }

    /// Whether some request waits on `queue`.
    pub(super) fn has_members(&self, queue: &QueueName) -> bool {
        self.by_queue
            .get(queue)
            .is_some_and(|r| !r.members.is_empty())
    }

    /// Whether `req` waits on `queue`.
    pub(super) fn holds(&self, queue: &QueueName, req: RequestId) -> bool {
        self.by_queue
            .get(queue)
            .is_some_and(|r| r.members.contains(&req))
    }

    /// Members of every ring.
    pub(super) fn members(&self) -> usize {
        self.by_queue.values().map(|r| r.members.len()).sum()
    }

    /// Rings kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> QueueName {
        QueueName::parse(name).expect("a valid queue name")
    }

    #[test]
    fn the_cursor_moves_on_and_a_taken_member_is_replaced_by_the_last() {
        let mut rings = Rings::default();
        let t = q("t");
        rings.join(&t, 0, RequestId(1));
        rings.join(&t, 0, RequestId(2));
        assert_eq!(rings.take(&t), Some(RequestId(1)), "cursor 0: the first");
        // [2], cursor 1; 3 joins: [2, 3]; 1 % 2 = 1: the later one.
        rings.join(&t, 0, RequestId(3));
        assert_eq!(rings.take(&t), Some(RequestId(3)));
        // [2], cursor 2: 2 % 1 = 0.
        assert_eq!(rings.take(&t), Some(RequestId(2)));
        assert_eq!(rings.take(&t), None);
        assert!(!rings.has_members(&t));
    }

    #[test]
    fn a_job_taken_at_once_leaves_the_cursor_at_1() {
        let mut rings = Rings::default();
        let t = q("t");
        rings.served_at_once(&t, 0);
        rings.join(&t, 0, RequestId(1));
        rings.join(&t, 0, RequestId(2));
        assert_eq!(rings.take(&t), Some(RequestId(2)), "1 % 2 = 1");
    }

    #[test]
    fn a_member_that_leaves_is_replaced_by_the_last_and_the_cursor_stays() {
        let mut rings = Rings::default();
        let t = q("t");
        for r in 1..=4 {
            rings.join(&t, 0, RequestId(r));
        }
        rings.leave(&t, RequestId(1));
        rings.leave(&t, RequestId(9));
        // [4, 2, 3], cursor 0.
        assert_eq!(rings.take(&t), Some(RequestId(4)));
        // [3, 2], cursor 1.
        assert_eq!(rings.take(&t), Some(RequestId(2)));
    }

    #[test]
    fn a_new_life_of_the_queue_starts_its_cursor_again() {
        let mut rings = Rings::default();
        let t = q("t");
        rings.join(&t, 0, RequestId(1));
        assert_eq!(rings.take(&t), Some(RequestId(1)));
        for r in [2, 3] {
            rings.join(&t, 0, RequestId(r));
        }
        assert_eq!(rings.take(&t), Some(RequestId(3)), "same life: cursor 1");
        rings.leave(&t, RequestId(2));
        for r in [4, 5] {
            rings.join(&t, 1, RequestId(r));
        }
        assert_eq!(rings.take(&t), Some(RequestId(4)), "new life: cursor 0");
    }

    #[test]
    fn rings_nobody_waits_on_are_dropped_once_too_many_are_kept() {
        let mut rings = Rings::default();
        for i in 0..RINGS_MAX {
            let name = q(&format!("q{i}"));
            rings.join(&name, 0, RequestId(i as u64));
            if i > 0 {
                rings.leave(&name, RequestId(i as u64));
            }
        }
        assert_eq!(rings.len(), RINGS_MAX);
        rings.join(&q("another"), 0, RequestId(99_999));
        assert_eq!(rings.len(), 2, "the one with a member and the new one");
        assert!(rings.has_members(&q("q0")));
    }
}
