//! The planted bug a WAL or snapshot store runs with, for the simulator's
//! own test. Without the `mutants` feature [`Planted`] holds nothing and
//! every check of it is compiled out; with it, the node's configuration
//! names the bug (see the `beaver-planted` crate).

/// Which planted bug (if any) storage runs with. Always none without the
/// `mutants` feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted(#[cfg(feature = "mutants")] pub Option<beaver_planted::Mutant>);

#[cfg(feature = "mutants")]
impl Planted {
    /// Whether `m` is the planted bug.
    pub fn is(self, m: beaver_planted::Mutant) -> bool {
        self.0 == Some(m)
    }
}
