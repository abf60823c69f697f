//! Ids of purged jobs, remembered for deduplication in purge order.

use std::collections::VecDeque;

use crate::index::IdIndex;
use crate::job::JobId;
use crate::time::UnixMillis;

/// Remembered ids, oldest first, with an id index. Each id is stored once.
#[derive(Clone)]
pub(crate) struct Remembered {
    /// `(purged_at, id)`; `None` where an id was forgotten out of order.
    order: VecDeque<Option<(UnixMillis, JobId)>>,
    /// Absolute position of `order[0]`.
    base: u64,
    index: IdIndex,
    /// What the remembered ids take in a snapshot, their count's prefix
    /// aside (see [`crate::snapshot::remembered_len`]), kept as they change.
    encoded_bytes: u64,
}

impl Remembered {
    pub(crate) fn new(seed: u64) -> Remembered {
        Remembered {
            order: VecDeque::new(),
            base: 0,
            index: IdIndex::new(seed),
            encoded_bytes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// What the remembered ids take in a snapshot (constant time).
    pub(crate) fn encoded_bytes(&self) -> u64 {
        self.encoded_bytes
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        let (order, base) = (&self.order, self.base);
        self.index.get(id, |p| id_at(order, base, p)).is_some()
    }

    pub(crate) fn insert(&mut self, purged_at: UnixMillis, id: JobId) {
        let pos = self.base + self.order.len() as u64;
        // Positions are kept as their low 32 bits: the live window is far
        // smaller than 2^32, so they resolve unambiguously against `base`.
        self.index.insert(id.as_str(), pos as u32);
        self.encoded_bytes += crate::snapshot::remembered_id_len(purged_at, &id);
        self.order.push_back(Some((purged_at, id)));
    }

    /// Forgets `id`; returns whether it was remembered.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let (order, base) = (&self.order, self.base);
        let Some(pos) = self.index.remove(id, |p| id_at(order, base, p)) else {
            return false;
        };
        if let Some((t, id)) = self.order[offset(self.base, pos)].take() {
            self.encoded_bytes -= crate::snapshot::remembered_id_len(t, &id);
        }
        while matches!(self.order.front(), Some(None)) {
            self.order.pop_front();
            self.base += 1;
        }
        true
    }

    /// Remembered ids, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (UnixMillis, &JobId)> {
        self.order.iter().flatten().map(|(t, id)| (*t, id))
    }

    /// The oldest remembered id's purge time.
    pub(crate) fn oldest_at(&self) -> Option<UnixMillis> {
        self.iter().next().map(|(t, _)| t)
    }
}

/// Where the 32-bit position `pos` sits in the window starting at `base`.
fn offset(base: u64, pos: u32) -> usize {
    pos.wrapping_sub(base as u32) as usize
}

fn id_at(order: &VecDeque<Option<(UnixMillis, JobId)>>, base: u64, pos: u32) -> &JobId {
    match order.get(offset(base, pos)) {
        Some(Some((_, id))) => id,
        _ => panic!("remembered ids: index points at an empty position {pos}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_in_order_and_forgets_anywhere() {
        let mut r = Remembered::new(1);
        for i in 0..10 {
            r.insert(i, JobId::parse(&format!("id{i}")).unwrap());
        }
        assert!(r.contains("id3"));
        assert!(r.remove("id3"));
        assert!(!r.remove("id3"));
        assert!(!r.contains("id3"));
        assert!(r.remove("id0"));
        assert_eq!(r.oldest_at(), Some(1));
        assert_eq!(r.len(), 8);
        let ids: Vec<_> = r.iter().map(|(_, id)| id.to_string()).collect();
        assert_eq!(
            ids,
            ["id1", "id2", "id4", "id5", "id6", "id7", "id8", "id9"]
        );
        assert!(r.remove("id1") && r.remove("id2"));
        assert_eq!(r.oldest_at(), Some(4));
        assert!(r.contains("id9"));
    }

    #[test]
    fn positions_past_u32_max_still_resolve() {
        let mut r = Remembered::new(3);
        r.base = u64::from(u32::MAX) - 2;
        for i in 0..6 {
            r.insert(i, JobId::parse(&format!("w{i}")).unwrap());
        }
        for i in 0..6 {
            assert!(r.contains(&format!("w{i}")), "w{i}");
        }
        assert!(r.remove("w4") && r.remove("w0") && r.remove("w1"));
        assert_eq!(r.oldest_at(), Some(2));
        assert!(r.base > u64::from(u32::MAX) - 2);
        assert!(r.contains("w5") && !r.contains("w4"));
    }
}
