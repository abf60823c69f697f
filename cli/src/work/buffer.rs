//! Results the worker could not report yet: bounded, oldest first, sent in
//! batches and sent again until the server answers for each.
//!
//! Sending one again is safe: a retried complete (or fail) of a current
//! lease is answered as the first was, and one of a lease that ended is
//! refused as `lease_lost` and changes nothing.

use std::collections::VecDeque;
use std::time::Instant;

/// The most items one batch request carries (the server's default
/// `lease_batch_max`).
pub const BATCH_MAX: usize = 100;

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The command exited 0: complete the job.
    Complete,
    /// It failed or timed out: fail the attempt with this error, and let
    /// the job's retry policy decide what follows.
    Fail(String),
}

/// One result waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The lease it ends.
    pub lease_id: String,
    /// What to report.
    pub report: Report,
    /// After this, the lease has surely ended (no renewal reached the
    /// server): reporting it could only be refused, so it is dropped.
    pub drop_at: Instant,
}

/// The buffer is full: the result was not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full(pub Pending);

/// Results waiting to be reported, at most `cap`, oldest first.
#[derive(Debug)]
pub struct Results {
    items: VecDeque<Pending>,
    cap: usize,
}

impl Results {
    /// An empty buffer holding at most `cap` results (at least 1).
    pub fn new(cap: usize) -> Results {
        Results {
            items: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Results held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Keeps `p` (a second result for the same lease replaces the first:
    /// one attempt has one outcome); refuses it when full.
    pub fn push(&mut self, p: Pending) -> Result<(), Full> {
        if let Some(old) = self.items.iter_mut().find(|q| q.lease_id == p.lease_id) {
            *old = p;
            return Ok(());
        }
        if self.items.len() >= self.cap {
            return Err(Full(p));
        }
        self.items.push_back(p);
        Ok(())
    }

    /// The oldest completions (up to [`BATCH_MAX`]), for one batch request.
    pub fn completions(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|p| p.report == Report::Complete)
            .take(BATCH_MAX)
            .map(|p| p.lease_id.clone())
            .collect()
    }

    /// The oldest failures (up to [`BATCH_MAX`]): (lease, error).
    pub fn failures(&self) -> Vec<(String, String)> {
        self.items
            .iter()
            .filter_map(|p| match &p.report {
                Report::Fail(e) => Some((p.lease_id.clone(), e.clone())),
                Report::Complete => None,
            })
            .take(BATCH_MAX)
            .collect()
    }

    /// Removes the result of `lease_id` (the server answered for it).
    pub fn remove(&mut self, lease_id: &str) -> Option<Pending> {
        let i = self.items.iter().position(|p| p.lease_id == lease_id)?;
        self.items.remove(i)
    }

    /// The lease of `lease_id` was renewed: keep its result until `drop_at`.
    pub fn renew(&mut self, lease_id: &str, drop_at: Instant) {
        if let Some(p) = self.items.iter_mut().find(|p| p.lease_id == lease_id) {
            p.drop_at = drop_at;
        }
    }

    /// Removes and returns the results whose lease has ended by `now`.
    pub fn take_ended(&mut self, now: Instant) -> Vec<Pending> {
        let (ended, kept): (Vec<Pending>, Vec<Pending>) =
            self.items.drain(..).partition(|p| now >= p.drop_at);
        self.items = kept.into();
        ended
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn p(id: u32, report: Report, at: Instant) -> Pending {
        Pending {
            lease_id: id.to_string(),
            report,
            drop_at: at,
        }
    }

    #[test]
    fn bounded_in_order_and_one_result_per_lease() {
        let t = Instant::now();
        let mut r = Results::new(3);
        r.push(p(1, Report::Complete, t)).ok();
        r.push(p(2, Report::Fail("x".into()), t)).ok();
        r.push(p(3, Report::Complete, t)).ok();
        assert_eq!(
            r.push(p(4, Report::Complete, t)),
            Err(Full(p(4, Report::Complete, t)))
        );
        // The same lease again replaces its result, even when full.
        assert!(r.push(p(1, Report::Fail("y".into()), t)).is_ok());
        assert_eq!(r.len(), 3);
        assert_eq!(r.completions(), vec!["3".to_string()]);
        assert_eq!(
            r.failures(),
            vec![("1".to_string(), "y".to_string()), ("2".into(), "x".into())]
        );
        assert!(r.remove("2").is_some() && r.remove("2").is_none());
        assert!(r.push(p(4, Report::Complete, t)).is_ok());
        assert_eq!(r.completions(), vec!["3".to_string(), "4".to_string()]);
    }

    #[test]
    fn batches_are_capped_and_ended_leases_are_dropped() {
        let t = Instant::now();
        let later = t + Duration::from_secs(5);
        let mut r = Results::new(1_000);
        for i in 0..250 {
            let at = if i % 2 == 0 { t } else { later };
            r.push(p(i, Report::Complete, at)).ok();
        }
        assert_eq!(r.completions().len(), BATCH_MAX);
        assert_eq!(r.completions()[0], "0");
        let ended = r.take_ended(t);
        assert_eq!(ended.len(), 125);
        assert_eq!(r.len(), 125);
        assert_eq!(r.completions()[0], "1");
        assert!(r.take_ended(t).is_empty());
        r.renew("1", later + Duration::from_secs(1));
        assert_eq!(r.take_ended(later).len(), 124);
        r.renew("1", later);
        assert_eq!(r.take_ended(later).len(), 1);
        assert!(r.is_empty());
    }
}
