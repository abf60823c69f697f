//! Retention: purge records remove finished jobs (their ids remembered for
//! deduplication) and forget remembered ids, by age and by count. Purging
//! is logged, so replay never depends on the clock. One purge record is in
//! flight at a time, each within the record limits.

use super::Core;
use super::proposals::Origin;
use crate::job::JobId;
use crate::protocol::Effect;
use crate::record::Op;
use crate::record_size;
use crate::time::UnixMillis;

/// What one purge record will name.
struct PurgePick {
    /// Slots of finished jobs to remove, oldest first.
    jobs: Vec<u32>,
    /// Remembered ids to forget, oldest first.
    forget: Vec<JobId>,
    /// How many of `forget` are forgotten before their window ended.
    early: u64,
    /// The record's size bound so far.
    bytes: u64,
}

impl Core {
    /// When retention next wants a purge record (`None` while one is in flight).
    pub(super) fn purge_due_at(&self) -> Option<UnixMillis> {
        if self.purge_in_flight {
            return None;
        }
        let s = &self.state;
        let r = &self.config.retention;
        let d = &self.config.dedup;
        let mut due: Option<UnixMillis> = None;
        let mut at = |t: UnixMillis| due = Some(due.map_or(t, |n| n.min(t)));
        if let Some(&(t, _, _)) = s
            .finished
            .iter()
            .find(|&&(_, _, slot)| !s.table.get(slot).reserved)
        {
            let over = (s.finished.len() as u64) > r.finished_count_max;
            at(if over {
                s.now
            } else {
                t.saturating_add(r.finished_age_ms)
            });
        }
        if let Some(t) = s.remembered.oldest_at() {
            let over = (s.remembered.len() as u64) > d.ids_max;
            at(if over {
                s.now
            } else {
                t.saturating_add(d.window_ms)
            });
        }
        due
    }

    /// Proposes a purge record if one is due and has anything to name.
    pub(super) fn purge(&mut self, out: &mut Vec<Effect>) {
        let Some(due) = self.purge_due_at() else {
            return;
        };
        let now = self.state.now;
        if due > now {
            return;
        }
        let mut pick = self.pick_finished(now);
        self.pick_forgotten(now, &mut pick);
        if pick.jobs.is_empty() && pick.forget.is_empty() {
            return;
        }
        let jobs = pick
            .jobs
            .into_iter()
            .map(|slot| {
                self.state.table.get_mut(slot).reserved = true;
                self.state.table.get(slot).id.clone()
            })
            .collect();
        self.state.totals.dedup_early_expiries += pick.early;
        self.purge_in_flight = true;
        let forget = pick.forget;
        self.propose(Op::Purge { jobs, forget }, Origin::Purge, out);
    }

    /// The oldest finished jobs that are past their age, or over the
    /// count; as many as one record holds.
    fn pick_finished(&self, now: UnixMillis) -> PurgePick {
        let s = &self.state;
        let r = &self.config.retention;
        let per_record = self.config.limits.ids_per_record_max.max(1) as usize;
        let bytes_max = self.config.limits.record_bytes_max;
        let mut bytes = record_size::ID_LISTS;
        let mut excess = (s.finished.len() as u64).saturating_sub(r.finished_count_max);
        let mut jobs = Vec::new();
        for &(t, _, slot) in &s.finished {
            if jobs.len() >= per_record {
                break;
            }
            let e = s.table.get(slot);
            if e.reserved {
                continue;
            }
            let adds = record_size::listed_id(e.id.as_str().len());
            if !jobs.is_empty() && bytes + adds > bytes_max {
                break;
            }
            let aged = t.saturating_add(r.finished_age_ms) <= now;
            if !aged && excess == 0 {
                break;
            }
            excess = excess.saturating_sub(1);
            bytes += adds;
            jobs.push(slot);
        }
        PurgePick {
            jobs,
            forget: Vec::new(),
            early: 0,
            bytes,
        }
    }

    /// Adds to `pick` the oldest remembered ids past their window, or over
    /// the cap (counting the ids `pick` will add); as many as still fit.
    fn pick_forgotten(&self, now: UnixMillis, pick: &mut PurgePick) {
        let s = &self.state;
        let d = &self.config.dedup;
        let per_record = self.config.limits.ids_per_record_max.max(1) as usize;
        let bytes_max = self.config.limits.record_bytes_max;
        let mut remembered_after = s.remembered.len() as u64 + pick.jobs.len() as u64;
        for (t, id) in s.remembered.iter() {
            let adds = record_size::listed_id(id.as_str().len());
            let full =
                pick.bytes + adds > bytes_max && !(pick.jobs.is_empty() && pick.forget.is_empty());
            if pick.forget.len() >= per_record || full {
                break;
            }
            let aged = t.saturating_add(d.window_ms) <= now;
            let over = remembered_after > d.ids_max;
            if !aged && !over {
                break;
            }
            if !aged {
                pick.early += 1;
            }
            remembered_after -= 1;
            pick.bytes += adds;
            pick.forget.push(id.clone());
        }
    }
}
