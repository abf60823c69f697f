//! `SortedSet`: the ordered set behind the core's indexes (ready, scheduled,
//! leased, finished, dead).
//!
//! Keys are kept sorted in chunks of at most [`CHUNK_MAX`], with each
//! chunk's largest key in a small contiguous array that is searched first.
//! The indexes' keys mostly arrive in increasing order (sequence numbers,
//! times) and leave from the front; both are O(1) amortized here, and a key
//! in the middle costs two binary searches and a short shift. Iteration is
//! in key order, both ways.

use std::collections::VecDeque;

/// Keys per chunk at most (small under test, so that splits are exercised).
#[cfg(not(test))]
const CHUNK_MAX: usize = 1024;
#[cfg(test)]
const CHUNK_MAX: usize = 8;

/// An ordered set of `Copy` keys. Same contract as `BTreeSet` for the
/// operations it has.
#[derive(Clone, Debug)]
pub(crate) struct SortedSet<K> {
    chunks: Vec<VecDeque<K>>,
    /// `maxes[i]` is the last key of `chunks[i]`; no chunk is empty.
    maxes: Vec<K>,
    len: usize,
}

impl<K> Default for SortedSet<K> {
    fn default() -> Self {
        SortedSet {
            chunks: Vec::new(),
            maxes: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Copy> SortedSet<K> {
    /// An empty set.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The smallest key.
    pub(crate) fn first(&self) -> Option<&K> {
        self.chunks.first().and_then(VecDeque::front)
    }

    /// The index of the first chunk whose largest key is `>= key`
    /// (`chunks.len()` if `key` is above every key).
    fn chunk_for(&self, key: &K) -> usize {
        self.maxes.partition_point(|m| m < key)
    }

    /// Whether `key` is in the set.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.chunks
            .get(self.chunk_for(key))
            .is_some_and(|c| c.binary_search(key).is_ok())
    }

    /// Adds `key`; `false` if it was already there.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        // Keys mostly arrive in increasing order: check the last chunk's
        // largest key before searching them all.
        let above_all = self.maxes.last().is_none_or(|m| *m < key);
        let i = if above_all {
            self.chunks.len()
        } else {
            self.chunk_for(&key)
        };
        if i == self.chunks.len() {
            // Above every key: append, to a fresh chunk if the last is full
            // (increasing keys fill chunks completely).
            match self.chunks.last_mut() {
                Some(last) if last.len() < CHUNK_MAX => {
                    last.push_back(key);
                    if let Some(m) = self.maxes.last_mut() {
                        *m = key;
                    }
                }
                _ => {
                    let mut c = VecDeque::with_capacity(CHUNK_MAX);
                    c.push_back(key);
                    self.chunks.push(c);
                    self.maxes.push(key);
                }
            }
            self.len += 1;
            return true;
        }
        let c = &mut self.chunks[i];
        match c.binary_search(&key) {
            Ok(_) => return false,
            Err(pos) => c.insert(pos, key),
        }
        self.len += 1;
        if c.len() > CHUNK_MAX {
            let tail = c.split_off(c.len() / 2);
            if let (Some(&head_max), Some(&tail_max)) = (c.back(), tail.back()) {
                self.maxes[i] = head_max;
                self.chunks.insert(i + 1, tail);
                self.maxes.insert(i + 1, tail_max);
            }
        }
        true
    }

    /// Removes `key`; `false` if it was not there.
    pub(crate) fn remove(&mut self, key: &K) -> bool {
        let i = self.chunk_for(key);
        let Some(c) = self.chunks.get_mut(i) else {
            return false;
        };
        let Ok(pos) = c.binary_search(key) else {
            return false;
        };
        c.remove(pos);
        self.len -= 1;
        match c.back() {
            Some(&m) => self.maxes[i] = m,
            None => {
                self.chunks.remove(i);
                self.maxes.remove(i);
            }
        }
        true
    }

    /// The keys in increasing order (`.rev()` for decreasing).
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.chunks.iter().flatten()
    }

    /// The keys `>= key`, in increasing order (found by two binary searches).
    pub(crate) fn range_from(&self, key: &K) -> impl Iterator<Item = &K> + '_ {
        let i = self.chunk_for(key);
        let skip = self
            .chunks
            .get(i)
            .map_or(0, |c| c.partition_point(|k| k < key));
        self.chunks[i.min(self.chunks.len())..]
            .iter()
            .flatten()
            .skip(skip)
    }
}

impl<K: Ord + Copy> FromIterator<K> for SortedSet<K> {
    /// Builds the set in one pass over the sorted keys (duplicates dropped).
    fn from_iter<I: IntoIterator<Item = K>>(keys: I) -> Self {
        let mut keys: Vec<K> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        let mut set = SortedSet::new();
        for chunk in keys.chunks(CHUNK_MAX) {
            if let Some(&m) = chunk.last() {
                set.chunks.push(chunk.iter().copied().collect());
                set.maxes.push(m);
                set.len += chunk.len();
            }
        }
        set
    }
}

impl<'a, K: Ord + Copy> IntoIterator for &'a SortedSet<K> {
    type Item = &'a K;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, VecDeque<K>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        /// Insert one above the largest key so far (the common case).
        Append,
        Remove(u16),
        RemoveFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u16>().prop_map(|k| Op::Insert(k % 200)),
            4 => Just(Op::Append),
            2 => any::<u16>().prop_map(|k| Op::Remove(k % 200)),
            2 => Just(Op::RemoveFirst),
        ]
    }

    fn check(set: &SortedSet<u32>, model: &BTreeSet<u32>) {
        assert_eq!(set.len(), model.len());
        assert_eq!(set.first(), model.first());
        assert!(set.iter().eq(model.iter()));
        assert!(set.iter().rev().eq(model.iter().rev()));
        assert!(set.into_iter().eq(model.iter()));
        assert_eq!(set.chunks.len(), set.maxes.len());
        for (c, m) in set.chunks.iter().zip(&set.maxes) {
            assert!(!c.is_empty() && c.len() <= CHUNK_MAX);
            assert_eq!(c.back(), Some(m));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Every operation answers as `BTreeSet` does, and the chunks stay
        /// sorted, non-empty, bounded and described by `maxes`.
        #[test]
        fn behaves_like_btreeset(
            initial in proptest::collection::vec(0u32..300, 0..40),
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut set: SortedSet<u32> = initial.iter().copied().collect();
            let mut model: BTreeSet<u32> = initial.iter().copied().collect();
            check(&set, &model);
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        let k = u32::from(k);
                        prop_assert_eq!(set.insert(k), model.insert(k));
                    }
                    Op::Append => {
                        let k = model.last().map_or(0, |m| m + 1);
                        prop_assert_eq!(set.insert(k), model.insert(k));
                    }
                    Op::Remove(k) => {
                        let k = u32::from(k);
                        prop_assert_eq!(set.remove(&k), model.remove(&k));
                    }
                    Op::RemoveFirst => {
                        let first = model.first().copied();
                        if let Some(k) = first {
                            prop_assert!(set.remove(&k));
                            model.remove(&k);
                        } else {
                            prop_assert_eq!(set.first(), None);
                        }
                    }
                }
                for k in [0u32, 1, 50, 199, 250] {
                    prop_assert_eq!(set.contains(&k), model.contains(&k));
                    prop_assert!(set.range_from(&k).eq(model.range(k..)));
                }
                check(&set, &model);
            }
        }
    }

    #[test]
    fn increasing_keys_fill_whole_chunks() {
        let mut set: SortedSet<u32> = SortedSet::new();
        for k in 0..(CHUNK_MAX as u32 * 3) {
            assert!(set.insert(k));
        }
        assert_eq!(set.chunks.len(), 3);
        assert!(set.chunks.iter().all(|c| c.len() == CHUNK_MAX));
    }
}
