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
}

/// Every tube known, in creation order (a removed one's place taken by
/// the last, as beanstalkd does), with its figures.
#[derive(Debug, Default)]
pub struct Tubes {
    order: Vec<TubeName>,
    figures: HashMap<TubeName, TubeFigures>,
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
        if !self.figures.contains_key(tube) {
            if self.order.len() >= TUBES_MAX {
                return None;
            }
            self.order.push(tube.clone());
            self.figures.insert(tube.clone(), TubeFigures::default());
        }
        self.figures.get_mut(tube)
    }

    /// The figures of a tube (all 0 if unknown).
    pub fn get(&self, tube: &TubeName) -> TubeFigures {
        self.figures.get(tube).copied().unwrap_or_default()
    }

    /// The first tube, in creation order, that `wanted` accepts.
    pub fn find(&self, wanted: impl Fn(&TubeName) -> bool) -> Option<TubeName> {
        self.order.iter().find(|t| wanted(t)).cloned()
    }

    /// Tubes in creation order.
    pub fn names(&self) -> Vec<TubeName> {
        self.order.clone()
    }

    /// Removes tubes no connection uses or watches for which `has_jobs`
    /// says no (never `default`), as beanstalkd does once such a tube is
    /// unreferenced and empty.
    pub fn prune(&mut self, has_jobs: impl Fn(&TubeName) -> bool) {
        let mut i = 0;
        while i < self.order.len() {
            let t = &self.order[i];
            let f = self.get(t);
            let idle = f.using == 0 && f.watching == 0 && f.waiting == 0;
            if idle && *t != TubeName::default_tube() && !has_jobs(t) {
                self.figures.remove(t);
                self.order.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}
