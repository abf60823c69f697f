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

    /// Inserts many `(hash, pos)` pairs at once, sorted by hash so the
    /// table is filled in address order instead of by random probes.
    /// Returns a position whose id was already present, if any.
    pub(crate) fn insert_bulk<'a>(
        &mut self,
        mut keys: Vec<(u32, u32)>,
        id_at: impl Fn(u32) -> &'a JobId,
    ) -> Result<(), u32> {
        keys.sort_unstable();
        self.table.reserve(keys.len(), |&(eh, _)| spread(eh));
        for (i, &(h, pos)) in keys.iter().enumerate() {
            // Equal ids have equal hashes, so duplicates sit side by side.
            let dup = keys[..i]
                .iter()
                .rev()
                .take_while(|k| k.0 == h)
                .any(|k| id_at(k.1).as_str() == id_at(pos).as_str());
            if dup {
                return Err(pos);
            }
            self.table
                .insert_unique(spread(h), (h, pos), |&(eh, _)| spread(eh));
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

    pub(crate) fn bytes(&self) -> usize {
        self.table.allocation_size()
    }
}
