//! The core's invariants, checked in full: every job on its own, the
//! figures kept alongside the jobs against a recount, and the proposals.

use std::cmp::Reverse;

use crate::job::JobState;
use crate::machine::{Core, CoreParts};
use crate::state::State;
use crate::stats::StateCounts;
use crate::table::{Entry, Place};

/// What a pass over every job counts, to compare with the kept figures.
#[derive(Default)]
struct Recount {
    counts: StateCounts,
    /// Jobs per [`Place`], indexed by its discriminant.
    placed: [usize; 5],
    payload_bytes: u64,
    held: u64,
}

/// Checks every invariant; `Err` names the first one broken.
pub(crate) fn check_full(q: &Core) -> Result<(), String> {
    let p = q.parts();
    let s = p.state;
    s.table.check_index()?;
    let mut recount = Recount::default();
    for (slot, e) in s.table.iter() {
        check_job(&p, slot, e, &mut recount)?;
    }
    check_figures(&p, &recount)?;
    check_indexes(s, &recount)?;
    check_proposals(&p)?;
    let cap = u64::from(q.config().workers) + u64::from(q.config().prefetch);
    if p.attempts_held > cap {
        return Err(format!(
            "{} attempts held, more than workers + prefetch = {cap}",
            p.attempts_held
        ));
    }
    Ok(())
}

/// One job: indexed by its id, within its limits, filed where its state
/// says, and counted into `recount`.
fn check_job(p: &CoreParts<'_>, slot: u32, e: &Entry, recount: &mut Recount) -> Result<(), String> {
    let s = p.state;
    let id = &e.id;
    match e.state {
        JobState::Pending => recount.counts.pending += 1,
        JobState::InFlight => recount.counts.in_flight += 1,
        JobState::Completed => recount.counts.completed += 1,
        JobState::Dead => recount.counts.dead += 1,
        JobState::Cancelled => recount.counts.cancelled += 1,
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
    if s.remembered.contains(id.as_str()) {
        return Err(format!("job {id} is both live and remembered as purged"));
    }
    if p.enqueuing.contains_key(id) {
        return Err(format!("job {id} is both live and being enqueued"));
    }
    if e.held {
        recount.held += 1;
        if !matches!(e.state, JobState::Pending | JobState::InFlight) {
            return Err(format!(
                "job {id} is marked held but is {}",
                e.state.as_str()
            ));
        }
    }
    check_place(s, slot, e)?;
    recount.placed[e.place as usize] += 1;
    if matches!(e.state, JobState::Pending | JobState::InFlight) {
        match &e.payload {
            Some(pl) => recount.payload_bytes += pl.len() as u64,
            None => {
                return Err(format!(
                    "job {id} is {} without a payload",
                    e.state.as_str()
                ));
            }
        }
    }
    Ok(())
}

/// The job is filed in the index its state calls for, and present there.
fn check_place(s: &State, slot: u32, e: &Entry) -> Result<(), String> {
    let id = &e.id;
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
    Ok(())
}

/// The figures kept alongside the jobs equal a recount.
fn check_figures(p: &CoreParts<'_>, recount: &Recount) -> Result<(), String> {
    let s = p.state;
    if recount.counts != s.counts {
        return Err(format!(
            "state counts {:?} differ from a recount {:?}",
            s.counts, recount.counts
        ));
    }
    if recount.payload_bytes != s.pending_payload_bytes {
        return Err(format!(
            "pending payload bytes {} differ from a recount {}",
            s.pending_payload_bytes, recount.payload_bytes
        ));
    }
    if recount.held != p.attempts_held {
        return Err(format!(
            "held attempt count {} differs from a recount {}",
            p.attempts_held, recount.held
        ));
    }
    Ok(())
}

/// Each ordered index holds exactly the jobs filed in it.
fn check_indexes(s: &State, recount: &Recount) -> Result<(), String> {
    let ready: usize = s.queues.iter().map(|q| q.ready.len()).sum();
    let sizes = [
        (Place::Ready, ready),
        (Place::Scheduled, s.scheduled.len()),
        (Place::Leased, s.leases.len()),
        (Place::Finished, s.finished.len()),
    ];
    for (place, len) in sizes {
        if recount.placed[place as usize] != len {
            return Err(format!(
                "index {place:?} holds {len} entries for {} jobs",
                recount.placed[place as usize]
            ));
        }
    }
    if s.dead.len() as u64 != recount.counts.dead {
        return Err(format!(
            "dead index holds {} entries for {} dead jobs",
            s.dead.len(),
            recount.counts.dead
        ));
    }
    Ok(())
}

/// Unapplied records follow the applied LSN densely up to the next LSN,
/// and no reply waits for an LSN never proposed.
fn check_proposals(p: &CoreParts<'_>) -> Result<(), String> {
    let mut expect = p.state.applied_lsn + 1;
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
    Ok(())
}
