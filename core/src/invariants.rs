//! The core's invariants, checked in full: every job on its own, the
//! figures kept alongside the jobs against a recount, and the proposals.

use std::cmp::Reverse;

use crate::footprint::Footprint;
use crate::job::JobState;
use crate::machine::{Core, CoreParts};
use crate::state::State;
use crate::stats::StateCounts;
use crate::table::{Entry, Holder, Place};

/// What a pass over every job counts, to compare with the kept figures.
#[derive(Default)]
struct Recount {
    counts: StateCounts,
    /// Jobs per [`Place`], indexed by its discriminant.
    placed: [usize; 5],
    payload_bytes: u64,
    /// Attempts held by the pool, and by leases.
    held: u64,
    leased: u64,
    /// Jobs per queue and state, and scheduled per queue.
    queues: Vec<(StateCounts, u64)>,
    footprint: Footprint,
}

impl Recount {
    /// Nothing counted yet, with a zero row for each of `queues` queues.
    fn for_queues(queues: usize) -> Recount {
        Recount {
            queues: vec![(StateCounts::default(), 0); queues],
            ..Recount::default()
        }
    }
}

/// Checks every invariant; `Err` names the first one broken.
pub(crate) fn check_full(q: &Core) -> Result<(), String> {
    let p = q.parts();
    let s = p.state;
    s.table.check_index()?;
    let mut recount = Recount::for_queues(s.queues.len());
    for (slot, e) in s.table.iter() {
        check_job(&p, slot, e, &mut recount)?;
    }
    check_figures(&p, &recount)?;
    check_queues(s, &recount)?;
    check_indexes(s, &recount)?;
    check_proposals(&p)?;
    q.check_pool_leases()?;
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
    let per_queue = &mut recount.queues[e.queue as usize];
    for counts in [&mut recount.counts, &mut per_queue.0] {
        match e.state {
            JobState::Pending => counts.pending += 1,
            JobState::InFlight => counts.in_flight += 1,
            JobState::Completed => counts.completed += 1,
            JobState::Dead => counts.dead += 1,
            JobState::Cancelled => counts.cancelled += 1,
        }
    }
    if e.place == Place::Scheduled {
        per_queue.1 += 1;
    }
    recount.footprint.add(Footprint::of(e));
    check_number_and_flags(s, slot, e)?;
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
    match e.holder {
        Holder::None => {}
        Holder::Pool => recount.held += 1,
        Holder::Lease => recount.leased += 1,
    }
    if e.holder.holds() && !matches!(e.state, JobState::Pending | JobState::InFlight) {
        return Err(format!(
            "job {id} is held ({:?}) but is {}",
            e.holder,
            e.state.as_str()
        ));
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

/// The job is found by its number; it is started only in flight, and
/// suspect only while not final.
fn check_number_and_flags(s: &State, slot: u32, e: &Entry) -> Result<(), String> {
    let id = &e.id;
    if s.by_seq.range_from(&(e.seq, 0)).next() != Some(&(e.seq, slot)) {
        return Err(format!(
            "job {id}: the number index does not lead to its slot"
        ));
    }
    if e.started && e.state != JobState::InFlight {
        return Err(format!(
            "job {id} is {} with a started attempt",
            e.state.as_str()
        ));
    }
    if e.suspect && e.state.is_final() {
        return Err(format!("job {id} is {} and suspect", e.state.as_str()));
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
    if recount.footprint != s.table.footprint() {
        return Err(format!(
            "the jobs' footprint {:?} differs from a recount {:?}",
            s.table.footprint(),
            recount.footprint
        ));
    }
    let remembered = crate::snapshot::remembered_len(s.remembered.iter());
    if remembered != s.remembered.encoded_bytes() {
        return Err(format!(
            "remembered ids take {} bytes in a snapshot, {remembered} by a recount",
            s.remembered.encoded_bytes()
        ));
    }
    if recount.held != p.attempts_held {
        return Err(format!(
            "held attempt count {} differs from a recount {}",
            p.attempts_held, recount.held
        ));
    }
    if recount.leased != p.leases_held {
        return Err(format!(
            "{} jobs are held by leases, but {} leases are current or granted",
            recount.leased, p.leases_held
        ));
    }
    Ok(())
}

/// Each queue's figures equal a recount, and the pause index holds
/// exactly the paused queues.
fn check_queues(s: &State, recount: &Recount) -> Result<(), String> {
    for (q, (counts, scheduled)) in s.queues.iter().zip(&recount.queues) {
        if q.counts != *counts || q.scheduled != *scheduled {
            return Err(format!(
                "queue {}: counts {:?} and {} scheduled differ from a recount {counts:?} and {scheduled}",
                q.name, q.counts, q.scheduled
            ));
        }
    }
    let paused = s.queues.iter().filter(|q| q.paused_until != 0).count();
    let indexed = s.pauses.iter().all(|&(t, q)| {
        s.queues
            .get(q as usize)
            .is_some_and(|x| x.paused_until == t)
    });
    if paused != s.pauses.len() || !indexed {
        return Err(format!(
            "{paused} queues are paused; the pause index holds {:?}",
            s.pauses
        ));
    }
    if s.by_seq.len() != s.table.len() {
        return Err(format!(
            "the number index holds {} jobs; the table {}",
            s.by_seq.len(),
            s.table.len()
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

#[cfg(test)]
pub(crate) mod tests {
    //! The checker itself: every core test leans on it after each step, so
    //! a check that cannot fail would weaken all of them unseen.

    use super::*;
    use crate::Config;
    use crate::job::{JobId, JobSpec, NewJob, Payload, QueueName};
    use crate::protocol::{Input, RequestId};
    use crate::record::{Op, Record};

    /// A pass of `check_job` over every job of `parts`, each passing.
    fn recounted(parts: &CoreParts<'_>) -> Recount {
        let mut recount = Recount::for_queues(parts.state.queues.len());
        for (slot, e) in parts.state.table.iter() {
            check_job(parts, slot, e, &mut recount).unwrap();
        }
        recount
    }

    /// A rebuilt core holding one pending job `a`, due at once.
    pub(crate) fn one_pending() -> Core {
        let job = NewJob {
            id: JobId::parse("a").unwrap(),
            queue: QueueName::default(),
            payload: Payload::from_json(b"1").unwrap(),
            priority: 0,
            max_attempts: 1,
            timeout_ms: 100,
            run_at: 10,
        };
        let op = Op::Enqueue { jobs: vec![job] };
        let q = Core::recover(Config::default(), None, [Record { lsn: 1, at: 10, op }]).unwrap();
        check_full(&q).unwrap();
        q
    }

    #[test]
    fn figures_out_of_step_with_the_jobs_are_reported() {
        let q = one_pending();
        let parts = q.parts();
        let recount = recounted(&parts);
        let mut state = parts.state.clone();
        state.counts.pending += 1;
        let broken = CoreParts {
            state: &state,
            ..parts
        };
        let e = check_figures(&broken, &recount).unwrap_err();
        assert!(e.contains("state counts"), "{e}");
    }

    /// The checker's view of the ids on their way to the log (it reports
    /// a job both live and being enqueued) holds them.
    #[test]
    fn the_checker_sees_the_ids_on_their_way_to_the_log() {
        let mut q = one_pending();
        let b = JobId::parse("b").unwrap();
        let spec = JobSpec::new(Payload::from_json(b"1").unwrap()).with_id(b.clone());
        let enqueue = Input::Enqueue {
            req: RequestId(1),
            jobs: vec![spec],
        };
        q.step(20, enqueue, &mut Vec::new());
        assert!(q.parts().enqueuing.contains_key(&b));
        check_full(&q).unwrap();
    }

    #[test]
    fn proposals_out_of_step_with_the_applied_lsn_are_reported() {
        let q = one_pending();
        let parts = q.parts();
        check_proposals(&parts).unwrap();
        let next = parts.next_lsn;
        let record = Record {
            lsn: next + 1,
            at: 10,
            op: Op::Enqueue { jobs: Vec::new() },
        };
        let gap = CoreParts {
            unapplied: vec![&record],
            next_lsn: next + 2,
            ..q.parts()
        };
        let e = check_proposals(&gap).unwrap_err();
        assert!(e.contains("expected"), "{e}");
        let ahead = CoreParts {
            next_lsn: next + 1,
            ..q.parts()
        };
        let e = check_proposals(&ahead).unwrap_err();
        assert!(e.contains("does not follow"), "{e}");
        let waits = CoreParts {
            waiting_max: Some(next),
            ..q.parts()
        };
        let e = check_proposals(&waits).unwrap_err();
        assert!(e.contains("never proposed"), "{e}");
    }

    #[test]
    fn a_finished_job_missing_from_its_index_is_reported() {
        let q = one_pending();
        let s = q.state();
        let (slot, e) = s.table.iter().next().unwrap();
        let unindexed = Entry {
            place: Place::Finished,
            state: JobState::Completed,
            ..e.clone()
        };
        let broken = check_place(s, slot, &unindexed).unwrap_err();
        assert!(broken.contains("missing from its index"), "{broken}");
    }

    #[test]
    fn a_queue_whose_scheduled_count_alone_is_off_is_reported() {
        let q = one_pending();
        let parts = q.parts();
        let recount = recounted(&parts);
        check_queues(parts.state, &recount).unwrap();
        let mut state = parts.state.clone();
        state.queues[0].scheduled += 1;
        let e = check_queues(&state, &recount).unwrap_err();
        assert!(e.contains("scheduled differ"), "{e}");
    }

    #[test]
    fn a_pause_indexed_at_another_time_is_reported() {
        let q = one_pending();
        let recount = Recount::for_queues(q.state().queues.len());
        let mut state = q.state().clone();
        state.queues[0].counts = StateCounts::default();
        state.queues[0].scheduled = 0;
        state.queues[0].paused_until = 50;
        state.pauses.insert((50, 0));
        check_queues(&state, &recount).unwrap();
        state.pauses = Default::default();
        state.pauses.insert((60, 0));
        let e = check_queues(&state, &recount).unwrap_err();
        assert!(e.contains("the pause index holds"), "{e}");
    }

    #[test]
    fn an_index_entry_of_no_job_is_reported() {
        let q = one_pending();
        let parts = q.parts();
        let recount = recounted(&parts);
        check_indexes(parts.state, &recount).unwrap();
        let mut state = parts.state.clone();
        state.scheduled.insert((99, 99, 99));
        let e = check_indexes(&state, &recount).unwrap_err();
        assert!(e.contains("Scheduled holds 1 entries for 0 jobs"), "{e}");
    }

    #[test]
    fn a_job_not_yet_due_filed_as_ready_is_reported() {
        let q = one_pending();
        let s = q.state();
        let (slot, e) = s.table.iter().next().unwrap();
        let early = Entry {
            run_at: s.now + 100,
            ..e.clone()
        };
        let broken = check_place(s, slot, &early).unwrap_err();
        assert!(broken.contains("expected Scheduled"), "{broken}");
    }

    #[test]
    fn a_job_off_its_number_or_with_flags_its_state_rules_out_is_reported() {
        let q = one_pending();
        let s = q.state();
        let (slot, e) = s.table.iter().next().unwrap();
        check_number_and_flags(s, slot, e).unwrap();
        let cases = [
            (
                Entry {
                    seq: e.seq + 1,
                    ..e.clone()
                },
                "number index",
            ),
            (
                Entry {
                    started: true,
                    ..e.clone()
                },
                "started attempt",
            ),
            (
                Entry {
                    suspect: true,
                    state: JobState::Completed,
                    ..e.clone()
                },
                "suspect",
            ),
        ];
        for (broken, why) in cases {
            let found = check_number_and_flags(s, slot, &broken).unwrap_err();
            assert!(found.contains(why), "{found}");
        }
    }

    #[test]
    fn a_job_numbered_0_or_past_the_next_number_is_reported() {
        let q = one_pending();
        let (slot, e) = q.state().table.iter().next().unwrap();
        let next = q.state().next_seq;
        for seq in [0, next] {
            // Indexed under that number too, so only the range check sees it.
            let mut state = q.state().clone();
            state.by_seq.insert((seq, slot));
            let parts = CoreParts {
                state: &state,
                ..q.parts()
            };
            let numbered = Entry { seq, ..e.clone() };
            let mut recount = Recount::for_queues(state.queues.len());
            let found = check_job(&parts, slot, &numbered, &mut recount).unwrap_err();
            assert!(found.contains(&format!("seq {seq} outside")), "{found}");
        }
    }

    #[test]
    fn a_due_job_filed_anywhere_but_ready_is_reported() {
        let q = one_pending();
        let s = q.state();
        let (slot, e) = s.table.iter().next().unwrap();
        assert_eq!(e.place, Place::Ready);
        for place in [Place::Nowhere, Place::Leased, Place::Finished] {
            let misfiled = Entry { place, ..e.clone() };
            let broken = check_place(s, slot, &misfiled).unwrap_err();
            assert!(broken.contains("expected Ready"), "{broken}");
        }
    }
}
