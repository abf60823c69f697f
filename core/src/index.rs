//! A hash index from job ids to positions held elsewhere.
//!
//! It stores only a `u64` per entry (the position), not the id: the id lives
//! once, in the job table or the remembered-id list, and is looked up
//! through a closure. That keeps the index at ~10 bytes per job.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::job::JobId;

/// Maps ids to positions; the caller resolves a position back to its id.
#[derive(Clone)]
pub(crate) struct IdIndex {
    table: HashTable<u64>,
    hasher: FixedState,
}

impl IdIndex {
    pub(crate) fn new(seed: u64) -> IdIndex {
        IdIndex {
            table: HashTable::new(),
            hasher: FixedState::with_seed(seed),
        }
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The position stored for `id`.
    pub(crate) fn get<'a>(&self, id: &str, id_at: impl Fn(u64) -> &'a JobId) -> Option<u64> {
        self.table
            .find(self.hash(id), |&pos| id_at(pos).as_str() == id)
            .copied()
    }

    /// Stores `pos` for `id`, which must not be present.
    pub(crate) fn insert<'a>(&mut self, id: &str, pos: u64, id_at: impl Fn(u64) -> &'a JobId) {
        let h = self.hash(id);
        let hasher = self.hasher;
        self.table
            .insert_unique(h, pos, |&p| hasher.hash_one(id_at(p).as_str()));
    }

    /// Makes room for `additional` more entries.
    pub(crate) fn reserve<'a>(&mut self, additional: usize, id_at: impl Fn(u64) -> &'a JobId) {
        let hasher = self.hasher;
        self.table
            .reserve(additional, |&p| hasher.hash_one(id_at(p).as_str()));
    }

    /// Removes `id`; returns its position.
    pub(crate) fn remove<'a>(&mut self, id: &str, id_at: impl Fn(u64) -> &'a JobId) -> Option<u64> {
        match self
            .table
            .find_entry(self.hash(id), |&pos| id_at(pos).as_str() == id)
        {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.table.allocation_size()
    }
}
