//! The queue's invariants, checked in full.

use std::cmp::Reverse;

use crate::job::JobState;
use crate::queue::Core;
use crate::table::Place;

/// Checks every invariant; `Err` names the first one broken.
pub(crate) fn check_full(q: &Core) -> Result<(), String> {
    let p = q.parts();
    let s = p.state;
    s.table.check_index()?;
    let mut counts = crate::stats::StateCounts::default();
    let mut placed = [0usize; 5];
    let mut bytes = 0u64;
    let mut running = 0u64;
    let mut max_seq = 0;
    for (slot, e) in s.table.iter() {
        let id = &e.id;
        match e.state {
            JobState::Pending => counts.pending += 1,
            JobState::InFlight => counts.in_flight += 1,
            JobState::Completed => counts.completed += 1,
            JobState::Dead => counts.dead += 1,
            JobState::Cancelled => counts.cancelled += 1,
        }
        if s.table.slot_of(id.as_str()) != Some(slot) {
            return Err(format!("job {id}: the id index does not lead to its slot"));
        }
        if e.attempt > e.max_attempts {
            return Err(format!(
                "job {id}: attempt {} exceeds max_attempts {}",
                e.attempt, e.max_attempts
            ));
        }
        if e.seq == 0 || e.seq >= s.next_seq {
            return Err(format!("job {id}: seq {} outside 1..{}", e.seq, s.next_seq));
        }
        max_seq = max_seq.max(e.seq);
        if s.remembered.contains(id.as_str()) {
            return Err(format!("job {id} is both live and remembered as purged"));
        }
        if p.enqueuing.contains_key(id) {
            return Err(format!("job {id} is both live and being enqueued"));
        }
        if e.running {
            running += 1;
            if !matches!(e.state, JobState::Pending | JobState::InFlight) {
                return Err(format!(
                    "job {id} is marked running but is {}",
                    e.state.as_str()
                ));
            }
        }
        let want = match e.state {
            JobState::Pending if e.reserved => Place::Nowhere,
            JobState::Pending if e.run_at <= s.now => Place::Ready,
            JobState::Pending => Place::Scheduled,
            JobState::InFlight => Place::Leased,
            _ => Place::Finished,
        };
        // A scheduled job becomes ready only when time advances past run_at.
        let ok = e.place == want || (e.place == Place::Scheduled && want == Place::Ready);
        if !ok {
            return Err(format!(
                "job {id} ({}) is filed as {:?}, expected {want:?}",
                e.state.as_str(),
                e.place
            ));
        }
        let present = match e.place {
            Place::Nowhere => true,
            Place::Ready => {
                s.queues[e.queue as usize]
                    .ready
                    .contains(&(Reverse(e.priority), e.seq, slot))
            }
            Place::Scheduled => s.scheduled.contains(&(e.run_at, e.seq, slot)),
            Place::Leased => s.leases.contains(&(e.state_at, e.seq, slot)),
            Place::Finished => {
                s.finished.contains(&(e.state_at, e.seq, slot))
                    && (e.state != JobState::Dead || s.dead.contains(&(e.state_at, e.seq, slot)))
            }
        };
        if !present {
            return Err(format!("job {id} is missing from its index {:?}", e.place));
        }
        placed[e.place as usize] += 1;
        if matches!(e.state, JobState::Pending | JobState::InFlight) {
            match &e.payload {
                Some(pl) => bytes += pl.len() as u64,
                None => {
                    return Err(format!(
                        "job {id} is {} without a payload",
                        e.state.as_str()
                    ));
                }
            }
        }
    }
    if counts != s.counts {
        return Err(format!(
            "state counts {:?} differ from a recount {counts:?}",
            s.counts
        ));
    }
    if bytes != s.pending_payload_bytes {
        return Err(format!(
            "pending payload bytes {} differ from a recount {bytes}",
            s.pending_payload_bytes
        ));
    }
    if running != p.running {
        return Err(format!(
            "running count {} differs from a recount {running}",
            p.running
        ));
    }
    let ready: usize = s.queues.iter().map(|q| q.ready.len()).sum();
    let sizes = [
        (Place::Ready, ready),
        (Place::Scheduled, s.scheduled.len()),
        (Place::Leased, s.leases.len()),
        (Place::Finished, s.finished.len()),
    ];
    for (place, len) in sizes {
        if placed[place as usize] != len {
            return Err(format!(
                "index {place:?} holds {len} entries for {} jobs",
                placed[place as usize]
            ));
        }
    }
    if s.dead.len() as u64 != counts.dead {
        return Err(format!(
            "dead index holds {} entries for {} dead jobs",
            s.dead.len(),
            counts.dead
        ));
    }
    let mut expect = s.applied_lsn + 1;
    for r in &p.unapplied {
        if r.lsn != expect {
            return Err(format!(
                "unapplied record has LSN {}, expected {expect}",
                r.lsn
            ));
        }
        expect += 1;
    }
    if expect != p.next_lsn {
        return Err(format!(
            "next LSN {} does not follow the unapplied records ({expect})",
            p.next_lsn
        ));
    }
    if let Some(w) = p.waiting_max {
        if w >= p.next_lsn {
            return Err(format!(
                "a reply waits for LSN {w}, which was never proposed"
            ));
        }
    }
    let cap = u64::from(q.config().workers) + u64::from(q.config().prefetch);
    if p.running > cap {
        return Err(format!(
            "{} jobs running, more than workers + prefetch = {cap}",
            p.running
        ));
    }
    Ok(())
}
