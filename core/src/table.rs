//! The job table: every job the core knows, addressable by id and by slot.

use crate::footprint::Footprint;
use crate::index::IdIndex;
use crate::job::{JobId, JobState, Payload};
use crate::time::UnixMillis;

/// Which ordering structure currently holds a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// In no index (pending with a proposal in flight).
    Nowhere,
    /// Pending and runnable now.
    Ready,
    /// Pending until `run_at`.
    Scheduled,
    /// In flight, ordered by lease deadline.
    Leased,
    /// Final, ordered by finish time.
    Finished,
}

/// One job. Field order keeps the struct small (~100 bytes).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: JobId,
    /// `None` once completed or cancelled: nothing will run it again.
    pub payload: Option<Payload>,
    pub last_error: Option<Box<str>>,
    pub seq: u64,
    pub created_at: UnixMillis,
    pub run_at: UnixMillis,
    /// The lease deadline while in flight; the finish time once final.
    pub state_at: UnixMillis,
    pub timeout_ms: u64,
    pub priority: i32,
    pub attempt: u32,
    pub max_attempts: u32,
    pub queue: u32,
    pub state: JobState,
    pub place: Place,
    /// A proposal about this job awaits durability: propose nothing else.
    pub reserved: bool,
    /// Who in this process holds the job's current attempt: it proposed
    /// the dispatch and has had no outcome yet (not durable state: a
    /// restart clears it).
    pub holder: Holder,
    /// Durable: the current attempt's start is logged (its dispatch said
    /// it started, or a start record followed), so a crash counts it.
    /// Only ever set while in flight.
    pub started: bool,
    /// Not durable: the last recovery gave this job's attempt back
    /// uncounted (it had not started, as far as the log knows). Until its
    /// next counted attempt it is never dispatched ahead of a free worker,
    /// so a job that kills the server when it starts cannot loop.
    pub suspect: bool,
}

/// Who holds an attempt in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody: not in flight, or in flight since before a restart.
    None,
    /// The built-in worker pool.
    Pool,
    /// An external worker, through a lease.
    Lease,
}

impl Holder {
    /// Whether anyone in this process holds the attempt.
    pub(crate) fn holds(self) -> bool {
        self != Holder::None
    }
}

/// Slots per chunk of [`Slots`] (4,096 jobs, about 450 KiB).
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

/// Slot storage in fixed-size chunks. Growing adds a chunk and never moves
/// a job: no copy of the whole table (which would stall the core task for
/// tens of milliseconds at a million jobs, and hold two copies meanwhile).
#[derive(Clone, Default)]
struct Slots {
    chunks: Vec<Box<[Option<Entry>]>>,
    len: usize,
}

impl Slots {
    fn get(&self, pos: usize) -> Option<&Option<Entry>> {
        if pos >= self.len {
            return None;
        }
        self.chunks.get(pos >> CHUNK_BITS)?.get(pos & (CHUNK - 1))
    }

    fn get_mut(&mut self, pos: usize) -> Option<&mut Option<Entry>> {
        if pos >= self.len {
            return None;
        }
        self.chunks
            .get_mut(pos >> CHUNK_BITS)?
            .get_mut(pos & (CHUNK - 1))
    }

    /// Appends `e`; returns its position.
    fn push(&mut self, e: Option<Entry>) -> usize {
        let pos = self.len;
        if pos == self.chunks.len() * CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        self.len += 1;
        if let Some(s) = self.get_mut(pos) {
            *s = e;
        }
        pos
    }

    fn reserve(&mut self, additional: usize) {
        let wanted = (self.len + additional).div_ceil(CHUNK);
        self.chunks
            .reserve(wanted.saturating_sub(self.chunks.len()));
    }

    fn iter(&self) -> impl Iterator<Item = &Option<Entry>> {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }
}

/// Slot-addressed storage with an id index. Slots are reused; they are an
/// in-memory detail, never written to the log.
///
/// Jobs inserted with [`Table::insert_deferred`] are found by id at once
/// like any other (by a scan until indexed); [`Table::index_deferred`]
/// indexes them in one pass in table order, into a table sized once,
/// instead of one random probe per job and a rehash at every doubling.
#[derive(Clone)]
pub(crate) struct Table {
    slots: Slots,
    free: Vec<u32>,
    by_id: IdIndex,
    /// `(hash, slot)` of jobs in the table but not yet in `by_id`.
    deferred: Vec<(u32, u32)>,
    /// The sum of the jobs' [`Footprint`]s, kept as they change.
    footprint: Footprint,
}

impl Table {
    pub(crate) fn new(seed: u64) -> Table {
        Table {
            slots: Slots::default(),
            free: Vec::new(),
            by_id: IdIndex::new(seed),
            deferred: Vec::new(),
            footprint: Footprint::default(),
        }
    }

    /// The sum of the jobs' [`Footprint`]s (constant time).
    pub(crate) fn footprint(&self) -> Footprint {
        self.footprint
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len() + self.deferred.len()
    }

    /// Jobs inserted with [`Table::insert_deferred`] and not indexed yet.
    pub(crate) fn deferred_len(&self) -> usize {
        self.deferred.len()
    }

    pub(crate) fn slot_of(&self, id: &str) -> Option<u32> {
        let slots = &self.slots;
        self.by_id.get(id, |p| entry_id(slots, p)).or_else(|| {
            if self.deferred.is_empty() {
                return None;
            }
            let h = self.by_id.hash(id);
            self.deferred
                .iter()
                .find(|&&(eh, p)| eh == h && entry_id(slots, p).as_str() == id)
                .map(|&(_, p)| p)
        })
    }

    pub(crate) fn get(&self, slot: u32) -> &Entry {
        match self.slots.get(slot as usize) {
            Some(Some(e)) => e,
            _ => panic!("job table: slot {slot} is empty (index out of step with table)"),
        }
    }

    /// Changes the job in `slot` with `change`, keeping the footprint in
    /// step: the way to change what a snapshot holds of a job (its state,
    /// attempts, times, payload, error). [`Table::get_mut`] is for the
    /// rest (place, reservation, holder, suspicion).
    pub(crate) fn edit<R>(&mut self, slot: u32, change: impl FnOnce(&mut Entry) -> R) -> R {
        let e = self.get_mut(slot);
        let before = Footprint::of(e);
        let result = change(e);
        let after = Footprint::of(e);
        self.footprint.sub(before);
        self.footprint.add(after);
        result
    }

    /// The job in `slot`, to change what a snapshot does not hold of it
    /// (see [`Table::edit`]).
    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut Entry {
        match self.slots.get_mut(slot as usize) {
            Some(Some(e)) => e,
            _ => panic!("job table: slot {slot} is empty (index out of step with table)"),
        }
    }

    /// Inserts a job whose id is not present; returns its slot.
    pub(crate) fn insert(&mut self, entry: Entry) -> u32 {
        let h = self.by_id.hash(entry.id.as_str());
        let slot = self.store(entry);
        self.by_id.insert_hashed(h, slot);
        slot
    }

    /// [`Table::insert`], leaving the id's indexing to the next
    /// [`Table::index_deferred`] (or any removal).
    pub(crate) fn insert_deferred(&mut self, entry: Entry) -> u32 {
        let h = self.by_id.hash(entry.id.as_str());
        let slot = self.store(entry);
        self.deferred.push((h, slot));
        slot
    }

    fn store(&mut self, entry: Entry) -> u32 {
        self.footprint.add(Footprint::of(&entry));
        let slot = match self.free.pop() {
            Some(s) => s,
            None => self.slots.push(None) as u32,
        };
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(entry);
        }
        slot
    }

    /// Indexes the jobs [`Table::insert_deferred`] left unindexed.
    pub(crate) fn index_deferred(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let mut keys = std::mem::take(&mut self.deferred);
        self.by_id.insert_many(&mut keys);
        // Keep a small buffer for the next records of a replay; give a
        // big one back.
        if keys.capacity() <= 1 << 12 {
            keys.clear();
            self.deferred = keys;
        }
    }

    /// Appends a job without indexing it (bulk restore into an empty
    /// table); returns its slot and its id's hash for [`Table::index_bulk`].
    pub(crate) fn push_unindexed(&mut self, entry: Entry) -> (u32, u32) {
        debug_assert!(self.free.is_empty());
        self.footprint.add(Footprint::of(&entry));
        let h = self.by_id.hash(entry.id.as_str());
        (self.slots.push(Some(entry)) as u32, h)
    }

    /// Indexes the jobs appended by [`Table::push_unindexed`]; `Err` names
    /// an id that appears twice (the table is then unusable).
    pub(crate) fn index_bulk(&mut self, keys: Vec<(u32, u32)>) -> Result<(), JobId> {
        self.index_deferred();
        let slots = &self.slots;
        self.by_id
            .insert_bulk(keys, |p| entry_id(slots, p))
            .map_err(|pos| entry_id(slots, pos).clone())
    }

    /// Makes room for `additional` more jobs without rehashing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.index_deferred();
        self.slots.reserve(additional);
        self.by_id.reserve(additional);
    }

    /// Removes the job in `slot` and returns it.
    pub(crate) fn remove(&mut self, slot: u32) -> Entry {
        self.index_deferred();
        let slots = &self.slots;
        let id = entry_id(slots, slot);
        self.by_id.remove(id.as_str(), |p| entry_id(slots, p));
        self.free.push(slot);
        match self.slots.get_mut(slot as usize).and_then(Option::take) {
            Some(e) => {
                self.footprint.sub(Footprint::of(&e));
                e
            }
            None => panic!("job table: slot {slot} vanished during removal"),
        }
    }

    /// Every job with its slot, in slot order (not a meaningful order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as u32, e)))
    }

    /// Checks that every job is indexed exactly once (in the index or
    /// deferred) and that the id index holds nothing else.
    pub(crate) fn check_index(&self) -> Result<(), String> {
        let live = self.iter().count();
        if self.len() != live {
            return Err(format!(
                "the id index holds {} jobs ({} deferred); the table {live}",
                self.len(),
                self.deferred.len()
            ));
        }
        let slots = &self.slots;
        for &(h, slot) in &self.deferred {
            let id = match slots.get(slot as usize) {
                Some(Some(e)) => &e.id,
                _ => {
                    return Err(format!(
                        "a deferred index entry points at empty slot {slot}"
                    ));
                }
            };
            if self.by_id.hash(id.as_str()) != h {
                return Err(format!(
                    "job {id}: its deferred index entry has another hash"
                ));
            }
            if self
                .by_id
                .get(id.as_str(), |p| entry_id(slots, p))
                .is_some()
            {
                return Err(format!("job {id}: indexed and deferred both"));
            }
        }
        Ok(())
    }
}

fn entry_id(slots: &Slots, pos: u32) -> &JobId {
    match slots.get(pos as usize) {
        Some(Some(e)) => &e.id,
        _ => panic!("job table: index points at empty slot {pos}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, seq: u64) -> Entry {
        Entry {
            id: JobId::parse(id).unwrap(),
            payload: None,
            last_error: None,
            seq,
            created_at: 0,
            run_at: 0,
            state_at: 0,
            timeout_ms: 0,
            priority: 0,
            attempt: 0,
            max_attempts: 1,
            queue: 0,
            state: JobState::Pending,
            place: Place::Nowhere,
            reserved: false,
            holder: Holder::None,
            started: false,
            suspect: false,
        }
    }

    #[test]
    fn deferred_jobs_are_found_counted_removed_and_indexed() {
        let mut t = Table::new(7);
        let a = t.insert(entry("a", 1));
        let n = CHUNK as u64 + 3;
        let slots: Vec<u32> = (0..n)
            .map(|i| t.insert_deferred(entry(&format!("~{}", i + 2), i + 2)))
            .collect();
        assert_eq!(t.len(), n as usize + 1);
        assert_eq!(t.deferred.len(), n as usize, "nothing indexed yet");
        t.check_index().unwrap();
        assert_eq!(t.slot_of("a"), Some(a));
        assert_eq!(t.slot_of("~2"), Some(slots[0]), "found before indexing");
        assert_eq!(t.slot_of(&format!("~{}", n + 1)), slots.last().copied());
        assert_eq!(t.slot_of("~0"), None);
        // A removal indexes first, then removes: nothing else is lost.
        assert_eq!(t.remove(slots[5]).seq, 7);
        assert!(t.deferred.is_empty());
        t.check_index().unwrap();
        assert_eq!(t.len(), n as usize);
        assert_eq!(t.slot_of("~7"), None);
        assert_eq!(t.slot_of("~8"), Some(slots[6]));
        // Deferred again, into the freed slot; then indexed in one pass.
        let b = t.insert_deferred(entry("b", 99));
        assert_eq!(b, slots[5], "freed slots are reused");
        t.index_deferred();
        t.check_index().unwrap();
        assert!(t.deferred.is_empty());
        assert_eq!(t.slot_of("b"), Some(b));
        assert_eq!(t.len(), n as usize + 1);
        for (i, &s) in slots.iter().enumerate().filter(|&(i, _)| i != 5) {
            assert_eq!(t.slot_of(&format!("~{}", i + 2)), Some(s));
        }
    }

    #[test]
    fn two_deferred_ids_whose_hashes_collide_are_told_apart() {
        let mut t = Table::new(7);
        // 32-bit hashes: a birthday pair among 300,000 ids, fixed by the seed.
        let mut seen = std::collections::HashMap::new();
        let (a, b) = (0..300_000u32)
            .find_map(|i| {
                seen.insert(t.by_id.hash(&format!("j{i}")), i)
                    .map(|j| (j, i))
            })
            .expect("a colliding pair among 300,000 ids");
        let (a, b) = (format!("j{a}"), format!("j{b}"));
        let sa = t.insert_deferred(entry(&a, 1));
        let sb = t.insert_deferred(entry(&b, 2));
        assert_eq!((t.slot_of(&a), t.slot_of(&b)), (Some(sa), Some(sb)));
    }

    #[test]
    fn an_index_out_of_step_is_reported() {
        let mut t = Table::new(7);
        let a = t.insert_deferred(entry("a", 1));
        // The same job both indexed and deferred.
        let h = t.by_id.hash("a");
        t.by_id.insert_hashed(h, a);
        let e = t.check_index().unwrap_err();
        assert!(e.contains("holds 2 jobs (1 deferred); the table 1"), "{e}");
        t.deferred.clear();
        t.check_index().unwrap();
        // A deferred entry with another job's hash.
        let b = t.insert_deferred(entry("b", 2));
        t.deferred[0] = (h, b);
        let e = t.check_index().unwrap_err();
        assert!(
            e.contains("job b: its deferred index entry has another hash"),
            "{e}"
        );
    }

    #[test]
    fn insert_find_remove_reuse() {
        let mut t = Table::new(7);
        let a = t.insert(entry("a", 1));
        let b = t.insert(entry("b", 2));
        assert_eq!(t.slot_of("a"), Some(a));
        assert_eq!(t.slot_of("b"), Some(b));
        assert_eq!(t.remove(a).seq, 1);
        assert_eq!(t.slot_of("a"), None);
        let c = t.insert(entry("c", 3));
        assert_eq!(c, a, "freed slots are reused");
        assert_eq!(t.slot_of("c"), Some(c));
        assert_eq!(t.len(), 2);
        // Past two chunk boundaries: growing never moves or loses a job.
        let n = 2 * CHUNK as u64 + 7;
        for i in 0..n {
            t.insert(entry(&format!("j{i}"), 10 + i));
        }
        for i in 0..n {
            assert_eq!(t.get(t.slot_of(&format!("j{i}")).unwrap()).seq, 10 + i);
        }
        assert_eq!(t.iter().count(), n as usize + 2);
        let last = t.slot_of(&format!("j{}", n - 1)).unwrap();
        assert_eq!(t.remove(last).seq, 10 + n - 1);
        assert_eq!(t.iter().count(), n as usize + 1);
        assert!(t.iter().all(|(slot, e)| t.get(slot).seq == e.seq));
    }

    #[test]
    fn entry_stays_small() {
        assert!(
            std::mem::size_of::<Option<Entry>>() <= 112,
            "{}",
            std::mem::size_of::<Option<Entry>>()
        );
    }
}
