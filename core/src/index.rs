//! A hash index from job ids to positions held elsewhere.
//!
//! Each entry is 8 bytes: 32 bits of the id's hash and a 32-bit position.
//! The id itself lives once, in the job table or the remembered-id list, and
//! is compared through a closure only when the stored hash matches. Growing
//! the index rehashes from the stored hashes, never touching the ids.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::job::JobId;

/// Maps ids to 32-bit positions; the caller resolves a position to its id.
#[derive(Clone)]
pub(crate) struct IdIndex {
    table: HashTable<(u32, u32)>,
    hasher: FixedState,
}

/// The table's 64-bit hash, rebuilt from the 32 bits kept per entry (both
/// halves, so the bucket index and the control byte each get varied bits).
fn spread(h: u32) -> u64 {
    u64::from(h) | (u64::from(h) << 32)
}

impl IdIndex {
    pub(crate) fn new(seed: u64) -> IdIndex {
        IdIndex {
            table: HashTable::new(),
            hasher: FixedState::with_seed(seed),
        }
    }

    pub(crate) fn hash(&self, id: &str) -> u32 {
        let h = self.hasher.hash_one(id);
        (h ^ (h >> 32)) as u32
    }

    /// The position stored for `id`.
    pub(crate) fn get<'a>(&self, id: &str, id_at: impl Fn(u32) -> &'a JobId) -> Option<u32> {
        let h = self.hash(id);
        self.table
            .find(spread(h), |&(eh, pos)| eh == h && id_at(pos).as_str() == id)
            .map(|&(_, pos)| pos)
    }

    /// Stores `pos` for `id`, which must not be present.
    pub(crate) fn insert(&mut self, id: &str, pos: u32) {
        let h = self.hash(id);
        self.insert_hashed(h, pos);
    }

    /// Stores `pos` for an id whose [`IdIndex::hash`] is `h`; the id must
    /// not be present.
    pub(crate) fn insert_hashed(&mut self, h: u32, pos: u32) {
        self.table
            .insert_unique(spread(h), (h, pos), |&(eh, _)| spread(eh));
    }

    /// Makes room for `keys` and orders them by the bucket each is probed
    /// at first (equal hashes side by side), so that inserting them in
    /// this order fills the table from start to end instead of by random
    /// probes; returns that bucket mask. (The bucket count is read from
    /// hashbrown's capacity rule; if the rule changed, only the order's
    /// locality would suffer.)
    fn prepare_bulk(&mut self, keys: &mut [(u32, u32)]) -> u32 {
        self.table.reserve(keys.len(), |&(eh, _)| spread(eh));
        let cap = self.table.capacity();
        let buckets = if cap < 8 { cap + 1 } else { cap * 8 / 7 };
        let mask = (buckets.next_power_of_two() - 1) as u32;
        keys.sort_unstable_by_key(|&(h, _)| (u64::from(h & mask) << 32) | u64::from(h));
        mask
    }

    /// Inserts many `(hash, pos)` pairs of ids known not to be present (nor
    /// twice among them) at once, in table order (see `prepare_bulk`).
    pub(crate) fn insert_many(&mut self, keys: &mut [(u32, u32)]) {
        self.prepare_bulk(keys);
        for &(h, pos) in keys.iter() {
            self.insert_hashed(h, pos);
        }
    }

    /// Inserts many `(hash, pos)` pairs at once, in table order (see
    /// `prepare_bulk`). Returns a position whose id was already present
    /// among them, if any.
    pub(crate) fn insert_bulk<'a>(
        &mut self,
        mut keys: Vec<(u32, u32)>,
        id_at: impl Fn(u32) -> &'a JobId,
    ) -> Result<(), u32> {
        let mask = self.prepare_bulk(&mut keys);
        for (i, &(h, pos)) in keys.iter().enumerate() {
            // Equal ids have equal hashes, so duplicates sit in the same
            // run of first buckets (side by side, as sorted).
            let dup = keys[..i]
                .iter()
                .rev()
                .take_while(|k| k.0 & mask == h & mask)
                .any(|k| k.0 == h && id_at(k.1).as_str() == id_at(pos).as_str());
            if dup {
                return Err(pos);
            }
            self.insert_hashed(h, pos);
        }
        Ok(())
    }

    /// Removes `id`; returns its position.
    pub(crate) fn remove<'a>(&mut self, id: &str, id_at: impl Fn(u32) -> &'a JobId) -> Option<u32> {
        let h = self.hash(id);
        match self
            .table
            .find_entry(spread(h), |&(eh, pos)| eh == h && id_at(pos).as_str() == id)
        {
            Ok(entry) => Some(entry.remove().0.1),
            Err(_) => None,
        }
    }

    /// Makes room for `additional` more entries.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional, |&(eh, _)| spread(eh));
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ids(n: usize) -> Vec<JobId> {
        (0..n)
            .map(|i| JobId::parse(&format!("job-{i}")).unwrap())
            .collect()
    }

    #[test]
    fn bulk_inserts_find_every_id_and_catch_a_duplicate_among_thousands() {
        let jobs = ids(10_000);
        let mut index = IdIndex::new(3);
        // Half one at a time, then half in bulk on top, then a few more.
        for (pos, id) in jobs.iter().enumerate().take(5_000) {
            index.insert(id.as_str(), pos as u32);
        }
        let mut keys: Vec<(u32, u32)> = (5_000..9_990)
            .map(|pos| (index.hash(jobs[pos].as_str()), pos as u32))
            .collect();
        index.insert_many(&mut keys);
        let rest: Vec<(u32, u32)> = (9_990..10_000)
            .map(|pos| (index.hash(jobs[pos].as_str()), pos as u32))
            .collect();
        index.insert_bulk(rest, |p| &jobs[p as usize]).unwrap();
        assert_eq!(index.len(), 10_000);
        for (pos, id) in jobs.iter().enumerate() {
            assert_eq!(
                index.get(id.as_str(), |p| &jobs[p as usize]),
                Some(pos as u32)
            );
        }
        assert_eq!(index.get("job-10000", |p| &jobs[p as usize]), None);

        // One id twice among thousands, wherever the order puts them.
        let mut twice = ids(8_000);
        twice.push(twice[4_321].clone());
        let keys: Vec<(u32, u32)> = twice
            .iter()
            .enumerate()
            .map(|(pos, id)| (index.hash(id.as_str()), pos as u32))
            .collect();
        let dup = IdIndex::new(3)
            .insert_bulk(keys, |p| &twice[p as usize])
            .unwrap_err();
        assert_eq!(twice[dup as usize].as_str(), "job-4321");
    }

    #[test]
    fn two_ids_whose_hashes_collide_are_both_kept_in_a_bulk_insert() {
        // 32-bit hashes: among 300,000 ids two collide (a birthday pair)
        // with near certainty; the seed is fixed, so the pair is too.
        let index = IdIndex::new(3);
        let mut seen = std::collections::HashMap::new();
        let pair = (0..300_000u32).find_map(|i| {
            let id = format!("job-{i}");
            seen.insert(index.hash(&id), i).map(|j| (j, i))
        });
        let (a, b) = pair.expect("a colliding pair among 300,000 ids");
        let jobs: Vec<JobId> = [a, b, a + 1]
            .iter()
            .map(|i| JobId::parse(&format!("job-{i}")).unwrap())
            .collect();
        assert_eq!(index.hash(jobs[0].as_str()), index.hash(jobs[1].as_str()));
        let keys: Vec<(u32, u32)> = (0..3)
            .map(|pos| (index.hash(jobs[pos].as_str()), pos as u32))
            .collect();
        let mut bulk = IdIndex::new(3);
        bulk.insert_bulk(keys.clone(), |p| &jobs[p as usize])
            .expect("different ids are no duplicates, whatever their hashes");
        for (pos, id) in jobs.iter().enumerate() {
            assert_eq!(
                bulk.get(id.as_str(), |p| &jobs[p as usize]),
                Some(pos as u32)
            );
        }
        // Removing either of the pair, first, removes that one only.
        for (gone, kept) in [(0u32, 1u32), (1, 0)] {
            let mut index = IdIndex::new(3);
            index
                .insert_bulk(keys.clone(), |p| &jobs[p as usize])
                .unwrap();
            let at = |p: u32| &jobs[p as usize];
            assert_eq!(index.remove(jobs[gone as usize].as_str(), at), Some(gone));
            assert_eq!(index.get(jobs[gone as usize].as_str(), at), None);
            assert_eq!(index.get(jobs[kept as usize].as_str(), at), Some(kept));
        }
    }
}
