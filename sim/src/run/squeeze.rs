//! The convergence phase on a disk that stays nearly full (issue 21.2,
//! [`crate::plan::Squeeze`]): when the faults stop, the capacity is cut to
//! a little above what the server needs and is never given back. Once the
//! jobs finish, the engine must free its own log and accept an enqueue
//! again, without a person, within [`FREED_WITHIN`].

use std::time::Duration;

use beaver_core::{JobId, JobSpec, Payload, UNLIMITED_ATTEMPTS};
use beaver_runtime::{Client, EngineStatus};

use super::{NodeEvent, Sim, slot_get};

/// How long after the last job finished an enqueue must be accepted: a
/// compaction held back by failures (while the jobs still held their
/// payloads) waits up to 30 s before it is tried again.
const FREED_WITHIN: Duration = Duration::from_secs(45);
/// A bound on one final job's share of a snapshot beside its id: queue,
/// counters, times, an error text.
const JOB_BYTES: u64 = 192;
/// A bound on one remembered id's share of a snapshot.
const ID_BYTES: u64 = 64;
/// Room beside the estimate: snapshot headers, sector rounding, the
/// directory's own entries.
const SLACK_BYTES: u64 = 8 << 10;
/// The smallest write to the log: a batch takes whole sectors.
const SECTOR: u64 = 512;

/// What the phase saw while the jobs drained.
#[derive(Debug, Default)]
pub(super) struct Squeezed {
    /// The capacity set.
    capacity: u64,
    /// The engine reported its disk full (in the reserve) at least once.
    saw_full: bool,
    /// The largest WAL the engine reported.
    wal_max: u64,
    /// The WAL at the last status read that found the disk full.
    full_wal: u64,
    /// The smallest WAL reported since that read.
    low_since_full: u64,
    /// The engine's incarnation at that read: a restart forgets that the
    /// disk was full (the restarted engine compacts when it finds its
    /// disk in the reserve itself).
    full_incarnation: u32,
    /// A WAL larger than this must shrink after a full phase: three
    /// segments (the one written, the one prepared, one closed) and two snapshots
    /// of the drained state at most (a compaction under pressure runs
    /// whenever two of its snapshots take less than the closed segments
    /// they let go, and the reserve keeps room for them).
    wal_freeable: u64,
}

impl Squeezed {
    /// Whether the log shrank since the disk was last seen full.
    fn shrank(&self) -> bool {
        self.low_since_full < self.full_wal
    }

    /// Notes what a status read says of the disk and the log.
    fn seen(&mut self, st: &EngineStatus, incarnation: u32) {
        let wal = st.engine.wal_bytes;
        self.wal_max = self.wal_max.max(wal);
        self.low_since_full = self.low_since_full.min(wal);
        if st.queue.stats.disk_full {
            self.saw_full = true;
            self.full_wal = wal;
            self.low_since_full = wal;
            self.full_incarnation = incarnation;
        }
    }
}

impl Sim {
    /// If the plan squeezes: cuts the disk's capacity to what the server
    /// has now, plus its reserve (two segments and a snapshot of the
    /// state now, or room for the two snapshots of the drained state a
    /// compaction writes, whichever is more), the drain's records at
    /// worst (see `drain`) and the plan's room, and at
    /// least to what the drained log needs: three segments, two kept
    /// snapshots and one being written, with the reserve and the segment
    /// it may owe beside them. Snapshots are bounded from the model (final
    /// jobs keep no payload), so the engine is never asked to fit in less
    /// than its own reserve promises.
    pub(super) fn squeeze_begin(&mut self) {
        let Some(room) = self.plan.squeeze.as_ref().map(|s| s.room_bytes) else {
            return;
        };
        let seg = self.plan.engine.segment_bytes;
        let (drained, now, drain) = {
            let w = self.world.lock();
            let jobs: u64 = w
                .model
                .jobs
                .keys()
                .map(|id| id.len() as u64 + JOB_BYTES)
                .sum();
            // A job with unlimited attempts may never be final: it keeps
            // its payload in the drained state.
            let unfinished = || w.model.jobs.values().filter(|j| !j.state.is_final());
            let kept: u64 = unfinished()
                .filter(|j| j.max_attempts == UNLIMITED_ATTEMPTS)
                .map(|j| j.payload.unwrap_or(0) as u64)
                .sum();
            let base = jobs + w.model.remembered.len() as u64 * ID_BYTES + SLACK_BYTES;
            let drained = base + kept;
            // Each attempt left (one for a job with unlimited attempts): a
            // dispatch, a start and an outcome, a sector each at worst (a
            // lone record is a batch of its own).
            let attempts = |j: &crate::model::MJob| match j.max_attempts {
                UNLIMITED_ATTEMPTS => 1,
                max => max.saturating_sub(j.attempt).max(1),
            };
            let drain: u64 = unfinished()
                .map(|j| u64::from(attempts(j)) * 3 * SECTOR)
                .sum();
            (drained, base + w.model.pending_payload_bytes(), drain)
        };
        let used = self.disk.used_bytes();
        // The drain's records go to new segments: whole ones.
        let drain = drain.div_ceil(seg) * seg;
        let reserve = 2 * seg + drain + now.max(2 * drained);
        let capacity = (used + reserve + room).max(6 * seg + 3 * drained + now);
        self.log(format!(
            "squeeze: capacity {capacity} B for good ({used} B used, snapshot now at most {now} B, drained {drained} B)"
        ));
        self.disk.set_capacity(capacity);
        self.squeezed = Some(Squeezed {
            capacity,
            wal_freeable: 3 * seg + 2 * drained,
            ..Squeezed::default()
        });
    }

    /// Notes what a status read in the convergence phase says of the disk.
    pub(super) fn squeeze_seen(&mut self, st: &EngineStatus) {
        if let Some(s) = self.squeezed.as_mut() {
            s.seen(st, self.incarnation);
        }
    }

    /// The jobs are final: within [`FREED_WITHIN`], the engine leaves its
    /// reserve and an enqueue is accepted (the probe's job is then
    /// submitted and acknowledged like any other). True at once if the
    /// plan does not squeeze; false after a violation.
    pub(super) async fn squeeze_check(&mut self) -> bool {
        let Some(mut s) = self.squeezed.take() else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + FREED_WITHIN;
        let mut probes = 0u32;
        let mut accepted = false;
        let mut last = None;
        loop {
            if self.violated() {
                return false;
            }
            if let Ok(NodeEvent::Stopped(_, r)) = self.events.try_recv() {
                self.violate(format!("the engine stopped on the squeezed disk: {r:?}"));
                return false;
            }
            let Some(client) = slot_get(&self.slot) else {
                self.violate("no engine on the squeezed disk");
                return false;
            };
            if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(5), client.status()).await
            {
                s.seen(&st, self.incarnation);
                if !accepted && !st.queue.stats.disk_full && self.probe(&client, probes).await {
                    accepted = true;
                }
                // After a full phase, the log shrinks too (the mark), if
                // not by the time the enqueue is accepted then soon after.
                if accepted && (!s.saw_full || s.shrank()) {
                    self.squeeze_freed(&s, &st);
                    return true;
                }
                probes += 1;
                last = Some(st);
            }
            if tokio::time::Instant::now() >= deadline && accepted {
                return self.squeeze_unshrunk(&s, last.as_ref());
            }
            if tokio::time::Instant::now() >= deadline {
                let used = self.disk.used_bytes();
                self.violate(format!(
                    "liveness: the disk did not free itself: {} {} s after the jobs finished on a disk of {} B ({used} B used); the engine: {:?}",
                    "no enqueue accepted",
                    FREED_WITHIN.as_secs(),
                    s.capacity,
                    last.map(|st| (st.queue.stats.disk_full, st.engine)),
                ));
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An enqueue was accepted: marks the phase if the disk had been full
    /// and the log shrank since.
    fn squeeze_freed(&self, s: &Squeezed, st: &EngineStatus) {
        let now = st.engine.wal_bytes;
        self.log(format!(
            "squeeze: enqueue accepted; the disk was {}full, WAL {now} B (at most {} B)",
            if s.saw_full { "" } else { "never " },
            s.wal_max
        ));
        if s.saw_full && s.shrank() {
            self.mark("liveness: disk freed itself after a full phase");
        }
    }

    /// The enqueue was accepted but the log did not shrink within
    /// [`FREED_WITHIN`]: a violation if the disk had been full (for the
    /// engine running now) and the WAL then was past what a compaction
    /// would free (see `Squeezed::wal_freeable`).
    fn squeeze_unshrunk(&mut self, s: &Squeezed, last: Option<&EngineStatus>) -> bool {
        let wal = last.map_or(0, |st| st.engine.wal_bytes);
        let same_engine = s.full_incarnation == self.incarnation;
        if s.saw_full && same_engine && !s.shrank() && s.full_wal > s.wal_freeable {
            self.violate(format!(
                "liveness: the log never shrank after a full phase: WAL {wal} B {} s after the jobs finished, {} B when the disk was last full (past {} B a compaction frees it)",
                FREED_WITHIN.as_secs(),
                s.full_wal,
                s.wal_freeable,
            ));
            return false;
        }
        self.log(format!(
            "squeeze: enqueue accepted; the log did not shrink (WAL {wal} B, the disk was {}full)",
            if s.saw_full { "" } else { "never " },
        ));
        true
    }

    /// Enqueues one small job (`squeeze-N`); whether it was accepted.
    async fn probe(&mut self, client: &Client, n: u32) -> bool {
        let id = format!("squeeze-{n}");
        let (Ok(payload), Ok(jid)) = (Payload::from_json(b"{}"), JobId::from_client(&id)) else {
            return false;
        };
        let mut spec = JobSpec::new(payload);
        spec.id = Some(jid);
        self.world.lock().submitted.insert(id.clone());
        let r = tokio::time::timeout(Duration::from_secs(10), client.enqueue(vec![spec])).await;
        let mut w = self.world.lock();
        w.log(format!("squeeze: enqueue {id} -> {r:?}"));
        match r {
            Ok(Ok(answers)) => {
                for a in answers {
                    w.acked.insert(a.id.to_string());
                }
                true
            }
            _ => false,
        }
    }
}
