//! Tubes as beanstalkd has them: names (mapped onto queue names), which
//! connections use, watch and wait on each, and the per-tube figures
//! beaver's core does not keep (kept here, in memory: a restart resets
//! them).

use std::collections::HashMap;

use beaver_core::QueueName;

use crate::beanstalk::TubeName;

/// The most tubes tracked at once; a `use` or `watch` of one more is
/// answered `OUT_OF_MEMORY`.
pub const TUBES_MAX: usize = 10_000;

/// The queue a tube is: its own name when beaver's queue names can spell
/// it (`[A-Za-z0-9._-]`, 64 bytes), else `bs-` and a 64-bit FNV-1a hash
/// of it in hex (stable across restarts, so its jobs stay in one queue).
pub fn queue_of(tube: &TubeName) -> QueueName {
    if let Ok(q) = QueueName::parse(tube.as_str()) {
        return q;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tube.as_str().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // `bs-` and 16 hex digits is always a valid queue name.
    QueueName::parse(&format!("bs-{hash:016x}")).unwrap_or_default()
}

/// What beanstalkd counts per tube and beaver's core does not.
#[derive(Debug, Clone, Copy, Default)]
pub struct TubeFigures {
    /// Connections using it.
    pub using: u64,
    /// Connections watching it.
    pub watching: u64,
    /// Connections waiting in a reserve that watches it.
    pub waiting: u64,
    /// Jobs put into it (since start).
    pub total_jobs: u64,
    /// `delete` commands of its jobs.
    pub cmd_delete: u64,
    /// `pause-tube` commands naming it.
    pub cmd_pause: u64,
    /// The delay of its last `pause-tube`, in seconds.
    pub pause_s: u64,
    /// Which life of its name this tube is: tubes made later (also one
    /// made again after it was dropped) have higher numbers.
    pub life: u64,
}

/// Every tube known, in creation order (a removed one's place taken by
/// the last, as beanstalkd does), with its figures. A tube is found with
/// one hash of its name (SipHash, keyed per process: names come from
/// clients).
#[derive(Debug, Default)]
pub struct Tubes {
    /// The tubes in creation order, each with its figures.
    tubes: Vec<(TubeName, TubeFigures)>,
    /// Each tube's place in `tubes`.
    places: HashMap<TubeName, usize>,
    /// Tubes made so far (the next one's life).
    made: u64,
}

impl Tubes {
    /// Tubes with `default` first.
    pub fn new() -> Tubes {
        let mut t = Tubes::default();
        t.touch(&TubeName::default_tube());
        t
    }

    /// Notes a tube (creating it), and returns its figures to change;
    /// `None` past [`TUBES_MAX`].
    pub fn touch(&mut self, tube: &TubeName) -> Option<&mut TubeFigures> {
        let place = match self.places.get(tube) {
            Some(&place) => place,
            None => {
                if self.tubes.len() >= TUBES_MAX {
                    return None;
                }
                self.places.insert(tube.clone(), self.tubes.len());
                let figures = TubeFigures {
                    life: self.made,
                    ..TubeFigures::default()
                };
                self.made += 1;
                self.tubes.push((tube.clone(), figures));
                self.tubes.len() - 1
            }
        };
        self.tubes.get_mut(place).map(|(_, f)| f)
    }

    /// The figures of a tube (all 0 if unknown).
    pub fn get(&self, tube: &TubeName) -> TubeFigures {
        self.places
            .get(tube)
            .and_then(|&place| self.tubes.get(place))
            .map(|&(_, f)| f)
            .unwrap_or_default()
    }

    /// The first tube, in creation order, that `wanted` accepts.
    pub fn find(&self, wanted: impl Fn(&TubeName) -> bool) -> Option<TubeName> {
        self.tubes
            .iter()
            .find(|(t, _)| wanted(t))
            .map(|(t, _)| t.clone())
    }

    /// Tubes in creation order.
    pub fn names(&self) -> Vec<TubeName> {
        self.tubes.iter().map(|(t, _)| t.clone()).collect()
    }

    /// Removes tubes no connection uses or watches for which `has_jobs`
    /// says no (never `default`), as beanstalkd does once such a tube is
    /// unreferenced and empty.
    pub fn prune(&mut self, has_jobs: impl Fn(&TubeName) -> bool) {
        let mut i = 0;
        while let Some((t, f)) = self.tubes.get(i) {
            let idle = f.using == 0 && f.watching == 0 && f.waiting == 0;
            if idle && *t != TubeName::default_tube() && !has_jobs(t) {
                let (gone, _) = self.tubes.swap_remove(i);
                self.places.remove(&gone);
                if let Some((moved, _)) = self.tubes.get(i) {
                    self.places.insert(moved.clone(), i);
                }
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tube(name: &str) -> TubeName {
        TubeName::new(name.as_bytes()).expect("a valid tube name")
    }

    /// Removing a tube moves the last into its place (beanstalkd's order),
    /// and every tube is still found with its own figures afterwards.
    #[test]
    fn a_pruned_tube_gives_its_place_to_the_last_and_every_tube_keeps_its_figures() {
        let mut t = Tubes::new();
        for (n, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let f = t.touch(&tube(name)).expect("room");
            f.watching = 1;
            f.total_jobs = n as u64 + 10;
        }
        if let Some(b) = t.touch(&tube("b")) {
            b.watching = 0;
        }
        t.prune(|_| false);
        let names: Vec<String> = t.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["default", "a", "d", "c"]);
        assert_eq!(t.get(&tube("b")).total_jobs, 0, "b is gone");
        for (name, jobs) in [("a", 10), ("c", 12), ("d", 13)] {
            assert_eq!(t.get(&tube(name)).total_jobs, jobs, "{name}");
        }
        t.touch(&tube("d")).expect("known").total_jobs += 1;
        assert_eq!(t.get(&tube("d")).total_jobs, 14);
        assert_eq!(t.get(&tube("c")).total_jobs, 12);
        // b comes back, last, from zero and in a new life.
        let old_life = t.get(&tube("a")).life;
        let b = t.touch(&tube("b")).expect("room");
        assert_eq!(b.total_jobs, 0);
        assert!(b.life > old_life, "a tube made again is a new life");
        assert_ne!(t.get(&tube("a")).life, t.get(&tube("c")).life);
        assert_eq!(t.names().last().map(|n| n.to_string()), Some("b".into()));
    }

    /// Past `TUBES_MAX` a new tube is refused; known ones are still found.
    #[test]
    fn no_tube_past_the_limit_is_created() {
        let mut t = Tubes::new();
        for i in 1..TUBES_MAX {
            assert!(t.touch(&tube(&format!("t{i}"))).is_some(), "t{i}");
        }
        assert!(t.touch(&tube("one-more")).is_none());
        assert!(t.touch(&tube("t1")).is_some());
        assert_eq!(t.names().len(), TUBES_MAX);
    }
}
