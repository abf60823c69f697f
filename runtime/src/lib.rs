//! beaver-runtime: the async engine that owns a core, the WAL, snapshots,
//! an executor and timers, and carries out the core's effects.

pub mod executor;
